//! The `log` import: plugin log lines and progress into the run's events.
//!
//! Bounded: a stage may log at most `limits.log_bytes`; past that, lines are
//! dropped and one warning says so (limit `log`). Granted secret values are
//! masked before anything leaves this module.

use std::collections::BTreeMap;

use crate::bindings::host::weir::plugin::log::{Host, Level as WitLevel};
use crate::events::{Event, EventSink, Level, printable};

/// Longest single line kept; longer lines are cut (and say so).
pub const MAX_LINE_BYTES: usize = 16 << 10;

/// What every log call or progress report costs on top of its text, so
/// that empty lines are not free: a plugin looping on `write("")` runs out
/// of budget like any other.
pub const EVENT_COST: usize = 64;

/// Per-Store state of the `log` import.
#[derive(Debug)]
pub struct LogCtx {
    stage: String,
    sink: EventSink,
    budget: LogBudget,
}

/// Bytes a stage may still log, shared by its log calls and its stdout and
/// stderr.
#[derive(Debug, Clone)]
pub struct LogBudget {
    left: std::sync::Arc<std::sync::Mutex<(usize, bool)>>,
    limit: usize,
}

impl LogBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            left: std::sync::Arc::new(std::sync::Mutex::new((limit, false))),
            limit,
        }
    }

    /// Take `n` bytes plus [`EVENT_COST`]. `Ok` to log; `Err(true)` the
    /// first time it runs out (say so once), `Err(false)` after.
    fn take(&self, n: usize) -> Result<(), bool> {
        let n = n.saturating_add(EVENT_COST);
        let mut guard = self.left.lock().unwrap_or_else(|e| e.into_inner());
        let (left, warned) = &mut *guard;
        if n <= *left {
            *left -= n;
            Ok(())
        } else {
            let first = !*warned;
            *warned = true;
            *left = 0;
            Err(first)
        }
    }
}

impl LogCtx {
    /// Log state for `stage`, sending to `sink`.
    pub fn new(stage: &str, sink: EventSink, budget: LogBudget) -> Self {
        Self {
            stage: stage.to_string(),
            sink,
            budget,
        }
    }
}

/// Emit `message` for `stage`, within `budget`: one event per line, with
/// control characters escaped so a plugin cannot forge output or move the
/// terminal's cursor. Used by the `log` import and the stdout/stderr pipes.
pub fn emit_line(
    sink: &EventSink,
    budget: &LogBudget,
    stage: &str,
    level: Level,
    message: &str,
    fields: BTreeMap<String, String>,
) {
    let fields: BTreeMap<String, String> = fields
        .into_iter()
        .map(|(k, v)| (printable(&k).into_owned(), printable(&v).into_owned()))
        .collect();
    let field_cost: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut lines = message.trim_end_matches(['\r', '\n']).split('\n').peekable();
    while let Some(line) = lines.next() {
        let mut line = printable(line.trim_end_matches('\r')).into_owned();
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" … [line cut at 16 KiB]");
        }
        // Fields go with the last line of a multi-line message.
        let last = lines.peek().is_none();
        let cost = line.len() + if last { field_cost } else { 0 };
        match budget.take(cost) {
            Ok(()) if line.trim().is_empty() => {}
            Ok(()) => sink.emit(Event::StageLog {
                stage: stage.to_string(),
                level,
                message: line,
                fields: if last { fields.clone() } else { BTreeMap::new() },
            }),
            Err(true) => {
                sink.emit(Event::StageLog {
                    stage: stage.to_string(),
                    level: Level::Warn,
                    message: format!(
                        "log limit hit: stage `{stage}` logged more than {} (limit `log`); further lines are dropped",
                        crate::engine::limits::human_bytes(budget.limit)
                    ),
                    fields: BTreeMap::new(),
                });
                return;
            }
            Err(false) => return,
        }
    }
}

/// Emit a notice from the host itself (a limit hit, a program killed). It
/// bypasses the stage's log budget, which may be spent by then: a limit is
/// always reported. Callers emit a bounded number of these.
pub fn emit_notice(sink: &EventSink, stage: &str, level: Level, message: String) {
    sink.emit(Event::StageLog {
        stage: stage.to_string(),
        level,
        message: printable(&message).into_owned(),
        fields: BTreeMap::new(),
    });
}

impl Host for LogCtx {
    async fn write(&mut self, level: WitLevel, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        };
        emit_line(
            &self.sink,
            &self.budget,
            &self.stage,
            level,
            &message,
            fields.into_iter().collect(),
        );
    }

    async fn progress(&mut self, done: u64, total: Option<u64>, message: String) {
        if self.budget.take(message.len()).is_ok() {
            self.sink.emit(Event::StageProgress {
                stage: self.stage.clone(),
                done,
                total,
                message: printable(&message).into_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::events::EventRecord>) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(r.event);
        }
        out
    }

    #[test]
    fn empty_lines_are_not_free() {
        let (sink, mut rx) = EventSink::channel("r");
        let budget = LogBudget::new(EVENT_COST * 10);
        for _ in 0..1000 {
            emit_line(&sink, &budget, "s", Level::Info, "", BTreeMap::new());
        }
        let events = drain(&mut rx);
        // Blank lines are not shown, but each is charged: ten use up the
        // budget, the eleventh reports the limit once, the rest vanish.
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(&events[0], Event::StageLog { message, .. } if message.starts_with("log limit hit"))
        );
    }

    #[test]
    fn control_characters_are_escaped_and_lines_split() {
        let (sink, mut rx) = EventSink::channel("r");
        let budget = LogBudget::new(1 << 20);
        emit_line(
            &sink,
            &budget,
            "s",
            Level::Info,
            "one\x1b[2Atwo\nthree\r\n",
            BTreeMap::new(),
        );
        let messages: Vec<String> = drain(&mut rx)
            .into_iter()
            .filter_map(|e| match e {
                Event::StageLog { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(messages, ["one\\x1b[2Atwo", "three"]);
    }
}
