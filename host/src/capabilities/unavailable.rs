//! The shared `types` interface, which has no functions of its own, and
//! helpers for the replay tape's metric answers.
//!
//! Every interface the WIT declares is offered by this host now; a future
//! interface that is not would be linked here, answering
//! `host-error::unavailable` with the capability and stage named and
//! never pretending to succeed.

use crate::bindings::host::weir::plugin::types;

/// Per-Store state of the `types` interface: none.
#[derive(Debug, Default)]
pub struct Unavailable;

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
