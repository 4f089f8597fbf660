//! The tenant's disk limit on a run's workspace.
//!
//! WASI file writes and a program's writes both land in the workspace, and
//! neither has a hook that could refuse the byte past a quota. So while a
//! stage runs, a watcher measures the space its workspace takes on disk
//! (allocated blocks, so a sparse file counts for what it really uses) and
//! stops the stage once it passes `limits.disk`. Between two looks the
//! stage can write what the disk takes in [`MIN_INTERVAL`] (or four times
//! the last walk, for huge trees), so the limit is a bound on growth, not
//! an exact quota: for a hard one, put tenant roots on a filesystem with
//! quotas. A program's single files are also capped by RLIMIT_FSIZE.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::limits::human_bytes;

/// The shortest time between two looks at the workspace.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Bytes the tree at `root` takes on disk: allocated blocks of every file
/// and directory under it, symlinks not followed.
pub fn disk_usage(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Resolves with the limit's message once `workspace` takes more than
/// `limit` bytes; never otherwise.
pub async fn exceeded(workspace: PathBuf, limit: u64) -> String {
    loop {
        let started = Instant::now();
        let dir = workspace.clone();
        let used = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .unwrap_or(0);
        if used > limit {
            return format!(
                "disk limit hit: the run's workspace takes {} on disk, the limit is {} (limit `disk`)",
                human_bytes(used as usize),
                human_bytes(limit as usize)
            );
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
        let used = disk_usage(dir.path());
        assert!(used >= 1 << 20, "{used}");
        assert!(used < 8 << 20, "a sparse GiB is not counted as a GiB: {used}");
    }
}
