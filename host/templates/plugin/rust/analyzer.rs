//! __NAME__: a weir analyzer. It finds `TODO`, `FIXME` and `XXX` markers
//! in the workspace files its `include` globs match, reports each as a
//! finding with its file and line, and fails the stage when a finding is
//! at least as severe as `fail-at`.

use serde::Deserialize;
use weir_sdk::{Analysis, Analyzer, Context, Failure, Finding, Manifest, Plugin, Severity};

/// The stage's `with = { ... }` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Workspace globs to read, e.g. `["src/**/*.rs"]`.
    #[serde(default = "default_include")]
    include: Vec<String>,
    /// `low`, `medium`, `high` or `critical`: the least severe finding
    /// that fails the stage. `FIXME` is medium, the others low.
    #[serde(default = "default_fail_at")]
    fail_at: String,
}

fn default_include() -> Vec<String> {
    vec!["src/**/*.rs".into()]
}

fn default_fail_at() -> String {
    "high".into()
}

/// (line, marker) of each marker in `text`, lines counted from 1.
fn markers(text: &str) -> Vec<(u32, &'static str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for marker in ["TODO", "FIXME", "XXX"] {
            if line.contains(marker) {
                found.push((i as u32 + 1, marker));
            }
        }
    }
    found
}

fn severity(name: &str) -> Result<Severity, Failure> {
    Ok(match name {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => {
            return Err(Failure::new(format!(
                "fail-at = {other:?} is not a severity; use low, medium, high or critical"
            )));
        }
    })
}

struct Plugin_;

impl Plugin for Plugin_ {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Analyzer)
    }
}

impl Analyzer for Plugin_ {
    fn analyze(ctx: Context) -> Result<Analysis, Failure> {
        let config: Config = ctx.config()?;
        let fail_at = severity(&config.fail_at)?;
        let files = weir_sdk::glob::find_files(&config.include)
            .map_err(|e| Failure::new(format!("cannot list {:?}: {e}", config.include)))?;
        let mut findings = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::new(format!("cannot read {file}: {e}")))?;
            for (line, marker) in markers(&text) {
                let severity = if marker == "FIXME" { Severity::Medium } else { Severity::Low };
                findings.push(
                    Finding::new(
                        marker.to_lowercase(),
                        severity,
                        format!("`{marker}` is left in the code"),
                    )
                    .at(file.clone(), line, None),
                );
            }
        }
        weir_sdk::log::info(&format!("{} marker(s) in {} file(s)", findings.len(), files.len()));
        Ok(Analysis::from_findings(findings, fail_at))
    }
}

weir_sdk::export_analyzer!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_by_line() {
        let text = "fn a() {}\n// TODO: b\n// FIXME and XXX\n";
        assert_eq!(markers(text), vec![(2, "TODO"), (3, "FIXME"), (3, "XXX")]);
        assert!(severity("urgent").is_err());
    }
}
