//! The tenant's disk limit on a run's workspace.
//!
//! WASI file writes and a program's writes both land in the workspace, and
//! neither has a hook that could refuse the byte past a quota. So while a
//! stage runs, a watcher measures the space its workspace takes on disk
//! (allocated blocks, so a sparse file counts for what it really uses) and
//! stops the stage once it passes `limits.disk`. Files deleted from the
//! workspace but still held open (by weir for a plugin's WASI handle, or by
//! a program) count too, and a directory that cannot be read fails the
//! check closed: the stage stops, naming why. Between two looks the
//! stage can write what the disk takes in [`MIN_INTERVAL`] (or four times
//! the last walk, for huge trees), so the limit is a bound on growth, not
//! an exact quota: for a hard one, put tenant roots on a filesystem with
//! quotas. A program's single files are also capped by RLIMIT_FSIZE.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::limits::human_bytes;

/// The shortest time between two looks at the workspace.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// A directory whose size could not be read: the limit fails closed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {error}", dir.display())]
pub struct Unmeasured {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// Why.
    #[source]
    pub error: std::io::Error,
}

/// Bytes the tree at `root` takes on disk: allocated blocks of every file
/// and directory under it (symlinks not followed; a file with several
/// hard links counted once), and of files deleted
/// from it that a process still holds open. An error says what could not
/// be measured: the limit fails closed.
pub fn disk_usage(root: &Path) -> Result<u64, Unmeasured> {
    use std::os::unix::fs::MetadataExt;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut total = 0u64;
    let mut linked = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed while we walked: nothing to count.
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(Unmeasured { dir, error: e }),
        };
        for entry in entries {
            let meta = match entry.and_then(|e| e.metadata().map(|m| (e.path(), m))) {
                Ok(found) => found,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(Unmeasured { dir, error: e }),
            };
            let (path, meta) = meta;
            if meta.nlink() > 1 && !meta.is_dir() && !linked.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(total.saturating_add(deleted_but_open(root)))
}

/// Blocks of files deleted from under `root` that some process (weir
/// itself, for a plugin's WASI files, or a program) still holds open:
/// unlinking a file does not free its space.
fn deleted_but_open(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("{}/", root.display());
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for process in processes.flatten() {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if !(target.starts_with(&prefix) && target.ends_with(" (deleted)")) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(fd.path())
                && seen.insert((meta.dev(), meta.ino()))
            {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// Resolves with the limit's message once `workspace` takes more than
/// `limit` bytes, or cannot be measured; never otherwise.
pub async fn exceeded(workspace: PathBuf, limit: u64) -> String {
    loop {
        let started = Instant::now();
        let dir = workspace.clone();
        let used = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .unwrap_or(Ok(0));
        match used {
            Ok(used) if used > limit => {
                return format!(
                    "disk limit hit: the run's workspace takes {} on disk, the limit is {} (limit `disk`)",
                    human_bytes(used as usize),
                    human_bytes(limit as usize)
                );
            }
            Ok(_) => {}
            Err(why) => {
                return format!(
                    "the workspace's disk use cannot be checked against the limit of {} (limit `disk`): {why}",
                    human_bytes(limit as usize)
                );
            }
        }
        tokio::time::sleep(MIN_INTERVAL.max(started.elapsed() * 4)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_allocated_blocks_not_apparent_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/data"), vec![7u8; 1 << 20]).expect("write");
        let sparse = std::fs::File::create(dir.path().join("sparse")).expect("create");
        sparse.set_len(1 << 30).expect("set_len");
        let used = disk_usage(dir.path()).expect("measured");
        assert!(used >= 1 << 20, "{used}");
        assert!(used < 8 << 20, "a sparse GiB is not counted as a GiB: {used}");
    }

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("data"), vec![7u8; 1 << 20]).expect("write");
        let one = disk_usage(dir.path()).expect("measured");
        for i in 0..20 {
            std::fs::hard_link(dir.path().join("data"), dir.path().join(format!("l{i}"))).expect("link");
        }
        assert_eq!(disk_usage(dir.path()).expect("measured"), one);
    }

    #[test]
    fn a_deleted_file_still_open_counts() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let path = root.join("hidden");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&vec![1u8; 4 << 20]).expect("write");
        file.sync_all().expect("sync");
        std::fs::remove_file(&path).expect("unlink");
        let used = disk_usage(&root).expect("measured");
        assert!(used >= 4 << 20, "the open, unlinked file is counted: {used}");
        drop(file);
    }

    #[test]
    fn what_cannot_be_read_fails_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            disk_usage(&dir.path().join("gone")).ok(),
            Some(0),
            "removed: nothing to count"
        );
        let deep = format!("{}{}", dir.path().display(), "/a".repeat(3000));
        let err = disk_usage(Path::new(&deep)).expect_err("a path too long to read");
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }
}
