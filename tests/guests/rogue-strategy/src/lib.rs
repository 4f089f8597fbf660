//! A strategy that gets a rollout half-way and then traps: deploy, send
//! the candidate 50%, wait a little, panic. Rolling back is then up to
//! the host alone.

use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

struct Rogue;

impl Plugin for Rogue {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Strategy)
    }
}

impl Strategy for Rogue {
    fn next(_ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        match state.step {
            0 => Ok(Action::DeployCandidate),
            1 => Ok(Action::SetWeight(50)),
            2 => Ok(Action::Wait(300)),
            _ => panic!("deliberate panic in the rogue strategy, mid-rollout"),
        }
    }
}

weir_sdk::export_strategy!(Rogue);
