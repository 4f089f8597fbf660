//! The on-disk cache of compiled components.
//!
//! Compiling a component takes tens of milliseconds for a small Rust plugin
//! and seconds for a Python or JavaScript one. The cache keeps wasmtime's
//! serialized artifact under a key made of the component's sha256 and a hash
//! of the engine's configuration, so a second `weir run` deserializes
//! instead of compiling, and a changed engine never loads a stale artifact.
//!
//! A serialized artifact is native code: loading one an attacker planted
//! would run their code in the host. So only files this module wrote are
//! ever deserialized:
//! - the directory must be private to this user (owned by them, not
//!   writable by group or others) or the cache is switched off;
//! - so must every entry, which must be a regular file (not a symlink);
//! - entries are written to a fresh temporary name (`O_EXCL`, never
//!   following a planted symlink) and renamed into place;
//! - there is no fallback into the working directory, which may be a
//!   checkout of untrusted code; [`CompileCache::is_inside`] lets the
//!   caller refuse a cache that a run's workspace would contain;
//! - an entry that fails to load is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct CompileCache {
    /// `None` when caching is off.
    dir: Option<PathBuf>,
    engine_key: String,
}

/// How a component was obtained, for `--explain` output and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a serialized artifact.
    Hit,
    /// Compiled now (and stored, if the cache is writable).
    Compiled,
}

impl CompileCache {
    /// A cache in `dir` for components compiled by `engine`; `None`
    /// compiles every time.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The default location: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`,
    /// else `~/.cache/weir`; `None` (no caching) when none is set.
    /// `WEIR_CACHE_DIR=off` switches caching off.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            if dir == "off" || dir.is_empty() {
                return None;
            }
            return Some(absolute(PathBuf::from(dir)));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return Some(absolute(PathBuf::from(dir).join("weir")));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| absolute(PathBuf::from(home).join(".cache").join("weir")))
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the cache lives inside `dir` (for example a run's workspace,
    /// where a plugin could write into it).
    pub fn is_inside(&self, dir: &Path) -> bool {
        let Some(cache) = &self.dir else { return false };
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        canon(cache).starts_with(canon(dir))
    }

    fn entry(&self, dir: &Path, sha256: &str) -> PathBuf {
        dir.join("components")
            .join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled form of `bytes` (whose digest is `sha256`): from the
    /// cache when present and loadable, else compiled and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        };
        if !dir.exists()
            && let Err(e) = create_private_dir(dir)
        {
            tracing::warn!(
                "cannot create the compile cache {}: {e}; compiling without it",
                dir.display()
            );
        }
        let components = dir.join("components");
        if components.exists()
            && let Err(why) = private(&components, true)
        {
            tracing::warn!(
                "not using the compile cache {}: {why}; fix it with `chmod 700` or set WEIR_CACHE_DIR to a private directory",
                components.display()
            );
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        }
        if let Err(why) = private(dir, true) {
            tracing::warn!(
                "not using the compile cache {}: {why}; fix it with `chmod 700` or set WEIR_CACHE_DIR to a private directory",
                dir.display()
            );
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        }
        let entry = self.entry(dir, sha256);
        if private(&entry, false).is_ok() {
            // SAFETY: `deserialize_file` runs the native code in the file.
            // The entry and its directories are owned by this user and
            // writable by nobody else (checked just above), and it was
            // written by `store` below under a name that binds the
            // component's digest and the engine configuration. A corrupt or
            // foreign-build entry fails wasmtime's header checks and is
            // recompiled.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(err) => {
                    tracing::warn!(path = %entry.display(), "discarding unusable compiled component: {err}");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(err) = self.store(dir, &entry, &component) {
            // A read-only cache slows the next run down; it breaks nothing.
            tracing::warn!(path = %entry.display(), "could not cache compiled component: {err}");
        }
        Ok((component, CacheOutcome::Compiled))
    }

    fn store(&self, root: &Path, entry: &Path, component: &Component) -> std::io::Result<()> {
        let serialized = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = entry.parent().unwrap_or(root);
        create_private_dir(dir)?;
        private(dir, true).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!(
            ".{}.{}.{:x}.tmp",
            entry.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // `create_new` is O_CREAT|O_EXCL: it fails on any existing path,
        // including a planted symlink, instead of following it.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        let written = file.write_all(&serialized).and_then(|()| file.sync_all());
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, entry)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Why a cache path is not weir's alone: a plugin that could write there
/// could hand weir machine code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotPrivate {
    /// It cannot be looked at.
    #[error("{0}")]
    Unreadable(String),
    /// Not a directory where one was expected.
    #[error("it is not a directory")]
    NotADirectory,
    /// Not a regular file (a symlink, a device).
    #[error("it is not a regular file")]
    NotAFile,
    /// Someone else's.
    #[error("it is owned by uid {owner}, not by this user (uid {me})")]
    Owner {
        /// Its owner.
        owner: u32,
        /// weir's uid.
        me: u32,
    },
    /// Writable by group or others.
    #[error("its mode {0:o} lets others write to it")]
    Writable(u32),
}

/// `Ok` when `path` is a directory (`dir`) or regular file owned by this
/// user and not writable by group or others; else why not.
fn private(path: &Path, dir: bool) -> Result<(), NotPrivate> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| NotPrivate::Unreadable(e.to_string()))?;
    if dir && !meta.is_dir() {
        return Err(NotPrivate::NotADirectory);
    }
    if !dir && !meta.file_type().is_file() {
        return Err(NotPrivate::NotAFile);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(NotPrivate::Owner {
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(NotPrivate::Writable(meta.mode() & 0o777));
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_directories_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        create_private_dir(&dir).unwrap();
        assert_eq!(private(&dir, true), Ok(()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            assert!(
                private(&dir, true)
                    .unwrap_err()
                    .to_string()
                    .contains("lets others write")
            );
            let link = tmp.path().join("link");
            std::os::unix::fs::symlink(tmp.path().join("x"), &link).unwrap();
            assert!(private(&link, false).is_err());
        }
    }
}
