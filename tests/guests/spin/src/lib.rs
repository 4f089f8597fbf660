use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Spin;

impl Plugin for Spin {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Spin {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

weir_sdk::export_stage!(Spin);
