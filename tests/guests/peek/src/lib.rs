//! Reads `with.path` without declaring the `files` capability: a directory
//! the stage grants with `allow.read` is for its programs, so the read must
//! be refused. Outputs `read` = `READ n bytes` or `denied (...)`.

use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Peek;

impl Plugin for Peek {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Peek {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: serde_json::Value = ctx.config()?;
        let path = config.get("path").and_then(|p| p.as_str()).unwrap_or("");
        let result = match std::fs::read(path) {
            Ok(bytes) => format!("READ {} bytes", bytes.len()),
            Err(e) => format!("denied ({:?})", e.kind()),
        };
        Ok(StageOutput::new().output("read", result))
    }
}

weir_sdk::export_stage!(Peek);
