//! __NAME__: a weir stage. It counts the lines of the workspace files its
//! `include` globs match, writes a report, and hands the totals to the
//! stages after it as outputs (`${{ stages.STAGE.outputs.lines }}`).

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

/// The stage's `with = { ... }` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Workspace globs to count, e.g. `["src/**/*.rs"]`.
    #[serde(default = "default_include")]
    include: Vec<String>,
    /// Where to write the report, relative to the workspace.
    #[serde(default = "default_report")]
    report: String,
}

fn default_include() -> Vec<String> {
    vec!["src/**/*.rs".into()]
}

fn default_report() -> String {
    "__NAME__-report.txt".into()
}

/// Lines in `text`, not counting blank ones.
fn count_lines(text: &str) -> usize {
    text.lines().filter(|l| !l.trim().is_empty()).count()
}

struct Plugin_;

impl Plugin for Plugin_ {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Plugin_ {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        let files = weir_sdk::glob::find_files(&config.include)
            .map_err(|e| Failure::new(format!("cannot list {:?}: {e}", config.include)))?;
        if files.is_empty() {
            return Err(Failure::new(format!(
                "no workspace file matches {:?}; check `include`",
                config.include
            )));
        }
        let mut report = String::new();
        let mut total = 0;
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::new(format!("cannot read {file}: {e}")))?;
            let lines = count_lines(&text);
            total += lines;
            report.push_str(&format!("{lines:>8}  {file}\n"));
        }
        report.push_str(&format!("{total:>8}  total\n"));
        std::fs::write(&config.report, &report)
            .map_err(|e| Failure::new(format!("cannot write {}: {e}", config.report)))?;
        weir_sdk::log::info(&format!("{total} lines in {} file(s)", files.len()));
        Ok(StageOutput::new()
            .output("lines", total.to_string())
            .output("files", files.len().to_string())
            .artifact("report", config.report)
            .summary(format!("{total} lines in {} file(s)", files.len())))
    }
}

weir_sdk::export_stage!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_do_not_count() {
        assert_eq!(count_lines("fn main() {\n\n    run();\n}\n"), 3);
        assert_eq!(count_lines(""), 0);
    }
}
