use std::io::Write;

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    outputs: std::collections::BTreeMap<String, String>,
    message: Option<String>,
    /// Artifacts to return as they are (name to path), valid or not.
    artifacts: std::collections::BTreeMap<String, String>,
}

struct Record;

impl Plugin for Record {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Record {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        let mut trace = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("trace.log")
            .map_err(|e| Failure::new(format!("open trace.log: {e}")))?;
        writeln!(trace, "{}", ctx.stage).map_err(|e| Failure::new(e.to_string()))?;
        std::fs::write(format!("{}.out", ctx.stage), ctx.config.as_bytes())
            .map_err(|e| Failure::new(e.to_string()))?;
        weir_sdk::log::info(&format!("hello from {}", ctx.stage));
        if let Some(m) = &config.message {
            weir_sdk::log::info(m);
        }
        let mut out = StageOutput::new();
        for (name, path) in config.artifacts {
            out = out.artifact(name, path);
        }
        for (k, v) in config.outputs {
            out = out.output(k, v);
        }
        let mut inputs: Vec<String> = ctx
            .inputs
            .iter()
            .flat_map(|u| u.outputs.iter().map(move |(k, v)| format!("{}.{k}={v}", u.stage)))
            .collect();
        inputs.sort();
        let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(out
            .output("inputs", inputs.join(","))
            .output("env", env.join(","))
            .output("attempt", ctx.attempt.to_string())
            .summary(format!("recorded {}", ctx.stage)))
    }
}

weir_sdk::export_stage!(Record);
