//! `weir replay` as a library call: re-run an analyzer offline on what it
//! received in a recorded run (its request, the answers its host calls
//! got, its input files), in a scratch workspace that is removed
//! afterwards. The caller compares and renders the two sides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::artifacts::ArtifactStore;
use crate::bindings::types::PluginKind;
use crate::blobs::{BLOB_DIR, Blobs};
use crate::capabilities::tape::{ReplayUse, Tape};
use crate::events::{EventRecord, EventSink};
use crate::execute::{RunInfo, Setup};
use crate::plan::PluginRef;
use crate::replay_record::ReplayRecord;
use crate::run::AttemptResult;
use crate::session::state::state_dir;
use crate::store::cache::Recording;
use crate::store::{Store, StoreError};

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The run.
    pub run: String,
    /// Its analyzer stage.
    pub stage: String,
    /// Replay with this component instead of the recorded plugin.
    pub plugin: Option<PathBuf>,
    /// The tenants file the run's tenant is read from.
    pub tenants: Option<PathBuf>,
}

/// One side of the comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// `name version`.
    pub plugin: String,
    /// The component's sha256.
    pub sha256: String,
    /// What it returned.
    pub result: AttemptResult,
}

/// A replay made: the recorded and the replayed sides.
#[derive(Debug)]
pub struct Replayed {
    /// What the run recorded.
    pub recorded: Side,
    /// What the replay returned.
    pub replayed: Side,
    /// Which recorded host calls were answered, not made, or missing.
    pub calls: ReplayUse,
    /// How many input files were restored.
    pub files: usize,
}

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The history could not be read, or has no such run.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stage has no replay record.
    #[error(
        "stage `{stage}` of run {run} has no replay record; analyzer stages are recorded{}",
        if recorded.is_empty() { " and this run has none".to_string() } else { format!(" (this run's: {})", recorded.join(", ")) }
    )]
    NotRecorded {
        /// The run.
        run: String,
        /// The stage asked for.
        stage: String,
        /// The stages that are recorded.
        recorded: Vec<String>,
    },
    /// The run kept no pipeline text.
    #[error("run {0} was recorded without its pipeline")]
    NoPipeline(String),
    /// The recorded pipeline does not plan with this weir.
    #[error("the recorded pipeline no longer plans: {0}")]
    Replan(String),
    /// No such stage in it.
    #[error("the recorded pipeline has no stage `{0}`")]
    NoStage(String),
    /// The run's tenant cannot be read.
    #[error("run {run} belongs to tenant `{tenant}`: {error}")]
    Tenant {
        /// The run.
        run: String,
        /// Its tenant.
        tenant: String,
        /// Why it cannot be read.
        error: String,
    },
    /// The engine for the tenant could not be made.
    #[error("{0}")]
    Engine(String),
    /// The plugin did not load.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
    /// Only analyzers are recorded.
    #[error("plugin `{plugin}` is a {kind}; only analyzers can be replayed")]
    NotAnalyzer {
        /// The plugin.
        plugin: String,
        /// Its kind.
        kind: &'static str,
    },
    /// The replay record does not read.
    #[error("{0}")]
    Record(String),
    /// The scratch workspace could not be made.
    #[error("cannot create {}: {error}", dir.display())]
    Scratch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: String,
    },
    /// Recorded input files whose contents were not kept.
    #[error(
        "{} of the {total} recorded input files were not kept (over the limit `replay-bytes`, or changed while they were read): {}",
        missing.len(),
        first_five(missing)
    )]
    NotKept {
        /// How many files were recorded.
        total: usize,
        /// Those not kept.
        missing: Vec<String>,
    },
    /// Files of granted directories that changed since the run.
    #[error(
        "{} file(s) of the granted directories changed since the run, and their contents are not recorded: {}",
        .0.len(),
        first_five(.0)
    )]
    Changed(Vec<String>),
}

fn first_five(v: &[String]) -> String {
    format!(
        "{}{}",
        v.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
        if v.len() > 5 { ", …" } else { "" }
    )
}

/// Replay stage `request.stage` of run `request.run`: its log lines go to
/// `observer`; the recorded and the replayed sides come back.
pub async fn replay(
    request: &ReplayRequest,
    observer: UnboundedSender<EventRecord>,
) -> Result<Replayed, ReplayError> {
    let args = request;
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return Err(StoreError::NoSuchRun(args.run.clone()).into());
    }
    let store = Store::open(&state_dir())?;
    let run = store.resume_info(&args.run)?;
    let Some(recording) = store.recording(&args.run, &args.stage)? else {
        let recorded = store.recorded_stages(&args.run)?;
        return Err(ReplayError::NotRecorded {
            run: args.run.clone(),
            stage: args.stage.clone(),
            recorded,
        });
    };
    let text = run
        .pipeline_text
        .ok_or_else(|| ReplayError::NoPipeline(args.run.clone()))?;
    let path = PathBuf::from(&run.pipeline_file);
    let loaded = crate::config::parse(&path, text).map_err(|e| ReplayError::Replan(e.to_string()))?;
    let plan = crate::plan::build(loaded, &crate::plugins::builtin::names())
        .map_err(|e| ReplayError::Replan(e.to_string()))?;
    let stage = plan
        .index_of(&args.stage)
        .map(|i| plan.stages[i].clone())
        .ok_or_else(|| ReplayError::NoStage(args.stage.clone()))?;

    // The run's tenant, for the limits its plugins ran under.
    let tenant = crate::config::tenants::Tenants::load(args.tenants.as_deref())
        .and_then(|t| t.get(Some(&run.tenant)))
        .map_err(|e| ReplayError::Tenant {
            run: args.run.clone(),
            tenant: run.tenant.clone(),
            error: e.to_string(),
        })?;
    let loader = crate::session::prepare::loader_with(&crate::session::prepare::engine_for(&tenant))
        .map_err(|e| ReplayError::Engine(e.to_string()))?;
    let plugin_ref = match &args.plugin {
        Some(p) => PluginRef::File {
            name: p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "replayed".into()),
            path: p.clone(),
            sha256: None,
        },
        None => stage.plugin.clone(),
    };
    let plugin = loader.load(&plugin_ref).await.map_err(ReplayError::Plugin)?;
    if plugin.info.kind != PluginKind::Analyzer {
        return Err(ReplayError::NotAnalyzer {
            plugin: plugin.info.name.clone(),
            kind: crate::plugins::kind_name(plugin.info.kind),
        });
    }

    // The recorded files, copied out of the blob store into a scratch
    // directory that is removed afterwards.
    let scratch =
        state_dir()
            .join("replay")
            .join(format!("{}-{}-{}", args.run, args.stage, std::process::id()));
    let scratch = std::path::absolute(&scratch).unwrap_or(scratch);
    let outcome = replay_in(
        &scratch,
        &recording,
        &stage,
        plugin.clone(),
        loader.engine().clone(),
        &tenant,
        &plan.name,
        observer,
    )
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (result, used) = outcome?;

    let recorded = Side {
        plugin: recording.plugin.clone(),
        sha256: recording.plugin_sha256.clone(),
        result: ReplayRecord::read(&recording)
            .ok()
            .and_then(|r| r.result)
            .unwrap_or_default(),
    };
    let replayed = Side {
        plugin: format!("{} {}", plugin.info.manifest.name, plugin.info.manifest.version),
        sha256: plugin.info.sha256.clone(),
        result,
    };
    Ok(Replayed {
        recorded,
        replayed,
        calls: used.0,
        files: used.1,
    })
}

#[allow(clippy::too_many_arguments)]
async fn replay_in(
    scratch: &Path,
    recording: &Recording,
    stage: &crate::plan::PlannedStage,
    plugin: Arc<crate::plugins::LoadedPlugin>,
    engine: crate::engine::WeirEngine,
    tenant: &crate::config::tenants::Tenant,
    pipeline: &str,
    observer: UnboundedSender<EventRecord>,
) -> Result<(AttemptResult, (ReplayUse, usize)), ReplayError> {
    let record = ReplayRecord::read(recording).map_err(|e| ReplayError::Record(e.to_string()))?;
    let (request, calls, files) = (record.request, record.calls, record.files);
    let read_dirs = &request.read_dirs;

    let workspace = scratch.join("workspace");
    std::fs::create_dir_all(&workspace).map_err(|e| ReplayError::Scratch {
        dir: workspace.clone(),
        error: e.to_string(),
    })?;
    // Granted directories outside the workspace are never copied into the
    // blob store (they may hold credentials): the replay reads them where
    // they are, read-only, after checking each recorded file is unchanged.
    let mapped: Vec<(PathBuf, String)> = read_dirs
        .iter()
        .filter_map(|d| crate::capabilities::wasi::plugin_readable(d, &workspace))
        .filter_map(|d| d.to_str().map(|g| (d.clone(), g.to_string())))
        .collect();
    let blobs = Blobs::new(state_dir().join(BLOB_DIR));
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    let mut links = Vec::new();
    for (name, f) in &files.files {
        if name.starts_with('/') {
            let unchanged = match &f.link {
                Some(to) => std::fs::read_link(name).is_ok_and(|t| t.to_string_lossy() == to.as_str()),
                None => {
                    crate::stage_cache::files::hash_file(Path::new(name)).is_ok_and(|d| d.sha256 == f.sha256)
                }
            };
            if !unchanged {
                changed.push(name.clone());
            }
            continue;
        }
        let rel = Path::new(name);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            missing.push(name.clone());
            continue;
        }
        let target = workspace.join(rel);
        match &f.link {
            // Made last, so no file is written through one.
            Some(to) => links.push((to.clone(), target)),
            None => {
                if let Some(parent) = target.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if blobs.restore(&f.sha256, &target).is_err() {
                    missing.push(name.clone());
                }
            }
        }
    }
    for (to, target) in links {
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::os::unix::fs::symlink(to, target);
    }
    if !missing.is_empty() {
        return Err(ReplayError::NotKept {
            total: files.files.len(),
            missing,
        });
    }
    if !changed.is_empty() {
        return Err(ReplayError::Changed(changed));
    }

    let attempt = request.attempt(stage);
    let (sink, mut events) = EventSink::channel(&recording.run_id);
    let forward = tokio::spawn(async move {
        while let Some(record) = events.recv().await {
            if observer.send(record).is_err() {
                break;
            }
        }
    });
    let tape = Tape::replaying(calls);
    let info = RunInfo {
        run_id: recording.run_id.clone(),
        pipeline: pipeline.to_string(),
        tenant: tenant.name.to_string(),
        workspace: workspace.canonicalize().unwrap_or(workspace),
        limits: tenant.limits.stage,
        secrets: tenant.secrets.clone(),
        artifacts: ArtifactStore::new(scratch.join("artifacts")),
        history: None,
        // A replay never deploys; recorded metrics come from the tape.
        target: Default::default(),
        stopping: Default::default(),
    };
    let result = crate::execute::replay_attempt(
        engine,
        plugin,
        info,
        sink,
        attempt,
        Setup {
            read_dirs: Vec::new(),
            mapped_dirs: mapped,
            tape: tape.clone(),
            runtime_scope: None,
        },
    )
    .await;
    let _ = forward.await;
    Ok((result, (tape.replay_use(), files.files.len())))
}
