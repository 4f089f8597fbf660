use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Hog;

impl Plugin for Hog {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Hog {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every chunk so nothing is optimised away.
            chunks.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&chunks);
        }
    }
}

weir_sdk::export_stage!(Hog);
