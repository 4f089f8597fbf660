use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Fail;

impl Plugin for Fail {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Fail {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        weir_sdk::log::error("about to fail on purpose");
        Err(Failure::new("the stage said no").with_details("line 1 of the details\nline 2 of the details"))
    }
}

weir_sdk::export_stage!(Fail);
