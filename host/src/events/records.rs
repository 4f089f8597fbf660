//! The plain records events carry: statuses, kinds, counts.

use serde::{Deserialize, Serialize};

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// It did its work.
    Succeeded,
    /// It failed; [`FailureKind`] says how.
    Failed,
    /// It did not run (`when`, or a stage it needs did not succeed).
    Skipped,
    /// The run was cancelled before or while it ran.
    Cancelled,
}

/// Why a stage failed: the plugin saying no is not the host breaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The plugin returned a failure.
    Plugin,
    /// An analyzer's verdict or a test report failed the stage.
    Gate,
    /// The plugin trapped (panicked, hit `unreachable`, overflowed its stack).
    Trap,
    /// The attempt ran past its `timeout`.
    Timeout,
    /// The plugin hit a named resource limit.
    Limit,
    /// The host could not run the plugin (instantiation, a missing input).
    Host,
    /// A deploy stage's rollout was abandoned and the service put back on
    /// its stable release.
    RolledBack,
    /// The stage needed approval and it was rejected or timed out.
    Approval,
}

/// Where a rollout is, in a `rollout` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// The rollout began.
    Started,
    /// An action the strategy chose was carried out.
    Action,
    /// The checks ran.
    Analysis,
    /// The candidate became the stable release.
    Promoted,
    /// The rollout was abandoned and the stable release restored.
    RolledBack,
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage succeeded or was skipped by `when`.
    Succeeded,
    /// At least one stage failed.
    Failed,
    /// The run was cancelled (Ctrl-C).
    Cancelled,
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detail.
    Debug,
    /// Progress.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

pub use weir_pipeline::findings::FindingRecord;

/// How an analyzer stage was judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// The verdict that decided the stage: the gate's when the stage has
    /// one, else the plugin's (`pass`, `warn`, `fail`, `inconclusive`).
    pub verdict: String,
    /// The plugin's own verdict.
    pub plugin_verdict: String,
    /// `max(0, 100 − 10·critical − 5·high − 2·medium)`.
    pub score: f64,
    /// The plugin's own score, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_score: Option<f64>,
    /// Findings per severity.
    pub counts: crate::findings::SeverityCounts,
    /// Why the gate failed, one reason per broken bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_failed: Vec<String>,
    /// Findings the plugin returned beyond the host's limit, dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a stage's guest used of the sandbox, over all its attempts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Fuel (wasm instructions, roughly) it burned; only counted when the
    /// tenant sets a `fuel` limit (metering costs time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The most linear memory it held at once, in bytes.
    pub peak_memory_bytes: u64,
}

impl Usage {
    /// Add another attempt's use: fuel adds up, memory is the peak.
    pub fn add(&mut self, other: Usage) {
        self.fuel = match (self.fuel, other.fuel) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
    }
}

/// Test counts of a test-runner stage.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestCounts {
    /// Passed cases.
    pub passed: u32,
    /// Failed cases.
    pub failed: u32,
    /// Skipped cases.
    pub skipped: u32,
    /// Cases that could not run.
    pub errored: u32,
}

/// A file a stage kept, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The name the stage gave it.
    pub name: String,
    /// Its path in the workspace.
    pub path: String,
    /// sha256 of its contents, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where the store keeps the copy.
    pub stored: String,
}

/// Whether the stage cache served a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Served from the cache; the plugin did not run.
    Hit,
    /// Cacheable, but no entry has this key; the stage runs and its
    /// result is stored if it succeeds.
    Miss,
    /// Not cacheable (see `reasons`).
    Off,
}

/// Where the result of a stage that did not run now came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Reused {
    /// The run was resumed and this stage had succeeded before.
    Resume,
    /// The stage cache: an earlier run's stage with the same key.
    Cache {
        /// The cache key.
        key: String,
        /// The run whose stage produced the result.
        run: String,
    },
    /// `weir dev`: upstream of the stage being developed, taken from the
    /// run before.
    Dev {
        /// The run whose stage produced the result.
        run: String,
    },
}

/// One test case, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestCaseRecord {
    /// Suite or class.
    pub suite: String,
    /// Name.
    pub name: String,
    /// `passed`, `failed`, `skipped` or `errored`.
    pub status: String,
    /// Milliseconds.
    pub duration_ms: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}
