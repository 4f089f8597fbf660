//! A stage's input files: the workspace files (and, for plugins that read
//! them, the `allow.read` directories) whose contents its result depends
//! on, each with its sha256. The digests go into the stage's cache key and
//! its replay record.
//!
//! A stage names them with `inputs = ["Cargo.lock", "src/**/*.rs"]`. A
//! stage that names none depends on the whole workspace except what
//! [`SKIPPED`] lists (version control metadata).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::beneath;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use weir_pipeline::globs::pattern::matches;

/// Directories left out of the default input set, at any depth: version
/// control metadata (a fresh checkout of the same commit differs there)
/// and weir's own state. Build output is an input: a stage may read it.
pub const SKIPPED: &[&str] = &[".git", ".hg", ".svn", ".weir"];

/// Most files in one stage's input set (limit `input-files`).
pub const MAX_FILES: usize = 100_000;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// sha256 of its contents, hex; for a symlink, of its target's path.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// For a symlink, where it points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A stage's input files. Workspace files are keyed by their relative
/// path; files of `allow.read` directories by their absolute path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileSet {
    /// Every file, by path.
    pub files: BTreeMap<String, FileDigest>,
}

impl FileSet {
    /// One digest for the whole set: paths and contents.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, f) in &self.files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(f.sha256.as_bytes());
            h.update([b'\n']);
        }
        hex::encode(h.finalize())
    }

    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// What differs from `older`, for people: at most `max` lines.
    pub fn changes_since(&self, older: &FileSet, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (path, f) in &self.files {
            match older.files.get(path) {
                None => out.push(format!("file `{path}` was added")),
                Some(o) if o.sha256 != f.sha256 => out.push(format!("file `{path}` changed")),
                Some(_) => {}
            }
        }
        for path in older.files.keys() {
            if !self.files.contains_key(path) {
                out.push(format!("file `{path}` was removed"));
            }
        }
        if out.len() > max {
            let more = out.len() - max;
            out.truncate(max);
            out.push(format!("… and {more} more file change(s)"));
        }
        out
    }
}

pub use weir_pipeline::globs::check_glob;

/// Whether `rel` is one of `globs` (a plain path also takes everything
/// under it, so `src` means the directory); the last entry that names it
/// decides, and `!` first excludes.
fn wanted(globs: &[String], rel: &str) -> bool {
    let names = |g: &str| {
        let g = g.trim_end_matches('/');
        matches(g, rel) || rel.strip_prefix(g).is_some_and(|rest| rest.starts_with('/'))
    };
    globs
        .iter()
        .rev()
        .find_map(|g| match g.strip_prefix('!') {
            Some(excluded) => names(excluded).then_some(false),
            None => names(g).then_some(true),
        })
        .unwrap_or(false)
}

/// Why a stage's input files could not be collected (the stage is then
/// not cached, and says why).
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// A file or directory could not be read.
    #[error("cannot {action} {what}: {error}")]
    Io {
        /// `open`, `list`, `read` or `record`.
        action: &'static str,
        /// The path, relative to the workspace.
        what: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// More than [`MAX_FILES`] files.
    #[error(
        "more than {MAX_FILES} input files (limit `input-files`); name the files the stage depends on with `inputs = [...]`"
    )]
    TooManyFiles,
    /// More than [`MAX_BYTES`] bytes.
    #[error(
        "more than {} of input files (limit `input-bytes`); name the files the stage depends on with `inputs = [...]`",
        crate::engine::limits::human_bytes(MAX_BYTES as usize)
    )]
    TooManyBytes,
}

impl InputsError {
    fn io(action: &'static str, what: impl std::fmt::Display, error: std::io::Error) -> Self {
        InputsError::Io {
            action,
            what: what.to_string(),
            error,
        }
    }
}

/// Most bytes of input files hashed for one stage (limit `input-bytes`).
pub const MAX_BYTES: u64 = 16 << 30;

/// The input files of a stage: under `workspace`, those matching `globs`
/// (or the default set when there are none), plus every file under each
/// directory of `read_dirs`. Each workspace file, open at its start, goes
/// to `keep` once hashed (the replay record stores its contents); files
/// of `read_dirs` are only hashed. Symlinks are recorded, never followed.
pub fn collect(
    workspace: &Path,
    globs: &[String],
    read_dirs: &[std::path::PathBuf],
    keep: &mut dyn FnMut(&mut std::fs::File, &FileDigest) -> std::io::Result<()>,
) -> Result<FileSet, InputsError> {
    let mut set = FileSet::default();
    let mut walker = Walker {
        set: &mut set,
        keep,
        bytes: 0,
        linked: HashMap::new(),
    };
    let filter = |rel: &str, is_dir: bool| -> bool {
        if globs.is_empty() {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            !(is_dir && SKIPPED.contains(&name))
        } else {
            is_dir || wanted(globs, rel)
        }
    };
    let root = beneath::open_root(workspace).map_err(|e| InputsError::io("open", workspace.display(), e))?;
    walker.walk(&root, "", &filter, true)?;
    for dir in read_dirs {
        let Ok(abs) = dir.canonicalize() else { continue };
        if !abs.is_dir() {
            continue;
        }
        let Ok(fd) = beneath::open_root(&abs) else {
            continue;
        };
        let prefix = abs.display().to_string();
        walker.walk(&fd, &prefix, &|_, _| true, false)?;
    }
    Ok(set)
}

struct Walker<'a> {
    set: &'a mut FileSet,
    keep: &'a mut dyn FnMut(&mut std::fs::File, &FileDigest) -> std::io::Result<()>,
    bytes: u64,
    /// Digests of files with several hard links, by inode and change
    /// time: a hundred links to one file are read, and counted, once.
    linked: HashMap<(u64, u64, i64, i64), FileDigest>,
}

impl Walker<'_> {
    fn walk(
        &mut self,
        dir: &std::os::fd::OwnedFd,
        prefix: &str,
        filter: &dyn Fn(&str, bool) -> bool,
        keep: bool,
    ) -> Result<(), InputsError> {
        use rustix::fs::FileType;
        let shown = if prefix.is_empty() {
            "the workspace"
        } else {
            prefix
        };
        let entries = beneath::entries(dir).map_err(|e| InputsError::io("list", shown, e))?;
        for (name, kind) in entries {
            if self.set.files.len() >= MAX_FILES {
                return Err(InputsError::TooManyFiles);
            }
            let text = name.to_string_lossy();
            let rel = if prefix.is_empty() {
                text.to_string()
            } else {
                format!("{prefix}/{text}")
            };
            let digest = match kind {
                FileType::Directory => {
                    if filter(&rel, true) {
                        // A directory swapped for a symlink since it was
                        // listed is refused, not followed.
                        let sub =
                            beneath::open_dir(dir, &name).map_err(|e| InputsError::io("open", &rel, e))?;
                        self.walk(&sub, &rel, filter, keep)?;
                    }
                    continue;
                }
                _ if !filter(&rel, false) => continue,
                FileType::Symlink => {
                    let target =
                        beneath::read_link(dir, &name).map_err(|e| InputsError::io("read", &rel, e))?;
                    FileDigest {
                        sha256: hex::encode(Sha256::digest(format!("symlink:{target}").as_bytes())),
                        size: 0,
                        link: Some(target),
                    }
                }
                FileType::RegularFile => {
                    use std::os::unix::fs::MetadataExt;
                    let mut file =
                        beneath::open_file(dir, &name).map_err(|e| InputsError::io("read", &rel, e))?;
                    let identity = file
                        .metadata()
                        .ok()
                        .filter(|m| m.nlink() > 1)
                        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()));
                    if let Some(d) = identity.and_then(|i| self.linked.get(&i)) {
                        self.set.files.insert(rel, d.clone());
                        continue;
                    }
                    let d = hash_reader(&mut file, MAX_BYTES.saturating_sub(self.bytes))
                        .map_err(|e| InputsError::io("read", &rel, e))?
                        .ok_or(InputsError::TooManyBytes)?;
                    self.bytes += d.size;
                    if keep {
                        use std::io::Seek;
                        file.seek(std::io::SeekFrom::Start(0))
                            .and_then(|_| (self.keep)(&mut file, &d))
                            .map_err(|e| InputsError::io("record", &rel, e))?;
                    }
                    if let Some(i) = identity {
                        self.linked.insert(i, d.clone());
                    }
                    d
                }
                // Sockets, fifos, devices: not contents.
                _ => continue,
            };
            self.set.files.insert(rel, digest);
        }
        Ok(())
    }
}

/// sha256 and size of what `r` yields, or `None` past `limit` bytes.
pub fn hash_reader(r: &mut dyn Read, limit: u64) -> std::io::Result<Option<FileDigest>> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            return Ok(None);
        }
        h.update(&buf[..n]);
    }
    Ok(Some(FileDigest {
        sha256: hex::encode(h.finalize()),
        size,
        link: None,
    }))
}

/// What a workspace looked like, by metadata only (size, modification
/// time, inode), to tell which files a stage wrote.
pub type Snapshot = BTreeMap<String, (u64, i128, u64)>;

/// A [`Snapshot`] of `workspace` (without [`SKIPPED`] directories).
pub fn snapshot(workspace: &Path) -> Snapshot {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, prefix: &str, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                if !SKIPPED.contains(&name.as_str()) && out.len() < MAX_FILES {
                    walk(&entry.path(), &rel, out);
                }
            } else {
                let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                out.insert(rel, (meta.len(), mtime, meta.ino()));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(workspace, "", &mut out);
    out
}

/// Files in `after` that are new or changed since `before`.
pub fn written(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    after
        .iter()
        .filter(|(path, meta)| before.get(*path) != Some(meta))
        .map(|(path, _)| path.clone())
        .collect()
}

/// sha256 and size of a file.
pub fn hash_file(path: &Path) -> std::io::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    hash_reader(&mut file, u64::MAX).map(|d| {
        d.unwrap_or(FileDigest {
            sha256: String::new(),
            size: 0,
            link: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &mut std::fs::File, _: &FileDigest) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn default_set_skips_vcs_metadata_only() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.rs", "src/b.rs", "target/debug/x", ".git/HEAD", "sub/.hg/x"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let set = collect(dir.path(), &[], &[], &mut none).unwrap();
        let names: Vec<&str> = set.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.rs", "src/b.rs", "target/debug/x"]);

        let only = collect(dir.path(), &["src".into()], &[], &mut none).unwrap();
        assert_eq!(only.files.keys().collect::<Vec<_>>(), ["src/b.rs"]);
        let globbed = collect(dir.path(), &["**/*.rs".into()], &[], &mut none).unwrap();
        assert_eq!(globbed.files.len(), 2);

        // A symlink is recorded as one, never followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let mut kept = 0;
        let set = collect(dir.path(), &[], &[], &mut |_, _| {
            kept += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(set.files["out"].link.as_deref(), outside.path().to_str());
        assert!(!set.files.contains_key("out/secret"));
        assert_eq!(kept, 3, "regular files only");
    }

    #[test]
    fn a_change_changes_the_digest_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("b"), "1").unwrap();
        let before = collect(dir.path(), &[], &[], &mut none).unwrap();
        std::fs::write(dir.path().join("a"), "2").unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        let after = collect(dir.path(), &[], &[], &mut none).unwrap();
        assert_ne!(before.digest(), after.digest());
        assert_eq!(
            after.changes_since(&before, 10),
            ["file `a` changed", "file `b` was removed"]
        );
    }

    #[test]
    fn globs_must_stay_inside() {
        assert!(check_glob("src/**").is_ok());
        assert!(check_glob("/etc/passwd").is_err());
        assert!(check_glob("../x").is_err());
        assert!(check_glob(" ").is_err());
    }
}
