//! `rolling`: replace the stable version's instances with the candidate's
//! in batches. Each batch starts up to `max-surge` new instances above the
//! release's `replicas` and takes down at most `max-unavailable` old ones
//! before their replacements are ready; traffic follows the ready
//! instances; after each batch the new instances have passed their
//! readiness checks, and the checks analyze `interval` of traffic before
//! the next batch. A failed batch rolls back (the host restores the stable
//! version's instances).
//!
//! Stateless: the whole plan is computed from `state` each call and the
//! next action is the one at `state.step`.

use serde::Deserialize;
use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, ScaleTo, Strategy};

struct Rolling;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "one")]
    max_surge: u32,
    #[serde(default)]
    max_unavailable: u32,
    #[serde(default = "default_interval")]
    interval: String,
}

fn one() -> u32 {
    1
}

fn default_interval() -> String {
    "5s".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "max-surge": {"type": "integer", "minimum": 0, "description": "Most instances above `replicas` while a batch starts (default 1)"},
    "max-unavailable": {"type": "integer", "minimum": 0, "description": "Most instances below `replicas` while a batch starts (default 0)"},
    "interval": {"type": "string", "description": "Traffic analyzed after each batch, e.g. \"5s\" (default 5s)"}
  }
}"#;

/// Every action of the rollout, in order.
fn plan(config: &Config, state: &RolloutState) -> Result<Vec<Action>, Failure> {
    let interval = weir_sdk::duration_ms(&config.interval)?;
    let r = state.replicas.max(1);
    if state.stable.is_none() {
        // Nothing to replace: start them all.
        return Ok(vec![
            Action::DeployCandidate,
            Action::SetWeight(100),
            Action::Wait(interval),
            Action::Analyze,
            Action::Promote,
        ]);
    }
    if config.max_surge == 0 && config.max_unavailable == 0 {
        return Err(Failure::new(
            "`max-surge` and `max-unavailable` cannot both be 0: no batch could start",
        ));
    }
    let mut actions = Vec::new();
    let mut new = 0;
    while new < r {
        let down = config.max_unavailable.min(r - new);
        if down > 0 {
            actions.push(Action::Scale(ScaleTo {
                candidate: new,
                stable: r - new - down,
            }));
        }
        new = (new + config.max_surge + down).min(r);
        actions.push(Action::Scale(ScaleTo {
            candidate: new,
            stable: r - new,
        }));
        actions.push(Action::Wait(interval));
        actions.push(Action::Analyze);
    }
    actions.push(Action::Promote);
    Ok(actions)
}

impl Plugin for Rolling {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Strategy);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Strategy for Rolling {
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure> {
        let config: Config = ctx.config()?;
        if let Some(rollback) = state.failed_analysis() {
            return Ok(rollback);
        }
        Ok(plan(&config, &state)?
            .into_iter()
            .nth(state.step as usize)
            .unwrap_or(Action::Promote))
    }
}

weir_sdk::export_strategy!(Rolling);

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: u32) -> RolloutState {
        RolloutState {
            service: "web".into(),
            stable: Some("v1".into()),
            candidate: "v2".into(),
            step: 0,
            candidate_weight: 0,
            elapsed_ms: 0,
            candidate_deployed: false,
            replicas,
            last_analysis: None,
        }
    }

    fn scales(surge: u32, unavailable: u32, replicas: u32) -> Vec<(u32, u32)> {
        let config = Config {
            max_surge: surge,
            max_unavailable: unavailable,
            interval: "1s".into(),
        };
        plan(&config, &state(replicas))
            .expect("plan")
            .into_iter()
            .filter_map(|a| match a {
                Action::Scale(s) => Some((s.candidate, s.stable)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn batches_never_exceed_the_surge_or_the_unavailable_budget() {
        assert_eq!(scales(1, 0, 3), [(1, 2), (2, 1), (3, 0)]);
        assert_eq!(scales(2, 0, 3), [(2, 1), (3, 0)]);
        // One down first, then one up beyond it: 4 replicas, never fewer
        // than 3 ready nor more than 5 running.
        assert_eq!(scales(1, 1, 4), [(0, 3), (2, 2), (2, 1), (4, 0)]);
        for (surge, unavailable, r) in [(1, 0, 5), (2, 1, 5), (0, 2, 4), (3, 3, 4)] {
            let mut last = (0, r);
            for (c, s) in scales(surge, unavailable, r) {
                // The candidate's new instances start before the stable's
                // extra ones stop.
                assert!(c + last.1 <= r + surge, "surge: {last:?} -> {c},{s}");
                // Ready instances are fewest once the extras are gone.
                assert!(
                    c + s >= r - unavailable.min(r),
                    "unavailable: {last:?} -> {c},{s}"
                );
                last = (c, s);
            }
            assert_eq!(last, (r, 0));
        }
    }
}
