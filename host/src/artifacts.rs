//! The run's artifact store: files stages keep, copied out of the
//! workspace with their sha256 and size.
//!
//! A stage names artifacts by workspace-relative path. Each must be a
//! regular file inside the workspace (no `..`, no absolute path, no symlink
//! out), because the copy is made with the host's full access. Copies go to
//! `STORE/STAGE/PATH`, written to a temporary name and renamed, so an
//! artifact is either complete or absent.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::events::ArtifactRecord;

/// Where a run keeps its artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    /// A store rooted at `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Check `rel` and copy it from `workspace` into the store under
    /// `stage`; the error says what is wrong with the path.
    pub fn keep(
        &self,
        stage: &str,
        name: &str,
        workspace: &Path,
        rel: &str,
    ) -> Result<ArtifactRecord, String> {
        let source = check(workspace, rel)?;
        let target = self.dir.join(stage).join(rel);
        let (sha256, size) = copy_hashing(&source, &target).map_err(|e| format!("cannot be stored: {e}"))?;
        Ok(ArtifactRecord {
            name: name.to_string(),
            path: rel.to_string(),
            sha256,
            size,
            stored: target.display().to_string(),
        })
    }
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
    ) -> Result<ArtifactRecord, String> {
        let rel = Path::new(&a.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        {
            return Err(format!("artifact `{}` has an unsafe path `{}`", a.name, a.path));
        }
        let from = Path::new(&a.stored);
        let target = self.dir.join(stage).join(rel);
        let (sha256, size) = copy_hashing(from, &target)
            .map_err(|e| format!("artifact `{}` ({}) cannot be copied: {e}", a.name, a.stored))?;
        if sha256 != a.sha256 {
            let _ = std::fs::remove_file(&target);
            return Err(format!(
                "artifact `{}` ({}) changed since it was stored (sha256 {sha256}, recorded {})",
                a.name, a.stored, a.sha256
            ));
        }
        // The workspace is the plugins': nothing on the way is followed.
        std::fs::File::open(&target)
            .and_then(|mut f| crate::beneath::write_file(workspace, rel, &mut f))
            .map_err(|e| format!("artifact `{}` cannot be put back at `{}`: {e}", a.name, a.path))?;
        Ok(ArtifactRecord {
            name: a.name.clone(),
            path: a.path.clone(),
            sha256,
            size,
            stored: target.display().to_string(),
        })
    }
}

/// An artifact must be a regular file inside the workspace, named by a
/// relative path without `..`, that does not resolve (through symlinks)
/// outside it.
pub fn check(workspace: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = Path::new(rel);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err("must be a relative path inside the workspace, without `..`".into());
    }
    let resolved = workspace
        .join(path)
        .canonicalize()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !resolved.starts_with(workspace) {
        return Err("resolves outside the workspace (a symlink out)".into());
    }
    if !resolved.is_file() {
        return Err("is not a file".into());
    }
    Ok(resolved)
}

fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<(String, u64)> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = to.with_extension("weir-partial");
    let mut input = std::fs::File::open(from)?;
    let mut output = std::fs::File::create(&tmp)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
        size += n as u64;
    }
    output.sync_all()?;
    std::fs::rename(&tmp, to)?;
    Ok((hex::encode(hasher.finalize()), size))
}
