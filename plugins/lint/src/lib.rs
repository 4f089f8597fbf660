//! `lint`: runs the project's linters through the `process` capability and
//! turns their machine output into findings, the lint name as the rule.
//!
//! ```toml
//! [stages.lint]
//! uses = "lint"
//! with = { dir = "service" }
//! inherit-env = ["HOME", "PATH"]
//! allow = { exec = ["cargo", "ruff"], read = ["~/.cargo", "~/.rustup"] }
//! gate = { fail-on = "medium" }
//! ```
//!
//! Linters are found by their files in `dir` (the workspace by default):
//! clippy for `Cargo.toml` (`cargo clippy --message-format=json-diagnostic-short`),
//! ruff for `ruff.toml`, `.ruff.toml` or a `pyproject.toml` with
//! `[tool.ruff]` (`ruff check --output-format=json`), eslint for
//! `eslint.config.{js,mjs,cjs}` or `.eslintrc*` (`eslint --format json`).
//! A detected linter whose program is not granted is skipped, and the
//! summary says so; one named in `linters` must run.
//!
//! Settings: `dir`, `linters` (a list, instead of detection),
//! `clippy-args` (`["--all-targets"]`), `ruff` and `eslint` (the program
//! to run, e.g. `node_modules/.bin/eslint`, as granted in `allow.exec`),
//! and `severity`, a table from rule to severity overriding the mapping in
//! [`parse`].

mod parse;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use weir_sdk::process::{Command, Exit};
use weir_sdk::{
    Analysis, Analyzer, Capability, Context, Failure, Finding, HostError, Manifest, Plugin, Severity,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "here")]
    dir: String,
    #[serde(default)]
    linters: Option<Vec<Linter>>,
    #[serde(default = "all_targets")]
    clippy_args: Vec<String>,
    #[serde(default = "ruff_program")]
    ruff: String,
    #[serde(default = "eslint_program")]
    eslint: String,
    #[serde(default)]
    severity: BTreeMap<String, String>,
}

fn here() -> String {
    ".".into()
}
fn all_targets() -> Vec<String> {
    vec!["--all-targets".into()]
}
fn ruff_program() -> String {
    "ruff".into()
}
fn eslint_program() -> String {
    "eslint".into()
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Linter {
    Clippy,
    Ruff,
    Eslint,
}

impl Linter {
    fn name(self) -> &'static str {
        match self {
            Linter::Clippy => "clippy",
            Linter::Ruff => "ruff",
            Linter::Eslint => "eslint",
        }
    }
}

struct Lint;

impl Plugin for Lint {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Analyzer, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{
"dir":{"type":"string"},
"linters":{"type":"array","items":{"enum":["clippy","ruff","eslint"]}},
"clippy-args":{"type":"array","items":{"type":"string"}},
"ruff":{"type":"string"},
"eslint":{"type":"string"},
"severity":{"type":"object","additionalProperties":{"enum":["info","low","medium","high","critical"]}}}}"#
                .into(),
        );
        m
    }
}

/// The linters whose configuration is in `dir`.
fn detect(dir: &Path) -> Vec<Linter> {
    let has = |name: &str| dir.join(name).is_file();
    let mut found = Vec::new();
    if has("Cargo.toml") {
        found.push(Linter::Clippy);
    }
    let pyproject_ruff =
        std::fs::read_to_string(dir.join("pyproject.toml")).is_ok_and(|t| t.contains("[tool.ruff"));
    if has("ruff.toml") || has(".ruff.toml") || pyproject_ruff {
        found.push(Linter::Ruff);
    }
    let eslint_files = [
        "eslint.config.js",
        "eslint.config.mjs",
        "eslint.config.cjs",
        ".eslintrc",
        ".eslintrc.js",
        ".eslintrc.cjs",
        ".eslintrc.json",
        ".eslintrc.yml",
        ".eslintrc.yaml",
    ];
    if eslint_files.iter().any(|f| has(f)) {
        found.push(Linter::Eslint);
    }
    found
}

fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

impl Analyzer for Lint {
    fn analyze(ctx: Context) -> Result<Analysis, Failure> {
        let config: Config = ctx.config()?;
        let dir = Path::new(&config.dir);
        if !dir.is_dir() {
            return Err(Failure::new(format!(
                "`dir = \"{}\"`: no such directory in the workspace",
                config.dir
            )));
        }
        let mut overrides = BTreeMap::new();
        for (rule, name) in &config.severity {
            let s = parse_severity(name).ok_or_else(|| {
                Failure::new(format!(
                    "severity `{name}` for `{rule}` is not one of info, low, medium, high, critical"
                ))
            })?;
            overrides.insert(rule.clone(), s);
        }
        let (linters, explicit) = match &config.linters {
            Some(l) => (l.clone(), true),
            None => (detect(dir), false),
        };
        if linters.is_empty() {
            let mut a = Analysis::from_findings(Vec::new(), Severity::High);
            a.summary = Some(format!(
                "no linter configured in `{}` (looked for Cargo.toml, ruff.toml/pyproject.toml [tool.ruff], eslint.config.js/.eslintrc)",
                config.dir
            ));
            return Ok(a);
        }

        let mut findings: Vec<Finding> = Vec::new();
        let mut notes = Vec::new();
        for linter in linters {
            let (program, args): (&str, Vec<String>) = match linter {
                Linter::Clippy => (
                    "cargo",
                    ["clippy", "--message-format=json-diagnostic-short"]
                        .into_iter()
                        .map(String::from)
                        .chain(config.clippy_args.iter().cloned())
                        .collect(),
                ),
                Linter::Ruff => (
                    config.ruff.as_str(),
                    vec![
                        "check".into(),
                        "--output-format=json".into(),
                        "--no-cache".into(),
                        ".".into(),
                    ],
                ),
                Linter::Eslint => (
                    config.eslint.as_str(),
                    vec!["--format".into(), "json".into(), ".".into()],
                ),
            };
            weir_sdk::log::info(&format!(
                "running {} ({program} {})",
                linter.name(),
                args.join(" ")
            ));
            let cmd = Command::new(program).args(args).cwd(config.dir.clone()).quiet();
            let exit = match weir_sdk::process::run(&cmd) {
                Ok(e) => e,
                Err(HostError::Denied(why)) if !explicit => {
                    weir_sdk::log::warn(&why);
                    notes.push(format!(
                        "{}: configured but skipped, `{program}` is not granted (allow.exec)",
                        linter.name()
                    ));
                    continue;
                }
                Err(e) => {
                    let f: Failure = e.into();
                    return Err(Failure::new(format!(
                        "{} could not run: {}",
                        linter.name(),
                        f.message
                    )));
                }
            };
            let raw = match linter {
                Linter::Clippy => {
                    let stdout = String::from_utf8_lossy(&exit.stdout);
                    let raw = parse::clippy(&stdout);
                    // Exit 101 with no diagnostics is cargo failing before
                    // linting (a broken manifest, a missing toolchain).
                    if raw.is_empty() && !exit.success() {
                        return Err(broke(linter, &exit));
                    }
                    raw
                }
                // ruff exits 1 when it found violations, 2 when it broke.
                Linter::Ruff if exit.code == Some(2) || exit.timed_out => return Err(broke(linter, &exit)),
                Linter::Ruff => parse::ruff(&String::from_utf8_lossy(&exit.stdout)).map_err(Failure::new)?,
                // eslint exits 1 for lint errors, 2 for a broken config.
                Linter::Eslint if exit.code == Some(2) || exit.timed_out => return Err(broke(linter, &exit)),
                Linter::Eslint => {
                    parse::eslint(&String::from_utf8_lossy(&exit.stdout)).map_err(Failure::new)?
                }
            };
            if exit.stdout_truncated {
                weir_sdk::log::warn(&format!(
                    "{}'s output was cut at the host's output limit: later findings are missing",
                    linter.name()
                ));
                notes.push(format!(
                    "{}: output cut at the host's limit, findings may be missing",
                    linter.name()
                ));
            }
            let count = raw.len();
            for mut r in raw {
                if let Some(s) = overrides.get(&r.rule) {
                    r.severity = *s;
                }
                findings.push(parse::finding(r, linter.name(), |file| place(&config.dir, file)));
            }
            notes.push(format!("{}: {count} finding(s)", linter.name()));
        }
        let mut a = Analysis::from_findings(findings, Severity::High);
        a.summary = Some(notes.join("; "));
        Ok(a)
    }
}

fn broke(linter: Linter, exit: &Exit) -> Failure {
    Failure::new(format!("{} {} without linting", linter.name(), exit.describe())).with_details(exit.tail(20))
}

/// A linter's file name as a workspace path. Relative names are relative
/// to `dir`; absolute ones (ruff, eslint) are matched by their longest
/// suffix that exists under `dir`. `None` for files outside the workspace
/// (a macro in a dependency's source).
fn place(dir: &str, file: &str) -> Option<String> {
    let join = |rel: &str| {
        if dir == "." || dir.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", dir.trim_end_matches('/'))
        }
    };
    if !file.starts_with('/') {
        return (!file.split('/').any(|c| c == "..")).then(|| join(file.trim_start_matches("./")));
    }
    let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).find_map(|skip| {
        let rel = parts[skip..].join("/");
        Path::new(dir).join(&rel).is_file().then(|| join(&rel))
    })
}

weir_sdk::export_analyzer!(Lint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_relative_and_absolute_names() {
        assert_eq!(place(".", "src/main.rs").as_deref(), Some("src/main.rs"));
        assert_eq!(place("svc", "src/main.rs").as_deref(), Some("svc/src/main.rs"));
        assert_eq!(place("svc", "../outside.rs"), None);
        let root = std::env::temp_dir().join(format!("weir-lint-place-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/app.py"), "").unwrap();
        let dir = root.to_string_lossy().into_owned();
        assert_eq!(
            place(&dir, "/sandbox/ws/pkg/app.py").as_deref(),
            Some(format!("{dir}/pkg/app.py").as_str())
        );
        assert_eq!(place(&dir, "/elsewhere/other.py"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
