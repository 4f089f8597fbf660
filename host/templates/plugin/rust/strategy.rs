//! __NAME__: a weir rollout strategy. It deploys the candidate, then for
//! each of `steps` sends it that share of traffic, waits `interval` and has
//! the stage's checks analyze the window; after the last step it promotes
//! the candidate. A failed or inconclusive check rolls it back. A first
//! release (nothing stable to share traffic with) gets all the traffic at
//! once and is analyzed before it is promoted.

use serde::Deserialize;
use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

/// The deploy stage's `strategy = { uses = "...", with = { ... } }` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The candidate's share of traffic at each step, rising.
    #[serde(default = "default_steps")]
    steps: Vec<u32>,
    /// How long each step's traffic runs before the checks look, e.g. "30s".
    #[serde(default = "default_interval")]
    interval: String,
}

fn default_steps() -> Vec<u32> {
    vec![20, 50, 100]
}

fn default_interval() -> String {
    "30s".into()
}

/// What comes next, without the checks' verdicts.
#[derive(Debug, PartialEq)]
enum Next {
    Deploy,
    Weight(u32),
    Wait,
    Analyze,
    Promote,
}

/// Stateless: the position comes from how many actions were carried out.
/// After the deploy, each step is three actions: weight, wait, analyze.
fn next(steps: &[u32], first_release: bool, actions: u32) -> Next {
    if actions == 0 {
        return Next::Deploy;
    }
    let steps = if first_release { &[100][..] } else { steps };
    let i = ((actions - 1) / 3) as usize;
    match (steps.get(i), (actions - 1) % 3) {
        (Some(w), 0) => Next::Weight(*w),
        (Some(_), 1) => Next::Wait,
        (Some(_), _) => Next::Analyze,
        (None, _) => Next::Promote,
    }
}

struct Plugin_;

impl Plugin for Plugin_ {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Strategy)
    }
}

impl Strategy for Plugin_ {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        let config: Config = ctx.config()?;
        if config.steps.is_empty() || config.steps.windows(2).any(|w| w[0] >= w[1]) || config.steps.iter().any(|&s| s > 100) {
            return Err(Failure::new(format!(
                "steps = {:?} must rise, each a share of traffic from 1 to 100",
                config.steps
            )));
        }
        let interval = weir_sdk::duration_ms(&config.interval)?;
        if let Some(rollback) = state.failed_analysis() {
            return Ok(rollback);
        }
        Ok(match next(&config.steps, state.stable.is_none(), state.step) {
            Next::Deploy => Action::DeployCandidate,
            Next::Weight(w) => Action::SetWeight(w),
            Next::Wait => Action::Wait(interval),
            Next::Analyze => Action::Analyze,
            Next::Promote => Action::Promote,
        })
    }
}

weir_sdk::export_strategy!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_is_a_weight_a_wait_and_a_check() {
        let steps = [20, 100];
        let plan: Vec<Next> = (0..8).map(|n| next(&steps, false, n)).collect();
        assert_eq!(
            plan,
            [
                Next::Deploy,
                Next::Weight(20),
                Next::Wait,
                Next::Analyze,
                Next::Weight(100),
                Next::Wait,
                Next::Analyze,
                Next::Promote
            ]
        );
        // A first release has nothing to share traffic with.
        assert_eq!(next(&steps, true, 1), Next::Weight(100));
        assert_eq!(next(&steps, true, 4), Next::Promote);
    }
}
