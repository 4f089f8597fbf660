//! Metrics providers a pipeline configures (`[providers.NAME]`).

/// A metrics provider the pipeline configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// The local target's router.
    Builtin,
    /// A Prometheus server's HTTP API at this base URL.
    Prometheus(String),
}
