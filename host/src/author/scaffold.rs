//! `weir plugin new NAME --kind KIND`: a plugin project from the templates
//! in `host/templates/plugin/`, one per kind, each a working plugin with a
//! unit test and a sample `pipeline.toml` that runs it.

use std::path::{Path, PathBuf};

use crate::bindings::types::PluginKind;

/// What to write (a Rust project, with weir-sdk).
#[derive(Debug, Clone)]
pub struct Spec {
    /// The plugin's name: lowercase letters, digits and dashes.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// The directory to create (it must not exist, or be empty).
    pub dir: PathBuf,
    /// The weir-sdk the project depends on: a directory.
    pub sdk: PathBuf,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// Not a usable plugin name.
    #[error(
        "`{0}` is not a plugin name: use lowercase letters, digits and dashes, starting with a letter (e.g. `todo-check`)"
    )]
    BadName(String),
    /// The directory has files in it.
    #[error("{} already exists and is not empty; choose another name or --dir (nothing was written)", .0.display())]
    NotEmpty(PathBuf),
    /// The SDK is not where it was said to be.
    #[error("weir-sdk is not at {}: pass --sdk DIR, the `sdk` directory of a weir checkout", .0.display())]
    NoSdk(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The weir-sdk this weir was built from, if its checkout is still there.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

const CARGO_TOML: &str = include_str!("../../templates/plugin/rust/Cargo.toml.tmpl");
const GITIGNORE: &str = include_str!("../../templates/plugin/rust/gitignore.tmpl");
const PIPELINE_STAGE: &str = include_str!("../../templates/plugin/rust/pipeline-stage.toml");
const PIPELINE_DEPLOY: &str = include_str!("../../templates/plugin/rust/pipeline-deploy.toml");
const SERVICE: &str = include_str!("../../templates/plugin/rust/service.sh");

fn source_of(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Stage => include_str!("../../templates/plugin/rust/stage.rs"),
        PluginKind::Analyzer => include_str!("../../templates/plugin/rust/analyzer.rs"),
        PluginKind::TestRunner => include_str!("../../templates/plugin/rust/test-runner.rs"),
        PluginKind::Strategy => include_str!("../../templates/plugin/rust/strategy.rs"),
        PluginKind::Deployer => include_str!("../../templates/plugin/rust/deployer.rs"),
    }
}

fn description_of(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Stage => "Counts the lines of workspace files",
        PluginKind::Analyzer => "Flags TODO, FIXME and XXX markers left in the code",
        PluginKind::TestRunner => "Compares files with their golden copies",
        PluginKind::Strategy => "Raises a candidate's traffic step by step, checking after each",
        PluginKind::Deployer => "Runs releases on weir's local target",
    }
}

/// Whether `name` is a plugin name.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// The files of `spec`'s project: (path relative to its directory,
/// contents, executable).
pub fn files(spec: &Spec) -> Vec<(PathBuf, String, bool)> {
    let crate_name = spec.name.replace('-', "_");
    let sdk = format!("{{ path = {:?} }}", spec.sdk.display().to_string());
    let fill = |text: &str| {
        text.replace("__NAME__", &spec.name)
            .replace("__CRATE__", &crate_name)
            .replace("__DESCRIPTION__", description_of(spec.kind))
            .replace("__SDK__", &sdk)
    };
    let mut out = vec![
        (PathBuf::from("Cargo.toml"), fill(CARGO_TOML), false),
        (PathBuf::from(".gitignore"), fill(GITIGNORE), false),
        (PathBuf::from("src/lib.rs"), fill(source_of(spec.kind)), false),
    ];
    let (with, deploy) = match spec.kind {
        PluginKind::Stage => ("with = { include = [\"src/**/*.rs\"] }", None),
        PluginKind::Analyzer => ("with = { include = [\"src/**/*.rs\"], fail-at = \"high\" }", None),
        PluginKind::TestRunner => (
            "with = { expected = \"tests/expected\", actual = \"tests/actual\" }",
            None,
        ),
        PluginKind::Strategy => (
            "",
            Some((
                " with this plugin as the rollout strategy",
                "uses = \"deploy\"\nwith = { service = \"__NAME__-sample\", artifact = \"sample/service.sh\", replicas = 1 }\nstrategy = { uses = \"__NAME__\", with = { steps = [50, 100], interval = \"3s\" } }\nchecks = [{ uses = \"canary-metrics\", with = { max-error-rate = 0.05, min-requests = 5 } }]\nload = { rate = 20, path = \"/\" }\nallow = { runtime = true, metrics = [\"builtin\"] }\n",
            )),
        ),
        PluginKind::Deployer => (
            "",
            Some((
                " with this plugin as the deployer",
                "uses = \"__NAME__\"\nwith = { service = \"__NAME__-sample\", artifact = \"sample/service.sh\", replicas = 1, readiness-path = \"/\" }\nstrategy = { uses = \"recreate\" }\nallow = { runtime = true }\n",
            )),
        ),
    };
    match deploy {
        None => out.push((
            PathBuf::from("pipeline.toml"),
            fill(
                &PIPELINE_STAGE
                    .replace("__STAGE__", "check")
                    .replace("__WITH__", with),
            ),
            false,
        )),
        Some((role, stage)) => {
            out.push((
                PathBuf::from("pipeline.toml"),
                fill(
                    &PIPELINE_DEPLOY
                        .replace("__DEPLOY_ROLE__", role)
                        .replace("__DEPLOY__", stage),
                ),
                false,
            ));
            out.push((PathBuf::from("sample/service.sh"), SERVICE.to_string(), true));
        }
    }
    if spec.kind == PluginKind::TestRunner {
        let golden = "hello from the golden file\n".to_string();
        out.push((
            PathBuf::from("tests/expected/greeting.txt"),
            golden.clone(),
            false,
        ));
        out.push((PathBuf::from("tests/actual/greeting.txt"), golden, false));
    }
    out
}

/// Write `spec`'s project; the files written.
pub fn scaffold(spec: &Spec) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(&spec.name) {
        return Err(ScaffoldError::BadName(spec.name.clone()));
    }
    if !spec.sdk.join("Cargo.toml").is_file() {
        return Err(ScaffoldError::NoSdk(spec.sdk.clone()));
    }
    if std::fs::read_dir(&spec.dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(spec.dir.clone()));
    }
    let mut written = Vec::new();
    for (rel, text, executable) in files(spec) {
        let path = spec.dir.join(&rel);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &text)?;
            if executable {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(rel);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["todo-check", "a", "lint2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Todo", "2fast", "a_b", "ends-", "a b", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_kind_fills_every_placeholder() {
        for kind in [
            PluginKind::Stage,
            PluginKind::Analyzer,
            PluginKind::TestRunner,
            PluginKind::Strategy,
            PluginKind::Deployer,
        ] {
            let spec = Spec {
                name: "my-plugin".into(),
                kind,
                dir: "my-plugin".into(),
                sdk: "/sdk".into(),
            };
            for (path, text, _) in files(&spec) {
                assert!(!text.contains("__"), "{kind:?} {}: {text}", path.display());
            }
        }
    }

    #[test]
    fn a_directory_with_files_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let spec = Spec {
            name: "x".into(),
            kind: PluginKind::Stage,
            dir: dir.path().to_path_buf(),
            sdk: default_sdk(),
        };
        assert!(matches!(scaffold(&spec), Err(ScaffoldError::NotEmpty(_))));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).expect("read"),
            "mine"
        );
    }
}
