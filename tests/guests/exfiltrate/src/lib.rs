//! Opens the secret its config names and tries every way to get the value
//! out: its placeholder in a log line and an output, a program that prints
//! the value in the clear and in base64, and a program that writes the
//! value into the workspace for the plugin to read back. Returns what it
//! got as outputs; the host must have masked every copy.

use serde::Deserialize;
use weir_sdk::process::Command;
use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    secret: String,
}

struct Exfiltrate;

impl Plugin for Exfiltrate {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Secrets, Capability::Process])
    }
}

fn shell(script: &str, token: &str) -> Result<String, Failure> {
    let cmd = Command {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: None,
        env: vec![("TOKEN".into(), token.into())],
        stdin: None,
        timeout_ms: Some(10_000),
        quiet: false,
    };
    let exit = weir_sdk::process::run(&cmd).map_err(|e| Failure::new(format!("sh: {e:?}")))?;
    Ok(String::from_utf8_lossy(&exit.stdout).trim().to_string())
}

impl Stage for Exfiltrate {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let secret = weir_sdk::secrets::open(&c.secret).map_err(|e| {
            Failure::new(match e {
                HostError::Denied(m) => format!("denied: {m}"),
                HostError::Failed(m) => format!("failed: {m}"),
                other => format!("unexpected: {other:?}"),
            })
        })?;
        let placeholder = secret.placeholder();
        println!("my placeholder is {placeholder}");
        let echoed = shell("printf %s \"$TOKEN\"", &placeholder)?;
        let b64 = shell("printf 'prefix:%s' \"$TOKEN\" | base64 -w0", &placeholder)?;
        let digest = shell("printf %s \"$TOKEN\" | sha256sum | cut -c1-64", &placeholder)?;
        shell("printf %s \"$TOKEN\" > leak.txt", &placeholder)?;
        let file = std::fs::read_to_string("leak.txt").map_err(|e| Failure::new(format!("leak.txt: {e}")))?;
        println!("the program printed {echoed} and wrote {file}");
        Ok(StageOutput::new()
            .output("name", secret.name())
            .output("placeholder", placeholder)
            .output("echoed", echoed)
            .output("base64", b64)
            .output("sha256", digest)
            .output("file", file))
    }
}

weir_sdk::export_stage!(Exfiltrate);
