//! Python and JavaScript plugins: componentize-py and componentize-js turn
//! a project's source and its `wit/` folder into a component. weir then
//! stamps the component with the WIT package it was built against (the
//! `weir-wit-package` section weir-sdk writes for Rust plugins), read from
//! the project's own copy of weir's WIT, so the host refuses it by name if
//! that contract is not one it supports.
//!
//! A project is one `weir plugin new --lang python|js` wrote:
//! - Python: `pyproject.toml` (`[project] name`), `app.py` (the entry
//!   module), `wit/world.wit` defining the world [`WORLD`], and
//!   `wit/deps/weir-plugin/` (weir's WIT);
//! - JavaScript: `package.json` (`name`, and `main`, default `app.js`),
//!   the same `wit/` layout, and componentize-js in `node_modules` (the
//!   project's, an enclosing directory's, or npm's global one).
//!
//! The component goes to `build/NAME.wasm` in the project.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::plugins::wit_section;

/// What `pip install` takes to get the Python tool weir drives.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// What `npm install` takes to get the JavaScript tool weir drives:
/// componentize-js, and the WASI shim it loads without listing it as a
/// dependency.
pub const COMPONENTIZE_JS: &str =
    "@bytecodealliance/componentize-js@0.23.0 @bytecodealliance/preview2-shim@0.25.0";
/// The world every project's `wit/world.wit` defines.
pub const WORLD: &str = "plugin";
/// The Python module componentize-py starts from (`app.py`).
pub const PYTHON_ENTRY: &str = "app";

/// Why a Python or JavaScript project made no component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// The project's manifest is unreadable or lacks what weir needs.
    #[error("{}: {reason}", path.display())]
    Manifest {
        /// `pyproject.toml` or `package.json`.
        path: PathBuf,
        /// What is wrong, and what to write.
        reason: String,
    },
    /// A file the build starts from is missing.
    #[error("{} is missing: {why}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// What it is for.
        why: &'static str,
    },
    /// The build tool is not installed.
    #[error("{tool} is not installed: {install}")]
    NoTool {
        /// The program or package.
        tool: &'static str,
        /// The command that installs it.
        install: String,
    },
    /// The build tool ran and failed; its messages were shown.
    #[error("{tool} failed (its messages are above)")]
    Failed {
        /// Which tool.
        tool: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Build the Python project in `dir`: its name and component.
pub fn python(dir: &Path) -> Result<(String, PathBuf), ComponentizeError> {
    let manifest = dir.join("pyproject.toml");
    let text = read(&manifest)?;
    let name = toml::from_str::<toml::Table>(&text)
        .map_err(|e| ComponentizeError::Manifest {
            path: manifest.clone(),
            reason: format!("not TOML: {}", e.message()),
        })?
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| ComponentizeError::Manifest {
            path: manifest.clone(),
            reason: "has no `[project] name`; add `name = \"my-plugin\"` under `[project]`".into(),
        })?;
    checked_name(&name, &manifest)?;
    let entry = dir.join(format!("{PYTHON_ENTRY}.py"));
    if !entry.is_file() {
        return Err(ComponentizeError::Missing {
            path: entry,
            why: "componentize-py starts from the module `app`, which defines the exported classes",
        });
    }
    let package = wit_package(dir)?;
    let out = output_path(dir, &name)?;
    let no_tool = || ComponentizeError::NoTool {
        tool: "componentize-py",
        install: format!("`pip install {COMPONENTIZE_PY}`"),
    };
    let mut command = componentize_py().ok_or_else(no_tool)?;
    command
        .args(["--wit-path", "wit", "--world", WORLD, "componentize"])
        .args(["--python-path", ".", PYTHON_ENTRY, "--output"])
        .arg(&out);
    run_tool(&mut command, dir, "componentize-py", no_tool)?;
    stamp(&out, &package)?;
    Ok((name, out))
}

/// Runs componentize-js's `componentize()` from the library at argv[1]:
/// source, WIT folder, world and output path follow.
const COMPONENTIZE_JS_SCRIPT: &str = r#"
const [lib, sourcePath, witPath, worldName, out] = process.argv.slice(1);
const { pathToFileURL } = await import('node:url');
const { componentize } = await import(pathToFileURL(lib).href);
const { writeFile } = await import('node:fs/promises');
const { component } = await componentize({ sourcePath, witPath, worldName });
await writeFile(out, component);
"#;

/// Build the JavaScript project in `dir`: its name and component.
pub fn javascript(dir: &Path) -> Result<(String, PathBuf), ComponentizeError> {
    let manifest = dir.join("package.json");
    let text = read(&manifest)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ComponentizeError::Manifest {
        path: manifest.clone(),
        reason: format!("not JSON: {e}"),
    })?;
    let name = json["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ComponentizeError::Manifest {
            path: manifest.clone(),
            reason: "has no \"name\"; add \"name\": \"my-plugin\"".into(),
        })?;
    checked_name(&name, &manifest)?;
    let entry = dir.join(json["main"].as_str().unwrap_or("app.js"));
    if !entry.is_file() {
        return Err(ComponentizeError::Missing {
            path: entry,
            why: "componentize-js starts from package.json's \"main\" (default app.js), which exports the plugin's interfaces",
        });
    }
    let package = wit_package(dir)?;
    let lib = componentize_js(dir).ok_or_else(|| ComponentizeError::NoTool {
        tool: "componentize-js",
        install: format!(
            "run `npm install` in {} (its package.json lists it), or `npm install --save-dev {COMPONENTIZE_JS}`",
            dir.display()
        ),
    })?;
    let out = output_path(dir, &name)?;
    let absolute = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut command = Command::new("node");
    command
        .args(["--input-type=module", "-e", COMPONENTIZE_JS_SCRIPT, "--"])
        .arg(&lib)
        .arg(absolute(&entry))
        .arg(absolute(&dir.join("wit")))
        .arg(WORLD)
        .arg(&out);
    run_tool(&mut command, dir, "componentize-js", || {
        ComponentizeError::NoTool {
            tool: "node",
            install: "install Node.js 20 or later (`apt-get install nodejs npm`)".into(),
        }
    })?;
    stamp(&out, &package)?;
    Ok((name, out))
}

/// A command running componentize-py: the program on `PATH`, else the
/// package in `python3`'s site-packages (pip may install the script
/// where `PATH` does not look, as pyenv does until its next rehash).
fn componentize_py() -> Option<Command> {
    let runs = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs(Command::new("componentize-py").arg("--version")) {
        return Some(Command::new("componentize-py"));
    }
    const SCRIPT: &str =
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())";
    let python = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", SCRIPT]);
        cmd
    };
    runs(python().arg("--version")).then(python)
}

/// Run a build tool in `dir`, its output on weir's stderr: `no_tool` if it
/// cannot start, [`ComponentizeError::Failed`] naming `tool` if it fails.
fn run_tool(
    command: &mut Command,
    dir: &Path,
    tool: &'static str,
    no_tool: impl FnOnce() -> ComponentizeError,
) -> Result<(), ComponentizeError> {
    let status = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(to_stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|_| no_tool())?;
    if status.success() {
        Ok(())
    } else {
        Err(ComponentizeError::Failed { tool })
    }
}

/// componentize-js's entry module, looked up as Node would from `dir`
/// (its `node_modules`, then each parent's), then in npm's global root;
/// only where the shim it imports resolves too.
fn componentize_js(dir: &Path) -> Option<PathBuf> {
    const MODULE: &str = "@bytecodealliance/componentize-js/src/componentize.js";
    const SHIM: &str = "@bytecodealliance/preview2-shim/package.json";
    let usable = |modules: PathBuf| {
        (modules.join(MODULE).is_file() && modules.join(SHIM).is_file()).then(|| modules.join(MODULE))
    };
    let start = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let local = start.ancestors().find_map(|d| usable(d.join("node_modules")));
    local.or_else(|| {
        let out = Command::new("npm").args(["root", "-g"]).output().ok()?;
        usable(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

/// The `weir:plugin@VERSION` package of the project's copy of weir's WIT.
fn wit_package(dir: &Path) -> Result<String, ComponentizeError> {
    let deps = dir.join("wit/deps/weir-plugin");
    let world = dir.join("wit/world.wit");
    if !world.is_file() {
        return Err(ComponentizeError::Missing {
            path: world,
            why: "it defines the world `plugin` the component is built for (`weir plugin new` writes one)",
        });
    }
    let found = std::fs::read_dir(&deps).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "wit"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find_map(|text| package_of(&text))
    });
    found.ok_or(ComponentizeError::Missing {
        path: deps,
        why: "it holds weir's WIT (`package weir:plugin@…`), which `weir plugin new` copies into the project",
    })
}

/// The `weir:plugin@…` package a WIT file declares.
fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("package ")?;
        let package = rest.trim_end_matches(';').trim();
        package.starts_with("weir:plugin@").then(|| package.to_string())
    })
}

fn checked_name(name: &str, manifest: &Path) -> Result<(), ComponentizeError> {
    if crate::author::scaffold::valid_name(name) {
        Ok(())
    } else {
        Err(ComponentizeError::Manifest {
            path: manifest.to_path_buf(),
            reason: format!(
                "`{name}` is not a plugin name: use lowercase letters, digits and dashes, starting with a letter"
            ),
        })
    }
}

/// `build/NAME.wasm` in `dir`, as an absolute path, its folder made.
fn output_path(dir: &Path, name: &str) -> Result<PathBuf, ComponentizeError> {
    let build = dir.join("build");
    std::fs::create_dir_all(&build).map_err(|source| ComponentizeError::Io {
        action: "write",
        path: build.clone(),
        source,
    })?;
    let build = build.canonicalize().unwrap_or(build);
    Ok(build.join(format!("{name}.wasm")))
}

/// Add the `weir-wit-package` section naming `package` to the component
/// at `path`, unless it already declares one.
fn stamp(path: &Path, package: &str) -> Result<(), ComponentizeError> {
    let bytes = std::fs::read(path).map_err(|source| ComponentizeError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    if wit_section::declared_package(&bytes).is_some() {
        return Ok(());
    }
    let stamped = wit_section::with_declaration(bytes, package);
    std::fs::write(path, stamped).map_err(|source| ComponentizeError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, ComponentizeError> {
    std::fs::read_to_string(path).map_err(|source| ComponentizeError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// The build tools' stdout, sent to weir's stderr: stdout is for what
/// `weir plugin build` prints (its `--json` among them).
fn to_stderr() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_is_read_from_the_wit() {
        assert_eq!(
            package_of("/// doc\npackage weir:plugin@0.1.0;\n\ninterface x {}\n").as_deref(),
            Some("weir:plugin@0.1.0")
        );
        assert_eq!(package_of("package wasi:io@0.2.12;\n"), None);
    }

    #[test]
    fn a_stamped_component_declares_its_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.wasm");
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").expect("write");
        stamp(&path, "weir:plugin@0.1.0").expect("stamp");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(
            wit_section::declared_package(&bytes).as_deref(),
            Some("weir:plugin@0.1.0")
        );
        // A second stamp leaves it as it is.
        stamp(&path, "weir:plugin@0.2.0").expect("stamp");
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
    }
}
