//! `run`: the plugin behind `run = "COMMAND"`.
//!
//! ```toml
//! [stages.build]
//! run = "cargo build --release"
//! env = { PATH = "/usr/bin:/bin" }
//! ```
//!
//! The command runs through `sh -c` in the workspace, under the same rules
//! as any program (cleared environment, timeout, rlimits, bubblewrap). Its
//! output streams into the stage's log; a non-zero exit fails the stage
//! with the end of its output. `sh` is granted implicitly; what the shell
//! starts is up to the command.

use serde::Deserialize;
use weir_sdk::process::Command;
use weir_sdk::{Capability, Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    command: String,
    #[serde(default)]
    cwd: Option<String>,
}

/// Lines of output quoted in a failure.
const TAIL: usize = 20;

struct Run;

impl Plugin for Run {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","required":["command"],"additionalProperties":false,"properties":{"command":{"type":"string","x-weir-shell":true},"cwd":{"type":"string"}}}"#
                .into(),
        );
        m
    }
}

impl Stage for Run {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        let mut cmd = Command::new("sh").args(["-c", config.command.as_str()]);
        if let Some(dir) = config.cwd {
            cmd = cmd.cwd(dir);
        }
        let exit = weir_sdk::process::run(&cmd)?;
        if !exit.success() {
            // A command may fail for a passing reason (a flaky network, a busy
            // lock): worth another attempt when the stage has `retries`.
            return Err(
                Failure::retryable(format!("`{}` {}", config.command, exit.describe()))
                    .with_details(exit.tail(TAIL)),
            );
        }
        Ok(StageOutput::new().output("exit-code", "0").summary(format!(
            "`{}` succeeded in {} ms",
            config.command, exit.duration_ms
        )))
    }
}

weir_sdk::export_stage!(Run);
