//! Turning events into what people and machines read.
//!
//! - [`Mode::Json`]: one JSON object per event per line, nothing else on
//!   stdout.
//! - [`Mode::Live`]: on a terminal, a block of one line per stage (state,
//!   duration, last log line) redrawn in place, then a summary.
//! - [`Mode::Plain`]: elsewhere (CI logs, pipes), one line per thing that
//!   happened, then the same summary.

pub mod deployment;
pub mod json;
pub mod junit;
pub mod live;
pub mod model;
pub mod provenance;
pub mod sarif;
pub mod source;
pub mod style;
pub mod summary;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::EventRecord;

/// The merged test report, in the run's reports directory.
pub const JUNIT_FILE: &str = "junit.xml";
/// The same test report with `testcase@file`, as GitLab reads it.
pub const JUNIT_GITLAB_FILE: &str = "junit-gitlab.xml";
/// The merged findings report, in the run's reports directory.
pub const SARIF_FILE: &str = "scan.sarif";

/// How to show a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON lines.
    Json,
    /// Redrawn in place on a terminal.
    Live,
    /// One line per event.
    Plain,
}

/// What the reporter is told up front.
#[derive(Debug, Clone)]
pub struct ReportSetup {
    /// How.
    pub mode: Mode,
    /// Show debug and trace lines too.
    pub verbose: bool,
    /// Stage names in plan order.
    pub stages: Vec<String>,
    /// The run's reports directory: `junit.xml` (every test-runner stage)
    /// and `scan.sarif` (every analyzer stage) are written there at the end.
    pub reports: Option<std::path::PathBuf>,
    /// Explain each stage's cache key in the summary (`--explain-cache`).
    pub explain_cache: bool,
}

/// Consume events until the run finishes (or the channel closes), showing
/// them as `setup.mode` says and writing the JUnit and SARIF reports at
/// the end.
pub async fn report(setup: ReportSetup, mut rx: UnboundedReceiver<EventRecord>) {
    let (tx, inner_rx) = tokio::sync::mpsc::unbounded_channel();
    let reports = setup.reports.clone();
    let shown = tokio::spawn(async move {
        match setup.mode {
            Mode::Json => json::report(inner_rx).await,
            Mode::Live | Mode::Plain => live::report(setup, inner_rx).await,
        }
    });
    let mut junit = junit::JunitCollector::default();
    let mut sarif = sarif::SarifCollector::default();
    while let Some(record) = rx.recv().await {
        junit.observe(&record.event);
        sarif.observe(&record.run, &record.event);
        let done = matches!(record.event, crate::events::Event::RunFinished { .. });
        let _ = tx.send(record);
        if done {
            break;
        }
    }
    if let Some(dir) = reports {
        if let Err(e) = junit.write(&dir) {
            tracing::error!("cannot write the JUnit reports in {}: {e}", dir.display());
        }
        let sarif_path = dir.join(SARIF_FILE);
        if let Err(e) = sarif.write(&sarif_path) {
            tracing::error!("cannot write the SARIF report {}: {e}", sarif_path.display());
        }
    }
    drop(tx);
    let _ = shown.await;
}
