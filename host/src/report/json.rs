//! `--json`: one event per line on stdout.

use std::io::Write;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{Event, EventRecord};

/// Print every event as a JSON line until the run finishes.
pub async fn report(mut rx: UnboundedReceiver<EventRecord>) {
    let stdout = std::io::stdout();
    while let Some(record) = rx.recv().await {
        let done = matches!(record.event, Event::RunFinished { .. });
        if let Ok(line) = serde_json::to_string(&record) {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if done {
            break;
        }
    }
}
