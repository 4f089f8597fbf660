//! Run history in SQLite: every run, its events in order, and what is
//! derived from them (stages, logs, artifacts, test cases, findings), under
//! the state directory (`.weir/weir.db`).
//!
//! The database is in WAL mode and every batch of events is written in one
//! transaction, so a killed host leaves it consistent: a run whose process
//! is gone while its row still says `running` is marked `interrupted` the
//! next time the store is opened.

pub mod cache;
pub mod coordination;
pub mod queries;
pub mod recorder;
pub mod remote;
pub mod schema;
pub mod serving;
pub mod web_sessions;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

/// The database file inside the state directory.
pub const DB_FILE: &str = "weir.db";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("run history {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer weir.
    #[error(
        "run history {path} has schema version {found}, newer than this weir knows ({known}); use the weir that wrote it, or move the file away"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No run has this id.
    #[error("no run `{0}` in the run history (`weir runs list` shows them)")]
    NoSuchRun(String),
    /// A run with this id is already recorded (and is not a queued run
    /// waiting to start under it).
    #[error("run {0} is already in the run history")]
    Taken(String),
    /// The run is running or succeeded.
    #[error("run {0} is running or has succeeded, so it cannot be resumed")]
    NotResumable(String),
}

/// Wraps SQLite errors for the database at `path`.
fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// An open run history.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (creating and migrating as needed) the history in `state_dir`,
    /// and mark runs whose host process is gone as `interrupted`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(sqlite(&path))?;
        let mut store = Self { conn, path };
        store.setup()?;
        store.mark_interrupted()?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        sqlite(&self.path)(source)
    }

    fn setup(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.err(e))?;
        // The recorder runs the same few statements for every event.
        self.conn.set_prepared_statement_cache_capacity(64);
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| self.err(e))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
            tx.execute_batch(sql)
                .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)))
                .and_then(|()| tx.commit())
                .map_err(sqlite(&self.path))?;
        }
        Ok(())
    }

    /// Runs still `running` whose host process is gone become
    /// `interrupted`; their unfinished stages too.
    fn mark_interrupted(&mut self) -> Result<(), StoreError> {
        let running: Vec<(String, i64, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, host_pid, host_start FROM runs WHERE status = 'running'")
                .map_err(|e| self.err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?
        };
        for (id, pid, start) in running {
            if start.starts_with(remote::WORKER_MARK) || process_alive(pid, &start) {
                continue;
            }
            let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
            tx.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?1", params![id])
                .and_then(|_| {
                    tx.execute(
                        "UPDATE stages SET status = 'interrupted' WHERE run_id = ?1 AND status IN ('waiting', 'running')",
                        params![id],
                    )
                })
                .and_then(|_| {
                    tx.execute(
                        "UPDATE attempts SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'",
                        params![id],
                    )
                })
                .and_then(|_| tx.commit())
                .map_err(sqlite(&self.path))?;
            tracing::info!("run {id} was interrupted (its weir process {pid} is gone)");
        }
        Ok(())
    }

    /// Whether run `id` is in the history.
    pub fn has_run(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }
}

/// This process's identity for the `runs` table: its pid and the kernel's
/// start time for it (so a reused pid is not taken for this run's host).
pub fn this_process() -> (i64, String) {
    let pid = std::process::id();
    (i64::from(pid), start_time(i64::from(pid)).unwrap_or_default())
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks
/// since boot.
fn start_time(pid: i64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

pub(crate) fn process_alive(pid: i64, start: &str) -> bool {
    match start_time(pid) {
        Some(now) => start.is_empty() || now == start,
        None => false,
    }
}

/// The run history as the executor uses it.
#[derive(Clone)]
pub struct History {
    /// A connection of its own (the recorder has another).
    pub store: std::sync::Arc<std::sync::Mutex<Store>>,
    /// Where input files' contents are kept.
    pub blobs: crate::blobs::Blobs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::MIGRATIONS.len() as i64);
        drop(store);
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    #[test]
    fn this_process_is_alive_and_a_stranger_is_not() {
        let (pid, start) = this_process();
        assert!(!start.is_empty());
        assert!(process_alive(pid, &start));
        assert!(!process_alive(pid, "1"), "same pid, another start time");
        assert!(!process_alive(i64::from(i32::MAX), ""));
    }
}
