//! `blue-green`: bring up the full new set (green) beside the serving one
//! (blue), let the checks verify green on a share of traffic
//! (`preview-weight`, 0 to skip), switch all traffic at once, keep blue
//! running for `keep-old` so a rollback is one traffic switch back, have
//! the checks judge green under full traffic, then promote (which stops
//! blue).
//!
//! Stateless: the position comes from `state.step`.

use serde::Deserialize;
use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

struct BlueGreen;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default)]
    preview_weight: u32,
    #[serde(default = "default_wait")]
    verify: String,
    #[serde(default = "default_wait")]
    keep_old: String,
}

fn default_wait() -> String {
    "10s".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "preview-weight": {"type": "integer", "minimum": 0, "maximum": 99, "description": "A share of traffic green gets for verification before the switch; 0 verifies nothing before it (default 0)"},
    "verify": {"type": "string", "description": "How long the preview runs before its analysis (default 10s)"},
    "keep-old": {"type": "string", "description": "How long blue keeps running after the switch, for an instant rollback (default 10s)"}
  }
}"#;

impl Plugin for BlueGreen {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Strategy);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Strategy for BlueGreen {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        let config: Config = ctx.config()?;
        if let Some(rollback) = state.failed_analysis() {
            return Ok(rollback);
        }
        let mut plan = vec![Action::DeployCandidate];
        if config.preview_weight > 0 && state.stable.is_some() {
            plan.extend([
                Action::SetWeight(config.preview_weight),
                Action::Wait(weir_sdk::duration_ms(&config.verify)?),
                Action::Analyze,
            ]);
        }
        plan.extend([
            Action::SetWeight(100),
            Action::Wait(weir_sdk::duration_ms(&config.keep_old)?),
            Action::Analyze,
            Action::Promote,
        ]);
        Ok(plan
            .into_iter()
            .nth(state.step as usize)
            .unwrap_or(Action::Promote))
    }
}

weir_sdk::export_strategy!(BlueGreen);
