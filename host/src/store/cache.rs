//! The stage cache's and replay's tables: entries by key, and what
//! analyzers received.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A stage result to keep under a key.
#[derive(Debug, Clone)]
pub struct CacheEntry<'a> {
    /// The key.
    pub key: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The stage.
    pub stage: &'a str,
    /// The run that produced it.
    pub run_id: &'a str,
    /// The key's parts and files (JSON).
    pub parts: String,
    /// The result (JSON).
    pub result: String,
}

/// What an analyzer received in one run, for `weir replay`.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The run.
    pub run_id: String,
    /// The stage.
    pub stage: String,
    /// `name version` of the plugin that ran.
    pub plugin: String,
    /// Its sha256.
    pub plugin_sha256: String,
    /// The attempt's request (JSON).
    pub request: String,
    /// Host import calls with their answers (JSON).
    pub calls: String,
    /// Input files with their digests (JSON).
    pub files: String,
    /// Whether every input file's contents were kept.
    pub complete: bool,
    /// The verdict it reached.
    pub verdict: Option<String>,
    /// The attempt's result (JSON).
    pub result: Option<String>,
}

impl Store {
    /// The entry with `key` for `tenant`: the run that produced it and
    /// its result.
    pub fn cache_get(&self, tenant: &str, key: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT run_id, result FROM stage_cache WHERE tenant = ?1 AND key = ?2",
                params![tenant, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The parts of the newest entry of `stage`, to say what changed.
    pub fn cache_newest(
        &self,
        tenant: &str,
        pipeline: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT parts FROM stage_cache WHERE tenant = ?1 AND pipeline = ?2 AND stage = ?3
                 ORDER BY created_ms DESC LIMIT 1",
                params![tenant, pipeline, stage],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Keep `entry` (replacing one with the same key).
    pub fn cache_put(&self, entry: &CacheEntry<'_>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO stage_cache (key, tenant, pipeline, stage, run_id, created_ms, parts, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    entry.key,
                    entry.tenant,
                    entry.pipeline,
                    entry.stage,
                    entry.run_id,
                    crate::events::now_ms() as i64,
                    entry.parts,
                    entry.result
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Keep what an analyzer received.
    pub fn put_recording(&self, r: &Recording) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO recordings (run_id, stage, plugin, plugin_sha256, request, calls, files, complete, verdict, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.run_id,
                    r.stage,
                    r.plugin,
                    r.plugin_sha256,
                    r.request,
                    r.calls,
                    r.files,
                    r.complete,
                    r.verdict,
                    r.result
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// What stage `stage` of run `run` received, if it was recorded.
    pub fn recording(&self, run: &str, stage: &str) -> Result<Option<Recording>, StoreError> {
        self.conn
            .query_row(
                "SELECT plugin, plugin_sha256, request, calls, files, complete, verdict, result
                 FROM recordings WHERE run_id = ?1 AND stage = ?2",
                params![run, stage],
                |r| {
                    Ok(Recording {
                        run_id: run.to_string(),
                        stage: stage.to_string(),
                        plugin: r.get(0)?,
                        plugin_sha256: r.get(1)?,
                        request: r.get(2)?,
                        calls: r.get(3)?,
                        files: r.get(4)?,
                        complete: r.get(5)?,
                        verdict: r.get(6)?,
                        result: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stages of run `run` that have a recording.
    pub fn recorded_stages(&self, run: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT stage FROM recordings WHERE run_id = ?1 ORDER BY stage")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![run], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Every blob a recording refers to.
    pub fn referenced_blobs(&self) -> Result<HashSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT files FROM recordings")
            .map_err(|e| self.err(e))?;
        let all: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut keep = HashSet::new();
        for text in all {
            if let Ok(set) = serde_json::from_str::<crate::stage_cache::files::FileSet>(&text) {
                keep.extend(set.files.into_values().map(|f| f.sha256));
            }
        }
        Ok(keep)
    }
}
