//! What `weir serve` keeps besides runs: its queue (a run is recorded
//! `queued` the moment it is accepted, and its job waits here until it
//! ends), API tokens (only their SHA-256), and the forge deliveries it has
//! taken, so a redelivery queues nothing.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A run the server accepted, as it is recorded.
#[derive(Debug, Clone)]
pub struct QueuedRun {
    /// The run's id, from now on.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// The server's repository it builds.
    pub repository: String,
    /// The branch, when it builds one.
    pub branch: Option<String>,
    /// The commit.
    pub commit: String,
    /// `api`, `push`, `pull_request`, `rerun`.
    pub trigger: String,
    /// What to run (the server's JSON).
    pub job: String,
}

/// A job of the queue.
#[derive(Debug, Clone)]
pub struct Job {
    /// The run.
    pub run_id: String,
    /// Its tenant.
    pub tenant: String,
    /// What to run (the server's JSON).
    pub job: String,
    /// The run's status now.
    pub status: String,
    /// How many times it was resumed.
    pub resumes: u32,
}

/// Whether a run was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued now.
    Queued,
    /// The delivery was taken before; its run (if it queued one).
    Duplicate(Option<String>),
}

/// An API token, without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    /// Its id (`tok_…`), to revoke it by.
    pub id: String,
    /// Its tenant; `None` for an operator's token.
    pub tenant: Option<String>,
    /// What the operator called it.
    pub label: Option<String>,
    /// When it was made.
    pub created_ms: i64,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
}

/// One attempt of a stage.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// The stage.
    pub stage: String,
    /// Its number, from 1, across resumes.
    pub attempt: i64,
    /// The plugin and version.
    pub plugin: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// `running`, `succeeded`, `failed`, `retried`, `cancelled` or
    /// `interrupted`.
    pub status: String,
    /// Its error.
    pub error: Option<String>,
}

/// An artifact a stage kept.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ArtifactRecord {
    /// The stage that kept it.
    pub stage: String,
    /// Its name.
    pub name: String,
    /// Where it was in the workspace.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: i64,
    /// Where it is kept on the host (not shown to API callers).
    #[serde(skip)]
    pub stored: String,
}

/// A service a tenant's runs deployed, with the environment they named.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Deployed {
    /// The service on the target.
    pub service: String,
    /// The environment of the newest run that deployed it.
    pub environment: Option<String>,
    /// The pipeline.
    pub pipeline: String,
    /// The tenant.
    pub tenant: String,
    /// The newest run that deployed it.
    pub last_run: String,
}

fn token(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        label: r.get(2)?,
        created_ms: r.get(3)?,
        revoked_ms: r.get(4)?,
    })
}

fn now() -> i64 {
    crate::events::now_ms() as i64
}

impl Store {
    /// Record `run` as `queued` with its job, in one transaction with the
    /// forge `delivery` (forge, id) that asked for it, if one did. A
    /// delivery already taken queues nothing.
    pub fn enqueue(
        &mut self,
        run: &QueuedRun,
        delivery: Option<(&str, &str)>,
    ) -> Result<Enqueued, StoreError> {
        let path = self.path.clone();
        let wrap = super::sqlite(&path);
        let tx = self.conn.transaction().map_err(wrap)?;
        let at = now();
        if let Some((forge, id)) = delivery {
            let fresh = tx
                .execute(
                    "INSERT INTO hook_deliveries (forge, delivery, received_ms, run_id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![forge, id, at, run.id],
                )
                .map_err(wrap)?;
            if fresh == 0 {
                let earlier = tx
                    .query_row(
                        "SELECT run_id FROM hook_deliveries WHERE forge = ?1 AND delivery = ?2",
                        params![forge, id],
                        |r| r.get(0),
                    )
                    .map_err(wrap)?;
                return Ok(Enqueued::Duplicate(earlier));
            }
        }
        tx.execute(
            "INSERT INTO runs (id, pipeline, pipeline_file, tenant, status, started_ms, workspace, host_pid, host_start,
                               branch, commit_sha, repository, trigger)
             VALUES (?1, ?2, '', ?3, 'queued', ?4, '', 0, '', ?5, ?6, ?2, ?7)",
            params![run.id, run.repository, run.tenant, at, run.branch, run.commit, run.trigger],
        )
        .map_err(wrap)?;
        tx.execute(
            "INSERT INTO queue (run_id, tenant, job, state, queued_ms) VALUES (?1, ?2, ?3, 'queued', ?4)",
            params![run.id, run.tenant, run.job, at],
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(Enqueued::Queued)
    }

    /// Take a forge delivery that queues no run (an event the server
    /// ignores), so its redelivery is known too. False when taken before.
    pub fn take_delivery(&self, forge: &str, delivery: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "INSERT INTO hook_deliveries (forge, delivery, received_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![forge, delivery, now()],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// The run a forge delivery queued.
    pub fn delivery_run(&self, forge: &str, delivery: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT run_id FROM hook_deliveries WHERE forge = ?1 AND delivery = ?2",
                params![forge, delivery],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// Jobs in `state` (`queued`, `running`), oldest first.
    pub fn jobs(&self, state: &str) -> Result<Vec<Job>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT q.run_id, q.tenant, q.job, r.status, r.resumes FROM queue q JOIN runs r ON r.id = q.run_id
                 WHERE q.state = ?1 ORDER BY q.queued_ms, q.run_id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![state], |r| {
            Ok(Job {
                run_id: r.get(0)?,
                tenant: r.get(1)?,
                job: r.get(2)?,
                status: r.get(3)?,
                resumes: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The job of server run `id` (`None` for a run the server did not
    /// start).
    pub fn job_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT job FROM queue WHERE run_id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Run `id`'s status and, for a server run, its job's state: whether
    /// more of it is still to come.
    pub fn still_going(&self, id: &str) -> Result<bool, StoreError> {
        let (status, job): (String, Option<String>) = self
            .conn
            .query_row(
                "SELECT r.status, q.state FROM runs r LEFT JOIN queue q ON q.run_id = r.id WHERE r.id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        Ok(matches!(status.as_str(), "queued" | "running")
            || (status == "interrupted" && matches!(job.as_deref(), Some("queued" | "running"))))
    }

    /// Run `id`'s events after `seq`, at most `limit`: (seq, kind, the
    /// `--json` line).
    pub fn events_after(
        &self,
        id: &str,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, kind, body FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, seq, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// How many jobs wait.
    pub fn queue_depth(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM queue WHERE state = 'queued'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// Move job `run` from `from` to `to`; false when it was not in `from`
    /// (a queued run cancelled meanwhile).
    pub fn move_job(&self, run: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE queue SET state = ?3 WHERE run_id = ?1 AND state = ?2",
                params![run, from, to],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// End run `id` as `status` for `reason`, when its own events cannot
    /// (it never started, or its process is gone): its unfinished stages
    /// end the same way and its job is done. False when it had already
    /// ended.
    pub fn end_run(&mut self, id: &str, status: &str, reason: &str) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let wrap = super::sqlite(&path);
        let tx = self.conn.transaction().map_err(wrap)?;
        let at = now();
        let ended = tx
            .execute(
                "UPDATE runs SET status = ?2, reason = ?3, finished_ms = ?4, duration_ms = ?4 - started_ms
                 WHERE id = ?1 AND status IN ('queued', 'running', 'interrupted')",
                params![id, status, reason, at],
            )
            .map_err(wrap)?;
        tx.execute(
            "UPDATE stages SET status = ?2, finished_ms = ?3 WHERE run_id = ?1 AND status IN ('waiting', 'running', 'interrupted')",
            params![id, if status == "cancelled" { "cancelled" } else { "interrupted" }, at],
        )
        .map_err(wrap)?;
        tx.execute(
            "UPDATE attempts SET status = ?2, finished_ms = ?3 WHERE run_id = ?1 AND status = 'running'",
            params![
                id,
                if status == "cancelled" {
                    "cancelled"
                } else {
                    "interrupted"
                },
                at
            ],
        )
        .map_err(wrap)?;
        tx.execute("UPDATE queue SET state = 'done' WHERE run_id = ?1", params![id])
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(ended == 1)
    }

    /// Say why run `id` ended as it did, besides its stages (a problem
    /// around the run, a cancel's cause).
    pub fn set_reason(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE runs SET reason = ?2 WHERE id = ?1", params![id, reason])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Keep a new API token's hash.
    pub fn add_token(
        &self,
        id: &str,
        tenant: Option<&str>,
        sha256: &str,
        label: Option<&str>,
    ) -> Result<TokenRecord, StoreError> {
        let at = now();
        self.conn
            .execute(
                "INSERT INTO api_tokens (id, tenant, sha256, label, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, sha256, label, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(TokenRecord {
            id: id.to_string(),
            tenant: tenant.map(str::to_string),
            label: label.map(str::to_string),
            created_ms: at,
            revoked_ms: None,
        })
    }

    /// The live token whose secret hashes to `sha256`.
    pub fn token_by_hash(&self, sha256: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, tenant, label, created_ms, revoked_ms FROM api_tokens WHERE sha256 = ?1 AND revoked_ms IS NULL",
            )
            .and_then(|mut s| s.query_row(params![sha256], token).optional())
            .map_err(|e| self.err(e))
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, tenant, label, created_ms, revoked_ms FROM api_tokens ORDER BY created_ms DESC, id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], token)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Revoke token `id`; false when no live token has it.
    pub fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, now()],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// Every attempt of every stage of run `id`, in order.
    pub fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stage, attempt, plugin, started_ms, finished_ms, status, error FROM attempts WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id], |r| {
            Ok(AttemptRecord {
                stage: r.get(0)?,
                attempt: r.get(1)?,
                plugin: r.get(2)?,
                started_ms: r.get(3)?,
                finished_ms: r.get(4)?,
                status: r.get(5)?,
                error: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Every artifact of run `id`, in the order they were kept.
    pub fn artifacts(&self, id: &str) -> Result<Vec<ArtifactRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT stage, name, path, sha256, size, stored FROM artifacts WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id], |r| {
            Ok(ArtifactRecord {
                stage: r.get(0)?,
                name: r.get(1)?,
                path: r.get(2)?,
                sha256: r.get(3)?,
                size: r.get(4)?,
                stored: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Approval requests still waiting, oldest first: `tenant`'s, or all.
    pub fn pending_approvals(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<super::coordination::ApprovalRecord>, StoreError> {
        let ids: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT a.run_id, a.stage FROM approvals a JOIN runs r ON r.id = a.run_id
                     WHERE a.decision = 'pending' AND (?1 IS NULL OR r.tenant = ?1) ORDER BY a.requested_ms",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?
        };
        let mut out = Vec::new();
        for (run, stage) in ids {
            if let Some(a) = self.approval(&run, &stage)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The services runs deployed (their `rollout` events): `tenant`'s,
    /// or all; each with its newest run.
    pub fn deployed(&self, tenant: Option<&str>) -> Result<Vec<Deployed>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT json_extract(e.body, '$.service') AS service, json_extract(r.options, '$.environment'),
                        r.pipeline, r.tenant, r.id, MAX(e.time_ms)
                 FROM events e JOIN runs r ON r.id = e.run_id
                 WHERE e.kind = 'rollout' AND (?1 IS NULL OR r.tenant = ?1)
                 GROUP BY service, r.tenant ORDER BY service",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![tenant], |r| {
            Ok(Deployed {
                service: r.get(0)?,
                environment: r.get(1)?,
                pipeline: r.get(2)?,
                tenant: r.get(3)?,
                last_run: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// How many runs are in each status, for `/metrics`.
    pub fn runs_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recorder::{NewRun, Recorder};

    fn queued(id: &str) -> QueuedRun {
        QueuedRun {
            id: id.into(),
            tenant: "acme".into(),
            repository: "app".into(),
            branch: Some("main".into()),
            commit: "0123abcd".into(),
            trigger: "push".into(),
            job: "{}".into(),
        }
    }

    #[test]
    fn a_delivery_queues_one_run_however_often_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let first = store.enqueue(&queued("r1"), Some(("github", "d-1"))).unwrap();
        let again = store.enqueue(&queued("r2"), Some(("github", "d-1"))).unwrap();
        assert_eq!(first, Enqueued::Queued);
        assert_eq!(again, Enqueued::Duplicate(Some("r1".into())));
        assert_eq!(store.queue_depth().unwrap(), 1);
        assert!(matches!(store.run_summary("r2"), Err(StoreError::NoSuchRun(_))));
        let r1 = store.run_summary("r1").unwrap();
        assert_eq!(
            (r1.status.as_str(), r1.trigger.as_deref()),
            ("queued", Some("push"))
        );
    }

    #[test]
    fn a_queued_run_starts_under_its_id_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.enqueue(&queued("r1"), None).unwrap();
        let run = |tenant: &str| NewRun {
            id: "r1".into(),
            pipeline: "p".into(),
            pipeline_file: "p.toml".into(),
            tenant: tenant.into(),
            workspace: "/tmp".into(),
            stages: vec!["a".into()],
            pipeline_text: String::new(),
            options: String::new(),
            branch: None,
            commit: None,
        };
        // Another tenant cannot take the queued run's id.
        let other = Recorder::start(Store::open(dir.path()).unwrap(), &run("other"));
        assert!(matches!(other, Err(StoreError::Taken(_))));
        let r = Recorder::start(Store::open(dir.path()).unwrap(), &run("acme")).unwrap();
        r.finish().unwrap();
        let summary = store.run_summary("r1").unwrap();
        assert_eq!(summary.status, "running");
        assert_eq!(
            summary.branch.as_deref(),
            Some("main"),
            "the queued run's branch stays"
        );
        assert!(matches!(
            Recorder::start(Store::open(dir.path()).unwrap(), &run("acme")),
            Err(StoreError::Taken(_))
        ));
    }

    #[test]
    fn ending_a_queued_run_ends_its_job() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.enqueue(&queued("r1"), None).unwrap();
        assert!(
            store
                .end_run("r1", "cancelled", "cancelled while queued")
                .unwrap()
        );
        assert!(!store.end_run("r1", "failed", "again").unwrap());
        assert!(store.jobs("queued").unwrap().is_empty());
        let r1 = store.run_summary("r1").unwrap();
        assert_eq!(r1.status, "cancelled");
        assert_eq!(r1.reason.as_deref(), Some("cancelled while queued"));
    }

    #[test]
    fn tokens_are_found_by_hash_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.add_token("tok_1", Some("acme"), "ab12", None).unwrap();
        assert_eq!(
            store.token_by_hash("ab12").unwrap().unwrap().tenant.as_deref(),
            Some("acme")
        );
        assert!(store.revoke_token("tok_1").unwrap());
        assert!(!store.revoke_token("tok_1").unwrap());
        assert!(store.token_by_hash("ab12").unwrap().is_none());
    }
}
