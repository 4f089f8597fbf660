//! `weir plugin build [DIR]`: a Rust project (`Cargo.toml`) is built by
//! cargo for `wasm32-wasip2`, and the component it made is found in
//! cargo's own messages; a Python (`pyproject.toml`) or JavaScript
//! (`package.json`) project is built by [`componentize`]. Either way the
//! component is hashed and described with the `[plugins.NAME]` table that
//! pins it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::author::componentize;

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A built component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The package's name (the plugin's name in pipelines).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, hex.
    pub sha256: String,
}

impl Built {
    /// The `[plugins.NAME]` table that uses this build, pinned by digest,
    /// with `path` written as `shown`.
    pub fn snippet(&self, shown: &str) -> String {
        format!(
            "[plugins.{}]\npath = {:?}\nsha256 = \"{}\"\n",
            self.name, shown, self.sha256
        )
    }
}

/// Why no component came out.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Not a plugin project in any language weir builds.
    #[error("{} is not a plugin project: it has no Cargo.toml (Rust), pyproject.toml (Python) or package.json (JavaScript); `weir plugin build` builds a directory `weir plugin new` made", .0.display())]
    NotAProject(PathBuf),
    /// cargo did not start.
    #[error("cannot run cargo: {0}; install Rust from https://rustup.rs")]
    NoCargo(std::io::Error),
    /// cargo failed; its diagnostics were shown.
    #[error("cargo build failed (its messages are above){hint}")]
    Failed {
        /// What to do, when weir can tell.
        hint: String,
    },
    /// cargo succeeded but made no component.
    #[error("cargo built no .wasm for {TARGET}: is the crate's [lib] crate-type = [\"cdylib\"]?")]
    NoComponent,
    /// A Python or JavaScript build failed.
    #[error(transparent)]
    Componentize(#[from] componentize::ComponentizeError),
    /// The component could not be read back.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Build the plugin project in `dir`, whatever its language, showing the
/// tool's progress and diagnostics on stderr.
pub fn build(dir: &Path) -> Result<Built, BuildError> {
    if dir.join("Cargo.toml").is_file() {
        return build_rust(dir);
    }
    let (name, path) = if dir.join("pyproject.toml").is_file() {
        componentize::python(dir)?
    } else if dir.join("package.json").is_file() {
        componentize::javascript(dir)?
    } else {
        return Err(BuildError::NotAProject(dir.to_path_buf()));
    };
    described(name, path)
}

/// The [`Built`] of the component at `path`.
fn described(name: String, path: PathBuf) -> Result<Built, BuildError> {
    let bytes = std::fs::read(&path).map_err(|source| BuildError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(Built {
        name,
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        path,
    })
}

/// Build the Rust project in `dir` (release profile), showing cargo's
/// progress and diagnostics on stderr.
fn build_rust(dir: &Path) -> Result<Built, BuildError> {
    let manifest = dir.join("Cargo.toml");
    // cargo's progress and diagnostics go straight to the terminal; its
    // JSON messages (stdout) say where the component is.
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(BuildError::NoCargo)?;
    if !output.status.success() {
        let hint = if target_missing() {
            format!("; the {TARGET} target is not installed: `rustup target add {TARGET}`")
        } else {
            String::new()
        };
        return Err(BuildError::Failed { hint });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (name, path) = component_of(&stdout).ok_or(BuildError::NoComponent)?;
    described(name, path)
}

/// Whether the active toolchain lacks the standard library for [`TARGET`].
fn target_missing() -> bool {
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output();
    match sysroot {
        Ok(out) if out.status.success() => {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            !Path::new(&root).join("lib/rustlib").join(TARGET).is_dir()
        }
        _ => false,
    }
}

/// The package name and `.wasm` file of the last `compiler-artifact`
/// message of a cdylib in cargo's JSON output.
fn component_of(messages: &str) -> Option<(String, PathBuf)> {
    messages
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let file = m["filenames"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))?
                .to_string();
            let name = m["target"]["name"].as_str()?.replace('_', "-");
            Some((name, PathBuf::from(file)))
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_found_in_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"serde","kind":["lib"]},"filenames":["/t/libserde.rlib"]}
{"reason":"compiler-artifact","target":{"name":"todo_check","kind":["cdylib"]},"filenames":["/t/wasm32-wasip2/release/todo_check.wasm"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            component_of(messages),
            Some((
                "todo-check".to_string(),
                PathBuf::from("/t/wasm32-wasip2/release/todo_check.wasm")
            ))
        );
        assert_eq!(
            component_of(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
