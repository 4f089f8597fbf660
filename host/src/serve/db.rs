//! The server's connections to the run history: a few SQLite connections
//! (WAL mode lets readers run beside the writer), each used on a blocking
//! thread so a slow query never stalls the async workers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError};

/// Connections kept open.
const CONNECTIONS: usize = 4;

/// A small pool of connections to one history.
#[derive(Clone)]
pub struct Db {
    conns: Arc<[Mutex<Store>]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    dir: PathBuf,
}

impl Db {
    /// Open the history in `dir` (creating and migrating it).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conns: Vec<Mutex<Store>> = (0..CONNECTIONS)
            .map(|_| Store::open(dir).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conns: conns.into(),
            next: Arc::default(),
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run `f` on a free connection, off the async workers.
    pub async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || db.with(f)).await {
            Ok(r) => r,
            Err(e) => Err(E::from(StoreError::Dir {
                path: self.dir.clone(),
                source: std::io::Error::other(format!("a history query failed: {e}")),
            })),
        }
    }

    /// Run `f` on a free connection, on this thread.
    pub fn with<T, E>(&self, f: impl FnOnce(&mut Store) -> Result<T, E>) -> Result<T, E> {
        // A free connection if there is one, else wait for the next in turn.
        for conn in self.conns.iter() {
            if let Ok(mut store) = conn.try_lock() {
                return f(&mut store);
            }
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.conns.len();
        let mut store = self.conns[i].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut store)
    }
}
