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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

pub mod disk;
mod memory;
pub use weir_pipeline::results;

use crate::artifacts::ArtifactStore;
use crate::bindings::types::{self, TestStatus, Verdict};
use crate::capabilities::process::{ProcessLimits, Sandbox};
use crate::capabilities::tape::Tape;
use crate::engine::{StageLimits, WeirEngine};
use crate::events::{EventSink, FailureKind, FindingRecord, TestCaseRecord, TestCounts};
use crate::guest_call;
use crate::plan::{Gate, SandboxChoice};
use crate::plugins::{KindPre, LoadedPlugin, kind_name};
use crate::run::{AttemptRequest, AttemptResult, BoxFuture, Executor};
use crate::sandbox::{ProcessSpec, StageState, StateSpec};

/// What every attempt of a run shares.
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The tenant.
    pub tenant: String,
    /// The workspace on the host.
    pub workspace: PathBuf,
    /// Limits per Store.
    pub limits: StageLimits,
    /// The tenant's secret source (`secrets.open`).
    pub secrets: crate::config::tenants::SecretSource,
    /// Where artifacts are kept.
    pub artifacts: ArtifactStore,
    /// The run history, for the stage cache and replay records; `None`
    /// runs without either.
    pub history: Option<memory::History>,
    /// The deployment target and metrics providers (per-plugin fields
    /// are filled in per attempt).
    pub target: crate::sandbox::TargetSpec,
    /// Deploy stages' strategies and checks, by stage index.
    pub rollouts: std::collections::BTreeMap<usize, Arc<crate::rollout::RolloutPlugins>>,
}

pub use memory::History;

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
}

impl WasmExecutor {
    /// An executor for a plan whose stage `i` uses `plugins[i]`.
    pub fn new(engine: WeirEngine, plugins: Vec<Arc<LoadedPlugin>>, info: RunInfo, sink: EventSink) -> Self {
        Self {
            engine,
            plugins,
            info: Arc::new(info),
            sink,
            installed: Sandbox::detect(),
            inputs_seen: Default::default(),
        }
    }
}

impl Executor for WasmExecutor {
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
        Box::pin(async move {
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
        Box::pin(async move { memory::check_cache(info, plugin, request, seen).await })
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
        Box::pin(async move { memory::fill_cache(&info, &sink, &stage, pending, &result).await })
    }
}

/// Where one attempt's plugin reads from and how its host calls are
/// kept: a run uses the stage's grants and a recording tape; `weir
/// replay` uses copies of the recorded files and a replaying tape.
pub struct Setup {
    /// `allow.read` directories (preopened only for `files` plugins).
    pub read_dirs: Vec<PathBuf>,
    /// Directories preopened as given (replay's copies).
    pub mapped_dirs: Vec<(PathBuf, String)>,
    /// The host-import tape.
    pub tape: Tape,
    /// The release a deploy stage rolls out: its `runtime` calls may touch
    /// only that service and start only that release.
    pub runtime_scope: Option<crate::capabilities::runtime::RuntimeScope>,
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

async fn attempt(
    engine: WeirEngine,
    plugin: Arc<LoadedPlugin>,
    info: Arc<RunInfo>,
    sink: EventSink,
    request: AttemptRequest,
    installed: Sandbox,
    setup: Setup,
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
    );
    let mut result = watch.over(run).await;
    if declared {
        result.sandbox = Some(sandbox.describe().to_string());
    }
    result
}

/// A Store for one call of `plugin` in `request`'s stage, and the context
/// the call receives; an error when the sandbox cannot be prepared.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_store(
    engine: &WeirEngine,
    plugin: &LoadedPlugin,
    info: &RunInfo,
    sink: EventSink,
    request: &AttemptRequest,
    sandbox: Sandbox,
    declared: bool,
    setup: &Setup,
) -> Result<(Store<StageState>, types::Context), Box<AttemptResult>> {
    // `allow.read` directories reach the plugin itself only when its
    // manifest asks for `files`; otherwise they are for its programs.
    let read_dirs: &[std::path::PathBuf] = if plugin.info.declares(types::Capability::Files) {
        &setup.read_dirs
    } else {
        &[]
    };
    let state = StageState::new(StateSpec {
        stage: &request.stage_name,
        workspace: Some(&info.workspace),
        read_dirs,
        env: &request.env,
        secret_env: &request.secret_env,
        limits: info.limits,
        sink,
        process: ProcessSpec {
            plugin: plugin.info.name.clone(),
            tenant: info.tenant.clone(),
            declared,
            grants: request.grants.clone(),
            deadline: Instant::now() + request.timeout,
            sandbox,
            limits: ProcessLimits {
                output_bytes: info.limits.output_bytes,
                data_bytes: info.limits.program_memory,
                memory_bytes: info.limits.program_memory,
                disk_bytes: info.limits.disk_bytes,
                pids: info.limits.processes,
                ..ProcessLimits::default()
            },
            declares_secrets: plugin.info.declares(types::Capability::Secrets),
            declares_network: plugin.info.declares(types::Capability::Network),
            secret_source: info.secrets.clone(),
        },
        tape: setup.tape.clone(),
        mapped_dirs: &setup.mapped_dirs,
        target: crate::sandbox::TargetSpec {
            declares_runtime: plugin.info.declares(types::Capability::Runtime),
            declares_metrics: plugin.info.declares(types::Capability::Metrics),
            runtime_scope: setup.runtime_scope.clone(),
            ..info.target.clone()
        },
    })
    .map_err(|e| {
        AttemptResult::failed(
            FailureKind::Host,
            format!("cannot prepare the sandbox: {e}"),
            None,
        )
    })?;
    let store = guest_call::new_store(engine, state, request.timeout, info.limits);
    let ctx = types::Context {
        run_id: info.run_id.clone(),
        pipeline: info.pipeline.clone(),
        stage: request.stage_name.clone(),
        tenant: info.tenant.clone(),
        environment: request.environment.clone(),
        attempt: request.attempt,
        config: request.config.clone(),
        inputs: request
            .inputs
            .iter()
            .map(|(stage, outputs)| types::Upstream {
                stage: stage.clone(),
                outputs: outputs.clone(),
            })
            .collect(),
        workspace: crate::capabilities::wasi::GUEST_WORKSPACE.to_string(),
    };
    Ok((store, ctx))
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
        Err(e) => return AttemptResult::failed(FailureKind::Host, e, None),
    };
    let reply = guest_call::call(&mut store, request.timeout, &info.limits, async |store| {
        call_plugin(&pre, store, &ctx).await
    })
    .await;
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

/// Most findings kept from one analyzer; the rest are counted as dropped
/// (limit `findings`).
pub const MAX_FINDINGS: usize = 10_000;
/// Most bytes of one finding's message kept.
const MAX_FINDING_MESSAGE: usize = 4096;

pub(crate) fn analysis_result(a: types::Analysis, gate: &Gate) -> AttemptResult {
    let dropped = a.findings.len().saturating_sub(MAX_FINDINGS) as u32;
    // Counted over every finding, before any is dropped: a flood of low
    // findings must not push a critical one out of the gate's sight.
    let mut counts = crate::findings::SeverityCounts::default();
    for f in &a.findings {
        counts.add(severity_of(f.severity));
    }
    let mut all = a.findings;
    if all.len() > MAX_FINDINGS {
        // Keep the worst ones (stable: the plugin's order among equals).
        all.sort_by_key(|f| std::cmp::Reverse(severity_of(f.severity)));
        all.truncate(MAX_FINDINGS);
    }
    let findings: Vec<FindingRecord> = all
        .into_iter()
        .map(|f| FindingRecord {
            rule: f.rule,
            severity: severity_of(f.severity).name().into(),
            message: cut(f.message, MAX_FINDING_MESSAGE),
            path: f.path,
            line: f.line,
            column: f.column,
            fields: f.fields.into_iter().collect(),
        })
        .collect();
    let plugin_verdict = match a.verdict {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    };
    let score = counts.score();
    let gate_failed = gate.findings.map(|g| g.check(&counts)).unwrap_or_default();
    let verdict = match (gate.findings, a.verdict) {
        (_, Verdict::Inconclusive) => "inconclusive",
        (None, _) => plugin_verdict,
        (Some(_), _) if !gate_failed.is_empty() => "fail",
        (Some(_), _) if findings.is_empty() => "pass",
        (Some(_), _) => "warn",
    };
    let mut outputs = vec![
        ("verdict".to_string(), verdict.to_string()),
        ("findings".to_string(), counts.total().to_string()),
        ("score".to_string(), format!("{score}")),
    ];
    for s in crate::findings::Severity::WORST_FIRST {
        outputs.push((format!("findings-{}", s.name()), counts.get(s).to_string()));
    }
    if let Some(score) = a.score {
        outputs.push(("plugin-score".into(), format!("{score}")));
    }
    let failure = match verdict {
        "fail" | "inconclusive" => {
            let why = if !gate_failed.is_empty() {
                format!("gate failed: {}", gate_failed.join("; "))
            } else if verdict == "inconclusive" {
                "verdict `inconclusive`: the analyzer had nothing to judge".to_string()
            } else {
                format!("verdict `fail` with {}", counts.describe())
            };
            let top: Vec<String> = crate::findings::worst_first(&findings)
                .into_iter()
                .take(5)
                .map(|f| {
                    format!(
                        "{} {} {}: {}",
                        f.severity,
                        crate::findings::place(f),
                        f.rule,
                        f.message.lines().next().unwrap_or("")
                    )
                })
                .collect();
            Some(crate::run::AttemptFailure {
                kind: FailureKind::Gate,
                message: why,
                details: (!top.is_empty()).then(|| top.join("\n")),
                retryable: FailureKind::Gate.retryable(),
            })
        }
        _ => None,
    };
    let mut summary = a.summary;
    if dropped > 0 {
        summary = Some(format!(
            "{}{dropped} finding(s) dropped (limit `findings`: {MAX_FINDINGS})",
            summary.map(|s| format!("{s}; ")).unwrap_or_default()
        ));
    }
    AttemptResult {
        failure,
        outputs,
        summary,
        analysis: Some(crate::events::AnalysisRecord {
            verdict: verdict.into(),
            plugin_verdict: plugin_verdict.into(),
            score,
            plugin_score: a.score,
            counts,
            gate_failed,
            dropped,
        }),
        findings,
        ..AttemptResult::default()
    }
}

/// `s` cut to at most `max` bytes at a character boundary, marked when cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn test_result(t: types::TestReport, gate: &Gate) -> AttemptResult {
    let cases: Vec<TestCaseRecord> = t
        .cases
        .iter()
        .map(|c| TestCaseRecord {
            suite: c.suite.clone(),
            name: c.name.clone(),
            status: match c.status {
                TestStatus::Passed => "passed",
                TestStatus::Failed => "failed",
                TestStatus::Skipped => "skipped",
                TestStatus::Errored => "errored",
            }
            .into(),
            duration_ms: c.duration_ms,
            message: c.message.clone(),
            file: c.file.clone(),
        })
        .collect();
    let mut counts = TestCounts::default();
    for case in &t.cases {
        match case.status {
            TestStatus::Passed => counts.passed += 1,
            TestStatus::Failed => counts.failed += 1,
            TestStatus::Skipped => counts.skipped += 1,
            TestStatus::Errored => counts.errored += 1,
        }
    }
    let failure = check_gate(gate, &counts, &cases).map(|message| crate::run::AttemptFailure {
        kind: FailureKind::Gate,
        retryable: FailureKind::Gate.retryable(),
        message,
        details: {
            let failing: Vec<String> = cases
                .iter()
                .filter(|c| c.status == "failed" || c.status == "errored")
                .map(|c| {
                    format!(
                        "{}::{}{}",
                        c.suite,
                        c.name,
                        c.message
                            .as_ref()
                            .map(|m| format!(": {}", m.lines().next().unwrap_or("")))
                            .unwrap_or_default()
                    )
                })
                .collect();
            (!failing.is_empty()).then(|| failing.join("\n"))
        },
    });
    AttemptResult {
        failure,
        outputs: vec![
            ("passed".into(), counts.passed.to_string()),
            ("failed".into(), counts.failed.to_string()),
            ("skipped".into(), counts.skipped.to_string()),
            ("errored".into(), counts.errored.to_string()),
        ],
        artifacts: Vec::new(),
        summary: t.summary,
        findings: Vec::new(),
        analysis: None,
        tests: Some(counts),
        sandbox: None,
        cases,
    }
}

/// `Some(why)` when the counts fail `gate`; the message names the failing
/// tests.
fn check_gate(gate: &Gate, counts: &TestCounts, cases: &[TestCaseRecord]) -> Option<String> {
    let bad = counts.failed + counts.errored;
    let ran = counts.passed + bad;
    let mut broken = Vec::new();
    if let Some(max) = gate.max_failures
        && bad > max
    {
        broken.push(format!("{bad} failed (at most {max} allowed)"));
    }
    if let Some(min) = gate.min_pass_rate {
        if ran == 0 {
            broken.push("no test case ran, so there is no pass rate".to_string());
        } else {
            let rate = f64::from(counts.passed) / f64::from(ran);
            if rate < min {
                broken.push(format!(
                    "pass rate {:.1}% is below the minimum {:.1}%",
                    rate * 100.0,
                    min * 100.0
                ));
            }
        }
    }
    if !gate.allow_skipped && counts.skipped > 0 {
        broken.push(format!("{} skipped (allow-skipped = false)", counts.skipped));
    }
    if broken.is_empty() {
        return None;
    }
    let failing: Vec<String> = cases
        .iter()
        .filter(|c| {
            c.status == "failed" || c.status == "errored" || (!gate.allow_skipped && c.status == "skipped")
        })
        .map(|c| format!("{}::{}", c.suite, c.name))
        .collect();
    let names = match failing.len() {
        0 => String::new(),
        n if n <= 10 => format!("; failing: {}", failing.join(", ")),
        n => format!("; failing: {} and {} more", failing[..10].join(", "), n - 10),
    };
    Some(format!("test gate failed: {}{names}", broken.join(", ")))
}

fn severity_of(s: types::Severity) -> crate::findings::Severity {
    use crate::findings::Severity as S;
    match s {
        types::Severity::Info => S::Info,
        types::Severity::Low => S::Low,
        types::Severity::Medium => S::Medium,
        types::Severity::High => S::High,
        types::Severity::Critical => S::Critical,
    }
}
