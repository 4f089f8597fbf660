//! File descriptors are one budget for the whole process.
//!
//! Every file or directory a plugin opens through WASI is a descriptor of
//! weir's own, and every program weir starts needs a few more (pipes, a
//! pidfd). A per-Store cap alone (`resource-handles`) lets a few stages
//! together take all of them, and then nothing else can start: not the
//! next program, not the history's database. So the process's descriptor
//! limit, raised to its hard limit once, is split: a reserve stays with
//! weir, and each live Store leases a share of the rest. A Store's handle
//! table holds at most its lease, which is its share when it was created:
//! the per-Store cap, or what a fair split among the live Stores leaves,
//! whichever is less. The lease goes back when the Store is dropped.

use std::sync::Mutex;

/// Descriptors always left to weir itself (sockets, pipes, SQLite, the
/// compile cache), beyond the Stores' leases: an eighth of the limit, and
/// at least this many (or a quarter, under a small limit).
const MIN_RESERVE: usize = 1024;

/// The least a Store gets, so that a plugin can always start (its stdio,
/// its preopens). Taken from the reserve when the pool is spent.
pub const MIN_LEASE: usize = 64;

/// The pool the live Stores lease from.
#[derive(Debug)]
struct Pool {
    /// Descriptors the Stores may hold between them.
    total: usize,
    /// Leased now.
    leased: usize,
    /// Stores holding a lease.
    live: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: std::sync::OnceLock<Mutex<Pool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let limit = raise_limit();
        let reserve = MIN_RESERVE.min(limit / 4).max(limit / 8);
        Mutex::new(Pool {
            total: limit.saturating_sub(reserve),
            leased: 0,
            live: 0,
        })
    })
}

/// Raise the soft `RLIMIT_NOFILE` to the hard one; the soft limit then.
fn raise_limit() -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if let Some(hard) = now.maximum
        && now.current != Some(hard)
    {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    usize::try_from(soft).unwrap_or(usize::MAX).min(1 << 24)
}

/// A Store's share of the process's descriptors, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    handles: usize,
}

impl Lease {
    /// A lease for a new Store whose own cap is `cap` handles.
    pub fn take(cap: usize) -> Self {
        let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        let available = pool.total.saturating_sub(pool.leased);
        let fair = pool.total / (pool.live + 1);
        let handles = cap.min(available).min(fair).max(MIN_LEASE.min(cap));
        pool.leased += handles;
        pool.live += 1;
        Self { handles }
    }

    /// How many handles the Store may hold.
    pub fn handles(&self) -> usize {
        self.handles
    }

    /// Descriptors all Stores may hold between them.
    pub fn pool_size() -> usize {
        pool().lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        pool.leased = pool.leased.saturating_sub(self.handles);
        pool.live = pool.live.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_split_the_pool_and_come_back() {
        let total = Lease::pool_size();
        let cap = total;
        let first = Lease::take(cap);
        let second = Lease::take(cap);
        let third = Lease::take(cap);
        assert!(first.handles() + second.handles() + third.handles() <= total + 2 * MIN_LEASE);
        assert!(third.handles() >= MIN_LEASE, "a Store can always start");
        assert!(Lease::take(10).handles() <= 10, "never above the Store's own cap");
        drop((first, second, third));
        assert_eq!(Lease::take(100).handles(), 100.min(total), "leases come back");
    }
}
