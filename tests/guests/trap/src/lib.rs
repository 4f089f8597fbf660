use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Trap;

impl Plugin for Trap {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Trap {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        panic!("deliberate panic in the trap guest");
    }
}

weir_sdk::export_stage!(Trap);
