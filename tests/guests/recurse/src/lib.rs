use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Recurse;

impl Plugin for Recurse {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

/// Frames hold only wasm locals (nothing on Rust's shadow stack in linear
/// memory), so this exhausts the wasm call stack itself; not a tail call,
/// so it is not turned into a loop.
#[inline(never)]
fn deeper(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    deeper(n + 1).wrapping_mul(3).wrapping_add(n)
}

impl Stage for Recurse {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let depth = deeper(0);
        Ok(StageOutput::new().output("depth", depth.to_string()))
    }
}

weir_sdk::export_stage!(Recurse);
