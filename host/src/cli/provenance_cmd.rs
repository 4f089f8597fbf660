//! `weir keys generate` and `weir verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::report::provenance::{self, keys};

/// `weir keys generate`.
pub fn generate(out: Option<PathBuf>, force: bool) -> ExitCode {
    let Some(dir) = out.or_else(keys::default_dir) else {
        eprintln!("weir: {}", keys::KeyError::NoDataDir);
        return ExitCode::from(1);
    };
    match keys::generate(&dir, force) {
        Ok((private, public, key)) => {
            println!("signing key  {} (readable by you alone)", private.display());
            println!("public key   {}", public.display());
            println!("key id       {}", keys::key_id(&key));
            let default = keys::signing_key_path();
            if default.as_deref() == Some(private.as_path()) {
                println!(
                    "runs that make artifacts now sign reports/{} with it",
                    provenance::PROVENANCE_FILE
                );
            } else {
                println!(
                    "sign runs with it: {}={}",
                    keys::SIGNING_KEY_ENV,
                    private.display()
                );
            }
            println!(
                "verify: weir verify ARTIFACT --provenance .weir/runs/RUN/reports/{} --key {}",
                provenance::PROVENANCE_FILE,
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir: cannot make a key: {e}");
            ExitCode::from(1)
        }
    }
}

/// `weir verify`: 0 when the artifact is a signed subject, 1 when not.
pub fn verify(artifact: &Path, provenance_file: &Path, key: &Path, json: bool) -> ExitCode {
    match provenance::verify(artifact, provenance_file, key) {
        Ok(v) => {
            if json {
                let doc = serde_json::json!({
                    "verified": true,
                    "subject": v.subject,
                    "sha256": v.sha256,
                    "run": v.run,
                    "pipeline": v.pipeline,
                    "commits": v.commits,
                    "builder": v.builder,
                    "key_id": v.key_id,
                });
                println!("{doc}");
            } else {
                println!("verified {}", artifact.display());
                println!("  subject   {} (sha256 {})", v.subject, v.sha256);
                println!("  run       {} of pipeline `{}`", v.run, v.pipeline);
                if !v.commits.is_empty() {
                    println!("  commit    {}", v.commits.join(", "));
                }
                println!("  builder   {}", v.builder);
                println!("  signed by {}", v.key_id);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "verified": false, "error": e.to_string() })
                );
            }
            eprintln!("weir: not verified: {e}");
            ExitCode::from(1)
        }
    }
}
