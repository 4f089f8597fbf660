//! Imports declared in the WIT but not offered by this host yet.
//!
//! Each call does nothing and answers `host-error::unavailable` with the
//! capability and the stage named; it never pretends to succeed. Linking
//! them (instead of leaving them out) lets plugins that *could* call them
//! load, and gives the plugin an error it can report instead of a failed
//! instantiation.

use crate::bindings::host::weir::plugin::types::HostError;
use crate::bindings::host::weir::plugin::{metrics, runtime, secrets, types};

/// Per-Store state: just the stage's name, for the message.
#[derive(Debug)]
pub struct Unavailable {
    stage: String,
}

impl Unavailable {
    /// For `stage`.
    pub fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
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

impl metrics::Host for Unavailable {
    async fn query_range(&mut self, _q: metrics::Query) -> Result<Vec<types::MetricSeries>, HostError> {
        Err(self.error("metrics", "no metrics provider is implemented yet"))
    }
}

impl secrets::Host for Unavailable {
    async fn get(&mut self, _name: String) -> Result<String, HostError> {
        Err(self.error("secrets", "no secret store is implemented yet"))
    }
}

impl runtime::Host for Unavailable {
    async fn start(&mut self, _spec: runtime::InstanceSpec) -> Result<runtime::Instance, HostError> {
        Err(self.error("runtime", "the local deployment target is not implemented yet"))
    }

    async fn stop(&mut self, _id: String) -> Result<(), HostError> {
        Err(self.error("runtime", "the local deployment target is not implemented yet"))
    }

    async fn set_weights(&mut self, _service: String, _weights: Vec<(String, u32)>) -> Result<(), HostError> {
        Err(self.error("runtime", "the local deployment target is not implemented yet"))
    }

    async fn instances(&mut self, _service: String) -> Result<Vec<runtime::Instance>, HostError> {
        Err(self.error("runtime", "the local deployment target is not implemented yet"))
    }
}
