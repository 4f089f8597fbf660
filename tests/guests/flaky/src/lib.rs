use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    succeed_on: u32,
}

struct Flaky;

impl Plugin for Flaky {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Flaky {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        if ctx.attempt < config.succeed_on {
            return Err(Failure::retryable(format!("attempt {} failed", ctx.attempt)));
        }
        Ok(StageOutput::new().output("attempt", ctx.attempt.to_string()))
    }
}

weir_sdk::export_stage!(Flaky);
