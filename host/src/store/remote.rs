//! Runs that ran on a `weir worker`: the server records what the worker
//! sends (the run opening, taken up again elsewhere, its events) into its
//! own history, so the API, logs and dashboard read them as any other run.
//!
//! Such a run belongs to no process of this machine: its `host_start` is
//! `worker:ID`, and opening the store never marks it `interrupted` (its
//! job in JetStream says whether it is still going).

use rusqlite::params;

use super::recorder::{NewRun, apply};
use super::{Store, StoreError};
use crate::events::EventRecord;

/// The `host_start` of runs a worker runs.
pub const WORKER_MARK: &str = "worker:";

impl Store {
    /// Worker `worker` opened run `run` (its first start): the queued run
    /// is `running`, with its stages `waiting`. Opened again (the first
    /// worker died before it sent anything else), it starts over.
    pub fn open_remote(&mut self, run: &NewRun, worker: &str) -> Result<bool, StoreError> {
        let now = crate::events::now_ms() as i64;
        let wrap = super::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(wrap)?;
        let opened = tx
            .execute(
                "UPDATE runs SET pipeline = ?2, pipeline_file = ?3, status = 'running', started_ms = COALESCE(started_ms, ?5),
                     workspace = ?6, host_pid = 0, host_start = ?7, pipeline_text = ?8, options = ?9,
                     branch = COALESCE(?10, branch), commit_sha = COALESCE(?11, commit_sha)
                 WHERE id = ?1 AND tenant = ?4 AND status IN ('queued', 'running')",
                params![
                    run.id,
                    run.pipeline,
                    run.pipeline_file,
                    run.tenant,
                    now,
                    run.workspace,
                    format!("{WORKER_MARK}{worker}"),
                    run.pipeline_text,
                    run.options,
                    run.branch,
                    run.commit
                ],
            )
            .map_err(wrap)?;
        if opened == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE attempts SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'",
            params![run.id],
        )
        .map_err(wrap)?;
        tx.execute("DELETE FROM stages WHERE run_id = ?1", params![run.id])
            .map_err(wrap)?;
        for (i, name) in run.stages.iter().enumerate() {
            tx.execute(
                "INSERT INTO stages (run_id, name, position, status) VALUES (?1, ?2, ?3, 'waiting')",
                params![run.id, name, i as i64],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(true)
    }

    /// Worker `worker` took run `id` up again after another stopped: the
    /// stages in `rerun` are `waiting` again (their interrupted attempts
    /// stay, marked so), the others keep their results.
    pub fn continue_remote(&mut self, id: &str, rerun: &[String], worker: &str) -> Result<bool, StoreError> {
        let wrap = super::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(wrap)?;
        let taken = tx
            .execute(
                "UPDATE runs SET status = 'running', finished_ms = NULL, duration_ms = NULL, host_pid = 0,
                     host_start = ?2, resumes = resumes + 1
                 WHERE id = ?1 AND status IN ('running', 'interrupted', 'queued')",
                params![id, format!("{WORKER_MARK}{worker}")],
            )
            .map_err(wrap)?;
        if taken == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE attempts SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'",
            params![id],
        )
        .map_err(wrap)?;
        super::recorder::reset_stages(&tx, id, rerun).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(true)
    }

    /// How far stream `stream` has been read (0: not at all).
    pub fn stream_cursor(&self, stream: &str) -> Result<u64, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.conn
            .query_row(
                "SELECT seq FROM stream_cursors WHERE stream = ?1",
                params![stream],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.unwrap_or(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Stream `stream` has been read up to `seq`.
    pub fn set_stream_cursor(&self, stream: &str, seq: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO stream_cursors (stream, seq) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                params![stream, seq as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Record events a worker sent, after the run's own, in one
    /// transaction with the stream's cursor at `upto`.
    pub fn apply_remote(
        &mut self,
        records: &[EventRecord],
        stream: &str,
        upto: u64,
    ) -> Result<(), StoreError> {
        let wrap = super::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(wrap)?;
        tx.execute(
            "INSERT INTO stream_cursors (stream, seq) VALUES (?1, ?2)
             ON CONFLICT (stream) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            params![stream, upto as i64],
        )
        .map_err(wrap)?;
        let mut last: Option<(String, i64)> = None;
        for record in records {
            let seq = match &last {
                Some((run, seq)) if *run == record.run => seq + 1,
                _ => {
                    tx.query_row(
                        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
                        params![record.run],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(wrap)?
                        + 1
                }
            };
            apply(&tx, seq, record).map_err(wrap)?;
            last = Some((record.run.clone(), seq));
        }
        tx.commit().map_err(wrap)?;
        Ok(())
    }

    /// Per stage of run `id`, how many attempts started (`kill -9` tests
    /// count them: a stage that finished is not run again).
    pub fn attempt_counts(&self, id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stage, COUNT(*) FROM attempts WHERE run_id = ?1 GROUP BY stage ORDER BY stage",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

impl Store {
    /// Jobs handed to workers and not yet ended, per tenant.
    pub fn dispatched_per_tenant(&self) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tenant, COUNT(*) FROM queue WHERE state = 'dispatched' GROUP BY tenant")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The worker that holds run `id` (opened it or took it up last).
    pub fn run_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.conn
            .query_row("SELECT host_start FROM runs WHERE id = ?1", params![id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map(|h| h.and_then(|h| h.strip_prefix(WORKER_MARK).map(str::to_string)))
            .map_err(|e| self.err(e))
    }

    /// Run `id` was last given to `worker` (one that ended it before it
    /// opened it: it could not check it out, or gave up on it).
    pub fn set_run_holder(&self, id: &str, worker: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET host_start = ?2 WHERE id = ?1",
                params![id, format!("{WORKER_MARK}{worker}")],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Run `id`'s tenant and its job's state (`queued`, `running`,
    /// `dispatched`, `done`), for a server run.
    pub fn job_state(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.conn
            .query_row(
                "SELECT tenant, state FROM queue WHERE run_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}
