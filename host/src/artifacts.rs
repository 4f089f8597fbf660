//! The run's artifact store: files stages keep, copied out of the
//! workspace with their sha256 and size.
//!
//! A stage names artifacts by workspace-relative path. The workspace is
//! the plugins', and they may change it while weir reads it (another stage
//! runs beside this one), so nothing on the way is followed: every
//! directory is opened from its parent with `O_NOFOLLOW` and the file
//! itself with `O_NOFOLLOW` ([`crate::beneath`]), and the copy is made
//! from that descriptor. A directory swapped for a symlink mid-copy gets
//! an error, never a host file. Copies go to `STORE/STAGE/PATH`, written
//! to a temporary name and renamed, so an artifact is either complete or
//! absent; they keep the source's permission restrictions (a 0600 file
//! is stored 0600), and the store's directories are weir's alone.
//!
//! What a run stores counts against its tenant's `limits.disk`, by bytes
//! written: a file kept again (a hard link to it, or the same path under
//! another name) while unchanged is stored once. A stage whose artifacts
//! cannot all be kept keeps none of them.
//!
//! Secret values are never kept: each file is scanned as it is copied for
//! the run's secrets ([`secret_scan`]), and one that holds a value the
//! stage may not publish (`allow.publish`) is not kept, and fails the
//! stage naming the secret.

mod secret_scan;

use secret_scan::SecretScan;
pub use secret_scan::Watched;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::events::ArtifactRecord;

/// What identifies one version of a file: its inode, and its size and
/// change time (any write changes those).
type Identity = (u64, u64, u64, i64, i64);

/// What a run's store holds so far.
#[derive(Debug, Default)]
struct Held {
    /// Bytes written into the store.
    bytes: u64,
    /// Files already stored, by identity: (stored path, sha256, size).
    by_identity: HashMap<Identity, (PathBuf, String, u64)>,
}

/// Why a stage's artifacts were not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotKept {
    /// What went wrong, naming the artifact.
    pub message: String,
    /// Whether it was the tenant's disk limit.
    pub limit: bool,
}

/// Why one artifact was not kept; each reads after "artifact `NAME` at
/// `PATH`".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// Absolute, empty, or with `..`.
    #[error("must be a relative path inside the workspace, without `..`")]
    Path,
    /// A directory, a device, a socket.
    #[error("is not a file")]
    NotAFile,
    /// Unreadable, or reached through a symlink.
    #[error(
        "cannot be read beneath the workspace ({0}); an artifact must be a regular file reached without symlinks"
    )]
    Unreadable(String),
    /// The run's disk limit.
    #[error(
        "is {}, and the run's artifacts already take {}: the limit is {} (limit `disk`)",
        human(*size),
        human(*stored),
        human(*limit)
    )]
    Disk {
        /// The artifact's size.
        size: u64,
        /// What the run already keeps.
        stored: u64,
        /// The limit.
        limit: u64,
    },
    /// The copy failed.
    #[error("cannot be stored: {0}")]
    Store(String),
    /// It holds a secret's value.
    #[error(
        "holds the value of secret `{0}` (as it is, URL- or base64-encoded), and secret values are never kept; if this artifact must carry it, add allow = {{ publish = [\"{0}\"] }} to the stage"
    )]
    Secret(String),
}

fn human(n: u64) -> String {
    crate::engine::limits::human_bytes(n as usize)
}

/// Why a stored artifact could not be brought into this run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Its recorded path is not inside a workspace.
    #[error("artifact `{name}` has an unsafe path `{path}`")]
    UnsafePath {
        /// The artifact.
        name: String,
        /// Its path.
        path: String,
    },
    /// The stored copy could not be copied.
    #[error("artifact `{name}` ({stored}) cannot be copied: {error}")]
    Copy {
        /// The artifact.
        name: String,
        /// Where it is stored.
        stored: String,
        /// Why.
        error: String,
    },
    /// The stored copy is not what was recorded.
    #[error("artifact `{name}` ({stored}) changed since it was stored (sha256 {found}, recorded {recorded})")]
    Changed {
        /// The artifact.
        name: String,
        /// Where it is stored.
        stored: String,
        /// Its digest now.
        found: String,
        /// Its digest then.
        recorded: String,
    },
    /// The workspace copy could not be written.
    #[error("artifact `{name}` cannot be put back at `{path}`: {error}")]
    PutBack {
        /// The artifact.
        name: String,
        /// Its path.
        path: String,
        /// Why.
        error: String,
    },
}

/// Where a run keeps its artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
    /// The tenant's `limits.disk`, which the stored bytes count against.
    limit: Option<u64>,
    held: Arc<Mutex<Held>>,
    /// The run's secrets, which no artifact may hold unless published.
    secrets: Arc<[Watched]>,
}

impl ArtifactStore {
    /// A store rooted at `dir` (created on first use), without a limit.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            limit: None,
            held: Arc::default(),
            secrets: Arc::new([]),
        }
    }

    /// The same store, refusing files that hold any of `secrets` (name,
    /// value).
    pub fn with_secrets(self, secrets: &[(String, String)]) -> Self {
        let secrets = secrets
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| Watched::new(k, v))
            .collect();
        Self { secrets, ..self }
    }

    /// The same store, whose stored bytes count against `limit`.
    pub fn with_limit(self, limit: Option<u64>) -> Self {
        Self { limit, ..self }
    }

    /// Keep every artifact in `wanted` (name, workspace-relative path) of
    /// `stage`, or none: when one cannot be kept, the copies already made
    /// for the others are removed, and the error names the artifact.
    /// `publish` names the secrets these artifacts may hold.
    pub fn keep_all(
        &self,
        stage: &str,
        workspace: &Path,
        wanted: &[(&str, &str)],
        publish: &[String],
    ) -> Result<Vec<ArtifactRecord>, NotKept> {
        let mut kept: Vec<(ArtifactRecord, bool)> = Vec::with_capacity(wanted.len());
        for (name, rel) in wanted {
            match self.keep(stage, name, workspace, rel, publish) {
                Ok(k) => kept.push(k),
                Err(why) => {
                    self.discard(kept);
                    return Err(NotKept {
                        limit: matches!(why, KeepError::Disk { .. }),
                        message: format!("artifact `{name}` at `{rel}` {why}"),
                    });
                }
            }
        }
        Ok(kept.into_iter().map(|(record, _)| record).collect())
    }

    /// Remove the copies `kept` made (not those they share with earlier
    /// artifacts), and give their bytes back.
    fn discard(&self, kept: Vec<(ArtifactRecord, bool)>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (record, _) in kept.into_iter().filter(|(_, new)| *new) {
            let _ = std::fs::remove_file(&record.stored);
            held.bytes = held.bytes.saturating_sub(record.size);
            held.by_identity
                .retain(|_, (path, _, _)| *path != Path::new(&record.stored));
        }
    }

    /// Copy `rel` from `workspace` into the store under `stage`, reading it
    /// beneath the workspace without following any symlink; the record,
    /// and whether a new copy was written (false: the same file was kept
    /// before and is shared).
    fn keep(
        &self,
        stage: &str,
        name: &str,
        workspace: &Path,
        rel: &str,
        publish: &[String],
    ) -> Result<(ArtifactRecord, bool), KeepError> {
        let names = relative_names(rel)?;
        let (file, parents) = names.split_last().ok_or(KeepError::Path)?;
        let walk = |e: std::io::Error| KeepError::Unreadable(e.to_string());
        let mut dir = crate::beneath::open_root(workspace).map_err(walk)?;
        for p in parents {
            dir = crate::beneath::open_dir(&dir, p).map_err(walk)?;
        }
        let mut source = crate::beneath::open_file(&dir, file).map_err(|e| match e.to_string() {
            m if m == "not a regular file" => KeepError::NotAFile,
            _ => walk(e),
        })?;
        let meta = source.metadata().map_err(walk)?;
        let nanos = |s: i64, ns: i64| s.saturating_mul(1_000_000_000).saturating_add(ns);
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.size(),
            nanos(meta.mtime(), meta.mtime_nsec()),
            nanos(meta.ctime(), meta.ctime_nsec()),
        );
        let target = self.dir.join(stage).join(rel);
        let record = |stored: &Path, sha256: String, size: u64| ArtifactRecord {
            name: name.to_string(),
            path: rel.to_string(),
            sha256,
            size,
            stored: stored.display().to_string(),
        };
        let mut scan = SecretScan::new(&self.secrets, publish);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // A copy is shared only if it was scanned for every secret.
        if !scan.exempted()
            && let Some((stored, sha256, size)) = held.by_identity.get(&identity)
        {
            return Ok((record(stored, sha256.clone(), *size), false));
        }
        let room = match self.limit {
            Some(limit) => {
                let room = limit.saturating_sub(held.bytes);
                if meta.size() > room {
                    return Err(self.over_limit(held.bytes, meta.size()));
                }
                room
            }
            None => u64::MAX,
        };
        // Never more open to others than the source: a 0600 file stays 0600.
        let mode = meta.mode() & 0o755;
        let (sha256, size) = copy_hashing(
            &mut (&mut source).take(room.saturating_add(1)),
            &target,
            mode,
            &mut scan,
        )
        .map_err(|e| KeepError::Store(e.to_string()))?;
        if let Some(secret) = scan.found() {
            let _ = std::fs::remove_file(&target);
            return Err(KeepError::Secret(secret.to_string()));
        }
        if size > room {
            // It grew while it was copied.
            let _ = std::fs::remove_file(&target);
            return Err(self.over_limit(held.bytes, size));
        }
        held.bytes += size;
        if !scan.exempted() {
            held.by_identity
                .insert(identity, (target.clone(), sha256.clone(), size));
        }
        Ok((record(&target, sha256, size), true))
    }

    fn over_limit(&self, stored: u64, size: u64) -> KeepError {
        KeepError::Disk {
            size,
            stored,
            limit: self.limit.unwrap_or(u64::MAX),
        }
    }
}

/// The names of `rel`'s components: relative, without `..`, `.`-only
/// parts skipped.
fn relative_names(rel: &str) -> Result<Vec<&std::ffi::OsStr>, KeepError> {
    let path = Path::new(rel);
    if rel.is_empty() || path.is_absolute() {
        return Err(KeepError::Path);
    }
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(KeepError::Path),
        })
        .collect()
}

impl ArtifactStore {
    /// Bring an artifact another run stored (a stage-cache hit) into this
    /// run: into the store under `stage`, and back to its path in
    /// `workspace` for the stages after it. The copy is checked against
    /// the recorded sha256; the workspace copy is written with
    /// [`crate::beneath::write_file`], so no symlink a plugin planted is
    /// followed.
    pub fn restore(
        &self,
        stage: &str,
        a: &ArtifactRecord,
        workspace: &Path,
    ) -> Result<ArtifactRecord, RestoreError> {
        let rel = Path::new(&a.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        {
            return Err(RestoreError::UnsafePath {
                name: a.name.clone(),
                path: a.path.clone(),
            });
        }
        let target = self.dir.join(stage).join(rel);
        let (sha256, size) = std::fs::File::open(&a.stored)
            .and_then(|mut from| copy_hashing(&mut from, &target, 0o644, &mut SecretScan::new(&[], &[])))
            .map_err(|e| RestoreError::Copy {
                name: a.name.clone(),
                stored: a.stored.clone(),
                error: e.to_string(),
            })?;
        if sha256 != a.sha256 {
            let _ = std::fs::remove_file(&target);
            return Err(RestoreError::Changed {
                name: a.name.clone(),
                stored: a.stored.clone(),
                found: sha256,
                recorded: a.sha256.clone(),
            });
        }
        // The workspace is the plugins': nothing on the way is followed.
        std::fs::File::open(&target)
            .and_then(|mut f| crate::beneath::write_file(workspace, rel, &mut f))
            .map_err(|e| RestoreError::PutBack {
                name: a.name.clone(),
                path: a.path.clone(),
                error: e.to_string(),
            })?;
        Ok(ArtifactRecord {
            name: a.name.clone(),
            path: a.path.clone(),
            sha256,
            size,
            stored: target.display().to_string(),
        })
    }
}

/// Copy `from` to `to` through a temporary file with `mode`, creating the
/// store's directories (weir's alone) on the way; its sha256 and size.
fn copy_hashing(
    from: &mut dyn Read,
    to: &Path,
    mode: u32,
    scan: &mut SecretScan<'_>,
) -> std::io::Result<(String, u64)> {
    if let Some(parent) = to.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let tmp = to.with_extension("weir-partial");
    let _ = std::fs::remove_file(&tmp);
    let mut output = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let copied = (|| {
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            scan.feed(&buf[..n]);
            if scan.found().is_some() {
                break;
            }
            output.write_all(&buf[..n])?;
            size += n as u64;
        }
        output.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((hex::encode(hasher.finalize()), size))
}
