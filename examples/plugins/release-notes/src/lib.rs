//! `release-notes`: a third-party stage plugin built on `weir-sdk`.
//!
//! Writes `<out>/RELEASE_NOTES.md` and `<out>/release.json` from its config
//! and returns the version, the files written and their size as outputs.
//!
//! ```toml
//! [stages.notes]
//! uses = "release-notes"
//! with = { project = "web", version = "1.4.0", changes = ["faster start-up"], out = "dist" }
//! ```

use std::fmt::Write as _;

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The project's name.
    project: String,
    /// The version being released (semver).
    version: String,
    /// One line per change.
    #[serde(default)]
    changes: Vec<String>,
    /// Directory (relative to the workspace) to write into.
    #[serde(default = "default_out")]
    out: String,
    /// A digest pinning the release's files, printed in the notes.
    #[serde(default)]
    digest: Option<String>,
}

fn default_out() -> String {
    "dist".into()
}

struct ReleaseNotes;

impl Plugin for ReleaseNotes {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage);
        m.config_schema = Some(
            r#"{"type":"object","required":["project","version"],"properties":{"project":{"type":"string"},"version":{"type":"string"},"changes":{"type":"array","items":{"type":"string"}},"out":{"type":"string"},"digest":{"type":"string"}}}"#
                .into(),
        );
        m
    }
}

impl Stage for ReleaseNotes {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        if !is_semver(&config.version) {
            return Err(Failure::new(format!(
                "`{}` is not a semantic version; use MAJOR.MINOR.PATCH, e.g. 1.4.0",
                config.version
            )));
        }
        std::fs::create_dir_all(&config.out)
            .map_err(|e| Failure::new(format!("cannot create `{}`: {e}", config.out)))?;

        let mut notes = format!("# {} {}\n\n", config.project, config.version);
        if config.changes.is_empty() {
            notes.push_str("No user-facing changes.\n");
        }
        for change in &config.changes {
            let _ = writeln!(notes, "- {change}");
        }
        if let Some(digest) = &config.digest {
            let _ = write!(notes, "\nFiles: sha256 `{digest}` (see SHA256SUMS)\n");
        }
        let notes_path = format!("{}/RELEASE_NOTES.md", config.out);
        write(&notes_path, notes.as_bytes())?;

        let release = serde_json::json!({
            "project": config.project,
            "version": config.version,
            "changes": config.changes,
            "digest": config.digest,
            "pipeline": ctx.pipeline,
            "run": ctx.run_id,
        });
        let json_path = format!("{}/release.json", config.out);
        let json = serde_json::to_vec_pretty(&release).map_err(|e| Failure::new(e.to_string()))?;
        write(&json_path, &json)?;

        weir_sdk::log::info(&format!("wrote {notes_path} and {json_path}"));
        Ok(StageOutput::new()
            .output("version", config.version.clone())
            .output("notes", notes_path.clone())
            .output("bytes", (notes.len() + json.len()).to_string())
            .artifact("release-notes", notes_path)
            .artifact("release-json", json_path)
            .summary(format!(
                "{} {}: {} change(s)",
                config.project,
                config.version,
                config.changes.len()
            )))
    }
}

fn write(path: &str, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| Failure::new(format!("cannot write `{path}`: {e}")))
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

weir_sdk::export_stage!(ReleaseNotes);
