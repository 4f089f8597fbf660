//! A stage built straight from the frozen contract, `wit/since_v0.1.0`,
//! with wit-bindgen and no weir-sdk: what a 0.1 plugin from any toolchain
//! looks like to the host. It imports nothing, says hello with the run's
//! id as an output, and fails when its `with` asks it to (so the test sees
//! a 0.1 failure record come through too).

wit_bindgen::generate!({
    path: "../../../wit/since_v0.1.0",
    world: "weir:plugin/stage-plugin",
});

use exports::weir::plugin::plugin::Guest as Describe;
use exports::weir::plugin::stage::Guest as Stage;
use weir::plugin::types::{Context, Failure, Manifest, PluginKind, StageOutput};

struct Frozen;

impl Describe for Frozen {
    fn describe() -> Manifest {
        Manifest {
            name: "frozen-v0-1".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Stage,
            description: "a stage built from wit/since_v0.1.0".into(),
            capabilities: Vec::new(),
            config_schema: None,
        }
    }
}

impl Stage for Frozen {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        if ctx.config.contains("\"fail\":true") {
            return Err(Failure {
                message: "asked to fail".into(),
                details: None,
                retryable: false,
            });
        }
        Ok(StageOutput {
            outputs: vec![("contract".into(), "0.1.0".into()), ("run".into(), ctx.run_id)],
            artifacts: Vec::new(),
            summary: Some("built from the frozen 0.1.0 contract".into()),
        })
    }
}

export!(Frozen);
