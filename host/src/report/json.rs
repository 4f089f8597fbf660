//! `--json`: one event per line on stdout.

use std::io::Write;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{Event, EventRecord};

/// Print every event as a JSON line until the run finishes. Events that
/// are already waiting are written together, with one write to stdout.
pub async fn report(mut rx: UnboundedReceiver<EventRecord>) {
    let stdout = std::io::stdout();
    while let Some(first) = rx.recv().await {
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut next = Some(first);
        let mut done = false;
        while let Some(record) = next.take() {
            done = matches!(record.event, Event::RunFinished { .. });
            if let Ok(line) = serde_json::to_string(&record) {
                let _ = writeln!(out, "{line}");
            }
            if done {
                break;
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
        if done {
            break;
        }
    }
}
