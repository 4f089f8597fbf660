//! Writing a run's events into the store as they happen, on a thread of
//! its own: each batch of events that arrived together is one transaction
//! (the event rows and what they change in `stages`, `logs`, `artifacts`,
//! `test_cases`, `findings` and `runs`).

use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Transaction, params};

use super::{Store, StoreError, this_process};
use crate::events::{Event, EventRecord};

/// Most events written in one transaction.
const MAX_BATCH: usize = 512;

/// A new run, as the store first records it.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file, as given.
    pub pipeline_file: String,
    /// The tenant.
    pub tenant: String,
    /// The workspace directory.
    pub workspace: String,
    /// Stage names in plan order.
    pub stages: Vec<String>,
}

/// Records one run's events; [`Recorder::finish`] waits until all are
/// written.
pub struct Recorder {
    tx: mpsc::Sender<EventRecord>,
    thread: JoinHandle<Result<(), StoreError>>,
}

impl Recorder {
    /// Record `run` (and its stages, waiting) now, then its events as they
    /// are handed to [`Recorder::record`].
    pub fn start(mut store: Store, run: &NewRun) -> Result<Self, StoreError> {
        let (pid, start) = this_process();
        let now = crate::events::now_ms() as i64;
        let path = store.path.clone();
        let wrap = super::sqlite(&path);
        let tx = store.conn.transaction().map_err(wrap)?;
        tx.execute(
            "INSERT INTO runs (id, pipeline, pipeline_file, tenant, status, started_ms, workspace, host_pid, host_start)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8)",
            params![run.id, run.pipeline, run.pipeline_file, run.tenant, now, run.workspace, pid, start],
        )
        .map_err(wrap)?;
        for (i, name) in run.stages.iter().enumerate() {
            tx.execute(
                "INSERT INTO stages (run_id, name, position, status) VALUES (?1, ?2, ?3, 'waiting')",
                params![run.id, name, i as i64],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;

        let (sender, receiver) = mpsc::channel::<EventRecord>();
        let thread = std::thread::Builder::new()
            .name("weir-store".into())
            .spawn(move || write_loop(store, receiver))
            .map_err(|e| StoreError::Dir {
                path: path.clone(),
                source: e,
            })?;
        Ok(Self { tx: sender, thread })
    }

    /// Hand an event to the writer (never blocks).
    pub fn record(&self, event: EventRecord) {
        let _ = self.tx.send(event);
    }

    /// Wait until every event handed over is written.
    pub fn finish(self) -> Result<(), StoreError> {
        drop(self.tx);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

fn write_loop(mut store: Store, rx: mpsc::Receiver<EventRecord>) -> Result<(), StoreError> {
    let mut seq: i64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let path = store.path.clone();
        let wrap = super::sqlite(&path);
        let tx = store.conn.transaction().map_err(wrap)?;
        for record in &batch {
            seq += 1;
            apply(&tx, seq, record).map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A unit enum's name as the events spell it (`succeeded`, `gate`).
fn name<T: serde::Serialize>(v: &T) -> String {
    json(v).trim_matches('"').to_string()
}

/// The event's name as in `--json` (`stage_finished`).
fn kind(e: &Event) -> &'static str {
    match e {
        Event::RunStarted { .. } => "run_started",
        Event::StageSkipped { .. } => "stage_skipped",
        Event::StageStarted { .. } => "stage_started",
        Event::StageLog { .. } => "stage_log",
        Event::StageProgress { .. } => "stage_progress",
        Event::StageRetrying { .. } => "stage_retrying",
        Event::StageFinished { .. } => "stage_finished",
        Event::RunFinished { .. } => "run_finished",
    }
}

fn stage_of(e: &Event) -> Option<&str> {
    match e {
        Event::StageSkipped { stage, .. }
        | Event::StageStarted { stage, .. }
        | Event::StageLog { stage, .. }
        | Event::StageProgress { stage, .. }
        | Event::StageRetrying { stage, .. }
        | Event::StageFinished { stage, .. } => Some(stage),
        Event::RunStarted { .. } | Event::RunFinished { .. } => None,
    }
}

fn apply(tx: &Transaction<'_>, seq: i64, r: &EventRecord) -> rusqlite::Result<()> {
    let run = &r.run;
    let t = r.time_ms as i64;
    tx.execute(
        "INSERT INTO events (run_id, seq, time_ms, kind, stage, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![run, seq, t, kind(&r.event), stage_of(&r.event), json(r)],
    )?;
    match &r.event {
        Event::StageSkipped { stage, reason } => {
            tx.execute(
                "UPDATE stages SET status = 'skipped', summary = ?3, finished_ms = ?4 WHERE run_id = ?1 AND name = ?2",
                params![run, stage, reason, t],
            )?;
        }
        Event::StageStarted {
            stage,
            attempt,
            plugin,
        } => {
            tx.execute(
                "UPDATE stages SET status = 'running', attempts = ?3, plugin = ?4, started_ms = COALESCE(started_ms, ?5)
                 WHERE run_id = ?1 AND name = ?2",
                params![run, stage, attempt, plugin, t],
            )?;
        }
        Event::StageLog {
            stage,
            level,
            message,
            fields,
        } => {
            let fields = (!fields.is_empty()).then(|| json(fields));
            tx.execute(
                "INSERT INTO logs (run_id, seq, stage, time_ms, level, message, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run, seq, stage, t, name(level), message, fields],
            )?;
        }
        Event::StageFinished {
            stage,
            status,
            failure,
            attempts,
            duration_ms,
            outputs,
            artifacts,
            summary,
            error,
            details,
            findings,
            analysis,
            tests,
            sandbox,
            cases,
        } => {
            tx.execute(
                "UPDATE stages SET status = ?3, failure = ?4, attempts = ?5, duration_ms = ?6, finished_ms = ?7,
                    summary = ?8, error = ?9, details = ?10, outputs = ?11, analysis = ?12, tests = ?13, sandbox = ?14
                 WHERE run_id = ?1 AND name = ?2",
                params![
                    run,
                    stage,
                    name(status),
                    failure.map(|f| name(&f)),
                    attempts,
                    *duration_ms as i64,
                    t,
                    summary,
                    error,
                    details,
                    json(outputs),
                    analysis.as_ref().map(json),
                    tests.as_ref().map(json),
                    sandbox,
                ],
            )?;
            for a in artifacts {
                tx.execute(
                    "INSERT INTO artifacts (run_id, stage, name, path, sha256, size, stored) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![run, stage, a.name, a.path, a.sha256, a.size as i64, a.stored],
                )?;
            }
            for c in cases {
                tx.execute(
                    "INSERT INTO test_cases (run_id, stage, suite, name, status, duration_ms, message, file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        run,
                        stage,
                        c.suite,
                        c.name,
                        c.status,
                        c.duration_ms as i64,
                        c.message,
                        c.file
                    ],
                )?;
            }
            for f in findings {
                let fields = (!f.fields.is_empty()).then(|| json(&f.fields));
                tx.execute(
                    "INSERT INTO findings (run_id, stage, rule, severity, message, path, line, col, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        run, stage, f.rule, f.severity, f.message, f.path, f.line, f.column, fields
                    ],
                )?;
            }
        }
        Event::RunFinished {
            status, duration_ms, ..
        } => {
            tx.execute(
                "UPDATE runs SET status = ?2, finished_ms = ?3, duration_ms = ?4 WHERE id = ?1",
                params![run, name(status), t, *duration_ms as i64],
            )?;
        }
        Event::RunStarted { workspace, .. } => {
            tx.execute(
                "UPDATE runs SET workspace = ?2 WHERE id = ?1",
                params![run, workspace],
            )?;
        }
        Event::StageProgress { .. } | Event::StageRetrying { .. } => {}
    }
    Ok(())
}
