//! Turning events into what people and machines read.
//!
//! - [`Mode::Json`]: one JSON object per event per line, nothing else on
//!   stdout.
//! - [`Mode::Live`]: on a terminal, a block of one line per stage (state,
//!   duration, last log line) redrawn in place, then a summary.
//! - [`Mode::Plain`]: elsewhere (CI logs, pipes), one line per thing that
//!   happened, then the same summary.

pub mod json;
pub mod junit;
pub mod live;
pub mod model;
pub mod style;
pub mod summary;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::EventRecord;

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
    /// Where to write the run's merged JUnit report.
    pub junit: Option<std::path::PathBuf>,
}

/// Consume events until the run finishes (or the channel closes), showing
/// them as `setup.mode` says and writing the JUnit report at the end.
pub async fn report(setup: ReportSetup, mut rx: UnboundedReceiver<EventRecord>) {
    let (tx, inner_rx) = tokio::sync::mpsc::unbounded_channel();
    let junit_path = setup.junit.clone();
    let shown = tokio::spawn(async move {
        match setup.mode {
            Mode::Json => json::report(inner_rx).await,
            Mode::Live | Mode::Plain => live::report(setup, inner_rx).await,
        }
    });
    let mut junit = junit::JunitCollector::default();
    while let Some(record) = rx.recv().await {
        junit.observe(&record.event);
        let done = matches!(record.event, crate::events::Event::RunFinished { .. });
        let _ = tx.send(record);
        if done {
            break;
        }
    }
    if let Some(path) = junit_path
        && let Err(e) = junit.write(&path)
    {
        tracing::error!("cannot write the JUnit report {}: {e}", path.display());
    }
    drop(tx);
    let _ = shown.await;
}
