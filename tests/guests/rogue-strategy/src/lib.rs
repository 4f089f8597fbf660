//! A strategy that gets a rollout half-way and then traps: deploy, send
//! the candidate 50%, wait a little, panic. Rolling back is then up to
//! the host alone. With `with = { hog = true }` it instead grows its
//! memory until its limit stops it, once the candidate is deployed.

use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

struct Rogue;

impl Plugin for Rogue {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Strategy)
    }
}

impl Strategy for Rogue {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        if state.step == 1 && ctx.config.contains("\"hog\":true") {
            hog();
        }
        match state.step {
            0 => Ok(Action::DeployCandidate),
            1 => Ok(Action::SetWeight(50)),
            2 => Ok(Action::Wait(300)),
            _ => panic!("deliberate panic in the rogue strategy, mid-rollout"),
        }
    }
}

/// Grow memory, 16 MiB at a time, until the host stops it.
fn hog() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&chunks);
    }
}

weir_sdk::export_strategy!(Rogue);
