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
use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

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
            r#"{"type":"object","required":["command"],"additionalProperties":false,"properties":{"command":{"type":"string"},"cwd":{"type":"string"}}}"#
                .into(),
        );
        m
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..].join("\n")
}

impl Stage for Run {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        let cmd = Command {
            program: "sh".into(),
            args: vec!["-c".into(), config.command.clone()],
            cwd: config.cwd,
            env: vec![],
            stdin: None,
            timeout_ms: None,
            quiet: false,
        };
        let exit = weir_sdk::process::run(&cmd).map_err(|e| match e {
            HostError::Denied(m)
            | HostError::Invalid(m)
            | HostError::Failed(m)
            | HostError::Limit(m)
            | HostError::Unavailable(m) => Failure::new(m),
        })?;
        let output = if exit.stderr.is_empty() {
            &exit.stdout
        } else {
            &exit.stderr
        };
        if exit.timed_out {
            return Err(Failure::new(format!(
                "`{}` timed out after {} ms",
                config.command, exit.duration_ms
            ))
            .with_details(tail(output)));
        }
        match (exit.code, exit.signal) {
            (Some(0), _) => Ok(StageOutput::new().output("exit-code", "0").summary(format!(
                "`{}` succeeded in {} ms",
                config.command, exit.duration_ms
            ))),
            (Some(code), _) => Err(
                Failure::new(format!("`{}` exited with code {code}", config.command))
                    .with_details(tail(output)),
            ),
            (None, Some(sig)) => Err(Failure::new(format!(
                "`{}` was killed by signal {sig}",
                config.command
            ))
            .with_details(tail(output))),
            (None, None) => Err(Failure::new(format!(
                "`{}` ended without an exit status",
                config.command
            ))),
        }
    }
}

weir_sdk::export_stage!(Run);
