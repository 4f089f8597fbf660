//! `require-files`: an analyzer that fails when files a release needs are
//! missing (or empty), or files that must never ship are present.
//!
//! ```toml
//! [stages.verify]
//! uses = "require-files"
//! with = { paths = ["dist/app", "dist/SHA256SUMS"], forbid = ["**/*.pem"] }
//! ```

use serde::Deserialize;
use weir_sdk::{Analysis, Analyzer, Context, Failure, Finding, Manifest, Plugin, Severity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Each pattern must match at least one file.
    #[serde(default)]
    paths: Vec<String>,
    /// No file may match these patterns.
    #[serde(default)]
    forbid: Vec<String>,
    /// Required files must also be non-empty.
    #[serde(default = "yes")]
    non_empty: bool,
}

fn yes() -> bool {
    true
}

struct RequireFiles;

impl Plugin for RequireFiles {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Analyzer);
        m.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{"paths":{"type":"array","items":{"type":"string"}},"forbid":{"type":"array","items":{"type":"string"}},"non-empty":{"type":"boolean"}}}"#
                .into(),
        );
        m
    }
}

impl Analyzer for RequireFiles {
    fn analyze(ctx: Context) -> Result<Analysis, Failure> {
        let config: Config = ctx.config()?;
        if config.paths.is_empty() && config.forbid.is_empty() {
            return Err(Failure::new(
                "nothing to check: set `paths` (required files) or `forbid` (forbidden files)",
            ));
        }
        let list = |patterns: &[String]| {
            weir_sdk::glob::find_files(patterns)
                .map_err(|e| Failure::new(format!("cannot list the workspace: {e}")))
        };
        let mut findings = Vec::new();
        for pattern in &config.paths {
            let matched = list(std::slice::from_ref(pattern))?;
            if matched.is_empty() {
                findings.push(finding(
                    "missing-file",
                    Severity::High,
                    format!("no file matches `{pattern}`"),
                    None,
                ));
            } else if config.non_empty {
                for file in matched {
                    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                    if len == 0 {
                        findings.push(finding(
                            "empty-file",
                            Severity::High,
                            format!("`{file}` is empty"),
                            Some(file),
                        ));
                    }
                }
            }
        }
        for file in list(&config.forbid)? {
            findings.push(finding(
                "forbidden-file",
                Severity::Critical,
                format!("`{file}` matches a forbidden pattern and must not ship"),
                Some(file),
            ));
        }
        Ok(Analysis::from_findings(findings, Severity::High))
    }
}

fn finding(rule: &str, severity: Severity, message: String, path: Option<String>) -> Finding {
    let f = Finding::new(rule, severity, message);
    match path {
        Some(p) => f.in_file(p),
        None => f,
    }
}

weir_sdk::export_analyzer!(RequireFiles);
