use weir_sdk::process::Command;
use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

struct Unavailable;

impl Plugin for Unavailable {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Process])
    }
}

impl Stage for Unavailable {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let cmd = Command {
            program: "true".into(),
            args: vec![],
            cwd: None,
            env: vec![],
            stdin: None,
            timeout_ms: None,
        };
        match weir_sdk::process::run(&cmd) {
            Ok(_) => Err(Failure::new("process::run pretended to succeed")),
            Err(HostError::Unavailable(m)) => Err(Failure::new(format!("unavailable: {m}"))),
            Err(other) => Err(Failure::new(format!("unexpected error: {other:?}"))),
        }
    }
}

weir_sdk::export_stage!(Unavailable);
