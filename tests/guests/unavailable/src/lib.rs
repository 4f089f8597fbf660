//! Calls `secrets`, which this host does not offer yet.

use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

struct Unavailable;

impl Plugin for Unavailable {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Secrets])
    }
}

impl Stage for Unavailable {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        match weir_sdk::secrets::get("api-token") {
            Ok(_) => Err(Failure::new("secrets::get pretended to succeed")),
            Err(HostError::Unavailable(m)) => Err(Failure::new(format!("unavailable: {m}"))),
            Err(other) => Err(Failure::new(format!("unexpected error: {other:?}"))),
        }
    }
}

weir_sdk::export_stage!(Unavailable);
