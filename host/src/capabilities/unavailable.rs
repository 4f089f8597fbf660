//! Imports declared in the WIT but not offered by this host yet.
//!
//! Each call does nothing and answers `host-error::unavailable` with the
//! capability and the stage named; it never pretends to succeed. Linking
//! them (instead of leaving them out) lets plugins that *could* call them
//! load, and gives the plugin an error it can report instead of a failed
//! instantiation.

use super::tape::{self, Tape};
use crate::bindings::host::weir::plugin::types::HostError;
use crate::bindings::host::weir::plugin::{secrets, types};

/// Per-Store state: the stage's name, for the message, and the replay
/// tape (what a plugin asked and was told is recorded like any answer).
#[derive(Debug)]
pub struct Unavailable {
    stage: String,
    tape: Tape,
}

impl Unavailable {
    /// For `stage`.
    pub fn new(stage: &str, tape: Tape) -> Self {
        Self {
            stage: stage.to_string(),
            tape,
        }
    }

    fn error(&self, capability: &str, what: &str) -> HostError {
        HostError::Unavailable(format!(
            "the `{capability}` capability is unavailable on this weir host ({what}); stage `{}` called `{capability}` and nothing was done",
            self.stage
        ))
    }
}

impl types::Host for Unavailable {}

/// Metric series from their recorded JSON.
pub fn series_of(v: &serde_json::Value) -> Vec<types::MetricSeries> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    v.as_array()
        .map(|all| {
            all.iter()
                .map(|s| types::MetricSeries {
                    name: text(&s["name"]),
                    labels: s["labels"]
                        .as_array()
                        .map(|l| l.iter().map(|p| (text(&p[0]), text(&p[1]))).collect())
                        .unwrap_or_default(),
                    points: s["points"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .map(|p| types::MetricPoint {
                                    timestamp_ms: p[0].as_u64().unwrap_or(0),
                                    value: p[1].as_f64().unwrap_or(f64::NAN),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl secrets::Host for Unavailable {
    async fn get(&mut self, name: String) -> Result<String, HostError> {
        let request = serde_json::json!({ "name": name });
        if let Some(answer) = self.tape.answer("secrets.get", &request) {
            return Err(tape::error_of(&answer).unwrap_or_else(|| {
                HostError::Unavailable(format!(
                    "replay: secret `{name}` was read in the recorded run, but secrets are never recorded"
                ))
            }));
        }
        let e = self.error("secrets", "no secret store is implemented yet");
        self.tape.record("secrets.get", request, tape::error_answer(&e));
        Err(e)
    }
}
