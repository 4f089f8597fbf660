//! An analyzer's replay record, typed: what it was asked, the host calls
//! it made with their answers, the input files it read and what it
//! returned. The executor writes one after every analyzer attempt;
//! `weir replay` reads it back through the same types. The history keeps
//! it as the JSON columns of a [`Recording`] row.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attempt::{AttemptRequest, AttemptResult};
use crate::capabilities::tape::Call;
use crate::stage_cache::files::FileSet;
use crate::store::cache::Recording;

/// What the analyzer was asked: the attempt's request, with secret values
/// replaced by the mask (they are never recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The `with` table as JSON text.
    pub config: String,
    /// The plugin's environment, secrets masked.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Names in `env` whose values are secrets.
    #[serde(default)]
    pub secret_env: Vec<String>,
    /// Upstream stages' outputs.
    #[serde(default)]
    pub inputs: Vec<(String, Vec<(String, String)>)>,
    /// The environment the stage targeted.
    #[serde(default)]
    pub environment: Option<String>,
    /// Which attempt it was.
    pub attempt: u32,
    /// Its timeout.
    pub timeout_ms: u64,
    /// Granted directories outside the workspace that the plugin read.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
}

impl RecordedRequest {
    /// `request` as recorded: each secret in `env` becomes `mask`.
    pub fn of(request: &AttemptRequest, read_dirs: Vec<PathBuf>, mask: &str) -> Self {
        Self {
            config: request.config.clone(),
            env: request
                .env
                .iter()
                .map(|(k, v)| {
                    let value = if request.secret_env.contains(k) { mask } else { v };
                    (k.clone(), value.to_string())
                })
                .collect(),
            secret_env: request.secret_env.clone(),
            inputs: request.inputs.clone(),
            environment: request.environment.clone(),
            attempt: request.attempt,
            timeout_ms: request.timeout.as_millis() as u64,
            read_dirs,
        }
    }

    /// The attempt a replay makes of `stage`: as recorded, with the
    /// stage's grants and gate, no sandbox (its programs' answers come
    /// from the tape) and no cache.
    pub fn attempt(&self, stage: &crate::plan::PlannedStage) -> AttemptRequest {
        AttemptRequest {
            stage: 0,
            stage_name: stage.name.to_string(),
            attempt: self.attempt,
            config: self.config.clone(),
            env: self.env.clone(),
            secret_env: self.secret_env.clone(),
            inputs: self.inputs.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
            environment: self.environment.clone(),
            grants: stage.grants.clone(),
            sandbox: crate::plan::SandboxChoice::None,
            gate: stage.gate,
            cache: Default::default(),
        }
    }
}

/// The parts of a replay record beyond the row's plain columns.
#[derive(Debug, Clone)]
pub struct ReplayRecord {
    /// What the analyzer was asked.
    pub request: RecordedRequest,
    /// Its host calls, in order, with their answers.
    pub calls: Vec<Call>,
    /// Its input files with their digests.
    pub files: FileSet,
    /// What it returned; `None` in records older than results.
    pub result: Option<AttemptResult>,
}

/// A replay record that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("the replay record's {part} is unreadable: {source}")]
pub struct Unreadable {
    /// Which part: `request`, `calls`, `files`, `result`.
    pub part: &'static str,
    /// Why.
    pub source: serde_json::Error,
}

impl ReplayRecord {
    /// Read the typed parts of `row`.
    pub fn read(row: &Recording) -> Result<Self, Unreadable> {
        fn part<T: serde::de::DeserializeOwned>(part: &'static str, text: &str) -> Result<T, Unreadable> {
            serde_json::from_str(text).map_err(|source| Unreadable { part, source })
        }
        Ok(Self {
            request: part("request", &row.request)?,
            calls: part("calls", &row.calls)?,
            files: part("files", &row.files)?,
            result: row.result.as_deref().map(|r| part("result", r)).transpose()?,
        })
    }

    /// The columns a row keeps these parts in: (request, calls, files,
    /// result).
    pub fn columns(&self) -> (String, String, String, Option<String>) {
        let text =
            |v: Result<String, serde_json::Error>, empty: &str| v.unwrap_or_else(|_| empty.to_string());
        (
            text(serde_json::to_string(&self.request), "{}"),
            text(serde_json::to_string(&self.calls), "[]"),
            text(serde_json::to_string(&self.files), "{}"),
            self.result.as_ref().and_then(|r| serde_json::to_string(r).ok()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> crate::plan::PlannedStage {
        let text = "[pipeline]\nname = \"t\"\n[stages.scan]\nrun = \"true\"\n";
        let loaded =
            crate::config::parse(std::path::Path::new("pipeline.toml"), text.to_string()).expect("parses");
        let plan = crate::plan::build(loaded, &crate::plugins::builtin::names()).expect("plans");
        plan.stages[0].clone()
    }

    #[test]
    fn a_record_reads_back_as_it_was_written_and_secrets_stay_masked() {
        let stage = stage();
        let request = AttemptRequest {
            stage: 3,
            stage_name: "scan".into(),
            attempt: 2,
            config: r#"{"depth":1}"#.into(),
            env: vec![("TOKEN".into(), "hunter2".into()), ("MODE".into(), "fast".into())],
            secret_env: vec!["TOKEN".into()],
            inputs: vec![("build".into(), vec![("digest".into(), "abc".into())])],
            timeout: Duration::from_secs(90),
            environment: Some("prod".into()),
            grants: stage.grants.clone(),
            sandbox: crate::plan::SandboxChoice::Auto,
            gate: stage.gate,
            cache: Default::default(),
        };
        let record = ReplayRecord {
            request: RecordedRequest::of(&request, vec![PathBuf::from("/srv/src")], "***"),
            calls: vec![Call {
                import: "process.run".into(),
                request: serde_json::json!({"program": "git"}),
                answer: serde_json::json!({"ok": {"exit": 0}}),
            }],
            files: FileSet::default(),
            result: Some(AttemptResult::default()),
        };
        let (req, calls, files, result) = record.columns();
        assert!(!req.contains("hunter2"), "{req}");
        let row = Recording {
            run_id: "r".into(),
            stage: "scan".into(),
            plugin: "p 1".into(),
            plugin_sha256: "00".into(),
            request: req,
            calls,
            files,
            complete: true,
            verdict: None,
            result,
        };
        let back = ReplayRecord::read(&row).expect("reads back");
        assert_eq!(back.request, record.request);
        assert_eq!(back.calls, record.calls);
        assert_eq!(back.request.env[0], ("TOKEN".to_string(), "***".to_string()));
        let attempt = back.request.attempt(&stage);
        assert_eq!(attempt.attempt, 2);
        assert_eq!(attempt.timeout, Duration::from_secs(90));
        assert_eq!(attempt.environment.as_deref(), Some("prod"));
    }

    #[test]
    fn a_record_written_by_the_untyped_writer_still_reads() {
        // The shape `json!` wrote before the record was typed.
        let old = r#"{"config":"{}","env":[["A","1"]],"secret_env":[],"inputs":[],"environment":null,"attempt":1,"timeout_ms":600000,"read_dirs":["/x"]}"#;
        let request: RecordedRequest = serde_json::from_str(old).expect("old records read");
        assert_eq!(request.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(request.read_dirs, vec![PathBuf::from("/x")]);
        let broken = Recording {
            run_id: "r".into(),
            stage: "s".into(),
            plugin: String::new(),
            plugin_sha256: String::new(),
            request: old.into(),
            calls: "not json".into(),
            files: "{}".into(),
            complete: false,
            verdict: None,
            result: None,
        };
        let e = ReplayRecord::read(&broken).expect_err("calls are broken");
        assert_eq!(e.part, "calls");
    }
}
