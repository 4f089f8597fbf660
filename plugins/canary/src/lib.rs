//! `canary`: deploy the candidate beside the stable version, then for
//! each step of `steps` send it that share of traffic, wait `interval`,
//! and have the checks analyze the window; after the last step, promote.
//! With no stable version (a first release) there is nothing to split
//! with: all traffic goes to the candidate, which is analyzed once and
//! promoted. A failed or inconclusive analysis is a rollback (the host
//! enforces that too).
//!
//! Stateless: the position comes from `state.step`, the number of actions
//! carried out so far.

use serde::Deserialize;
use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

struct Canary;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "default_steps")]
    steps: Vec<u32>,
    #[serde(default = "default_interval")]
    interval: String,
}

fn default_steps() -> Vec<u32> {
    vec![10, 25, 50, 100]
}

fn default_interval() -> String {
    "10s".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "steps": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 100}, "minItems": 1, "description": "The candidate's share of traffic at each step, rising (default [10, 25, 50, 100])"},
    "interval": {"type": "string", "description": "How long each step runs before its analysis, e.g. \"10s\" (default 10s)"}
  }
}"#;

impl Plugin for Canary {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Strategy);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Strategy for Canary {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        let config: Config = ctx.config()?;
        let interval = weir_sdk::duration_ms(&config.interval)?;
        if config.steps.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Failure::new(
                "`steps` must rise: each share larger than the one before",
            ));
        }
        if let Some(rollback) = state.failed_analysis() {
            return Ok(rollback);
        }
        let steps: Vec<u32> = if state.stable.is_some() {
            config.steps
        } else {
            vec![100]
        };
        if state.step == 0 {
            return Ok(Action::DeployCandidate);
        }
        // Each step is three actions: set the weight, wait, analyze.
        let i = (state.step - 1) / 3;
        Ok(match (steps.get(i as usize), (state.step - 1) % 3) {
            (Some(w), 0) => Action::SetWeight(*w),
            (Some(_), 1) => Action::Wait(interval),
            (Some(_), _) => Action::Analyze,
            (None, _) => Action::Promote,
        })
    }
}

weir_sdk::export_strategy!(Canary);
