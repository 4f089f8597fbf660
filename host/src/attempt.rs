//! One attempt of one stage: what it is asked ([`AttemptRequest`]) and how
//! it went ([`AttemptResult`]). The scheduler makes requests, executors
//! answer them, the stage cache keys on them and replay records keep
//! them; none of those needs the others to speak of an attempt.

use std::time::Duration;

use crate::events::{FailureKind, FindingRecord, TestCounts};

/// One attempt of one stage, with every reference substituted.
#[derive(Debug, Clone)]
pub struct AttemptRequest {
    /// Index into the plan's stages.
    pub stage: usize,
    /// The stage's name.
    pub stage_name: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The `with` table as JSON text.
    pub config: String,
    /// The plugin's environment.
    pub env: Vec<(String, String)>,
    /// Names in `env` whose values are secrets (the plugin sees
    /// placeholders).
    pub secret_env: Vec<String>,
    /// Outputs of every upstream stage: (stage, outputs).
    pub inputs: Vec<(String, Vec<(String, String)>)>,
    /// How long the attempt may run.
    pub timeout: Duration,
    /// The environment it targets.
    pub environment: Option<String>,
    /// What the stage grants.
    pub grants: crate::plan::Grants,
    /// Bubblewrap or not.
    pub sandbox: crate::plan::SandboxChoice,
    /// The quality gate for test runners.
    pub gate: crate::plan::Gate,
    /// Whether the stage may be served from the stage cache.
    pub cache: crate::plan::CachePolicy,
}

/// How an attempt went.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AttemptResult {
    /// `None` when it succeeded.
    pub failure: Option<AttemptFailure>,
    /// Outputs for downstream stages.
    pub outputs: Vec<(String, String)>,
    /// Artifacts: (name, workspace path).
    pub artifacts: Vec<crate::events::ArtifactRecord>,
    /// Summary line.
    pub summary: Option<String>,
    /// An analyzer's findings.
    pub findings: Vec<FindingRecord>,
    /// An analyzer's judgement.
    pub analysis: Option<crate::events::AnalysisRecord>,
    /// A test runner's counts.
    pub tests: Option<TestCounts>,
    /// How programs ran, for plugins that may run them.
    pub sandbox: Option<String>,
    /// A test runner's cases.
    pub cases: Vec<crate::events::TestCaseRecord>,
    /// What the guest used of the sandbox.
    pub usage: Option<crate::events::Usage>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AttemptFailure {
    /// How.
    pub kind: FailureKind,
    /// For people, one or two sentences.
    pub message: String,
    /// Longer detail.
    pub details: Option<String>,
    /// Whether another attempt may help: a plugin says so of its own
    /// failures (`failure.retryable`); of the host's, timeouts, traps and
    /// failed gates may pass next time, named limits, approvals and the
    /// host's own refusals will not. Only these are retried.
    #[serde(default)]
    pub retryable: bool,
}

impl FailureKind {
    /// Whether a failure of this kind, made by the host, is worth another
    /// attempt.
    pub fn retryable(self) -> bool {
        matches!(self, FailureKind::Timeout | FailureKind::Trap | FailureKind::Gate)
    }
}

impl AttemptResult {
    /// A failed attempt.
    pub fn failed(kind: FailureKind, message: impl Into<String>, details: Option<String>) -> Self {
        Self {
            failure: Some(AttemptFailure {
                kind,
                message: message.into(),
                details,
                retryable: kind.retryable(),
            }),
            ..Self::default()
        }
    }

    /// A failure the plugin returned; `retryable` as it said.
    pub fn plugin_failed(message: impl Into<String>, details: Option<String>, retryable: bool) -> Self {
        Self {
            failure: Some(AttemptFailure {
                kind: FailureKind::Plugin,
                message: message.into(),
                details,
                retryable,
            }),
            ..Self::default()
        }
    }
}
