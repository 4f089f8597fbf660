//! Floods the host: `mode = "lines"` prints and logs far past the stage's
//! log limit; `mode = "big-call"` passes one 32 MiB string to the host.

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    mode: String,
}

struct Flood;

impl Plugin for Flood {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Flood {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        match config.mode.as_str() {
            "lines" => {
                let line = "x".repeat(1000);
                for i in 0..10_000 {
                    println!("{i} {line}");
                    weir_sdk::log::info(&line);
                }
                Ok(StageOutput::new().output("survived", "yes"))
            }
            "big-call" => {
                weir_sdk::log::info(&"y".repeat(32 << 20));
                Ok(StageOutput::new().output("survived", "yes"))
            }
            other => Err(Failure::new(format!("unknown mode `{other}`"))),
        }
    }
}

weir_sdk::export_stage!(Flood);
