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

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            },
            rx,
        )
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

/// `event` with every string's secrets replaced by `***`.
fn mask_event(event: Event, masks: &[String]) -> Event {
    fn walk(v: &mut serde_json::Value, masks: &[String]) {
        match v {
            serde_json::Value::String(s) => {
                for m in masks {
                    if s.contains(m.as_str()) {
                        *s = s.replace(m.as_str(), "***");
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, masks)),
            serde_json::Value::Object(o) => {
                let keys: Vec<String> = o.keys().cloned().collect();
                for k in keys {
                    if let Some(mut x) = o.remove(&k) {
                        walk(&mut x, masks);
                        let mut key = serde_json::Value::String(k);
                        walk(&mut key, masks);
                        o.insert(key.as_str().unwrap_or_default().to_string(), x);
                    }
                }
            }
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&event) else {
        return event;
    };
    walk(&mut value, masks);
    serde_json::from_value(value).unwrap_or(event)
}

/// The forms of a secret value masked wherever text leaves weir: the
/// value, its URL encoding, and its base64 encodings at each of the three
/// alignments it can have inside a longer base64 string (the characters
/// that depend on the value alone, so `base64(prefix + value)` is caught).
pub fn masked_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string(), url_encoded(value)];
    let bytes = value.as_bytes();
    if bytes.len() >= 4 {
        for k in 0..3usize {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(bytes);
            let encoded = base64_unpadded(&padded);
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            // Short fragments would mask unrelated text.
            if let Some(fragment) = encoded.get(start..end).filter(|f| f.len() >= 6) {
                forms.push(fragment.to_string());
            }
        }
    }
    forms.retain(|f| !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// Standard base64, no padding.
fn base64_unpadded(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Bytes a URL query keeps as they are: RFC 3986's unreserved characters.
const QUERY_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded as in a URL query (unreserved characters kept).
pub fn url_encoded(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_ESCAPED).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Cut `s` to `width` characters, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    let s = printable(&s).into_owned();
    if s.chars().count() <= width {
        s
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// `s` with control characters (other than tab) and the invisible Unicode
/// characters that reorder or break text (bidi overrides, line and
/// paragraph separators) shown as escapes, so text from a plugin cannot
/// drive a terminal, forge lines or disguise itself.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) && (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_in_its_url_and_base64_forms_too() {
        assert_eq!(url_encoded("a b/c~d_e.f-g+é"), "a%20b%2Fc~d_e.f-g%2B%C3%A9");
        assert_eq!(base64_unpadded(b"hunter2"), "aHVudGVyMg");
        let forms = masked_forms("p@ss word!");
        assert!(forms.contains(&"p%40ss%20word%21".to_string()), "{forms:?}");
        assert!(forms.contains(&"cEBzcyB3b3JkI".to_string()), "{forms:?}");
    }

    #[test]
    fn secrets_are_masked_in_every_string_of_an_event() {
        let (sink, mut rx) = EventSink::masked("r", vec!["hunter2".into(), "a b/c".into()]);
        sink.emit(Event::StageLog {
            stage: "s".into(),
            level: Level::Info,
            message: "token=hunter2 and a%20b%2Fc".into(),
            fields: [("hunter2".to_string(), "x hunter2".to_string())].into(),
        });
        let Event::StageLog { message, fields, .. } = rx.try_recv().unwrap().event else {
            panic!("not a log line")
        };
        assert_eq!(message, "token=*** and ***");
        assert_eq!(fields.get("***").map(String::as_str), Some("x ***"));
    }
}
