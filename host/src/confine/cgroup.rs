//! A cgroup per program: the process and memory limits that hold for
//! root too and for every process the program starts.
//!
//! RLIMIT_NPROC counts a user's processes and is not enforced for root,
//! not even inside bubblewrap, and RLIMIT_DATA misses shared memory and
//! what a program keeps in an in-memory filesystem. Each program therefore
//! starts inside its own cgroup: `pids.max` (cgroup v1's `pids`
//! hierarchy, or v2 where the `pids` controller is enabled for weir's
//! cgroup) and, when the tenant sets `limits.program-memory`, a memory
//! limit (v2 `memory.max`, v1 `memory.limit_in_bytes`). The program joins
//! between fork and exec, so everything it starts is counted, including
//! processes that leave its process group. When the program ends, every
//! process still in the cgroup is killed and the cgroup is removed:
//! nothing is left behind.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long [`ProgramGroup`] keeps killing what is left before giving up.
const SWEEP_FOR: Duration = Duration::from_secs(3);

/// One program's cgroups: its pids cgroup, and its memory cgroup when
/// memory is limited (the same directory on cgroup v2).
#[derive(Debug)]
pub struct ProgramGroup {
    dir: PathBuf,
    procs: CString,
    /// The memory cgroup, when it is another directory (cgroup v1).
    memory_dir: Option<PathBuf>,
    /// Its `cgroup.procs`, for [`join`].
    memory_procs: Option<CString>,
    /// Whether memory is limited, and the file that counts OOM kills.
    memory_events: Option<PathBuf>,
    /// Whether [`ProgramGroup::close`] has run.
    closed: bool,
}

/// Why a program's cgroup could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/cgroup` could not be read.
    #[error("cannot read /proc/self/cgroup: {0}")]
    Unreadable(String),
    /// Neither hierarchy offers the controller.
    #[error(
        "this host has no {0} cgroup weir can use (cgroup v1 `{0}` is not mounted, and cgroup v2 does not enable `{0}` for weir's cgroup)"
    )]
    NoController(&'static str),
    /// The cgroup directory could not be made.
    #[error("cannot create {}: {error}", dir.display())]
    Create {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: String,
    },
    /// A limit could not be written.
    #[error("cannot set {}: {error}", file.display())]
    Set {
        /// The control file.
        file: PathBuf,
        /// Why.
        error: String,
    },
    /// The path cannot be handed to the kernel.
    #[error("the cgroup path has a NUL byte")]
    Nul,
}

/// A program's memory limit could not be set up.
#[derive(Debug)]
pub struct NoMemoryCgroup(pub CgroupError);

/// Write `value` to the control file `file`.
fn set(file: PathBuf, value: impl ToString) -> Result<(), CgroupError> {
    std::fs::write(&file, value.to_string()).map_err(|e| CgroupError::Set {
        file,
        error: e.to_string(),
    })
}

impl ProgramGroup {
    /// A new cgroup below weir's own with `pids.max = max`; an error saying
    /// why when this host has no pids cgroup weir may create.
    pub fn create(max: u64) -> Result<Self, CgroupError> {
        let parent = own_cgroup("pids")?;
        let dir = fresh_dir(&parent)?;
        let group = Self {
            procs: procs_of(&dir)?,
            dir,
            memory_dir: None,
            memory_procs: None,
            memory_events: None,
            closed: false,
        };
        set(group.dir.join("pids.max"), max)?;
        Ok(group)
    }

    /// Limit the memory of everything in the group to `bytes` (swap
    /// included where the host counts it); why not, where this host has
    /// no memory cgroup weir may create.
    pub fn limit_memory(&mut self, bytes: u64) -> Result<(), NoMemoryCgroup> {
        let fail = NoMemoryCgroup;
        let parent = own_cgroup("memory").map_err(fail)?;
        if self.dir.parent() == Some(parent.as_path()) {
            // cgroup v2: one directory for every controller.
            set(self.dir.join("memory.max"), bytes).map_err(fail)?;
            let _ = std::fs::write(self.dir.join("memory.swap.max"), "0");
            self.memory_events = Some(self.dir.join("memory.events"));
            return Ok(());
        }
        let dir = fresh_dir(&parent).map_err(fail)?;
        self.memory_procs = Some(procs_of(&dir).map_err(fail)?);
        self.memory_dir = Some(dir.clone());
        set(dir.join("memory.limit_in_bytes"), bytes).map_err(fail)?;
        // Where swap is counted, none beyond the limit.
        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
        self.memory_events = Some(dir.join("memory.oom_control"));
        Ok(())
    }

    /// The `cgroup.procs` paths, for [`join`] in the child.
    pub fn procs(&self) -> Vec<CString> {
        std::iter::once(self.procs.clone())
            .chain(self.memory_procs.clone())
            .collect()
    }

    /// How many processes the memory limit killed so far.
    pub fn oom_kills(&self) -> u64 {
        self.memory_events
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|events| {
                events
                    .lines()
                    .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// How many forks `pids.max` refused so far.
    pub fn refused(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|events| {
                events
                    .lines()
                    .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Kill every process in the cgroup until it is empty (or
    /// [`SWEEP_FOR`] has passed); whether it is empty.
    pub async fn kill_all(&self) -> bool {
        let until = Instant::now() + SWEEP_FOR;
        loop {
            if self.kill_pass() == 0 {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Kill what is left and remove the cgroup.
    pub async fn close(mut self) {
        self.closed = true;
        self.kill_all().await;
        if let Some(memory) = self.memory_dir.take() {
            remove_when_empty(&memory).await;
        }
        // Removing a cgroup fails until the kernel has reaped what was
        // killed in it.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(cgroup = %self.dir.display(), "could not remove a program's pids cgroup");
    }

    /// SIGKILL to each process in the cgroup; how many there were.
    ///
    /// A pid read from `cgroup.procs` may belong to a process that was
    /// reaped since, and be reused by another: each is pinned with a pidfd
    /// first, and signalled only if it is still in this cgroup.
    fn kill_pass(&self) -> usize {
        use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};
        let pids = self.members();
        for &raw in &pids {
            let Some(pid) = Pid::from_raw(raw) else { continue };
            match pidfd_open(pid, PidfdFlags::empty()) {
                Ok(pinned) => {
                    if self.holds(raw) {
                        let _ = pidfd_send_signal(&pinned, Signal::KILL);
                    }
                }
                // Gone already.
                Err(rustix::io::Errno::SRCH) => {}
                // A kernel without pidfds: check, then signal.
                Err(_) => {
                    if self.holds(raw) {
                        let _ = kill_process(pid, Signal::KILL);
                    }
                }
            }
        }
        pids.len()
    }

    /// Whether process `pid` is in this cgroup.
    fn holds(&self, pid: i32) -> bool {
        let Some(name) = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|table| table.lines().any(|l| l.ends_with(&format!("/{name}"))))
            .unwrap_or(false)
    }

    /// Send `signal` to every program in the group, bubblewrap's own
    /// processes left out: a program asked to stop (its run cancelled)
    /// gets the signal itself, while the sandbox around it stays up for it
    /// to exit in. Returns how many were signalled.
    pub fn signal_programs(&self, signal: rustix::process::Signal) -> usize {
        use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
        let mut sent = 0;
        for raw in self.members() {
            let comm = std::fs::read_to_string(format!("/proc/{raw}/comm")).unwrap_or_default();
            if comm.trim() == "bwrap" {
                continue;
            }
            let Some(pid) = Pid::from_raw(raw) else { continue };
            // Pinned before it is checked, so a reused pid is not hit.
            if let Ok(pinned) = pidfd_open(pid, PidfdFlags::empty())
                && self.holds(raw)
                && pidfd_send_signal(&pinned, signal).is_ok()
            {
                sent += 1;
            }
        }
        sent
    }

    fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for ProgramGroup {
    /// A call dropped mid-way (a cancelled stage) did not [`close`]: kill
    /// what is there now and finish on the runtime.
    ///
    /// [`close`]: ProgramGroup::close
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.kill_pass();
        if let Some(memory) = &self.memory_dir
            && std::fs::remove_dir(memory).is_ok()
        {
            self.memory_dir = None;
        }
        if std::fs::remove_dir(&self.dir).is_ok() && self.memory_dir.is_none() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let rest = ProgramGroup {
                dir: std::mem::take(&mut self.dir),
                procs: self.procs.clone(),
                memory_dir: self.memory_dir.take(),
                memory_procs: None,
                memory_events: None,
                closed: false,
            };
            self.closed = true;
            runtime.spawn(rest.close());
        }
    }
}

/// Move the calling process into the cgroups whose `cgroup.procs` are
/// `procs`. Runs between fork and exec: only open, write and close.
pub fn join(procs: &[CString]) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags, open};
    for p in procs {
        let fd = open(p.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
        rustix::io::write(&fd, b"0")?;
    }
    Ok(())
}

/// A new, uniquely named cgroup directory below `parent`.
fn fresh_dir(parent: &Path) -> Result<PathBuf, CgroupError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = parent.join(format!(
        "weir-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) => Err(CgroupError::Create {
            dir,
            error: e.to_string(),
        }),
    }
}

fn procs_of(dir: &Path) -> Result<CString, CgroupError> {
    CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).map_err(|_| CgroupError::Nul)
}

/// Remove an emptied cgroup, waiting for the kernel to reap what was
/// killed in it.
async fn remove_when_empty(dir: &Path) {
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove a program's cgroup");
}

/// Where weir's own cgroup for `controller` (`pids` or `memory`) is:
/// cgroup v1's hierarchy of that name, or the v2 tree when that
/// controller reaches weir's cgroup. Found once per process and
/// controller: weir does not move between cgroups.
fn own_cgroup(controller: &'static str) -> Result<PathBuf, CgroupError> {
    type Found = std::sync::OnceLock<Result<PathBuf, CgroupError>>;
    static PIDS: Found = std::sync::OnceLock::new();
    static MEMORY: Found = std::sync::OnceLock::new();
    let cell = if controller == "pids" { &PIDS } else { &MEMORY };
    cell.get_or_init(|| {
        let table = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| CgroupError::Unreadable(e.to_string()))?;
        own_cgroup_in(&table, Path::new("/sys/fs/cgroup"), controller)
    })
    .clone()
}

fn own_cgroup_in(table: &str, root: &Path, controller: &'static str) -> Result<PathBuf, CgroupError> {
    let relative = |p: &str| root.to_path_buf().join(p.trim_start_matches('/'));
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => continue,
        };
        if controllers.split(',').any(|c| c == controller) {
            let dir = relative(controller).join(path.trim_start_matches('/'));
            if dir.join("cgroup.procs").exists() {
                return Ok(dir);
            }
        }
        if controllers.is_empty() {
            let dir = relative(path);
            let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if enabled.split_whitespace().any(|c| c == controller) {
                return Ok(dir);
            }
        }
    }
    Err(CgroupError::NoController(controller))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_pids_hierarchy_or_v2_with_pids_enabled() {
        let root = tempfile::tempdir().expect("tempdir");
        let v1 = root.path().join("pids/weir.slice");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("cgroup.procs"), "").expect("write");
        let table = "12:pids:/weir.slice\n0::/user.slice\n";
        assert_eq!(own_cgroup_in(table, root.path(), "pids"), Ok(v1));
        assert!(own_cgroup_in(table, root.path(), "memory").is_err());

        let v2 = root.path().join("user.slice");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(v2.join("cgroup.subtree_control"), "cpu memory\n").expect("write");
        let table = "0::/user.slice\n";
        assert!(own_cgroup_in(table, root.path(), "pids").is_err());
        std::fs::write(v2.join("cgroup.subtree_control"), "cpu memory pids\n").expect("write");
        assert_eq!(own_cgroup_in(table, root.path(), "pids"), Ok(v2));
    }
}
