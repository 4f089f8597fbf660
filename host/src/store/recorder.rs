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
/// How long the writer waits for more events before committing a batch;
/// an event is on disk at most this much later than alone.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// A new run, as the store first records it (and as a worker tells the
/// server of it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// The pipeline file's text, as read.
    pub pipeline_text: String,
    /// How the run was started (JSON), for `--resume`.
    pub options: String,
    /// The branch it builds.
    pub branch: Option<String>,
    /// The commit it builds.
    pub commit: Option<String>,
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
        // A run `weir serve` accepted is already recorded, `queued`: it
        // starts under the same id. Any other run with the id is refused.
        let recorded = tx
            .execute(
                "INSERT INTO runs (id, pipeline, pipeline_file, tenant, status, started_ms, workspace, host_pid, host_start,
                                   pipeline_text, options, branch, commit_sha, trigger)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'cli')
                 ON CONFLICT (id) DO UPDATE SET
                     pipeline = excluded.pipeline, pipeline_file = excluded.pipeline_file, status = 'running',
                     started_ms = excluded.started_ms, workspace = excluded.workspace, host_pid = excluded.host_pid,
                     host_start = excluded.host_start, pipeline_text = excluded.pipeline_text, options = excluded.options,
                     branch = COALESCE(excluded.branch, runs.branch), commit_sha = COALESCE(excluded.commit_sha, runs.commit_sha)
                 WHERE runs.status = 'queued' AND runs.tenant = excluded.tenant",
                params![
                    run.id,
                    run.pipeline,
                    run.pipeline_file,
                    run.tenant,
                    now,
                    run.workspace,
                    pid,
                    start,
                    run.pipeline_text,
                    run.options,
                    run.branch,
                    run.commit
                ],
            )
            .map_err(wrap)?;
        if recorded == 0 {
            return Err(StoreError::Taken(run.id.clone()));
        }
        for (i, name) in run.stages.iter().enumerate() {
            tx.execute(
                "INSERT INTO stages (run_id, name, position, status) VALUES (?1, ?2, ?3, 'waiting')",
                params![run.id, name, i as i64],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Self::spawn(store, 0)
    }

    /// Take up run `id` again (`weir run --resume`): it is `running` under
    /// this process, the stages in `rerun` are `waiting` again with what
    /// their earlier attempts left removed (their events stay), and new
    /// events follow the recorded ones.
    pub fn resume(mut store: Store, id: &str, rerun: &[String]) -> Result<Self, StoreError> {
        let (pid, start) = this_process();
        let path = store.path.clone();
        let wrap = super::sqlite(&path);
        let tx = store.conn.transaction().map_err(wrap)?;
        // Claimed in the same transaction that checks it, so two resumes
        // of one run cannot both start.
        let claimed = tx
            .execute(
                "UPDATE runs SET status = 'running', finished_ms = NULL, duration_ms = NULL, host_pid = ?2,
                     host_start = ?3, resumes = resumes + 1
                 WHERE id = ?1 AND status NOT IN ('running', 'succeeded')",
                params![id, pid, start],
            )
            .map_err(wrap)?;
        if claimed != 1 {
            return Err(StoreError::NotResumable(id.to_string()));
        }
        reset_stages(&tx, id, rerun).map_err(wrap)?;
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Self::spawn(store, seq)
    }

    fn spawn(store: Store, seq: i64) -> Result<Self, StoreError> {
        let path = store.path.clone();
        let (sender, receiver) = mpsc::channel::<EventRecord>();
        let thread = std::thread::Builder::new()
            .name("weir-store".into())
            .spawn(move || write_loop(store, receiver, seq))
            .map_err(|e| StoreError::Dir { path, source: e })?;
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

fn write_loop(mut store: Store, rx: mpsc::Receiver<EventRecord>, mut seq: i64) -> Result<(), StoreError> {
    while let Ok(first) = rx.recv() {
        // Group commit: what arrives within LINGER of the first event goes
        // into the same transaction. A run of quick stages then costs one
        // commit per few dozen events instead of one per event.
        let until = std::time::Instant::now() + LINGER;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let wait = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
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

/// The stages of run `id` in `rerun` are `waiting` again, with what their
/// earlier attempts left removed (their events and attempts stay).
pub(crate) fn reset_stages(tx: &Transaction<'_>, id: &str, rerun: &[String]) -> rusqlite::Result<()> {
    for stage in rerun {
        tx.execute(
            "UPDATE stages SET status = 'waiting', failure = NULL, attempts = 0, started_ms = NULL,
                 finished_ms = NULL, duration_ms = NULL, summary = NULL, error = NULL, details = NULL,
                 outputs = NULL, analysis = NULL, tests = NULL, sandbox = NULL
             WHERE run_id = ?1 AND name = ?2",
            params![id, stage],
        )?;
        for table in ["artifacts", "test_cases", "findings", "recordings"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run_id = ?1 AND stage = ?2"),
                params![id, stage],
            )?;
        }
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
        Event::StageCache { .. } => "stage_cache",
        Event::StageStarted { .. } => "stage_started",
        Event::StageLog { .. } => "stage_log",
        Event::StageProgress { .. } => "stage_progress",
        Event::StageRetrying { .. } => "stage_retrying",
        Event::StageFinished { .. } => "stage_finished",
        Event::RunFinished { .. } => "run_finished",
        Event::Rollout { .. } => "rollout",
        Event::StageWaiting { .. } => "stage_waiting",
        Event::RunWaiting { .. } => "run_waiting",
        Event::ApprovalDecided { .. } => "approval_decided",
    }
}

fn stage_of(e: &Event) -> Option<&str> {
    match e {
        Event::StageSkipped { stage, .. }
        | Event::StageCache { stage, .. }
        | Event::StageStarted { stage, .. }
        | Event::StageLog { stage, .. }
        | Event::StageProgress { stage, .. }
        | Event::StageRetrying { stage, .. }
        | Event::StageFinished { stage, .. }
        | Event::Rollout { stage, .. }
        | Event::StageWaiting { stage, .. }
        | Event::ApprovalDecided { stage, .. } => Some(stage),
        Event::RunStarted { .. } | Event::RunFinished { .. } | Event::RunWaiting { .. } => None,
    }
}

pub(crate) fn apply(tx: &Transaction<'_>, seq: i64, r: &EventRecord) -> rusqlite::Result<()> {
    let run = &r.run;
    let t = r.time_ms as i64;
    tx.prepare_cached(
        "INSERT INTO events (run_id, seq, time_ms, kind, stage, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![run, seq, t, kind(&r.event), stage_of(&r.event), json(r)])?;
    match &r.event {
        Event::StageSkipped { stage, reason } => {
            tx.prepare_cached("UPDATE stages SET status = 'skipped', summary = ?3, finished_ms = ?4 WHERE run_id = ?1 AND name = ?2")?.execute(
                params![run, stage, reason, t],
            )?;
        }
        Event::StageStarted {
            stage,
            attempt,
            plugin,
        } => {
            tx.prepare_cached("UPDATE stages SET status = 'running', attempts = ?3, plugin = ?4, started_ms = COALESCE(started_ms, ?5)
                 WHERE run_id = ?1 AND name = ?2")?.execute(
                params![run, stage, attempt, plugin, t],
            )?;
            tx.prepare_cached("INSERT INTO attempts (run_id, stage, attempt, plugin, started_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')")?.execute(
                params![run, stage, attempt, plugin, t],
            )?;
        }
        Event::StageRetrying { stage, error, .. } => {
            end_attempt(tx, run, stage, t, "failed", Some(error))?;
        }
        Event::StageLog {
            stage,
            level,
            message,
            fields,
        } => {
            let fields = (!fields.is_empty()).then(|| json(fields));
            tx.prepare_cached("INSERT INTO logs (run_id, seq, stage, time_ms, level, message, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                params![run, seq, stage, t, name(level), message, fields],
            )?;
        }
        Event::StageFinished {
            stage,
            plugin,
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
            reused,
            ..
        } => {
            if reused.as_deref() == Some(&crate::events::Reused::Resume) {
                // Recorded when it first finished; only the event is new.
                tx.prepare_cached("UPDATE stages SET reused = ?3 WHERE run_id = ?1 AND name = ?2")?
                    .execute(params![run, stage, reused.as_ref().map(json)])?;
                return Ok(());
            }
            end_attempt(tx, run, stage, t, &name(status), error.as_ref())?;
            tx.prepare_cached("UPDATE stages SET status = ?3, failure = ?4, attempts = ?5, duration_ms = ?6, finished_ms = ?7,
                    summary = ?8, error = ?9, details = ?10, outputs = ?11, analysis = ?12, tests = ?13, sandbox = ?14,
                    plugin = COALESCE(?15, plugin), reused = ?16
                 WHERE run_id = ?1 AND name = ?2")?.execute(
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
                    plugin,
                    reused.as_ref().map(json),
                ],
            )?;
            for a in artifacts {
                tx.prepare_cached("INSERT INTO artifacts (run_id, stage, name, path, sha256, size, stored) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                    params![run, stage, a.name, a.path, a.sha256, a.size as i64, a.stored],
                )?;
            }
            for c in cases {
                tx.prepare_cached(
                    "INSERT INTO test_cases (run_id, stage, suite, name, status, duration_ms, message, file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    run,
                    stage,
                    c.suite,
                    c.name,
                    c.status,
                    c.duration_ms as i64,
                    c.message,
                    c.file
                ])?;
            }
            for f in findings {
                let fields = (!f.fields.is_empty()).then(|| json(&f.fields));
                tx.prepare_cached(
                    "INSERT INTO findings (run_id, stage, rule, severity, message, path, line, col, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    run, stage, f.rule, f.severity, f.message, f.path, f.line, f.column, fields
                ])?;
            }
        }
        Event::RunFinished {
            status, duration_ms, ..
        } => {
            tx.prepare_cached(
                "UPDATE runs SET status = ?2, finished_ms = ?3, duration_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![run, name(status), t, *duration_ms as i64])?;
        }
        Event::RunStarted { workspace, .. } => {
            tx.prepare_cached("UPDATE runs SET workspace = ?2 WHERE id = ?1")?
                .execute(params![run, workspace])?;
        }
        Event::StageWaiting { stage, message, .. } => {
            tx.prepare_cached("UPDATE stages SET summary = ?3 WHERE run_id = ?1 AND name = ?2")?
                .execute(params![run, stage, message])?;
        }
        // Rollout steps stay in `events`, where `weir runs show` reads
        // them; approvals have their own table.
        Event::StageProgress { .. }
        | Event::StageCache { .. }
        | Event::Rollout { .. }
        | Event::ApprovalDecided { .. }
        | Event::RunWaiting { .. } => {}
    }
    Ok(())
}

/// The running attempt of `stage` ended.
fn end_attempt(
    tx: &Transaction<'_>,
    run: &str,
    stage: &str,
    t: i64,
    status: &str,
    error: Option<&String>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET status = ?4, finished_ms = ?3, error = ?5
         WHERE run_id = ?1 AND stage = ?2 AND status = 'running'",
    )?
    .execute(params![run, stage, t, status, error])?;
    Ok(())
}
