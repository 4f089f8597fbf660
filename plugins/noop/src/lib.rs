//! `noop`: succeeds without doing anything. A placeholder while a pipeline
//! is being written, and the floor that benchmarks measure weir's own
//! per-stage cost against.

use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Noop;

impl Plugin for Noop {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage);
        m.config_schema = Some(r#"{"type":"object","additionalProperties":false}"#.into());
        m
    }
}

impl Stage for Noop {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        Ok(StageOutput::new())
    }
}

weir_sdk::export_stage!(Noop);
