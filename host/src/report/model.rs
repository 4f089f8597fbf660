//! What the human reporters know about each stage, folded from events.

use std::collections::VecDeque;
use std::time::Instant;

use crate::events::{Event, FailureKind, Level, StageStatus};

/// Log lines kept per stage to show with a failure.
pub const TAIL_LINES: usize = 8;

/// One stage as the reporter sees it.
#[derive(Debug, Clone)]
pub struct StageView {
    /// The stage.
    pub name: String,
    /// Where it is.
    pub state: ViewState,
    /// The latest line it logged (or its progress).
    pub last_line: Option<String>,
    /// The latest lines, for failures.
    pub tail: VecDeque<String>,
    /// An analyzer's findings, once it finished.
    pub findings: Vec<crate::events::FindingRecord>,
    /// An analyzer's judgement, once it finished.
    pub analysis: Option<crate::events::AnalysisRecord>,
    /// How its programs ran, when its plugin may run programs.
    pub sandbox: Option<String>,
    /// What the stage cache said about it.
    pub cache: Option<CacheView>,
    /// Set when its result was reused rather than produced now.
    pub reused: Option<crate::events::Reused>,
}

/// A stage's `stage_cache` event.
#[derive(Debug, Clone)]
pub struct CacheView {
    /// Hit, miss or off.
    pub status: crate::events::CacheStatus,
    /// The key.
    pub key: Option<String>,
    /// Its parts.
    pub parts: std::collections::BTreeMap<String, String>,
    /// Why.
    pub reasons: Vec<String>,
}

/// Where a stage is.
#[derive(Debug, Clone)]
pub enum ViewState {
    /// Not started.
    Waiting,
    /// Running since then.
    Running {
        /// Which attempt.
        attempt: u32,
        /// Since when.
        since: Instant,
    },
    /// Ended.
    Done {
        /// How.
        status: StageStatus,
        /// How it failed.
        failure: Option<FailureKind>,
        /// Wall time.
        duration_ms: u64,
        /// Attempts made.
        attempts: u32,
        /// Summary or error or skip reason.
        note: Option<String>,
        /// Error details.
        details: Option<String>,
    },
}

/// All stages.
#[derive(Debug, Clone)]
pub struct RunView {
    /// In plan order.
    pub stages: Vec<StageView>,
    /// Show debug lines.
    pub verbose: bool,
    /// The workspace path, once known.
    pub workspace: Option<String>,
    /// The pipeline's name.
    pub pipeline: String,
    /// The run id.
    pub run: String,
    /// Where the JUnit report goes, as shown.
    pub junit: Option<String>,
    /// Where the SARIF report goes, as shown.
    pub sarif: Option<String>,
    /// Where the run's provenance goes (written only when the run made
    /// artifacts).
    pub provenance: Option<std::path::PathBuf>,
    /// Explain each stage's cache key in the summary.
    pub explain_cache: bool,
}

impl RunView {
    /// All stages waiting.
    pub fn new(names: &[String], verbose: bool) -> Self {
        Self {
            stages: names
                .iter()
                .map(|n| StageView {
                    name: n.clone(),
                    state: ViewState::Waiting,
                    last_line: None,
                    tail: VecDeque::new(),
                    findings: Vec::new(),
                    analysis: None,
                    sandbox: None,
                    cache: None,
                    reused: None,
                })
                .collect(),
            verbose,
            workspace: None,
            pipeline: String::new(),
            run: String::new(),
            junit: None,
            provenance: None,
            sarif: None,
            explain_cache: false,
        }
    }

    fn stage_mut(&mut self, name: &str) -> Option<&mut StageView> {
        self.stages.iter_mut().find(|s| s.name == name)
    }

    /// Fold one event in.
    pub fn apply(&mut self, run: &str, event: &Event) {
        self.run = run.to_string();
        let verbose = self.verbose;
        match event {
            Event::RunStarted {
                pipeline, workspace, ..
            } => {
                self.pipeline = pipeline.clone();
                self.workspace = Some(workspace.clone());
            }
            Event::StageStarted { stage, attempt, .. } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.state = ViewState::Running {
                        attempt: *attempt,
                        since: Instant::now(),
                    };
                }
            }
            Event::StageLog {
                stage,
                level,
                message,
                ..
            } => {
                if let Some(s) = self.stage_mut(stage)
                    && (verbose || *level >= Level::Info)
                {
                    s.last_line = Some(message.clone());
                    if s.tail.len() == TAIL_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(message.clone());
                }
            }
            Event::StageProgress {
                stage,
                done,
                total,
                message,
            } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.last_line = Some(match total {
                        Some(t) => format!("[{done}/{t}] {message}"),
                        None => format!("[{done}] {message}"),
                    });
                }
            }
            Event::StageRetrying { .. } | Event::RunWaiting { .. } => {}
            Event::StageWaiting { stage, message, .. } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.last_line = Some(message.clone());
                    if s.tail.len() == TAIL_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(message.clone());
                }
            }
            Event::ApprovalDecided {
                stage,
                decision,
                by,
                reason,
                ..
            } => {
                if let Some(s) = self.stage_mut(stage) {
                    let mut line = format!("approval {}", decision.replace('_', " "));
                    if let Some(by) = by {
                        line.push_str(&format!(" by {by}"));
                    }
                    if let Some(reason) = reason {
                        line.push_str(&format!(": {reason}"));
                    }
                    s.last_line = Some(line.clone());
                    if s.tail.len() == TAIL_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(line);
                }
            }
            Event::Rollout {
                stage,
                step,
                phase,
                message,
                weights,
                ..
            } => {
                if let Some(s) = self.stage_mut(stage) {
                    let split = weights
                        .iter()
                        .map(|(v, w)| format!("{v} {w}%"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let line = match (phase, split.is_empty()) {
                        (crate::events::RolloutPhase::Action, false) => {
                            format!("[{step}] {message} ({split})")
                        }
                        _ => format!("[{step}] {message}"),
                    };
                    s.last_line = Some(line.clone());
                    if s.tail.len() == TAIL_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(line);
                }
            }
            Event::StageCache {
                stage,
                status,
                key,
                parts,
                reasons,
            } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.cache = Some(CacheView {
                        status: *status,
                        key: key.clone(),
                        parts: parts.clone(),
                        reasons: reasons.clone(),
                    });
                }
            }
            Event::StageSkipped { stage, reason } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.state = ViewState::Done {
                        status: StageStatus::Skipped,
                        failure: None,
                        duration_ms: 0,
                        attempts: 0,
                        note: Some(reason.clone()),
                        details: None,
                    };
                }
            }
            Event::StageFinished {
                stage,
                status,
                failure,
                attempts,
                duration_ms,
                summary,
                error,
                details,
                findings,
                analysis,
                sandbox,
                reused,
                ..
            } => {
                if let Some(s) = self.stage_mut(stage) {
                    s.sandbox = sandbox.clone();
                    s.reused = reused.as_deref().cloned();
                    s.findings = findings.clone();
                    s.analysis = analysis.as_deref().cloned();
                    s.state = ViewState::Done {
                        status: *status,
                        failure: *failure,
                        duration_ms: *duration_ms,
                        attempts: *attempts,
                        note: match reused.as_deref() {
                            Some(r) => Some(format!(
                                "{}{}",
                                match r {
                                    crate::events::Reused::Resume => "before the resume".to_string(),
                                    crate::events::Reused::Cache { run, .. } => format!("from run {run}"),
                                    crate::events::Reused::Dev { run } => format!("from run {run}"),
                                },
                                summary.as_ref().map(|s| format!(" — {s}")).unwrap_or_default()
                            )),
                            None => error.clone().or_else(|| summary.clone()),
                        },
                        details: details.clone(),
                    };
                }
            }
            Event::RunFinished { .. } => {}
        }
    }
}

/// How a reused result is described: `cached from run X`, or `succeeded
/// before the resume`.
pub fn reused_note(r: &crate::events::Reused) -> String {
    match r {
        crate::events::Reused::Resume => "succeeded before the resume".to_string(),
        crate::events::Reused::Cache { run, .. } => format!("cached from run {run}"),
        crate::events::Reused::Dev { run } => format!("taken from run {run}"),
    }
}
