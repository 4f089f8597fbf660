//! `checksum`: SHA-256 of workspace files.
//!
//! ```toml
//! [stages.sums]
//! uses = "checksum"
//! with = { paths = ["dist/**"], write = "dist/SHA256SUMS" }
//! ```
//!
//! Outputs `digest` (the SHA-256 of the sums listing, so one value pins all
//! files), `files` (how many) and `sums` (the path written, if any). Fails
//! when no file matches, so a typo in a pattern never passes silently.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Patterns of files to hash, relative to the workspace.
    paths: Vec<String>,
    /// Where to write the `sha256sum`-format listing, if anywhere.
    #[serde(default)]
    write: Option<String>,
}

struct Checksum;

impl Plugin for Checksum {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage);
        m.config_schema = Some(
            r#"{"type":"object","required":["paths"],"properties":{"paths":{"type":"array","items":{"type":"string"}},"write":{"type":"string"}},"additionalProperties":false}"#
                .into(),
        );
        m
    }
}

impl Stage for Checksum {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        if config.paths.is_empty() {
            return Err(Failure::new(
                "`paths` is empty: list the files to hash, e.g. paths = [\"dist/**\"]",
            ));
        }
        let mut files = weir_sdk::glob::find_files(&config.paths)
            .map_err(|e| Failure::new(format!("cannot list the workspace: {e}")))?;
        if let Some(out) = &config.write {
            files.retain(|f| f != out.trim_start_matches("./"));
        }
        if files.is_empty() {
            return Err(Failure::new(format!(
                "no file in the workspace matches {:?}",
                config.paths
            )));
        }
        let mut listing = String::new();
        let total = files.len() as u64;
        for (i, file) in files.iter().enumerate() {
            let bytes =
                std::fs::read(file).map_err(|e| Failure::new(format!("cannot read `{file}`: {e}")))?;
            let digest = hex::encode(Sha256::digest(&bytes));
            listing.push_str(&format!("{digest}  {file}\n"));
            weir_sdk::log::progress(i as u64 + 1, Some(total), file);
        }
        let digest = hex::encode(Sha256::digest(listing.as_bytes()));
        let mut out = StageOutput::new()
            .output("digest", digest.clone())
            .output("files", files.len().to_string())
            .summary(format!("{} file(s), sha256 {}", files.len(), &digest[..12]));
        if let Some(path) = &config.write {
            if let Some(parent) = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Failure::new(format!("cannot create `{}`: {e}", parent.display())))?;
            }
            std::fs::write(path, &listing)
                .map_err(|e| Failure::new(format!("cannot write `{path}`: {e}")))?;
            out = out
                .output("sums", path.clone())
                .artifact("SHA256SUMS", path.clone());
        }
        weir_sdk::log::info(&format!("hashed {} file(s)", files.len()));
        Ok(out)
    }
}

weir_sdk::export_stage!(Checksum);
