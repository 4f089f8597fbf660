//! `weir plugin new NAME --kind KIND --lang LANG`: a plugin project from
//! the templates in `host/templates/plugin/`, one per kind and language,
//! each a working plugin with a unit test and a sample `pipeline.toml`
//! that runs it.
//!
//! - Rust: a cargo project depending on weir-sdk.
//! - Python: `app.py` for componentize-py, with `weir_plugin.py` (from
//!   `sdk/python`) and a copy of weir's WIT in `wit/deps/weir-plugin`.
//! - JavaScript: `app.js` for componentize-js, its logic in `lib.js` (no
//!   host imports, so `node --test` runs it), `weir.js` (from `sdk/js`),
//!   and weir's WIT plus the WASI file API's in `wit/deps`.

use std::path::{Path, PathBuf};

use crate::bindings::types::PluginKind;

/// The language a project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, with weir-sdk.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    JavaScript,
}

impl Lang {
    /// The language's name for people.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::JavaScript => "JavaScript",
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The plugin's name: lowercase letters, digits and dashes.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// Its language.
    pub lang: Lang,
    /// The directory to create (it must not exist, or be empty).
    pub dir: PathBuf,
    /// The weir-sdk a Rust project depends on: a directory.
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
const GITIGNORE_RUST: &str = include_str!("../../templates/plugin/rust/gitignore.tmpl");
const PIPELINE_STAGE: &str = include_str!("../../templates/plugin/pipeline-stage.toml");
const PIPELINE_DEPLOY: &str = include_str!("../../templates/plugin/pipeline-deploy.toml");
const SERVICE: &str = include_str!("../../templates/plugin/service.sh");

const PYPROJECT: &str = include_str!("../../templates/plugin/python/pyproject.toml.tmpl");
const GITIGNORE_PYTHON: &str = include_str!("../../templates/plugin/python/gitignore.tmpl");
const WORLD_PYTHON: &str = include_str!("../../templates/plugin/python/world.wit.tmpl");
const UNIT_HEADER_PYTHON: &str = include_str!("../../templates/plugin/python/unit-header.py");
const HELPER_PYTHON: &str = include_str!("../../../sdk/python/weir_plugin.py");

const PACKAGE_JSON: &str = include_str!("../../templates/plugin/js/package.json.tmpl");
const GITIGNORE_JS: &str = include_str!("../../templates/plugin/js/gitignore.tmpl");
const WORLD_JS: &str = include_str!("../../templates/plugin/js/world.wit.tmpl");
const HELPER_JS: &str = include_str!("../../../sdk/js/weir.js");

/// weir's WIT, as Python and JavaScript projects carry it.
pub const WEIR_WIT: [(&str, &str); 13] = [
    ("analyzer.wit", include_str!("../../../wit/analyzer.wit")),
    ("deployer.wit", include_str!("../../../wit/deployer.wit")),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("metrics.wit", include_str!("../../../wit/metrics.wit")),
    ("plugin.wit", include_str!("../../../wit/plugin.wit")),
    ("process.wit", include_str!("../../../wit/process.wit")),
    ("runtime.wit", include_str!("../../../wit/runtime.wit")),
    ("secrets.wit", include_str!("../../../wit/secrets.wit")),
    ("stage.wit", include_str!("../../../wit/stage.wit")),
    ("strategy.wit", include_str!("../../../wit/strategy.wit")),
    ("test-runner.wit", include_str!("../../../wit/test-runner.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// The WASI packages weir.js reads files with (from wasmtime-wasi's WIT).
const WASI_WIT: [(&str, &str); 3] = [
    ("wasi-io/io.wit", include_str!("../../../sdk/js/wit-deps/io.wit")),
    (
        "wasi-clocks/clocks.wit",
        include_str!("../../../sdk/js/wit-deps/clocks.wit"),
    ),
    (
        "wasi-filesystem/filesystem.wit",
        include_str!("../../../sdk/js/wit-deps/filesystem.wit"),
    ),
];

fn rust_source(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Stage => include_str!("../../templates/plugin/rust/stage.rs"),
        PluginKind::Analyzer => include_str!("../../templates/plugin/rust/analyzer.rs"),
        PluginKind::TestRunner => include_str!("../../templates/plugin/rust/test-runner.rs"),
        PluginKind::Strategy => include_str!("../../templates/plugin/rust/strategy.rs"),
        PluginKind::Deployer => include_str!("../../templates/plugin/rust/deployer.rs"),
    }
}

/// `app.py` and the unit tests after the header, per kind.
fn python_sources(kind: PluginKind) -> (&'static str, &'static str) {
    match kind {
        PluginKind::Stage => (
            include_str!("../../templates/plugin/python/stage.py"),
            include_str!("../../templates/plugin/python/unit-stage.py"),
        ),
        PluginKind::Analyzer => (
            include_str!("../../templates/plugin/python/analyzer.py"),
            include_str!("../../templates/plugin/python/unit-analyzer.py"),
        ),
        PluginKind::TestRunner => (
            include_str!("../../templates/plugin/python/test-runner.py"),
            include_str!("../../templates/plugin/python/unit-test-runner.py"),
        ),
        PluginKind::Strategy => (
            include_str!("../../templates/plugin/python/strategy.py"),
            include_str!("../../templates/plugin/python/unit-strategy.py"),
        ),
        PluginKind::Deployer => (
            include_str!("../../templates/plugin/python/deployer.py"),
            include_str!("../../templates/plugin/python/unit-deployer.py"),
        ),
    }
}

/// `app.js`, `lib.js` and `lib.test.js`, per kind.
fn js_sources(kind: PluginKind) -> [&'static str; 3] {
    match kind {
        PluginKind::Stage => [
            include_str!("../../templates/plugin/js/stage.js"),
            include_str!("../../templates/plugin/js/stage.lib.js"),
            include_str!("../../templates/plugin/js/stage.test.js"),
        ],
        PluginKind::Analyzer => [
            include_str!("../../templates/plugin/js/analyzer.js"),
            include_str!("../../templates/plugin/js/analyzer.lib.js"),
            include_str!("../../templates/plugin/js/analyzer.test.js"),
        ],
        PluginKind::TestRunner => [
            include_str!("../../templates/plugin/js/test-runner.js"),
            include_str!("../../templates/plugin/js/test-runner.lib.js"),
            include_str!("../../templates/plugin/js/test-runner.test.js"),
        ],
        PluginKind::Strategy => [
            include_str!("../../templates/plugin/js/strategy.js"),
            include_str!("../../templates/plugin/js/strategy.lib.js"),
            include_str!("../../templates/plugin/js/strategy.test.js"),
        ],
        PluginKind::Deployer => [
            include_str!("../../templates/plugin/js/deployer.js"),
            include_str!("../../templates/plugin/js/deployer.lib.js"),
            include_str!("../../templates/plugin/js/deployer.test.js"),
        ],
    }
}

/// Where `weir plugin build` puts the component, as the sample pipeline
/// names it.
pub fn component_path(spec: &Spec) -> String {
    match spec.lang {
        Lang::Rust => format!(
            "target/wasm32-wasip2/release/{}.wasm",
            spec.name.replace('-', "_")
        ),
        Lang::Python | Lang::JavaScript => format!("build/{}.wasm", spec.name),
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

/// Whether `name` can name a scaffolded plugin: a plugin name
/// ([`weir_pipeline::names`]) that is also a crate and package name in
/// every language weir scaffolds (lowercase, starting with a letter, no
/// `_`, not ending in `-`).
pub fn valid_name(name: &str) -> bool {
    weir_pipeline::names::check(weir_pipeline::names::NameKind::Plugin, name).is_ok()
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
    let kind = crate::plugins::kind_name(spec.kind);
    let path = component_path(spec);
    let fill = |text: &str| {
        text.replace("__NAME__", &spec.name)
            .replace("__CRATE__", &crate_name)
            .replace("__DESCRIPTION__", description_of(spec.kind))
            .replace("__SDK__", &sdk)
            .replace("__KIND__", kind)
            .replace("__VERSION__", crate::plugins::kind::VERSION)
            .replace("__PATH__", &path)
            .replace(
                "__COMPONENTIZE_PY__",
                crate::author::componentize::COMPONENTIZE_PY,
            )
    };
    let file = |path: &str, text: String| (PathBuf::from(path), text, false);
    let mut out = match spec.lang {
        Lang::Rust => vec![
            file("Cargo.toml", fill(CARGO_TOML)),
            file(".gitignore", fill(GITIGNORE_RUST)),
            file("src/lib.rs", fill(rust_source(spec.kind))),
        ],
        Lang::Python => {
            let (app, unit) = python_sources(spec.kind);
            vec![
                file("pyproject.toml", fill(PYPROJECT)),
                file(".gitignore", fill(GITIGNORE_PYTHON)),
                file("app.py", fill(app)),
                file("weir_plugin.py", HELPER_PYTHON.to_string()),
                file("test_app.py", fill(&format!("{UNIT_HEADER_PYTHON}\n{unit}"))),
                file("wit/world.wit", fill(WORLD_PYTHON)),
            ]
        }
        Lang::JavaScript => {
            let [app, lib, test] = js_sources(spec.kind);
            let mut files = vec![
                file("package.json", fill(PACKAGE_JSON)),
                file(".gitignore", fill(GITIGNORE_JS)),
                file("app.js", fill(app)),
                file("lib.js", fill(lib)),
                file("lib.test.js", fill(test)),
                file("weir.js", HELPER_JS.to_string()),
                file("wit/world.wit", fill(WORLD_JS)),
            ];
            for (name, text) in WASI_WIT {
                files.push(file(&format!("wit/deps/{name}"), text.to_string()));
            }
            files
        }
    };
    if spec.lang != Lang::Rust {
        for (name, text) in WEIR_WIT {
            out.push(file(&format!("wit/deps/weir-plugin/{name}"), text.to_string()));
        }
    }
    let include = match spec.lang {
        Lang::Rust => "\"src/**/*.rs\"",
        Lang::Python => "\"*.py\"",
        Lang::JavaScript => "\"*.js\"",
    };
    let stage_with = format!("with = {{ include = [{include}] }}");
    let analyzer_with = format!("with = {{ include = [{include}], fail-at = \"high\" }}");
    let (with, deploy) = match spec.kind {
        PluginKind::Stage => (stage_with.as_str(), None),
        PluginKind::Analyzer => (analyzer_with.as_str(), None),
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
    if spec.lang == Lang::Rust && !spec.sdk.join("Cargo.toml").is_file() {
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
        let placeholder = |text: &str| {
            text.split("__")
                .skip(1)
                .step_by(2)
                .find(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .map(str::to_string)
        };
        for lang in [Lang::Rust, Lang::Python, Lang::JavaScript] {
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
                    lang,
                    dir: "my-plugin".into(),
                    sdk: "/sdk".into(),
                };
                for (path, text, _) in files(&spec) {
                    assert_eq!(placeholder(&text), None, "{lang:?} {kind:?} {}", path.display());
                }
            }
        }
    }

    #[test]
    fn python_and_javascript_projects_carry_the_current_wit() {
        // What `weir plugin build` stamps into their components comes from
        // here, so it must be the contract this weir implements.
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut names: Vec<String> = std::fs::read_dir(&wit)
            .expect("wit/")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wit"))
            .collect();
        names.sort();
        let carried: Vec<&str> = WEIR_WIT.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, carried, "WEIR_WIT lists every file of wit/");
    }

    #[test]
    fn a_directory_with_files_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let spec = Spec {
            name: "x".into(),
            kind: PluginKind::Stage,
            lang: Lang::Rust,
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
