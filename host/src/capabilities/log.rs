//! The `log` import: plugin log lines and progress into the run's events.
//!
//! Bounded: a stage may log at most `limits.log_bytes`; past that, lines are
//! dropped and one warning says so (limit `log`). Granted secret values are
//! masked before anything leaves this module.

use std::collections::BTreeMap;

use crate::bindings::host::weir::plugin::log::{Host, Level as WitLevel};
use crate::events::{Event, EventSink, Level};

/// Longest single line kept; longer lines are cut (and say so).
pub const MAX_LINE_BYTES: usize = 16 << 10;

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

    /// Take `n` bytes. `Ok` to log; `Err(true)` the first time it runs out
    /// (say so once), `Err(false)` after.
    fn take(&self, n: usize) -> Result<(), bool> {
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

/// Emit one line for `stage`, within `budget`. Used by the `log` import and
/// by the stdout/stderr pipes.
pub fn emit_line(
    sink: &EventSink,
    budget: &LogBudget,
    stage: &str,
    level: Level,
    message: &str,
    fields: BTreeMap<String, String>,
) {
    let mut message = message.trim_end_matches(['\r', '\n']).to_string();
    if message.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" … [line cut at 16 KiB]");
    }
    let cost = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    match budget.take(cost) {
        Ok(()) => sink.emit(Event::StageLog {
            stage: stage.to_string(),
            level,
            message,
            fields,
        }),
        Err(true) => sink.emit(Event::StageLog {
            stage: stage.to_string(),
            level: Level::Warn,
            message: format!(
                "log limit hit: stage `{stage}` logged more than {} (limit `log`); further lines are dropped",
                crate::engine::limits::human_bytes(budget.limit)
            ),
            fields: BTreeMap::new(),
        }),
        Err(false) => {}
    }
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
        if self.budget.take(message.len() + 16).is_ok() {
            self.sink.emit(Event::StageProgress {
                stage: self.stage.clone(),
                done,
                total,
                message,
            });
        }
    }
}
