//! Reading the history back: runs (filtered, newest first), one run with
//! its stages, a run's logs, and pruning old runs.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::{Store, StoreError};

/// One run in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// Its id.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The tenant.
    pub tenant: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or
    /// `interrupted`.
    pub status: String,
    /// When it started (when it was queued, while it is), ms since the
    /// Unix epoch.
    pub started_ms: i64,
    /// How long it took, when it finished.
    pub duration_ms: Option<i64>,
    /// The branch it builds, when known.
    pub branch: Option<String>,
    /// The commit it builds, when known.
    pub commit: Option<String>,
    /// The server's repository it builds (runs of `weir serve`).
    pub repository: Option<String>,
    /// What started it: `cli`, `api`, `push`, `pull_request`, `rerun`.
    pub trigger: Option<String>,
    /// Why it ended as it did, when its stages do not say.
    pub reason: Option<String>,
}

/// Which runs to list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this branch.
    pub branch: Option<String>,
    /// Only runs started at or after this (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only runs started before this (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// Only runs listed after this one (its start and id): the next page.
    pub after: Option<(i64, String)>,
    /// At most this many.
    pub limit: Option<u32>,
}

/// One stage of a run, as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageRecord {
    /// Its name.
    pub name: String,
    /// Where it ended (or `waiting`, `running`, `interrupted`).
    pub status: String,
    /// How it failed.
    pub failure: Option<String>,
    /// Attempts made.
    pub attempts: i64,
    /// The plugin and version.
    pub plugin: Option<String>,
    /// Wall time.
    pub duration_ms: Option<i64>,
    /// Its summary line.
    pub summary: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Its outputs.
    pub outputs: Value,
    /// An analyzer's judgement.
    pub analysis: Option<Value>,
    /// A test runner's counts.
    pub tests: Option<Value>,
    /// Findings, worst first.
    pub findings: Vec<Value>,
    /// Artifacts kept.
    pub artifacts: Vec<Value>,
    /// Where its result came from when it did not run now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<Value>,
    /// A deploy stage's rollout steps (`rollout` events), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<Value>,
}

/// A run with its stages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunSummary,
    /// The pipeline file.
    pub pipeline_file: String,
    /// The workspace.
    pub workspace: String,
    /// The `weir worker` that runs it (or last ran it), for a run handed
    /// to workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Stages in plan order.
    pub stages: Vec<StageRecord>,
}

/// One stored log line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Its position in the run's event stream.
    pub seq: i64,
    /// The stage.
    pub stage: String,
    /// When.
    pub time_ms: i64,
    /// The level.
    pub level: String,
    /// The line.
    pub message: String,
}

/// What `weir run --resume` needs of a recorded run.
#[derive(Debug, Clone)]
pub struct ResumeInfo {
    /// Its status now.
    pub status: String,
    /// The pipeline file, as recorded.
    pub pipeline_file: String,
    /// The pipeline's text when the run started (absent for runs recorded
    /// before it was kept).
    pub pipeline_text: Option<String>,
    /// How it was started (JSON).
    pub options: Option<String>,
    /// The tenant.
    pub tenant: String,
    /// The workspace.
    pub workspace: String,
    /// Times resumed so far.
    pub resumes: u32,
    /// Stages that succeeded, with their last `stage_finished` event.
    pub succeeded: Vec<(String, String)>,
}

/// The columns [`run_summary`] reads, in its order.
const SUMMARY_COLUMNS: &str =
    "id, pipeline, tenant, status, started_ms, duration_ms, branch, commit_sha, repository, trigger, reason";

/// How many columns [`SUMMARY_COLUMNS`] names.
const SUMMARY_WIDTH: usize = 11;

fn run_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        tenant: r.get(2)?,
        status: r.get(3)?,
        started_ms: r.get(4)?,
        duration_ms: r.get(5)?,
        branch: r.get(6)?,
        commit: r.get(7)?,
        repository: r.get(8)?,
        trigger: r.get(9)?,
        reason: r.get(10)?,
    })
}

fn parse(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl Store {
    /// Runs matching `filter`, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        // Only the conditions asked for, so SQLite can use the indexes.
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut text = |condition, value: &Option<String>, values: &mut Vec<rusqlite::types::Value>| {
            if let Some(v) = value {
                conditions.push(condition);
                values.push(v.clone().into());
            }
        };
        text("pipeline = ?", &filter.pipeline, &mut values);
        text("status = ?", &filter.status, &mut values);
        text("tenant = ?", &filter.tenant, &mut values);
        text("branch = ?", &filter.branch, &mut values);
        if let Some(since) = filter.since_ms {
            conditions.push("started_ms >= ?");
            values.push(since.into());
        }
        if let Some(until) = filter.until_ms {
            conditions.push("started_ms < ?");
            values.push(until.into());
        }
        if let Some((started, id)) = &filter.after {
            conditions.push("(started_ms < ? OR (started_ms = ? AND id < ?))");
            values.extend([(*started).into(), (*started).into(), id.clone().into()]);
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(filter.limit.map_or(-1, i64::from).into());
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM runs {clause} ORDER BY started_ms DESC, id DESC LIMIT ?"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(rusqlite::params_from_iter(values), run_summary)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Run `id` alone, without its stages.
    pub fn run_summary(&self, id: &str) -> Result<RunSummary, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                run_summary,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))
    }

    /// Run `id` with its stages, findings and artifacts.
    pub fn run_detail(&self, id: &str) -> Result<RunDetail, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, pipeline_file, workspace, host_start FROM runs WHERE id = ?1"
                ),
                params![id],
                |r| {
                    Ok((
                        run_summary(r)?,
                        r.get::<_, String>(SUMMARY_WIDTH)?,
                        r.get::<_, String>(SUMMARY_WIDTH + 1)?,
                        r.get::<_, String>(SUMMARY_WIDTH + 2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, status, failure, attempts, plugin, duration_ms, summary, error, outputs, analysis, tests, reused
                 FROM stages WHERE run_id = ?1 ORDER BY position",
            )
            .map_err(|e| self.err(e))?;
        let mut stages: Vec<StageRecord> = stmt
            .query_map(params![id], |r| {
                Ok(StageRecord {
                    name: r.get(0)?,
                    status: r.get(1)?,
                    failure: r.get(2)?,
                    attempts: r.get(3)?,
                    plugin: r.get(4)?,
                    duration_ms: r.get(5)?,
                    summary: r.get(6)?,
                    error: r.get(7)?,
                    outputs: parse(r.get(8)?).unwrap_or(Value::Object(Default::default())),
                    analysis: parse(r.get(9)?),
                    tests: parse(r.get(10)?),
                    findings: Vec::new(),
                    artifacts: Vec::new(),
                    reused: parse(r.get(11)?),
                    rollout: Vec::new(),
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        for s in &mut stages {
            s.findings = self.rows_as_json(
                "SELECT rule, severity, message, path, line, col FROM findings WHERE run_id = ?1 AND stage = ?2
                 ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, rowid",
                id,
                &s.name,
                &["rule", "severity", "message", "path", "line", "column"],
            )?;
            let mut steps = self
                .conn
                .prepare("SELECT body FROM events WHERE run_id = ?1 AND stage = ?2 AND kind = 'rollout' ORDER BY seq")
                .map_err(|e| self.err(e))?;
            s.rollout = steps
                .query_map(params![id, s.name], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
                .map_err(|e| self.err(e))?
                .iter()
                .filter_map(|b| {
                    let mut v: Value = serde_json::from_str(b).ok()?;
                    let m = v.as_object_mut()?;
                    for k in ["time_ms", "run", "event", "stage"] {
                        m.remove(k);
                    }
                    Some(v)
                })
                .collect();
            s.artifacts = self.rows_as_json(
                "SELECT name, path, sha256, size, stored FROM artifacts WHERE run_id = ?1 AND stage = ?2 ORDER BY rowid",
                id,
                &s.name,
                &["name", "path", "sha256", "size", "stored"],
            )?;
        }
        Ok(RunDetail {
            run: row.0,
            pipeline_file: row.1,
            workspace: row.2,
            worker: row
                .3
                .strip_prefix(super::remote::WORKER_MARK)
                .map(|w| w.rsplit_once('#').map_or(w, |(w, _)| w).to_string()),
            stages,
        })
    }

    /// The failed and errored test cases of `stage` in run `id`.
    pub fn failed_tests(&self, id: &str, stage: &str) -> Result<Vec<Value>, StoreError> {
        self.rows_as_json(
            "SELECT suite, name, status, message, file FROM test_cases
             WHERE run_id = ?1 AND stage = ?2 AND status IN ('failed', 'errored') ORDER BY rowid LIMIT 200",
            id,
            stage,
            &["suite", "name", "status", "message", "file"],
        )
    }

    fn rows_as_json(
        &self,
        sql: &str,
        run: &str,
        stage: &str,
        names: &[&str],
    ) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        stmt.query_map(params![run, stage], |r| {
            let mut m = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                let v: rusqlite::types::Value = r.get(i)?;
                let v = match v {
                    rusqlite::types::Value::Null => continue,
                    rusqlite::types::Value::Integer(n) => Value::from(n),
                    rusqlite::types::Value::Real(f) => Value::from(f),
                    rusqlite::types::Value::Text(t) => Value::from(t),
                    rusqlite::types::Value::Blob(_) => continue,
                };
                m.insert((*n).to_string(), v);
            }
            Ok(Value::Object(m))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Log lines of run `id` (of `stage` only, when given) after event
    /// `after` in the run's stream, in order.
    pub fn logs(&self, id: &str, stage: Option<&str>, after: i64) -> Result<Vec<LogLine>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, stage, time_ms, level, message FROM logs
                 WHERE run_id = ?1 AND (?2 IS NULL OR stage = ?2) AND seq > ?3 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, stage, after], |r| {
            Ok(LogLine {
                seq: r.get(0)?,
                stage: r.get(1)?,
                time_ms: r.get(2)?,
                level: r.get(3)?,
                message: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// What resuming run `id` needs.
    pub fn resume_info(&self, id: &str) -> Result<ResumeInfo, StoreError> {
        let mut info = self
            .conn
            .query_row(
                "SELECT status, pipeline_file, pipeline_text, options, tenant, workspace, resumes FROM runs WHERE id = ?1",
                params![id],
                |r| {
                    Ok(ResumeInfo {
                        status: r.get(0)?,
                        pipeline_file: r.get(1)?,
                        pipeline_text: r.get(2)?,
                        options: r.get(3)?,
                        tenant: r.get(4)?,
                        workspace: r.get(5)?,
                        resumes: r.get(6)?,
                        succeeded: Vec::new(),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.name, (SELECT e.body FROM events e WHERE e.run_id = s.run_id AND e.stage = s.name
                                  AND e.kind = 'stage_finished' ORDER BY e.seq DESC LIMIT 1)
                 FROM stages s WHERE s.run_id = ?1 AND s.status = 'succeeded' ORDER BY s.position",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, Option<String>)> = stmt
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        info.succeeded = rows.into_iter().filter_map(|(n, b)| Some((n, b?))).collect();
        Ok(info)
    }

    /// The status of run `id`.
    pub fn status(&self, id: &str) -> Result<String, StoreError> {
        self.conn
            .query_row("SELECT status FROM runs WHERE id = ?1", params![id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))
    }

    /// Finished runs to prune: all but the newest `keep`, and those that
    /// started before `before_ms`. Running runs are never pruned.
    pub fn prunable(&self, keep: Option<u32>, before_ms: Option<i64>) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, started_ms FROM runs WHERE status != 'running' ORDER BY started_ms DESC, id DESC",
            )
            .map_err(|e| self.err(e))?;
        let runs: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(runs
            .into_iter()
            .enumerate()
            .filter(|(i, (_, started))| {
                keep.is_some_and(|k| *i >= k as usize) || before_ms.is_some_and(|b| *started < b)
            })
            .map(|(_, (id, _))| id)
            .collect())
    }

    /// Delete run `id` and everything recorded with it.
    pub fn delete_run(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM runs WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
