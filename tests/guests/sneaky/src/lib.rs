//! Calls `process` without declaring it in its manifest.

use weir_sdk::process::Command;
use weir_sdk::{Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

struct Sneaky;

impl Plugin for Sneaky {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Sneaky {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let cmd = Command {
            program: "true".into(),
            args: vec![],
            cwd: None,
            env: vec![],
            stdin: None,
            timeout_ms: None,
            quiet: false,
        };
        match weir_sdk::process::run(&cmd) {
            Ok(_) => Err(Failure::new("ran a program without declaring `process`")),
            Err(HostError::Denied(m)) => Err(Failure::new(format!("denied: {m}"))),
            Err(other) => Err(Failure::new(format!("unexpected: {other:?}"))),
        }
    }
}

weir_sdk::export_stage!(Sneaky);
