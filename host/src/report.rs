//! Turning events into what people and machines read.
//!
//! - [`Mode::Json`]: one JSON object per event per line, nothing else on
//!   stdout.
//! - [`Mode::Live`]: on a terminal, a block of one line per stage (state,
//!   duration, last log line) redrawn in place, then a summary.
//! - [`Mode::Plain`]: elsewhere (CI logs, pipes), one line per thing that
//!   happened, then the same summary.

pub mod json;
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
}

/// Consume events until the run finishes (or the channel closes).
pub async fn report(setup: ReportSetup, rx: UnboundedReceiver<EventRecord>) {
    match setup.mode {
        Mode::Json => json::report(rx).await,
        Mode::Live | Mode::Plain => live::report(setup, rx).await,
    }
}
