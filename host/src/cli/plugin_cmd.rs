//! `weir plugin new` and `weir plugin build`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use crate::author::compile;
use crate::author::componentize::COMPONENTIZE_PY;
use crate::author::scaffold::{self, Lang, Spec};
use crate::bindings::types::PluginKind;
use crate::engine::limits::human_bytes;

/// `--kind`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// A pipeline step.
    Stage,
    /// Findings and a verdict.
    Analyzer,
    /// Test cases.
    TestRunner,
    /// Rollout decisions.
    Strategy,
    /// Drives a deployment target.
    Deployer,
}

impl KindArg {
    fn kind(self) -> PluginKind {
        match self {
            KindArg::Stage => PluginKind::Stage,
            KindArg::Analyzer => PluginKind::Analyzer,
            KindArg::TestRunner => PluginKind::TestRunner,
            KindArg::Strategy => PluginKind::Strategy,
            KindArg::Deployer => PluginKind::Deployer,
        }
    }
}

/// `--lang`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LangArg {
    /// Rust, with weir-sdk (cargo, wasm32-wasip2).
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    #[value(alias = "javascript")]
    Js,
}

impl LangArg {
    fn lang(self) -> Lang {
        match self {
            LangArg::Rust => Lang::Rust,
            LangArg::Python => Lang::Python,
            LangArg::Js => Lang::JavaScript,
        }
    }
}

/// `weir plugin new NAME --kind KIND`.
pub fn new(
    name: String,
    kind: KindArg,
    lang: LangArg,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> ExitCode {
    let lang = lang.lang();
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    let sdk = sdk.unwrap_or_else(scaffold::default_sdk);
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    let spec = Spec {
        name: name.clone(),
        kind: kind.kind(),
        lang,
        dir: dir.clone(),
        sdk,
    };
    let written = match scaffold::scaffold(&spec) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("weir plugin new: {e}");
            return ExitCode::from(2);
        }
    };
    let kind = crate::plugins::kind_name(spec.kind);
    let article = if kind.starts_with('a') { "an" } else { "a" };
    println!(
        "Created {name}, {article} {kind} in {}, in {}:",
        lang.name(),
        dir.display()
    );
    for file in written.iter().filter(|f| !f.starts_with("wit/deps")) {
        println!("  {}", file.display());
    }
    if lang != Lang::Rust {
        println!("  wit/deps/…  (weir's WIT, which the build reads)");
    }
    println!("\nNext:");
    let cd = format!("cd {}", dir.display());
    let install_py = format!("pip install {COMPONENTIZE_PY}");
    let mut steps: Vec<(&str, &str)> = vec![(&cd, "")];
    match lang {
        Lang::Rust => steps.push(("cargo test", "its unit test, natively")),
        Lang::Python => {
            steps.push((&install_py, "once: the build tool"));
            steps.push(("python3 -m unittest", "its unit test, natively"));
        }
        Lang::JavaScript => {
            steps.push(("npm install", "once: the build tool, componentize-js"));
            steps.push(("npm test", "its unit test, natively"));
        }
    }
    steps.push((
        "weir plugin build",
        "the component, its sha256 and [plugins] table",
    ));
    steps.push((
        "export WEIR_STATE_DIR=../.weir-state",
        "weir's state, outside the workspace",
    ));
    steps.push(("weir run pipeline.toml --workspace .", "the sample pipeline"));
    steps.push(("weir dev", "rebuild and rerun its stage on every save"));
    for (command, why) in steps {
        if why.is_empty() {
            println!("  {command}");
        } else {
            println!("  {command:<38}  # {why}");
        }
    }
    ExitCode::SUCCESS
}

/// `weir plugin build [DIR]`.
pub async fn build(dir: &Path, as_json: bool) -> ExitCode {
    let owned = dir.to_path_buf();
    let built = match tokio::task::spawn_blocking(move || compile::build(&owned)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("weir plugin build: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("weir plugin build: the build thread failed: {e}");
            return ExitCode::from(70);
        }
    };
    let shown = shown_path(dir, &built.path);
    let snippet = built.snippet(&shown);
    if as_json {
        let out = json!({
            "name": built.name,
            "path": built.path,
            "size": built.size,
            "sha256": built.sha256,
            "snippet": snippet,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    println!("Built {}: {}", built.name, built.path.display());
    println!(
        "  size    {} ({} bytes)",
        human_bytes(built.size as usize),
        built.size
    );
    println!("  sha256  {}", built.sha256);
    println!(
        "\nUse it from a pipeline.toml beside the project (the path is relative to the pipeline's directory):\n"
    );
    print!("{snippet}");
    ExitCode::SUCCESS
}

/// `path` as a pipeline.toml in `dir` writes it: relative to `dir`, also
/// when `dir/target` is a link to a shared target directory; else as is.
fn shown_path(dir: &Path, path: &Path) -> String {
    let project = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if let Ok(rel) = path.strip_prefix(&project) {
        return rel.display().to_string();
    }
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Ok(target) = dir.join("target").canonicalize()
        && let Ok(rel) = canonical.strip_prefix(&target)
    {
        return Path::new("target").join(rel).display().to_string();
    }
    path.display().to_string()
}
