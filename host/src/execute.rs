//! Running one attempt of a stage in a fresh Store.
//!
//! [`WasmExecutor`] is the scheduler's [`Executor`] backed by wasmtime. For
//! every attempt it builds new [`StageState`] (WASI with the workspace as
//! the only preopen, the stage's env, the log pipes), a Store with the
//! stage's limits and an epoch deadline from its `timeout`, instantiates
//! the plugin from its `InstancePre`, calls the kind's export, and turns
//! what happened into an [`AttemptResult`] that says how it ended: the
//! plugin's own failure, a trap, a timeout, or a named limit. The Store is
//! dropped afterwards, whatever happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Store;

pub mod disk;
mod memory;
pub use weir_pipeline::results;

use crate::bindings::types;
use crate::capabilities::process::Sandbox;
use crate::capabilities::tape::Tape;
use crate::engine::WeirEngine;
use crate::events::{EventSink, FailureKind};
use crate::guest_call;
use crate::plan::SandboxChoice;
use crate::plugins::{KindPre, LoadedPlugin, kind_name};
use crate::rollout::RolloutPlugins;
use crate::run::{AttemptRequest, AttemptResult, BoxFuture, Executor};
use crate::sandbox::StageState;
use crate::stage_store::prepare_store;
pub use crate::stage_store::{RunInfo, Setup};
use crate::verdicts::{analysis_result, test_result};

pub use crate::store::History;

/// The wasmtime-backed executor.
pub struct WasmExecutor {
    engine: WeirEngine,
    /// The plugin of each stage, by plan index.
    plugins: Vec<Arc<LoadedPlugin>>,
    info: Arc<RunInfo>,
    sink: EventSink,
    /// Whether bubblewrap is installed, looked up once per run.
    installed: Sandbox,
    /// Input files digested (and kept) by the cache check, for the first
    /// attempt's replay record, by stage.
    inputs_seen: Arc<std::sync::Mutex<std::collections::HashMap<usize, memory::SeenInputs>>>,
    /// Deploy stages' strategies and checks, by stage index.
    rollouts: Rollouts,
    /// Which attempts run, to tell whether a stage ran alone.
    activity: Arc<crate::stage_cache::Activity>,
}

/// Deploy stages' strategies and checks, by stage index.
pub type Rollouts = BTreeMap<usize, Arc<RolloutPlugins>>;

impl WasmExecutor {
    /// An executor for a plan whose stage `i` uses `plugins[i]` (and a
    /// deploy stage `i` rolls out with `rollouts[i]`).
    pub fn new(
        engine: WeirEngine,
        plugins: Vec<Arc<LoadedPlugin>>,
        rollouts: Rollouts,
        info: RunInfo,
        sink: EventSink,
    ) -> Self {
        Self {
            rollouts,
            engine,
            plugins,
            info: Arc::new(info),
            sink,
            installed: Sandbox::detect(),
            inputs_seen: Default::default(),
            activity: Default::default(),
        }
    }
}

impl Executor for WasmExecutor {
    fn stop(&self) {
        self.info.stopping.stop();
    }

    fn plugin_label(&self, stage: usize) -> String {
        self.plugins
            .get(stage)
            .map(|p| p.info.label())
            .unwrap_or_default()
    }

    fn execute(&self, request: AttemptRequest) -> BoxFuture<AttemptResult> {
        let Some(plugin) = self.plugins.get(request.stage).cloned() else {
            return Box::pin(async {
                AttemptResult::failed(FailureKind::Host, "no plugin was loaded for this stage", None)
            });
        };
        let engine = self.engine.clone();
        let info = self.info.clone();
        let sink = self.sink.clone();
        let installed = self.installed.clone();
        let seen = self.inputs_seen.clone();
        let rollout = self.rollouts.get(&request.stage).cloned();
        let activity = self.activity.clone();
        Box::pin(async move {
            activity.begin();
            let _ended = EndOnDrop(activity);
            // Analyzers' host calls and input files are kept for replay.
            let record = info.history.is_some() && plugin.info.kind == types::PluginKind::Analyzer;
            let tape = if record {
                Tape::recording()
            } else {
                Tape::default()
            };
            let setup = Setup {
                read_dirs: request.grants.read.clone(),
                mapped_dirs: Vec::new(),
                tape: tape.clone(),
                runtime_scope: None,
            };
            let recorded = record.then(|| request.clone());
            let result = attempt(
                engine,
                plugin.clone(),
                info.clone(),
                sink,
                request,
                installed,
                setup,
                rollout,
            )
            .await;
            if let Some(request) = recorded {
                let earlier = seen.lock().ok().and_then(|mut m| m.remove(&request.stage));
                memory::record_analyzer(&info, &plugin, &request, &tape, earlier, &result).await;
            }
            result
        })
    }

    fn check_cache(&self, request: &AttemptRequest) -> BoxFuture<crate::run::CacheCheck> {
        // Without a run history there is no cache to look in.
        let (Some(plugin), Some(_)) = (self.plugins.get(request.stage).cloned(), &self.info.history) else {
            return Box::pin(async { crate::run::CacheCheck::default() });
        };
        let info = self.info.clone();
        let request = request.clone();
        let seen = self.inputs_seen.clone();
        let mark = self.activity.mark();
        Box::pin(async move {
            let mut check = memory::check_cache(info, plugin, request, seen).await;
            if let Some(pending) = check.key.as_mut() {
                pending.mark = mark;
            }
            check
        })
    }

    fn fill_cache(
        &self,
        request: &AttemptRequest,
        pending: crate::stage_cache::Pending,
        result: &AttemptResult,
    ) -> BoxFuture<()> {
        let info = self.info.clone();
        let stage = request.stage_name.clone();
        let result = result.clone();
        let sink = self.sink.clone();
        let alone = self.activity.ran_alone(pending.mark);
        Box::pin(async move { memory::fill_cache(&info, &sink, &stage, pending, &result, alone).await })
    }
}

/// Ends an attempt in [`crate::stage_cache::Activity`] however its future
/// ends (finished, or dropped on cancel).
struct EndOnDrop(Arc<crate::stage_cache::Activity>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Run one attempt as `weir replay` does: in `info.workspace` (the
/// recorded files), with host calls answered by `setup.tape`.
pub async fn replay_attempt(
    engine: WeirEngine,
    plugin: Arc<LoadedPlugin>,
    info: RunInfo,
    sink: EventSink,
    request: AttemptRequest,
    setup: Setup,
) -> AttemptResult {
    let declared = plugin.info.declares(types::Capability::Process);
    let watch = DiskWatch::of(&info, &request);
    let run = run_in_store(
        engine,
        plugin,
        Arc::new(info),
        sink,
        request,
        Sandbox::OptedOut,
        declared,
        setup,
        None,
    );
    watch.over(run).await
}

/// The tenant's disk limit on an attempt's workspace, if it sets one.
struct DiskWatch {
    limit: Option<(PathBuf, u64)>,
    stage: String,
}

impl DiskWatch {
    fn of(info: &RunInfo, request: &AttemptRequest) -> Self {
        Self {
            limit: info
                .limits
                .disk_bytes
                .map(|limit| (info.workspace.clone(), limit)),
            stage: request.stage_name.clone(),
        }
    }

    /// `attempt`, dropped past the limit: its Store and its programs end
    /// with it.
    async fn over(self, attempt: impl Future<Output = AttemptResult>) -> AttemptResult {
        let Some((workspace, limit)) = self.limit else {
            return attempt.await;
        };
        tokio::select! {
            result = attempt => result,
            hit = disk::exceeded(workspace, limit) => AttemptResult::failed(
                FailureKind::Limit,
                format!("{hit}; stage `{}` was stopped", self.stage),
                None,
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    engine: WeirEngine,
    plugin: Arc<LoadedPlugin>,
    info: Arc<RunInfo>,
    sink: EventSink,
    request: AttemptRequest,
    installed: Sandbox,
    setup: Setup,
    rollout: Option<Arc<RolloutPlugins>>,
) -> AttemptResult {
    let declared = plugin.info.declares(types::Capability::Process);
    let sandbox = match request.sandbox {
        SandboxChoice::None => Sandbox::OptedOut,
        SandboxChoice::Auto => installed.clone(),
        SandboxChoice::Required => match &installed {
            found @ Sandbox::Bubblewrap(_) => found.clone(),
            _ => {
                return AttemptResult::failed(
                    FailureKind::Host,
                    format!(
                        "stage `{}` requires bubblewrap (sandbox = \"bubblewrap\"), which is not installed; install it (Debian: apt-get install bubblewrap) or use sandbox = \"auto\"",
                        request.stage_name
                    ),
                    None,
                );
            }
        },
    };
    let watch = DiskWatch::of(&info, &request);
    let run = run_in_store(
        engine,
        plugin,
        info,
        sink,
        request,
        sandbox.clone(),
        declared,
        setup,
        rollout,
    );
    let mut result = watch.over(run).await;
    if declared {
        result.sandbox = Some(sandbox.describe().to_string());
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_in_store(
    engine: WeirEngine,
    plugin: Arc<LoadedPlugin>,
    info: Arc<RunInfo>,
    sink: EventSink,
    request: AttemptRequest,
    sandbox: Sandbox,
    declared: bool,
    setup: Setup,
    rollout: Option<Arc<RolloutPlugins>>,
) -> AttemptResult {
    if plugin.info.kind == types::PluginKind::Deployer {
        return crate::rollout::run(crate::rollout::Rollout {
            engine,
            deployer: plugin,
            info,
            sink,
            request,
            sandbox,
            setup,
            plugins: rollout,
        })
        .await;
    }
    let (mut store, ctx) =
        match prepare_store(&engine, &plugin, &info, sink, &request, sandbox, declared, &setup) {
            Ok(s) => s,
            Err(failed) => return *failed,
        };

    let pre = match plugin.pre_for(&request.grants) {
        Ok(pre) => pre,
        Err(e) => return AttemptResult::failed(FailureKind::Host, e.to_string(), None),
    };
    let reply = guest_call::call(&mut store, request.timeout, &info.limits, async |store| {
        call_plugin(&pre, store, &ctx).await
    })
    .await;
    let usage = crate::events::Usage {
        fuel: engine.fuel().then(|| {
            info.limits
                .fuel
                .unwrap_or(u64::MAX)
                .saturating_sub(store.get_fuel().unwrap_or(0))
        }),
        peak_memory_bytes: store.data().limiter.peak_memory() as u64,
    };
    let mut result = reply_result(reply, &plugin, &request, &info).await;
    result.usage = Some(usage);
    result
}

/// The attempt's result from the guest's reply.
async fn reply_result(
    reply: Result<Reply, guest_call::CallFailure>,
    plugin: &LoadedPlugin,
    request: &AttemptRequest,
    info: &RunInfo,
) -> AttemptResult {
    match reply {
        Err(failure) => failure.attempt(&plugin.info.name, &request.stage_name),
        Ok(Reply::Stage(out))
            if let Err(why) = results::check_stage_output(results::StageResult {
                outputs: &out.outputs,
                artifacts: &out
                    .artifacts
                    .iter()
                    .map(|a| (a.name.as_str(), a.path.as_str()))
                    .collect::<Vec<_>>(),
                summary: out.summary.as_deref(),
            }) =>
        {
            AttemptResult::failed(
                FailureKind::Limit,
                format!("{why}; stage `{}` was stopped", request.stage_name),
                None,
            )
        }
        Ok(Reply::Stage(out)) => {
            let out_has_artifacts = !out.artifacts.is_empty();
            let store = info.artifacts.clone();
            let workspace = info.workspace.clone();
            let stage = request.stage_name.clone();
            let wanted = out.artifacts;
            let publish = request.grants.publish.clone();
            let keep = move || {
                let wanted: Vec<(&str, &str)> = wanted
                    .iter()
                    .map(|a| (a.name.as_str(), a.path.as_str()))
                    .collect();
                store.keep_all(&stage, &workspace, &wanted, &publish)
            };
            // Copying may be large: off the async workers. Most stages
            // keep nothing and skip the hand-off to a blocking thread.
            let kept = if out_has_artifacts {
                tokio::task::spawn_blocking(keep).await
            } else {
                Ok(keep())
            };
            match kept {
                Ok(Ok(artifacts)) => AttemptResult {
                    failure: None,
                    outputs: out.outputs,
                    artifacts,
                    summary: out.summary,
                    ..AttemptResult::default()
                },
                Ok(Err(not)) => AttemptResult::failed(
                    if not.limit {
                        FailureKind::Limit
                    } else {
                        FailureKind::Plugin
                    },
                    not.message,
                    None,
                ),
                Err(e) => {
                    AttemptResult::failed(FailureKind::Host, format!("storing artifacts failed: {e}"), None)
                }
            }
        }
        Ok(Reply::Analysis(a)) => analysis_result(a, &request.gate),
        Ok(Reply::Tests(t)) => test_result(t, &request.gate),
        Ok(Reply::NotAStage(kind)) => AttemptResult::failed(
            FailureKind::Host,
            format!(
                "plugin `{}` is a {kind}; a stage's `uses` takes a stage, analyzer or test-runner plugin",
                plugin.info.name
            ),
            None,
        ),
    }
}

enum Reply {
    Stage(types::StageOutput),
    Analysis(types::Analysis),
    Tests(types::TestReport),
    NotAStage(&'static str),
}

async fn call_plugin(
    pre: &KindPre,
    store: &mut Store<StageState>,
    ctx: &types::Context,
) -> wasmtime::Result<Result<Reply, types::Failure>> {
    Ok(match pre {
        KindPre::Stage(p) => {
            let b = p.instantiate_async(&mut *store).await?;
            b.weir_plugin_stage()
                .call_run(&mut *store, ctx)
                .await?
                .map(Reply::Stage)
        }
        KindPre::Analyzer(p) => {
            let b = p.instantiate_async(&mut *store).await?;
            b.weir_plugin_analyzer()
                .call_analyze(&mut *store, ctx)
                .await?
                .map(Reply::Analysis)
        }
        KindPre::TestRunner(p) => {
            let b = p.instantiate_async(&mut *store).await?;
            b.weir_plugin_test_runner()
                .call_run_tests(&mut *store, ctx)
                .await?
                .map(Reply::Tests)
        }
        KindPre::Strategy(_) => Ok(Reply::NotAStage(kind_name(types::PluginKind::Strategy))),
        KindPre::Deployer(_) => Ok(Reply::NotAStage(kind_name(types::PluginKind::Deployer))),
    })
}
