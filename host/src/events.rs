//! What happens during a run, as a stream of events.
//!
//! The scheduler and the capabilities emit [`Event`]s into an
//! [`EventSink`]; reporters (the live view, `--json`) consume them. Nothing
//! else flows from a run to the outside, so what a person sees and what a
//! machine reads are the same facts.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod masking;
mod records;
use records::is_zero;
mod text;

use masking::mask_event;
pub use masking::{masked_forms, url_encoded};
pub use records::*;
pub use text::{fit, printable};

/// The version of the event schema (docs/events.md). Adding an event or
/// an optional field keeps it; renaming or removing one, or changing a
/// field's meaning, bumps it.
pub const EVENTS_VERSION: u32 = 1;

/// Something that happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// The event schema's version ([`EVENTS_VERSION`]): readers check
        /// it on the first line. docs/events.md documents each version.
        version: u32,
        /// The pipeline's name.
        pipeline: String,
        /// Stage names in file order.
        stages: Vec<String>,
        /// The workspace directory on the host.
        workspace: String,
        /// The tenant.
        tenant: String,
        /// How many times the run has been resumed (`weir run --resume`):
        /// absent on a fresh run. A resumed run's stream has one
        /// `run_started` per start, under the same run id.
        #[serde(default, skip_serializing_if = "is_zero")]
        resume: u32,
        /// Each stage's `needs`, for stages that have any: the graph a
        /// dashboard draws.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        needs: BTreeMap<String, Vec<String>>,
    },
    /// A stage will not run.
    StageSkipped {
        /// The stage.
        stage: String,
        /// Why, for people.
        reason: String,
    },
    /// Whether a stage's result may come from the stage cache, and whether
    /// it did. Emitted once per stage that is about to run, before its
    /// first attempt.
    StageCache {
        /// The stage.
        stage: String,
        /// `hit`, `miss` or `off`.
        status: CacheStatus,
        /// The cache key (sha256, hex) when the stage is cacheable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// What went into the key, part by part (digests), for
        /// `--explain-cache`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        parts: BTreeMap<String, String>,
        /// Why the cache is off for this stage, or, on a miss, what differs
        /// from the newest entry this stage has.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reasons: Vec<String>,
    },
    /// An attempt of a stage began.
    StageStarted {
        /// The stage.
        stage: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// The plugin's name and version.
        plugin: String,
    },
    /// A plugin logged a line (its own or what it printed).
    StageLog {
        /// The stage.
        stage: String,
        /// The level.
        level: Level,
        /// The line, secrets masked.
        message: String,
        /// Structured fields.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        fields: BTreeMap<String, String>,
    },
    /// A plugin reported progress.
    StageProgress {
        /// The stage.
        stage: String,
        /// Units done.
        done: u64,
        /// Units in all, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        /// What is being done.
        message: String,
    },
    /// An attempt failed and the stage will be tried again in a fresh Store.
    StageRetrying {
        /// The stage.
        stage: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// A stage ended.
    StageFinished {
        /// The stage.
        stage: String,
        /// The plugin's name and version, when it was known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
        /// How it ended.
        status: StageStatus,
        /// How it failed, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<FailureKind>,
        /// Attempts made.
        attempts: u32,
        /// Wall time of all attempts.
        duration_ms: u64,
        /// Its outputs.
        outputs: BTreeMap<String, String>,
        /// Artifacts it kept, as stored.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<ArtifactRecord>,
        /// Its summary line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// The error, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// More detail on the error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<String>,
        /// An analyzer's findings.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        findings: Vec<FindingRecord>,
        /// An analyzer's verdict, score and counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Box<AnalysisRecord>>,
        /// A test runner's counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests: Option<TestCounts>,
        /// How its programs ran (`bubblewrap`, or why not), for plugins
        /// that declare `process`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
        /// A test runner's cases.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cases: Vec<TestCaseRecord>,
        /// What its guest used of the sandbox, over all its attempts (not
        /// for deploy stages, whose guests are many).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// Set when the stage did not run now: its result was reused from
        /// before a resume, or served from the stage cache.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reused: Option<Box<Reused>>,
    },
    /// A step of a deploy stage's rollout.
    Rollout {
        /// The stage.
        stage: String,
        /// The service.
        service: String,
        /// The candidate version.
        version: String,
        /// Actions carried out so far.
        step: u32,
        /// What happened.
        phase: RolloutPhase,
        /// The action, the analysis's summary or the reason, for people.
        message: String,
        /// The traffic split after this step, version to weight, when it
        /// changed.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        weights: BTreeMap<String, u32>,
        /// An analysis's verdict: pass, warn, fail, inconclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdict: Option<String>,
        /// For `rolled_back`: milliseconds from the failure to all traffic
        /// back on the stable release.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_ms: Option<u64>,
        /// For `analysis`: what each version answered in the window just
        /// judged, measured by the local target's router.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        traffic: BTreeMap<String, Traffic>,
    },
    /// A stage is ready but waits: for a person's approval, or for a
    /// concurrency group another run holds.
    StageWaiting {
        /// The stage.
        stage: String,
        /// What it waits for, for people.
        message: String,
        /// Set when it waits for approval.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalRequest>,
        /// Set when it waits for a concurrency group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// The run waits for a concurrency group another run holds.
    RunWaiting {
        /// What it waits for, for people.
        message: String,
        /// The group.
        group: String,
    },
    /// An approval a stage waited for was decided.
    ApprovalDecided {
        /// The stage.
        stage: String,
        /// The protected environment.
        environment: String,
        /// `approved`, `rejected` or `timed_out`.
        decision: String,
        /// Who decided (absent for a timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The reason given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The run ended.
    RunFinished {
        /// How.
        status: RunStatus,
        /// Wall time.
        duration_ms: u64,
        /// Stages per status.
        counts: BTreeMap<String, u32>,
    },
}

/// What one version of a service answered in a window of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    /// Requests answered.
    pub requests: u64,
    /// Of those, 5xx answers and failed upstreams.
    pub errors: u64,
    /// The 99th-percentile latency in milliseconds, when it had requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// What a stage waiting for approval asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The protected environment.
    pub environment: String,
    /// Who may approve; empty means anyone.
    pub approvers: Vec<String>,
    /// When the wait ends and the stage fails, ms since the Unix epoch.
    pub deadline_ms: u64,
}

/// An event with when and which run it belongs to; one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The run's id.
    pub run: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Where events go. Cheap to clone; sending never blocks. Volume is bounded
/// by the per-stage log limit, not by back-pressure.
#[derive(Debug, Clone)]
pub struct EventSink {
    run: std::sync::Arc<str>,
    tx: mpsc::UnboundedSender<EventRecord>,
    masks: std::sync::Arc<[String]>,
    /// Notices already given in this run (see [`EventSink::first_time`]).
    said: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<&'static str>>>,
}

impl EventSink {
    /// A sink for run `run` and the receiving end for a reporter.
    pub fn channel(run: &str) -> (Self, mpsc::UnboundedReceiver<EventRecord>) {
        Self::masked(run, Vec::new())
    }

    /// As [`EventSink::channel`], replacing each of `secrets` (and its
    /// URL-encoded and base64 forms, see [`masked_forms`]) with `***` in every string of every event, before
    /// anything stores or shows it.
    pub fn masked(run: &str, secrets: Vec<String>) -> (Self, mpsc::UnboundedReceiver<EventRecord>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut secrets: Vec<String> = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| masked_forms(s))
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        (
            Self {
                run: run.into(),
                tx,
                masks: secrets.into(),
                said: Default::default(),
            },
            rx,
        )
    }

    /// Whether the notice `what` has not been given yet in this run (and
    /// from now on, it has): for what is true of the whole run, such as a
    /// missing sandbox, which is said once rather than once per program.
    pub fn first_time(&self, what: &'static str) -> bool {
        match self.said.lock() {
            Ok(mut said) => said.insert(what),
            Err(_) => true,
        }
    }

    /// Record `event` now. A closed receiver (the reporter gone) drops it.
    pub fn emit(&self, event: Event) {
        let event = if self.masks.is_empty() {
            event
        } else {
            mask_event(event, &self.masks)
        };
        let _ = self.tx.send(EventRecord {
            time_ms: now_ms(),
            run: self.run.to_string(),
            event,
        });
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod said_once_tests {
    use super::EventSink;

    #[test]
    fn a_notice_is_given_once_per_run_across_its_stages() {
        let (a, _rx) = EventSink::channel("r1");
        let b = a.clone();
        assert!(a.first_time("no-bubblewrap"));
        assert!(!b.first_time("no-bubblewrap"), "a clone is the same run");
        assert!(b.first_time("other"));
        let (c, _rx) = EventSink::channel("r2");
        assert!(c.first_time("no-bubblewrap"), "another run says it again");
    }
}
