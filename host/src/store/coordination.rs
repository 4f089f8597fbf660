//! What runs agree on through the history: approvals (asked by one weir
//! process, decided by another, surviving both) and claims on concurrency
//! groups (the oldest live claim holds the group).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, process_alive, this_process};
use crate::events::now_ms;

/// One approval request and its decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApprovalRecord {
    /// The run.
    pub run: String,
    /// The stage waiting.
    pub stage: String,
    /// The protected environment.
    pub environment: String,
    /// Who may approve; empty means anyone.
    pub approvers: Vec<String>,
    /// When it was asked, ms since the Unix epoch.
    pub requested_ms: i64,
    /// When the wait ends.
    pub deadline_ms: i64,
    /// `pending`, `approved`, `rejected` or `timed_out`.
    pub decision: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_ms: Option<i64>,
    /// Why (a rejection's reason).
    pub reason: Option<String>,
}

const APPROVAL_COLUMNS: &str = "run_id, stage, environment, approvers, requested_ms, deadline_ms, decision, decided_by, decided_ms, reason";

fn approval_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let approvers: String = r.get(3)?;
    Ok(ApprovalRecord {
        run: r.get(0)?,
        stage: r.get(1)?,
        environment: r.get(2)?,
        approvers: serde_json::from_str(&approvers).unwrap_or_default(),
        requested_ms: r.get(4)?,
        deadline_ms: r.get(5)?,
        decision: r.get(6)?,
        decided_by: r.get(7)?,
        decided_ms: r.get(8)?,
        reason: r.get(9)?,
    })
}

/// A run's claim on a concurrency group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its id: lower ids came first.
    pub id: i64,
    /// The run.
    pub run: String,
    /// The stage, when a stage (not the whole run) claims.
    pub stage: Option<String>,
}

/// Why a decision could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The history failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing in that run waits for approval.
    #[error("{0}")]
    NothingPending(String),
    /// The person may not approve for that environment.
    #[error(
        "`{who}` may not approve deploys to `{environment}`; its approvers are {approvers} (use --as NAME if you are one of them)"
    )]
    NotAnApprover {
        /// Who tried.
        who: String,
        /// The environment.
        environment: String,
        /// Who may.
        approvers: String,
    },
}

impl Store {
    /// Ask for approval for `stage` of `run`, or find the request made
    /// before (by an earlier start of the same run). A request that was
    /// rejected or timed out is asked again, with a new deadline.
    pub fn request_approval(
        &self,
        run: &str,
        stage: &str,
        environment: &str,
        approvers: &[String],
        timeout_ms: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let now = now_ms() as i64;
        let approvers_json = serde_json::to_string(approvers).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO approvals (run_id, stage, environment, approvers, requested_ms, deadline_ms, decision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')
                 ON CONFLICT (run_id, stage) DO UPDATE SET
                    environment = excluded.environment, approvers = excluded.approvers,
                    requested_ms = excluded.requested_ms, deadline_ms = excluded.deadline_ms,
                    decision = 'pending', decided_by = NULL, decided_ms = NULL, reason = NULL
                 WHERE decision IN ('rejected', 'timed_out')",
                params![run, stage, environment, approvers_json, now, now + timeout_ms],
            )
            .map_err(|e| self.err(e))?;
        self.approval(run, stage)?
            .ok_or_else(|| StoreError::NoSuchRun(run.to_string()))
    }

    /// The approval request of `stage` in `run`.
    pub fn approval(&self, run: &str, stage: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ?1 AND stage = ?2"),
                params![run, stage],
                approval_of,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every approval request of `run`, in the order asked.
    pub fn approvals(&self, run: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ?1 ORDER BY requested_ms, stage"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![run], approval_of)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Mark `stage`'s pending request timed out.
    pub fn expire_approval(&self, run: &str, stage: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE approvals SET decision = 'timed_out', decided_ms = ?3
                 WHERE run_id = ?1 AND stage = ?2 AND decision = 'pending'",
                params![run, stage, now_ms() as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Approve (or reject, with `reason`) the pending requests of `run`:
    /// `stage`'s, or all of them. Returns those decided.
    pub fn decide(
        &mut self,
        run: &str,
        stage: Option<&str>,
        approve: bool,
        who: &str,
        reason: Option<&str>,
    ) -> Result<Vec<ApprovalRecord>, DecideError> {
        if !self.has_run(run)? {
            return Err(StoreError::NoSuchRun(run.to_string()).into());
        }
        let pending: Vec<ApprovalRecord> = self
            .approvals(run)?
            .into_iter()
            .filter(|a| a.decision == "pending" && stage.is_none_or(|s| s == a.stage))
            .collect();
        if pending.is_empty() {
            let all = self.approvals(run)?;
            let what = match stage {
                Some(s) => format!("stage `{s}` of run {run}"),
                None => format!("run {run}"),
            };
            let known = all
                .iter()
                .map(|a| format!("`{}` ({})", a.stage, a.decision.replace('_', " ")))
                .collect::<Vec<_>>();
            return Err(DecideError::NothingPending(if known.is_empty() {
                format!("nothing in {what} waits for approval; `weir runs show {run}` shows where it is")
            } else {
                format!(
                    "nothing in {what} waits for approval; its approvals: {}",
                    known.join(", ")
                )
            }));
        }
        for a in &pending {
            if !a.approvers.is_empty() && !a.approvers.iter().any(|p| p == who) {
                return Err(DecideError::NotAnApprover {
                    who: who.to_string(),
                    environment: a.environment.clone(),
                    approvers: a.approvers.join(", "),
                });
            }
        }
        let decision = if approve { "approved" } else { "rejected" };
        let now = now_ms() as i64;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| super::sqlite(&self.path)(e))?;
        for a in &pending {
            tx.execute(
                "UPDATE approvals SET decision = ?3, decided_by = ?4, decided_ms = ?5, reason = ?6
                 WHERE run_id = ?1 AND stage = ?2 AND decision = 'pending'",
                params![run, a.stage, decision, who, now, reason],
            )
            .map_err(|e| super::sqlite(&self.path)(e))?;
        }
        tx.commit().map_err(|e| super::sqlite(&self.path)(e))?;
        Ok(pending
            .into_iter()
            .map(|a| ApprovalRecord {
                decision: decision.to_string(),
                decided_by: Some(who.to_string()),
                decided_ms: Some(now),
                reason: reason.map(str::to_string),
                ..a
            })
            .collect())
    }

    /// Claim `group` for `run` (and `stage`). With `cancel_in_progress`,
    /// every other run's claim on it is asked to cancel.
    pub fn claim(
        &self,
        tenant: &str,
        group: &str,
        run: &str,
        stage: Option<&str>,
        cancel_in_progress: bool,
    ) -> Result<i64, StoreError> {
        let (pid, start) = this_process();
        self.conn
            .execute(
                "INSERT INTO claims (tenant, grp, run_id, stage, host_pid, host_start, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant, group, run, stage, pid, start, now_ms() as i64],
            )
            .map_err(|e| self.err(e))?;
        let id = self.conn.last_insert_rowid();
        if cancel_in_progress {
            self.conn
                .execute(
                    "UPDATE claims SET cancelled_by = ?3 WHERE tenant = ?1 AND grp = ?2 AND run_id != ?3",
                    params![tenant, group, run],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(id)
    }

    /// The claim that holds `group` now: the oldest whose process is
    /// alive. Dead claims (their weir crashed or was killed) are removed.
    pub fn holder(&self, tenant: &str, group: &str) -> Result<Option<Claim>, StoreError> {
        let rows: Vec<(i64, String, Option<String>, i64, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT id, run_id, stage, host_pid, host_start FROM claims
                     WHERE tenant = ?1 AND grp = ?2 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![tenant, group], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?
        };
        for (id, run, stage, pid, start) in rows {
            if process_alive(pid, &start) {
                return Ok(Some(Claim { id, run, stage }));
            }
            tracing::info!(
                "concurrency group `{group}`: run {run}'s claim is dead (process {pid} is gone); released"
            );
            self.release(id)?;
        }
        Ok(None)
    }

    /// The live claims on `group` older than claim `id`, oldest first.
    /// Dead claims are removed, as by [`Store::holder`].
    pub fn ahead_of(&self, tenant: &str, group: &str, id: i64) -> Result<Vec<Claim>, StoreError> {
        let rows: Vec<(i64, String, Option<String>, i64, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT id, run_id, stage, host_pid, host_start FROM claims
                     WHERE tenant = ?1 AND grp = ?2 AND id < ?3 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![tenant, group, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?
        };
        let mut live = Vec::new();
        for (id, run, stage, pid, start) in rows {
            if process_alive(pid, &start) {
                live.push(Claim { id, run, stage });
            } else {
                self.release(id)?;
            }
        }
        Ok(live)
    }

    /// Give a claim up.
    pub fn release(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM claims WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Give up every claim `run` has.
    pub fn release_run(&self, run: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM claims WHERE run_id = ?1", params![run])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// If another run asked `run` to cancel: that run and the group.
    pub fn cancel_request(&self, run: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT cancelled_by, grp FROM claims WHERE run_id = ?1 AND cancelled_by IS NOT NULL LIMIT 1",
                params![run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Keep how each webhook delivery of `run` went.
    pub fn record_deliveries(
        &mut self,
        run: &str,
        deliveries: &[crate::notify::Delivery],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| super::sqlite(&self.path)(e))?;
        for d in deliveries {
            tx.execute(
                "INSERT INTO deliveries (run_id, delivery, event, url, attempts, delivered, last)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run, d.id, d.event, d.url, d.attempts, d.delivered, d.last],
            )
            .map_err(|e| super::sqlite(&self.path)(e))?;
        }
        tx.commit().map_err(|e| super::sqlite(&self.path)(e))
    }

    /// How `run`'s webhook deliveries went.
    pub fn deliveries(&self, run: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT delivery, event, url, attempts, delivered, last FROM deliveries WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![run], |r| {
            Ok(serde_json::json!({
                "delivery": r.get::<_, String>(0)?,
                "event": r.get::<_, String>(1)?,
                "url": r.get::<_, String>(2)?,
                "attempts": r.get::<_, i64>(3)?,
                "delivered": r.get::<_, bool>(4)?,
                "last": r.get::<_, String>(5)?,
            }))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recorder::{NewRun, Recorder};

    fn store_with_run(dir: &std::path::Path, id: &str) -> Store {
        let store = Store::open(dir).unwrap();
        let r = Recorder::start(
            store,
            &NewRun {
                id: id.into(),
                pipeline: "p".into(),
                pipeline_file: "p.toml".into(),
                tenant: "default".into(),
                workspace: "/tmp".into(),
                stages: vec!["ship".into()],
                pipeline_text: String::new(),
                options: String::new(),
                branch: None,
                commit: None,
            },
        )
        .unwrap();
        drop(r);
        Store::open(dir).unwrap()
    }

    #[test]
    fn approvals_are_decided_once_and_only_by_approvers() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_run(dir.path(), "r1");
        let a = store
            .request_approval("r1", "ship", "production", &["alice".into()], 60_000)
            .unwrap();
        assert_eq!(a.decision, "pending");
        let e = store.decide("r1", None, true, "mallory", None).unwrap_err();
        assert!(e.to_string().contains("`mallory` may not approve"), "{e}");
        let done = store.decide("r1", Some("ship"), true, "alice", None).unwrap();
        assert_eq!(done[0].decision, "approved");
        let e = store.decide("r1", None, false, "alice", Some("no")).unwrap_err();
        assert!(e.to_string().contains("`ship` (approved)"), "{e}");
        // Asking again keeps an approval ...
        let again = store
            .request_approval("r1", "ship", "production", &["alice".into()], 60_000)
            .unwrap();
        assert_eq!(again.decision, "approved");
        // ... and renews a timeout.
        store
            .conn
            .execute("UPDATE approvals SET decision = 'timed_out'", [])
            .unwrap();
        let renewed = store
            .request_approval("r1", "ship", "production", &["alice".into()], 60_000)
            .unwrap();
        assert_eq!(renewed.decision, "pending");
    }

    #[test]
    fn the_oldest_live_claim_holds_and_dead_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(dir.path(), "r1");
        // A claim by a process that no longer exists.
        store
            .conn
            .execute(
                "INSERT INTO claims (tenant, grp, run_id, host_pid, host_start, created_ms) VALUES ('t', 'g', 'gone', 2147483646, '1', 0)",
                [],
            )
            .unwrap();
        let first = store.claim("t", "g", "r1", None, false).unwrap();
        let second = store.claim("t", "g", "r2", Some("ship"), false).unwrap();
        assert_eq!(store.holder("t", "g").unwrap().map(|c| c.id), Some(first));
        assert_eq!(store.holder("other", "g").unwrap(), None);
        store.release(first).unwrap();
        assert_eq!(store.holder("t", "g").unwrap().map(|c| c.id), Some(second));
        store.claim("t", "g", "r3", None, true).unwrap();
        assert_eq!(
            store.cancel_request("r2").unwrap(),
            Some(("r3".to_string(), "g".to_string()))
        );
        assert_eq!(store.cancel_request("r3").unwrap(), None);
    }
}
