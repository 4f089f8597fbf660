//! A content-addressed file store (`.weir/blobs/`): each file once, named
//! by its sha256, written to a temporary name and renamed, so a blob is
//! either complete or absent. Replay records keep analyzers' input files
//! here; runs that share files share blobs.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The blob directory inside the state directory.
pub const BLOB_DIR: &str = "blobs";

/// A blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store at `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where blob `sha256` lives; `None` unless it is 64 lowercase hex
    /// digits (names from a recording are not trusted).
    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.dir.join(&sha256[..2]).join(sha256))
    }

    /// Whether the blob `sha256` is stored.
    pub fn has(&self, sha256: &str) -> bool {
        self.path(sha256).is_some_and(|p| p.is_file())
    }

    /// Mark blob `sha256` as in use now, so a concurrent prune keeps it.
    pub fn touch(&self, sha256: &str) {
        if let Some(p) = self.path(sha256) {
            let _ = std::fs::File::options()
                .append(true)
                .open(p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
    }

    /// Store what `reader` yields, whose sha256 should be `sha256`.
    /// Nothing is written when the blob exists (it is touched instead);
    /// contents that do not match (the file changed since it was hashed)
    /// are refused.
    pub fn put(&self, reader: &mut dyn Read, sha256: &str) -> std::io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let Some(target) = self.path(sha256) else {
            return Err(std::io::Error::other(format!("`{sha256}` is not a sha256")));
        };
        if target.is_file() {
            self.touch(sha256);
            return Ok(());
        }
        let parent = target.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        // A name no other writer (thread or process) uses.
        let tmp = parent.join(format!(
            ".{sha256}.{}-{}.partial",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = copy_hashing(reader, &tmp).and_then(|actual| {
            if actual == sha256 {
                std::fs::rename(&tmp, &target)?;
                sync_dir(parent)
            } else {
                Err(std::io::Error::other(
                    "the file changed while it was being recorded",
                ))
            }
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Copy blob `sha256` to `to`, checking its contents on the way.
    pub fn restore(&self, sha256: &str, to: &Path) -> std::io::Result<()> {
        let Some(from) = self.path(sha256) else {
            return Err(std::io::Error::other(format!("`{sha256}` is not a sha256")));
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let actual = copy_hashing(&mut std::fs::File::open(from)?, to)?;
        if actual != sha256 {
            return Err(std::io::Error::other(format!(
                "blob {sha256} is damaged (its contents hash to {actual})"
            )));
        }
        Ok(())
    }

    /// Remove every blob not in `keep` and not written or used in the
    /// last hour (a run in progress may not have recorded its use yet);
    /// returns (blobs, bytes) removed.
    pub fn collect_garbage(&self, keep: &HashSet<String>) -> std::io::Result<(u64, u64)> {
        self.collect_garbage_older_than(keep, std::time::Duration::from_secs(3600))
    }

    fn collect_garbage_older_than(
        &self,
        keep: &HashSet<String>,
        age: std::time::Duration,
    ) -> std::io::Result<(u64, u64)> {
        let cutoff = std::time::SystemTime::now() - age;
        let (mut n, mut bytes) = (0, 0);
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return Ok((0, 0));
        };
        for shard in shards {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(shard.path())? {
                let blob = blob?;
                let name = blob.file_name().to_string_lossy().into_owned();
                let meta = blob.metadata()?;
                if keep.contains(&name) || meta.modified().is_ok_and(|m| m > cutoff) {
                    continue;
                }
                let size = meta.len();
                std::fs::remove_file(blob.path())?;
                n += 1;
                bytes += size;
            }
        }
        Ok((n, bytes))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn copy_hashing(input: &mut dyn Read, to: &Path) -> std::io::Result<String> {
    let mut output = std::fs::File::options().write(true).create_new(true).open(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_restore_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path().join("blobs"));
        let file = dir.path().join("f");
        std::fs::write(&file, "hello").unwrap();
        let sha = crate::stage_cache::files::hash_file(&file).unwrap().sha256;
        blobs.put(&mut std::fs::File::open(&file).unwrap(), &sha).unwrap();
        blobs.put(&mut std::fs::File::open(&file).unwrap(), &sha).unwrap();
        assert!(blobs.has(&sha));
        let out = dir.path().join("out/f");
        blobs.restore(&sha, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello");
        // A file that no longer matches its digest is refused.
        std::fs::write(&file, "changed").unwrap();
        let wrong = "0".repeat(64);
        assert!(
            blobs
                .put(&mut std::fs::File::open(&file).unwrap(), &wrong)
                .is_err()
        );
        assert!(!blobs.has(&wrong));
        // Names from a recording are checked before they become paths.
        assert!(!blobs.has("../../etc/passwd"));
        assert!(blobs.restore("../x", &dir.path().join("y")).is_err());
        assert_eq!(blobs.collect_garbage(&HashSet::new()).unwrap().0, 0, "too recent");
        let keep: HashSet<String> = [sha.clone()].into();
        let zero = std::time::Duration::ZERO;
        assert_eq!(
            blobs.collect_garbage_older_than(&keep, zero).unwrap().0,
            0,
            "in use"
        );
        assert_eq!(
            blobs.collect_garbage_older_than(&HashSet::new(), zero).unwrap().0,
            1
        );
        assert!(!blobs.has(&sha));
    }
}
