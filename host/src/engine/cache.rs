//! The on-disk cache of compiled components.
//!
//! Compiling a component takes tens of milliseconds for a small Rust plugin
//! and seconds for a Python or JavaScript one. The cache keeps wasmtime's
//! serialized artifact under a key made of the component's sha256 and a hash
//! of the engine's configuration, so a second `weir run` deserializes
//! instead of compiling, and a changed engine never loads a stale artifact.
//!
//! Only files this module wrote are ever deserialized: the directory is
//! created private to the user, entries are written to a temporary name and
//! renamed into place, and an entry that fails to load is recompiled and
//! replaced.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
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
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The default location: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`,
    /// else `~/.cache/weir`, else `.weir/cache`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(dir).join("weir");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".cache").join("weir");
        }
        PathBuf::from(".weir").join("cache")
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir
            .join("components")
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
        let entry = self.entry(sha256);
        if entry.is_file() {
            // SAFETY: the entry was written by `store` below, into a
            // directory created private to this user, under a name that
            // binds the source digest and the engine configuration. If it
            // is corrupt or from another build, wasmtime's header checks
            // reject it and we fall through to compiling.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(err) => {
                    tracing::warn!(path = %entry.display(), "discarding unusable compiled component: {err}");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(err) = self.store(&entry, &component) {
            // A read-only cache slows the next run down; it breaks nothing.
            tracing::warn!(path = %entry.display(), "could not cache compiled component: {err}");
        }
        Ok((component, CacheOutcome::Compiled))
    }

    fn store(&self, entry: &Path, component: &Component) -> std::io::Result<()> {
        let serialized = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = entry.parent().unwrap_or(&self.dir);
        create_private_dir(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            entry.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serialized)?;
        file.sync_all()?;
        std::fs::rename(&tmp, entry)
    }
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
