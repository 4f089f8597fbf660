//! `build`: build the project in the workspace.
//!
//! ```toml
//! [stages.build]
//! uses = "build"
//! with = { dir = "src", artifacts = ["target/release/web"] }
//! allow = { exec = ["cargo"] }
//! ```
//!
//! With `command`, runs it through `sh -c` (grant `sh`). Without, detects
//! the toolchain in `dir` and runs its conventional build (grant that
//! program):
//!
//! | file | command |
//! |---|---|
//! | `Cargo.toml` | `cargo build --release` |
//! | `package.json` | `npm run build` |
//! | `go.mod` | `go build ./...` |
//! | `pom.xml` | `mvn -B package` |
//! | `Makefile` | `make` |
//!
//! Then every file matching `artifacts` (patterns relative to `dir`) is
//! kept in the run's artifact store. Outputs: `artifact` and
//! `artifact-sha256` (the first), `artifacts` (one `SHA256  PATH` line
//! each, like `sha256sum`), `artifact-count`, and `command`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use weir_sdk::process::Command;
use weir_sdk::{Capability, Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    command: Option<String>,
    #[serde(default = "here")]
    dir: String,
    #[serde(default)]
    artifacts: Vec<String>,
}

fn here() -> String {
    ".".into()
}

/// Lines of output quoted in a failure.
const TAIL: usize = 30;

struct Build;

impl Plugin for Build {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{"command":{"type":"string","x-weir-shell":true},"dir":{"type":"string"},"artifacts":{"type":"array","items":{"type":"string"}}}}"#
                .into(),
        );
        m
    }
}

/// The conventional build for the toolchain found in `dir`.
fn detect(dir: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let has = |f: &str| std::path::Path::new(dir).join(f).is_file();
    if has("Cargo.toml") {
        Some(("cargo", vec!["build", "--release"]))
    } else if has("package.json") {
        Some(("npm", vec!["run", "build"]))
    } else if has("go.mod") {
        Some(("go", vec!["build", "./..."]))
    } else if has("pom.xml") {
        Some(("mvn", vec!["-B", "package"]))
    } else if has("Makefile") || has("makefile") {
        Some(("make", vec![]))
    } else {
        None
    }
}

impl Stage for Build {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let (program, args): (String, Vec<String>) = match &c.command {
            Some(cmd) => ("sh".into(), vec!["-c".into(), cmd.clone()]),
            None => match detect(&c.dir) {
                Some((p, a)) => (p.into(), a.into_iter().map(String::from).collect()),
                None => {
                    return Err(Failure::new(format!(
                        "no build to run in `{}`: found no Cargo.toml, package.json, go.mod, pom.xml or Makefile; set `command`",
                        c.dir
                    )));
                }
            },
        };
        let shown = std::iter::once(program.as_str())
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        weir_sdk::log::info(&format!("running `{shown}` in {}", c.dir));
        let exit = weir_sdk::process::run(&Command::new(program).args(args).cwd(c.dir.clone()))?;
        if !exit.success() {
            return Err(
                Failure::retryable(format!("the build `{shown}` {}", exit.describe()))
                    .with_details(exit.tail(TAIL)),
            );
        }

        let patterns: Vec<String> = c
            .artifacts
            .iter()
            .map(|p| {
                if c.dir == "." {
                    p.clone()
                } else {
                    format!("{}/{p}", c.dir.trim_end_matches('/'))
                }
            })
            .collect();
        let files = if patterns.is_empty() {
            Vec::new()
        } else {
            weir_sdk::glob::find_files(&patterns)
                .map_err(|e| Failure::new(format!("cannot list the workspace: {e}")))?
        };
        if !patterns.is_empty() && files.is_empty() {
            return Err(Failure::new(format!(
                "the build succeeded but no file matches the artifacts {:?}",
                c.artifacts
            )));
        }
        let mut out = StageOutput::new().output("command", shown.clone());
        let mut listing = String::new();
        for (i, file) in files.iter().enumerate() {
            let bytes =
                std::fs::read(file).map_err(|e| Failure::new(format!("cannot read `{file}`: {e}")))?;
            let digest = hex::encode(Sha256::digest(&bytes));
            if i == 0 {
                out = out
                    .output("artifact", file.clone())
                    .output("artifact-sha256", digest.clone());
            }
            listing.push_str(&format!("{digest}  {file}\n"));
            let name = file.rsplit('/').next().unwrap_or(file).to_string();
            out = out.artifact(name, file.clone());
        }
        Ok(out
            .output("artifacts", listing.trim_end().to_string())
            .output("artifact-count", files.len().to_string())
            .summary(format!("`{shown}` succeeded; {} artifact(s)", files.len())))
    }
}

weir_sdk::export_stage!(Build);
