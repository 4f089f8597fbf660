//! What the executor remembers across runs: the stage cache (checked
//! before a stage's first attempt, filled after it succeeds) and each
//! analyzer's replay record (its request, its host calls with their
//! answers, its input files with their contents in the blob store).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::bindings::types::{Capability, PluginKind};
use crate::capabilities::tape::Tape;
use crate::events::{CacheStatus, Event, EventSink, Reused};
use crate::plugins::LoadedPlugin;
use crate::replay_record::{RecordedRequest, ReplayRecord};
use crate::run::{AttemptRequest, AttemptResult, CacheCheck};
use crate::stage_cache::files::{self, FileDigest, FileSet};
use crate::stage_cache::{self, Key, KeySource, Pending};
use crate::stage_store::RunInfo;
use crate::store::History;
use crate::store::Store;
use crate::store::cache::{CacheEntry, Recording};

/// Most bytes of new file contents one analyzer's replay record keeps
/// (limit `replay-bytes`); past it the record has digests only and
/// `weir replay` says which files it lacks.
pub const MAX_RECORDED_BYTES: u64 = 256 << 20;

/// A stage's input files as the cache check saw them.
#[derive(Debug, Clone)]
pub struct SeenInputs {
    /// The files.
    pub files: FileSet,
    /// Whether every file's contents are in the blob store.
    pub complete: bool,
}

impl Default for SeenInputs {
    /// No files recorded, nothing missing.
    fn default() -> Self {
        Self {
            files: FileSet::default(),
            complete: true,
        }
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// Directories a `files` plugin reads besides the workspace: those WASI
/// opens for it.
fn read_dirs(plugin: &LoadedPlugin, request: &AttemptRequest, workspace: &Path) -> Vec<std::path::PathBuf> {
    if plugin.info.declares(Capability::Files) {
        request
            .grants
            .read
            .iter()
            .filter_map(|d| crate::capabilities::wasi::plugin_readable(d, workspace))
            .collect()
    } else {
        Vec::new()
    }
}

/// Digest the stage's input files; with `keep`, store their contents.
fn collect_inputs(
    history: &History,
    workspace: &Path,
    plugin: &LoadedPlugin,
    request: &AttemptRequest,
    keep: bool,
) -> Result<SeenInputs, files::InputsError> {
    let mut budget = MAX_RECORDED_BYTES;
    let mut complete = true;
    let mut store = |file: &mut std::fs::File, d: &FileDigest| -> std::io::Result<()> {
        if !keep {
            return Ok(());
        }
        if history.blobs.has(&d.sha256) {
            history.blobs.touch(&d.sha256);
            return Ok(());
        }
        if d.size > budget {
            complete = false;
            return Ok(());
        }
        budget -= d.size;
        if let Err(e) = history.blobs.put(file, &d.sha256) {
            // Written to while being read: its digest is recorded, its
            // contents are not.
            tracing::debug!("an input file was not kept for replay: {e}");
            complete = false;
        }
        Ok(())
    };
    let files = files::collect(
        workspace,
        &request.cache.inputs,
        &read_dirs(plugin, request, workspace),
        &mut store,
    )?;
    Ok(SeenInputs { files, complete })
}

fn cache_event(stage: &str, status: CacheStatus, key: Option<&Key>, reasons: Vec<String>) -> Event {
    let mut parts = std::collections::BTreeMap::new();
    if let Some(k) = key {
        for (name, digest) in &k.parts {
            parts.insert(name.clone(), digest[..digest.len().min(16)].to_string());
        }
        parts.insert(
            "files".into(),
            format!(
                "{} ({} file(s), {})",
                &k.parts["files"][..16],
                k.files.files.len(),
                crate::engine::limits::human_bytes(k.files.bytes() as usize)
            ),
        );
    }
    Event::StageCache {
        stage: stage.to_string(),
        status,
        key: key.map(|k| k.key.clone()),
        parts,
        reasons,
    }
}

/// Before a stage's first attempt: digest its inputs (keeping analyzers'
/// for replay), and serve it from the cache when its key has an entry.
pub async fn check_cache(
    info: Arc<RunInfo>,
    plugin: Arc<LoadedPlugin>,
    request: AttemptRequest,
    seen: Arc<Mutex<HashMap<usize, SeenInputs>>>,
) -> CacheCheck {
    let Some(history) = info.history.clone() else {
        return CacheCheck::default();
    };
    let stage = request.stage_name.clone();
    let analyzer = plugin.info.kind == PluginKind::Analyzer;
    let policy = stage_cache::cacheable(
        &request.cache,
        &plugin.info.name,
        &plugin.info.manifest.capabilities,
    );
    // An analyzer's files are recorded for replay when they are hashed for
    // its key anyway, or when it names them; one that is not cacheable and
    // names none gets its data through its (recorded) host calls, and its
    // workspace is not copied on every run.
    let record_files = analyzer && (policy.is_ok() || !request.cache.inputs.is_empty());
    if let (Err(why), false) = (&policy, record_files) {
        if analyzer && let Ok(mut m) = seen.lock() {
            m.insert(request.stage, SeenInputs::default());
        }
        return CacheCheck {
            event: Some(cache_event(&stage, CacheStatus::Off, None, vec![why.to_string()])),
            ..CacheCheck::default()
        };
    }
    let work = tokio::task::spawn_blocking(move || -> CacheCheck {
        // Taken first: a file changed between this and the hashing below
        // shows up as written by the stage, so its result is not stored.
        let before = policy.is_ok().then(|| files::snapshot(&info.workspace));
        let inputs = match collect_inputs(&history, &info.workspace, &plugin, &request, record_files) {
            Ok(i) => i,
            Err(why) => {
                return CacheCheck {
                    event: Some(cache_event(&stage, CacheStatus::Off, None, vec![why.to_string()])),
                    ..CacheCheck::default()
                };
            }
        };
        if analyzer && let Ok(mut m) = seen.lock() {
            m.insert(request.stage, inputs.clone());
        }
        if let Err(why) = policy {
            return CacheCheck {
                event: Some(cache_event(&stage, CacheStatus::Off, None, vec![why.to_string()])),
                ..CacheCheck::default()
            };
        }
        let key = stage_cache::key(KeySource {
            tenant: &info.tenant,
            plugin_sha256: &plugin.info.sha256,
            request: &request,
            files: inputs.files,
        });
        let found = match lock(&history.store).cache_get(&info.tenant, &key.key) {
            Ok(f) => f,
            Err(e) => {
                return CacheCheck {
                    event: Some(cache_event(
                        &stage,
                        CacheStatus::Off,
                        Some(&key),
                        vec![e.to_string()],
                    )),
                    ..CacheCheck::default()
                };
            }
        };
        let mut reasons = Vec::new();
        if let Some((run, text)) = found {
            match serde_json::from_str::<AttemptResult>(&text)
                .map_err(|e| format!("the stored entry is unreadable ({e})"))
                .and_then(|r| restore(&info, &stage, r))
            {
                Ok(result) => {
                    return CacheCheck {
                        event: Some(cache_event(
                            &stage,
                            CacheStatus::Hit,
                            Some(&key),
                            vec![format!("from run {run}")],
                        )),
                        hit: Some((
                            result,
                            Reused::Cache {
                                key: key.key.clone(),
                                run,
                            },
                        )),
                        key: None,
                    };
                }
                Err(why) => reasons.push(format!("an entry exists but cannot be used: {why}")),
            }
        } else {
            match lock(&history.store).cache_newest(&info.tenant, &info.pipeline, &stage) {
                Ok(Some(text)) => match serde_json::from_str::<Key>(&text) {
                    Ok(older) => reasons.extend(stage_cache::differences(&key, &older, 20)),
                    Err(_) => reasons.push("the newest entry of this stage is unreadable".into()),
                },
                Ok(None) => reasons.push("no entry for this stage yet".into()),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        CacheCheck {
            event: Some(cache_event(&stage, CacheStatus::Miss, Some(&key), reasons)),
            hit: None,
            key: Some(Pending {
                key,
                before: before.unwrap_or_default(),
                mark: Default::default(),
            }),
        }
    });
    work.await.unwrap_or_default()
}

/// A cached result made this run's: its artifacts copied from the run
/// that produced them into this run's store and workspace.
fn restore(info: &RunInfo, stage: &str, mut result: AttemptResult) -> Result<AttemptResult, String> {
    let mut restored = Vec::with_capacity(result.artifacts.len());
    for a in &result.artifacts {
        restored.push(
            info.artifacts
                .restore(stage, a, &info.workspace)
                .map_err(|e| e.to_string())?,
        );
    }
    result.artifacts = restored;
    Ok(result)
}

/// Keep a successful stage's result under its key, unless it wrote files
/// it did not return as artifacts (a hit could not put them back).
pub async fn fill_cache(
    info: &Arc<RunInfo>,
    sink: &EventSink,
    stage: &str,
    pending: Pending,
    result: &AttemptResult,
    ran_alone: bool,
) {
    let Some(history) = info.history.clone() else {
        return;
    };
    let key = pending.key;
    let (Ok(parts), Ok(text)) = (serde_json::to_string(&key), serde_json::to_string(result)) else {
        return;
    };
    let info = info.clone();
    let stage = stage.to_string();
    let sink = sink.clone();
    let declared: Vec<String> = result.artifacts.iter().map(|a| a.path.clone()).collect();
    let _ = tokio::task::spawn_blocking(move || {
        let after = files::snapshot(&info.workspace);
        let undeclared: Vec<String> = files::written(&pending.before, &after)
            .into_iter()
            .filter(|p| !declared.contains(p))
            .collect();
        if !undeclared.is_empty() {
            let shown: Vec<&str> = undeclared.iter().take(3).map(String::as_str).collect();
            // Beside other stages, the files may well be theirs: then
            // this is expected on every run, and said only with -v.
            let level = if ran_alone {
                crate::events::Level::Info
            } else {
                crate::events::Level::Debug
            };
            sink.emit(Event::StageLog {
                stage: stage.clone(),
                level,
                message: format!(
                    "not cached: {} file(s) changed in the workspace while the stage ran ({}{}) and it did not return them as artifacts, so a cache hit could not put them back; if the stage wrote them, return them as artifacts (or set `cache = false`); if a stage running beside it did, order the two with `needs`",
                    undeclared.len(),
                    shown.join(", "),
                    if undeclared.len() > 3 { ", …" } else { "" }
                ),
                fields: Default::default(),
            });
            return;
        }
        let entry = CacheEntry {
            key: &key.key,
            tenant: &info.tenant,
            pipeline: &info.pipeline,
            stage: &stage,
            run_id: &info.run_id,
            parts,
            result: text,
        };
        if let Err(e) = lock(&history.store).cache_put(&entry) {
            tracing::warn!("stage `{stage}` was not cached: {e}");
        }
    })
    .await;
}

/// After an analyzer's attempt: keep what it received for `weir replay`.
pub async fn record_analyzer(
    info: &Arc<RunInfo>,
    plugin: &Arc<LoadedPlugin>,
    request: &AttemptRequest,
    tape: &Tape,
    seen: Option<SeenInputs>,
    result: &AttemptResult,
) {
    let Some(history) = info.history.clone() else {
        return;
    };
    let (calls, dropped) = tape.take_recorded();
    let info = info.clone();
    let plugin = plugin.clone();
    let request = request.clone();
    let result = result.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let inputs = match seen {
            Some(s) => {
                // In use again now: a prune running meanwhile keeps them.
                for f in s.files.files.values() {
                    history.blobs.touch(&f.sha256);
                }
                s
            }
            None => {
                let cacheable = stage_cache::cacheable(
                    &request.cache,
                    &plugin.info.name,
                    &plugin.info.manifest.capabilities,
                )
                .is_ok();
                if cacheable || !request.cache.inputs.is_empty() {
                    collect_inputs(&history, &info.workspace, &plugin, &request, true).unwrap_or(SeenInputs {
                        files: FileSet::default(),
                        complete: false,
                    })
                } else {
                    SeenInputs::default()
                }
            }
        };
        // An environment's secret values are never recorded: a replay's
        // plugin sees a placeholder for `***`, as it saw one for the value.
        let record = ReplayRecord {
            request: RecordedRequest::of(
                &request,
                read_dirs(&plugin, &request, &info.workspace),
                crate::plan::environments::MASK,
            ),
            calls,
            files: inputs.files,
            result: Some(result.clone()),
        };
        let (asked, calls, files, result_text) = record.columns();
        let recording = Recording {
            run_id: info.run_id.clone(),
            stage: request.stage_name.clone(),
            plugin: plugin.info.label(),
            plugin_sha256: plugin.info.sha256.clone(),
            request: asked,
            calls,
            files,
            complete: inputs.complete && dropped == 0,
            verdict: result.analysis.as_ref().map(|a| a.verdict.clone()),
            result: result_text,
        };
        if let Err(e) = lock(&history.store).put_recording(&recording) {
            tracing::warn!("stage `{}` was not recorded for replay: {e}", request.stage_name);
        }
    })
    .await;
}
