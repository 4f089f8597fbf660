//! Runs the program its config names; returns the exit as outputs, or the
//! host's refusal as a failure.

use serde::Deserialize;
use weir_sdk::process::Command;
use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: Vec<(String, String)>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

struct Exec;

impl Plugin for Exec {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Process])
    }
}

impl Stage for Exec {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let cmd = Command {
            program: c.program,
            args: c.args,
            cwd: c.cwd,
            env: c.env,
            stdin: c.stdin.map(String::into_bytes),
            timeout_ms: c.timeout_ms,
            quiet: false,
        };
        let exit = weir_sdk::process::run(&cmd).map_err(|e| {
            Failure::new(match e {
                HostError::Denied(m) => format!("denied: {m}"),
                HostError::Invalid(m) => format!("invalid: {m}"),
                HostError::Failed(m) => format!("failed: {m}"),
                HostError::Limit(m) => format!("limit: {m}"),
                HostError::Unavailable(m) => format!("unavailable: {m}"),
            })
        })?;
        Ok(StageOutput::new()
            .output("code", exit.code.map_or("none".into(), |c| c.to_string()))
            .output("signal", exit.signal.map_or("none".into(), |s| s.to_string()))
            .output("stdout", String::from_utf8_lossy(&exit.stdout).into_owned())
            .output("stderr", String::from_utf8_lossy(&exit.stderr).into_owned())
            .output("stdout_bytes", exit.stdout.len().to_string())
            .output("stdout_truncated", exit.stdout_truncated.to_string())
            .output("timed_out", exit.timed_out.to_string()))
    }
}

weir_sdk::export_stage!(Exec);
