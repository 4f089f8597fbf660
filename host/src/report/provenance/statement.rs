//! The in-toto Statement v1 with the SLSA Provenance v1 predicate that
//! describes one run: what it made (subjects: artifacts and their sha256),
//! from what (the pipeline file's digest, the resolved parameters, the
//! commit checked out, every plugin's digest and WIT contract) and how
//! (builder, run id, start and finish).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::events::{Event, EventRecord, StageStatus};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA Provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a weir run is as a build: a URI naming this build definition's
/// shape (its parameters are documented in docs/security.md).
pub const BUILD_TYPE: &str = "urn:weir:build-type:pipeline-run:v1";
/// Names the builder in provenance (default `urn:weir:builder:HOSTNAME`).
pub const BUILDER_ID_ENV: &str = "WEIR_BUILDER_ID";

/// A plugin the run used.
#[derive(Debug, Clone)]
pub struct PluginDependency {
    /// Its name in the pipeline.
    pub name: String,
    /// `built-in` or its file.
    pub source: String,
    /// The version its manifest gives.
    pub version: String,
    /// sha256 of the component, hex.
    pub sha256: String,
    /// The WIT contract it is linked by (`weir:plugin@0.1.0`).
    pub wit: String,
    /// stage, analyzer, test-runner, strategy or deployer.
    pub kind: String,
}

/// What is known before the run starts.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The run.
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file, as given.
    pub pipeline_file: String,
    /// sha256 of the pipeline file's text, hex.
    pub pipeline_sha256: String,
    /// The branch the run is for.
    pub branch: Option<String>,
    /// The environment it deploys to.
    pub environment: Option<String>,
    /// The tenant it runs for.
    pub tenant: String,
    /// Each stage's `with`, as planned.
    pub stages: BTreeMap<String, Value>,
    /// The repository a checkout stage reads, by stage (when `with.repo`
    /// is written out, not an expression).
    pub repos: BTreeMap<String, String>,
    /// Every plugin, once.
    pub plugins: Vec<PluginDependency>,
    /// Who built it.
    pub builder_id: String,
}

/// The default builder id: `$WEIR_BUILDER_ID`, else this machine's name.
pub fn builder_id() -> String {
    if let Some(id) = std::env::var(BUILDER_ID_ENV).ok().filter(|v| !v.is_empty()) {
        return id;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("urn:weir:builder:{host}")
}

/// A subject: an artifact the run made.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    stage: String,
    name: String,
    sha256: String,
}

/// The statement, as the run's events tell it.
#[derive(Debug, Default)]
pub struct Collector {
    inputs: Inputs,
    started_ms: Option<u64>,
    finished_ms: Option<u64>,
    subjects: Vec<Subject>,
    commits: Vec<(String, String)>,
}

impl Collector {
    /// A collector for the run `inputs` describe.
    pub fn new(inputs: Inputs) -> Self {
        Self {
            inputs,
            ..Self::default()
        }
    }

    /// Take note of `record`.
    pub fn observe(&mut self, record: &EventRecord) {
        match &record.event {
            Event::RunStarted { .. } => {
                self.started_ms.get_or_insert(record.time_ms);
            }
            Event::StageFinished {
                stage,
                status,
                artifacts,
                outputs,
                ..
            } if *status == StageStatus::Succeeded => {
                for a in artifacts {
                    self.subjects.push(Subject {
                        stage: stage.clone(),
                        name: a.name.clone(),
                        sha256: a.sha256.clone(),
                    });
                }
                if let (Some(sha), Some(_)) = (outputs.get("sha"), outputs.get("dir")) {
                    self.commits.push((stage.clone(), sha.clone()));
                }
            }
            Event::RunFinished { .. } => self.finished_ms = Some(record.time_ms),
            _ => {}
        }
    }

    /// Whether the run made anything to describe.
    pub fn has_subjects(&self) -> bool {
        !self.subjects.is_empty()
    }

    /// The statement.
    pub fn statement(&self) -> Value {
        let i = &self.inputs;
        // A name made twice (by two stages) is told apart by its stage.
        let subjects: Vec<Value> = self
            .subjects
            .iter()
            .map(|s| {
                let twice = self.subjects.iter().filter(|o| o.name == s.name).count() > 1;
                let name = if twice {
                    format!("{}/{}", s.stage, s.name)
                } else {
                    s.name.clone()
                };
                json!({ "name": name, "digest": { "sha256": s.sha256 } })
            })
            .collect();
        let mut dependencies: Vec<Value> = self
            .commits
            .iter()
            .map(|(stage, sha)| {
                let mut d = json!({
                    "name": format!("source ({stage})"),
                    "digest": { "gitCommit": sha },
                });
                if let Some(repo) = i.repos.get(stage) {
                    d["uri"] = json!(git_uri(repo, sha));
                }
                d
            })
            .collect();
        dependencies.extend(i.plugins.iter().map(|p| {
            let uri = if p.source == "built-in" {
                format!("urn:weir:plugin:built-in:{}@{}", p.name, p.version)
            } else {
                format!("file://{}", p.source)
            };
            json!({
                "name": format!("plugin {}", p.name),
                "uri": uri,
                "digest": { "sha256": p.sha256 },
                "annotations": { "wit": p.wit, "kind": p.kind, "version": p.version },
            })
        }));
        let mut external = json!({
            "pipeline": {
                "name": i.pipeline,
                "file": i.pipeline_file,
                "digest": { "sha256": i.pipeline_sha256 },
            },
            "stages": i.stages,
        });
        if let Some(b) = &i.branch {
            external["branch"] = json!(b);
        }
        if let Some(e) = &i.environment {
            external["environment"] = json!(e);
        }
        let mut metadata = json!({ "invocationId": i.run_id });
        if let Some(ms) = self.started_ms {
            metadata["startedOn"] = json!(rfc3339(ms));
        }
        if let Some(ms) = self.finished_ms {
            metadata["finishedOn"] = json!(rfc3339(ms));
        }
        json!({
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": external,
                    "internalParameters": { "tenant": i.tenant },
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {
                        "id": i.builder_id,
                        "version": { "weir": env!("CARGO_PKG_VERSION") },
                    },
                    "metadata": metadata,
                },
            },
        })
    }
}

/// An SPDX-style download location for a repository at a commit.
fn git_uri(repo: &str, sha: &str) -> String {
    let repo = if repo.contains("://") || repo.starts_with("git@") {
        repo.to_string()
    } else {
        let p = std::path::Path::new(repo);
        let full = p
            .canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf());
        format!("file://{}", full.display())
    };
    format!("git+{repo}@{sha}")
}

/// Milliseconds since the epoch as RFC 3339 in UTC, to the second.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = crate::report::style::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_763_723_045_123), "2025-11-21T11:04:05Z");
    }

    #[test]
    fn git_uris_name_the_commit() {
        assert_eq!(
            git_uri("https://x.example/r.git", "abc"),
            "git+https://x.example/r.git@abc"
        );
        assert!(git_uri("rel/repo", "abc").starts_with("git+file:///"));
    }
}
