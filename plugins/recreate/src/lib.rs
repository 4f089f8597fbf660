//! `recreate`: stop every instance of the stable version, then start the
//! candidate's and send them all traffic, then analyze and promote. The
//! service is down between the two (by design: for services that cannot
//! run two versions at once). A failed analysis rolls back: the host
//! starts the stable version's instances again.

use serde::Deserialize;
use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, ScaleTo, Strategy};

struct Recreate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "default_verify")]
    verify: String,
}

fn default_verify() -> String {
    "5s".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "verify": {"type": "string", "description": "Traffic analyzed before the promotion, e.g. \"5s\" (default 5s)"}
  }
}"#;

impl Plugin for Recreate {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Strategy);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Strategy for Recreate {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        let config: Config = ctx.config()?;
        if let Some(rollback) = state.failed_analysis() {
            return Ok(rollback);
        }
        let mut plan = Vec::new();
        if state.stable.is_some() {
            plan.push(Action::Scale(ScaleTo {
                candidate: 0,
                stable: 0,
            }));
        }
        plan.extend([
            Action::DeployCandidate,
            Action::SetWeight(100),
            Action::Wait(weir_sdk::duration_ms(&config.verify)?),
            Action::Analyze,
            Action::Promote,
        ]);
        Ok(plan
            .into_iter()
            .nth(state.step as usize)
            .unwrap_or(Action::Promote))
    }
}

weir_sdk::export_strategy!(Recreate);
