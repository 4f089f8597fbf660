//! A stage's input files: the workspace files (and, for plugins that read
//! them, the `allow.read` directories) whose contents its result depends
//! on, each with its sha256. The digests go into the stage's cache key and
//! its replay record.
//!
//! A stage names them with `inputs = ["Cargo.lock", "src/**/*.rs"]`. A
//! stage that names none depends on the whole workspace except what
//! [`SKIPPED`] lists (VCS metadata, build output, installed packages), so
//! a build running beside it does not change its key.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::when::pattern::matches;

/// Directories left out of the default input set, at any depth.
pub const SKIPPED: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".weir",
    "target",
    "node_modules",
    "__pycache__",
];

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

/// Whether `glob` is a usable input pattern: relative, inside the
/// workspace.
pub fn check_glob(glob: &str) -> Result<(), String> {
    let path = Path::new(glob);
    if glob.trim().is_empty() {
        return Err("is empty".into());
    }
    if path.is_absolute() {
        return Err("is absolute; inputs are paths inside the workspace".into());
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("leaves the workspace (`..`)".into());
    }
    Ok(())
}

/// Whether `rel` is one of `globs` (a plain path also takes everything
/// under it, so `src` means the directory).
fn wanted(globs: &[String], rel: &str) -> bool {
    globs.iter().any(|g| {
        let g = g.trim_end_matches('/');
        matches(g, rel) || rel.strip_prefix(g).is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The input files of a stage: under `workspace`, those matching `globs`
/// (or the default set when there are none), plus every file under each
/// directory of `read_dirs`. Each file's contents go to `keep` as they are
/// hashed (the replay record stores them).
pub fn collect(
    workspace: &Path,
    globs: &[String],
    read_dirs: &[std::path::PathBuf],
    keep: &mut dyn FnMut(&Path, &FileDigest) -> std::io::Result<()>,
) -> Result<FileSet, String> {
    let mut set = FileSet::default();
    let mut walker = Walker { set: &mut set, keep };
    let filter = |rel: &str, is_dir: bool| -> bool {
        if globs.is_empty() {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            !(is_dir && SKIPPED.contains(&name))
        } else {
            is_dir || wanted(globs, rel)
        }
    };
    walker.walk(workspace, "", &filter)?;
    for dir in read_dirs {
        let Ok(abs) = dir.canonicalize() else { continue };
        if !abs.is_dir() {
            continue;
        }
        let prefix = abs.display().to_string();
        walker.walk(&abs, &prefix, &|_, _| true)?;
    }
    Ok(set)
}

struct Walker<'a> {
    set: &'a mut FileSet,
    keep: &'a mut dyn FnMut(&Path, &FileDigest) -> std::io::Result<()>,
}

impl Walker<'_> {
    fn walk(&mut self, dir: &Path, prefix: &str, filter: &dyn Fn(&str, bool) -> bool) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut names: Vec<(String, std::fs::FileType)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let Ok(kind) = entry.file_type() else { continue };
            names.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in names {
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let path = dir.join(&name);
            if kind.is_dir() {
                if filter(&rel, true) {
                    self.walk(&path, &rel, filter)?;
                }
                continue;
            }
            if !filter(&rel, false) {
                continue;
            }
            if self.set.files.len() >= MAX_FILES {
                return Err(format!(
                    "more than {MAX_FILES} input files (limit `input-files`); name the files the stage depends on with `inputs = [...]`"
                ));
            }
            let digest = if kind.is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let text = target.to_string_lossy();
                FileDigest {
                    sha256: hex::encode(Sha256::digest(format!("symlink:{text}").as_bytes())),
                    size: 0,
                    link: Some(text.into_owned()),
                }
            } else if kind.is_file() {
                let d = hash_file(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                (self.keep)(&path, &d).map_err(|e| format!("cannot record {}: {e}", path.display()))?;
                d
            } else {
                continue;
            };
            self.set.files.insert(rel, digest);
        }
        Ok(())
    }
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
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(h.finalize()),
        size,
        link: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &Path, _: &FileDigest) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn default_set_skips_build_output_and_vcs() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.rs",
            "src/b.rs",
            "target/debug/x",
            ".git/HEAD",
            "sub/node_modules/m.js",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let set = collect(dir.path(), &[], &[], &mut none).unwrap();
        let names: Vec<&str> = set.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.rs", "src/b.rs"]);

        let only = collect(dir.path(), &["src".into()], &[], &mut none).unwrap();
        assert_eq!(only.files.keys().collect::<Vec<_>>(), ["src/b.rs"]);
        let globbed = collect(dir.path(), &["**/*.rs".into()], &[], &mut none).unwrap();
        assert_eq!(globbed.files.len(), 2);
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
