//! `weir run`, and `weir run --resume RUN`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::RunArgs;
use super::prepare::{
    EnvironmentProblems, PrepareError, Prepared, engine_for, load_tenant, prepare_layered, sandbox_available,
    within_tenant,
};
use crate::config::tenants::Tenant;
use crate::events::{Event, EventSink, Reused, RunStatus};
use crate::execute::{History, RunInfo, WasmExecutor};
use crate::notify::{Notifier, RunContext};
use crate::plan::RunFacts;
use crate::plan::environments::{self, Resolved};
use crate::report::{self, Mode, ReportSetup};
use crate::run::{self, Reuse, RunOptions};
use crate::store::recorder::{NewRun, Recorder};
use crate::store::{Store, StoreError};
use crate::waits::StoreAdmission;

/// Where run state lives when `WEIR_STATE_DIR` does not say: `.weir` in
/// the working directory.
pub const STATE_DIR: &str = ".weir";

/// The variable that moves the state directory.
pub const STATE_DIR_ENV: &str = "WEIR_STATE_DIR";

/// Where weir keeps its state (run history, approvals, artifacts, the
/// deployment target and its control socket): `$WEIR_STATE_DIR`, else
/// `.weir` in the working directory. Absolute. It must never be inside a
/// run's workspace ([`state_outside`]).
pub fn state_dir() -> PathBuf {
    let dir = std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Refuse `workspace` when weir's state directory is inside it: a stage
/// could then rewrite the history and approvals (approving its own
/// protected deploy), forge cache rows, and reach the deployment target's
/// control socket.
pub fn state_outside(workspace: &Path) -> Result<(), String> {
    let state = state_dir();
    // Made first, so what is compared is where it really is (a symlink on
    // the way resolved); the run records there anyway.
    let _ = std::fs::create_dir_all(&state);
    let state = state.canonicalize().unwrap_or(state);
    let workspace = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    if state.starts_with(&workspace) {
        return Err(format!(
            "weir keeps its state in {}, which is inside the workspace {}: a stage could rewrite the run history and approvals, and reach the deployment target's control socket; keep the state elsewhere with {STATE_DIR_ENV}=DIR (outside the workspace), or use a workspace that does not contain it",
            state.display(),
            workspace.display()
        ));
    }
    Ok(())
}

/// The pipeline file when none is named.
const DEFAULT_PIPELINE: &str = "pipeline.toml";

/// How a run was started, recorded with it so `--resume` runs it the same
/// way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Options {
    branch: Option<String>,
    environment: Option<String>,
    jobs: Option<usize>,
    fail_fast: bool,
    /// Tags pointing at the commit being built.
    #[serde(default)]
    tags: Vec<String>,
    /// The commit being built.
    #[serde(default)]
    commit: Option<String>,
    /// The stage a `weir dev` round ran; such a run ran a changed plan
    /// and is not resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
}

/// Everything a start of a run needs, fresh or resumed.
struct Launch {
    prepared: Prepared,
    run_id: String,
    workspace: PathBuf,
    tenant: Tenant,
    options: Options,
    recorder: Recorder,
    resume: u32,
    reuse: Vec<Reuse>,
    resolved: Resolved,
}

/// Lay the run's environments over the plan and check its branch rules;
/// every problem is reported, not just the first.
fn resolve_environments(
    plan: &mut crate::plan::Plan,
    options: &Options,
    tenant: &Tenant,
) -> Result<Resolved, PrepareError> {
    environments::resolve(plan, options.environment.as_deref(), &|name| {
        tenant.secrets.get(name)
    })
    .and_then(|resolved| {
        let facts = RunFacts {
            branch: options.branch.clone(),
            environment: resolved.environment.clone(),
        };
        let errors = environments::check_refs(plan, &facts, &options.tags);
        if errors.is_empty() {
            Ok(resolved)
        } else {
            Err(errors)
        }
    })
    .map_err(|errors| {
        EnvironmentProblems {
            path: plan.source.path().to_path_buf(),
            problems: errors.iter().map(ToString::to_string).collect(),
        }
        .into()
    })
}

/// What `weir dev` changes about a run: one stage, with a plugin just
/// built, its upstream stages' results taken from an earlier run.
pub struct Focus {
    /// The stage to run.
    pub stage: String,
    /// The `[plugins.NAME]` it uses.
    pub plugin: String,
    /// The component to use for that plugin instead (not pinned).
    pub component: PathBuf,
    /// The run whose workspace and results the upstream stages reuse;
    /// `None` runs the whole pipeline.
    pub from: Option<FromRun>,
}

/// An earlier run a focused run takes its inputs from.
pub struct FromRun {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace: PathBuf,
    /// Its stages that succeeded, with their `stage_finished` events.
    pub succeeded: Vec<(String, String)>,
}

pub async fn run(args: RunArgs, verbose: bool) -> ExitCode {
    if let Some(id) = args.resume.clone() {
        return resume(&id, args, verbose).await;
    }
    run_with(args, verbose, None).await
}

/// `weir run`, or with `focus`, the run `weir dev` makes.
pub async fn run_with(args: RunArgs, verbose: bool, focus: Option<&Focus>) -> ExitCode {
    let pipeline = args
        .pipeline
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIPELINE));
    let git = detect_git(&pipeline);
    let options = Options {
        branch: args.branch.clone().or_else(|| detect_branch(&pipeline)),
        environment: args.environment.clone(),
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        tags: if args.tag.is_empty() {
            git.tags
        } else {
            args.tag.clone()
        },
        commit: git.commit,
        dev: focus.map(|f| f.stage.clone()),
    };
    let Some(tenant) = load_tenant(args.tenants.as_deref(), args.tenant.as_deref()) else {
        return ExitCode::from(2);
    };
    // Environments are laid over their stages, and the result checked
    // against the tenant's policy, before the plugins check them and
    // before anything is recorded: a run that cannot have its variables,
    // secrets or branch rules, or asks for more than its tenant allows,
    // does not start.
    let mut resolved = Resolved::default();
    let mut layer = |plan: &mut crate::plan::Plan| {
        if let Some(focus) = focus {
            focus_plan(plan, focus);
        }
        resolved = resolve_environments(plan, &options, &tenant)?;
        within_tenant(plan, &tenant)
    };
    let engine = engine_for(&tenant);
    let workspace_arg = args
        .workspace
        .clone()
        .or_else(|| focus.and_then(|f| f.from.as_ref()).map(|r| r.workspace.clone()));
    let prepared = match prepare_layered(&pipeline, None, workspace_arg.as_deref(), &engine, &mut layer)
        .await
        .and_then(|p| sandbox_available(&p, &tenant).map(|()| p))
    {
        Ok(p) => p,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    // Recorded as resolved, so a resume and the report see the same.
    let options = Options {
        environment: resolved.environment.clone(),
        ..options
    };
    let run_id = new_run_id();
    let workspace = match workspace_dir(workspace_arg.as_deref(), &run_id, &tenant) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };

    // The run history records every event; a history that cannot be opened
    // stops the run before anything happens (a run must not go unrecorded).
    let plan = &prepared.plan;
    let recorder = match Store::open(&state_dir()).and_then(|store| {
        Recorder::start(
            store,
            &NewRun {
                id: run_id.clone(),
                pipeline: plan.name.clone(),
                pipeline_file: std::path::absolute(&pipeline)
                    .unwrap_or_else(|_| pipeline.clone())
                    .display()
                    .to_string(),
                tenant: tenant.name.clone(),
                workspace: workspace.display().to_string(),
                stages: plan.stages.iter().map(|s| s.name.clone()).collect(),
                pipeline_text: plan.source.text().to_string(),
                options: serde_json::to_string(&options).unwrap_or_default(),
            },
        )
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };
    let reuse = match focus.and_then(|f| f.from.as_ref().map(|r| (f, r))) {
        Some((focus, from)) => reused(
            &prepared,
            &from.succeeded,
            Some(&focus.stage),
            Reused::Dev { run: from.id.clone() },
        ),
        None => Vec::new(),
    };
    let launch = Launch {
        prepared,
        run_id,
        workspace,
        tenant,
        options,
        recorder,
        resume: 0,
        reuse,
        resolved,
    };
    start(launch, &args, verbose).await
}

/// `focus` laid over `plan`: its plugin is the component just built, and
/// with an earlier run to take inputs from, only the stage and its
/// upstream are left.
fn focus_plan(plan: &mut crate::plan::Plan, focus: &Focus) {
    use crate::plan::PluginRef;
    let swap = |plugin: &mut PluginRef| {
        if let PluginRef::File { name, .. } = plugin
            && *name == focus.plugin
        {
            *plugin = PluginRef::File {
                name: name.clone(),
                path: focus.component.clone(),
                sha256: None,
            };
        }
    };
    for stage in &mut plan.stages {
        swap(&mut stage.plugin);
        if let Some(rollout) = &mut stage.rollout {
            swap(&mut rollout.strategy.plugin);
            for check in &mut rollout.checks {
                swap(&mut check.plugin);
            }
        }
    }
    if focus.from.is_some()
        && let Some(index) = plan.index_of(&focus.stage)
    {
        plan.focus_on(index);
    }
}

/// The stages of `prepared` that keep an earlier run's results: those in
/// `succeeded` (name, `stage_finished` event), but `except`.
fn reused(
    prepared: &Prepared,
    succeeded: &[(String, String)],
    except: Option<&str>,
    how: Reused,
) -> Vec<Reuse> {
    let mut reuse = Vec::new();
    for (name, body) in succeeded {
        if except == Some(name.as_str()) {
            continue;
        }
        let Some(stage) = prepared.plan.index_of(name) else {
            continue;
        };
        let Ok(mut finished) = serde_json::from_str::<Event>(body) else {
            continue;
        };
        let Event::StageFinished {
            plugin,
            outputs,
            reused,
            ..
        } = &mut finished
        else {
            continue;
        };
        if plugin.is_none() {
            *plugin = prepared.plugins.get(stage).map(|p| p.info.label());
        }
        *reused = Some(Box::new(how.clone()));
        let outputs = outputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        reuse.push(Reuse {
            stage,
            outputs,
            finished,
        });
    }
    reuse
}

/// `weir run --resume ID`.
async fn resume(id: &str, args: RunArgs, verbose: bool) -> ExitCode {
    let fail = |e: StoreError| {
        eprintln!("weir: {e}");
        ExitCode::from(2)
    };
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return fail(StoreError::NoSuchRun(id.to_string()));
    }
    let store = match Store::open(&state_dir()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let recorded = match store.resume_info(id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match recorded.status.as_str() {
        "running" => {
            eprintln!(
                "weir: run {id} is still running (its weir process is alive); it can be resumed once it ends"
            );
            return ExitCode::from(2);
        }
        "succeeded" => {
            eprintln!("weir: run {id} succeeded; there is nothing to resume");
            return ExitCode::from(2);
        }
        _ => {}
    }
    let Some(text) = recorded.pipeline_text else {
        eprintln!(
            "weir: run {id} was recorded by an older weir without its pipeline, so it cannot be resumed"
        );
        return ExitCode::from(2);
    };
    let options: Options = recorded
        .options
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    if let Some(stage) = &options.dev {
        eprintln!(
            "weir: run {id} was a `weir dev` round of stage `{stage}` (a changed plugin on part of the pipeline), so it cannot be resumed; run `weir dev` again"
        );
        return ExitCode::from(2);
    }
    let workspace = PathBuf::from(&recorded.workspace);
    if !workspace.is_dir() {
        eprintln!(
            "weir: run {id}'s workspace {} is gone, so it cannot be resumed",
            workspace.display()
        );
        return ExitCode::from(2);
    }
    if let Err(why) = state_outside(&workspace) {
        eprintln!("weir: run {id} cannot be resumed: {why}");
        return ExitCode::from(2);
    }
    let path = PathBuf::from(&recorded.pipeline_file);
    let Some(tenant) = load_tenant(args.tenants.as_deref(), Some(&recorded.tenant)) else {
        return ExitCode::from(2);
    };
    let mut resolved = Resolved::default();
    let mut layer = |plan: &mut crate::plan::Plan| {
        resolved = resolve_environments(plan, &options, &tenant)?;
        within_tenant(plan, &tenant)
    };
    let engine = engine_for(&tenant);
    let prepared = match prepare_layered(&path, Some(text), Some(&workspace), &engine, &mut layer)
        .await
        .and_then(|p| sandbox_available(&p, &tenant).map(|()| p))
    {
        Ok(p) => p,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    let reuse = reused(&prepared, &recorded.succeeded, None, Reused::Resume);
    let rerun: Vec<String> = prepared
        .plan
        .stages
        .iter()
        .enumerate()
        .filter(|(i, _)| !reuse.iter().any(|r| r.stage == *i))
        .map(|(_, s)| s.name.clone())
        .collect();
    let recorder = match Recorder::resume(store, id, &rerun) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let options = Options {
        jobs: args.jobs.or(options.jobs),
        fail_fast: args.fail_fast || options.fail_fast,
        ..options
    };
    let launch = Launch {
        prepared,
        run_id: id.to_string(),
        workspace,
        tenant,
        options,
        recorder,
        resume: recorded.resumes + 1,
        reuse,
        resolved,
    };
    start(launch, &args, verbose).await
}

/// Run `launch`: events to the history and the reporter, stages through
/// the scheduler.
async fn start(launch: Launch, args: &RunArgs, verbose: bool) -> ExitCode {
    let Launch {
        prepared,
        run_id,
        workspace,
        tenant,
        options,
        recorder,
        resume,
        reuse,
        resolved,
    } = launch;
    let plan = prepared.plan;
    let stage_names: Vec<String> = plan.stages.iter().map(|s| s.name.clone()).collect();
    // The stage cache and replay records use a connection of their own.
    let history = match Store::open(&state_dir()) {
        Ok(store) => History {
            store: Arc::new(Mutex::new(store)),
            blobs: crate::blobs::Blobs::new(state_dir().join(crate::blobs::BLOB_DIR)),
        },
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };

    // Every secret a stage may open is masked from the start, with the
    // environments' secrets: masking is the second line behind handles.
    let policy = tenant;
    let mut masks = resolved.secret_values.clone();
    let granted: std::collections::BTreeSet<&String> =
        plan.stages.iter().flat_map(|s| s.grants.secrets.iter()).collect();
    // By name too: an artifact that holds one fails its stage naming it.
    let mut secrets = resolved.secrets.clone();
    for name in granted {
        if let Some(value) = policy.secrets.get(name) {
            masks.push(value.clone());
            secrets.push((name.clone(), value));
        }
    }
    let (sink, mut events) = EventSink::masked(&run_id, masks);
    let tenant = policy.name.clone();
    let mut notifier = Notifier::new(
        &plan.notify,
        &|name| policy.secrets.get(name),
        RunContext {
            run: run_id.clone(),
            pipeline: plan.name.clone(),
            tenant: tenant.clone(),
            environment: resolved.environment.clone(),
        },
    );
    // Every event goes to the history first, then to the webhooks and the
    // reporter.
    let (to_reporter, rx) = tokio::sync::mpsc::unbounded_channel();
    let tee = tokio::spawn(async move {
        while let Some(record) = events.recv().await {
            let done = matches!(record.event, Event::RunFinished { .. });
            recorder.record(record.clone());
            notifier.offer(&record);
            let _ = to_reporter.send(record);
            if done {
                break;
            }
        }
        (recorder, notifier)
    });
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Live
    } else {
        Mode::Plain
    };
    let reporter = tokio::spawn(report::report(
        ReportSetup {
            mode,
            verbose,
            stages: stage_names.clone(),
            reports: Some(run_dir(&run_id).join("reports")),
            explain_cache: args.explain_cache,
        },
        rx,
    ));
    sink.emit(Event::RunStarted {
        version: crate::events::EVENTS_VERSION,
        pipeline: plan.name.clone(),
        stages: stage_names,
        workspace: workspace.display().to_string(),
        tenant: tenant.clone(),
        resume,
    });

    let coordination = history.store.clone();
    let admission = StoreAdmission::new(
        coordination.clone(),
        &run_id,
        &tenant,
        plan.environments.clone(),
        sink.clone(),
        policy.max_stages,
    );
    let executor = Arc::new(WasmExecutor::new(
        prepared.engine,
        prepared.plugins,
        RunInfo {
            run_id: run_id.clone(),
            pipeline: plan.name.clone(),
            tenant,
            workspace,
            limits: policy.limits.stage,
            secrets: policy.secrets.clone(),
            artifacts: crate::artifacts::ArtifactStore::new(run_dir(&run_id).join("artifacts"))
                .with_limit(policy.limits.stage.disk_bytes)
                .with_secrets(&secrets),
            history: Some(history),
            target: crate::sandbox::TargetSpec {
                run_id: run_id.clone(),
                dir: Some(super::target_cmd::target_dir()),
                providers: plan.providers.clone(),
                ..Default::default()
            },
            rollouts: prepared.rollouts,
        },
        sink.clone(),
    ));
    let run_options = RunOptions {
        jobs: options
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        facts: RunFacts {
            branch: options.branch,
            environment: resolved.environment.clone(),
        },
        fail_fast: options.fail_fast,
        reuse,
        admission: Some(Arc::new(admission.clone())),
    };
    // Install the handlers before any stage starts, so an early Ctrl-C
    // cancels cleanly instead of killing the process mid-write. A newer
    // run of a `cancel-in-progress` group cancels this one the same way.
    let signal = cancel_signal();
    let asked = crate::waits::cancelled_by_another(coordination.clone(), run_id.clone());
    let mut cancel = Box::pin(async move {
        tokio::select! {
            () = signal => {}
            (by, group) = asked => {
                eprintln!("weir: run {by} took concurrency group `{group}` with cancel-in-progress; cancelling this run");
            }
        }
    });
    // The tenant's `max-runs` places, then the whole run's group, if it
    // has one: waited for like a stage's.
    let mut _run_claim = None;
    let mut _tenant_place = None;
    let mut cancelled_early = false;
    if let Some(max) = policy.max_runs {
        let name = policy.name.clone();
        tokio::select! {
            place = admission.acquire_slot(crate::waits::TENANT_RUNS, max as usize, None, false, |message| Event::RunWaiting {
                message: format!("tenant `{name}` runs at most {max} run(s) at once (limit `max-runs`): {message}"),
                group: crate::waits::TENANT_RUNS.to_string(),
            }) => match place {
                Ok(place) => _tenant_place = Some(place),
                Err(e) => {
                    eprintln!("weir: {e}");
                    cancelled_early = true;
                }
            },
            () = &mut cancel => cancelled_early = true,
        }
    }
    if let Some(c) = plan.concurrency.as_ref().filter(|_| !cancelled_early) {
        let group = c.group.clone();
        tokio::select! {
            claim = admission.acquire(&c.group, None, c.cancel_in_progress, |message| Event::RunWaiting {
                message,
                group: group.clone(),
            }) => match claim {
                Ok(claim) => _run_claim = Some(claim),
                Err(e) => {
                    eprintln!("weir: {e}");
                    cancelled_early = true;
                }
            },
            () = &mut cancel => cancelled_early = true,
        }
    }
    let report = if cancelled_early {
        run::run(&plan, executor, sink, run_options, async {}).await
    } else {
        run::run(&plan, executor, sink, run_options, cancel).await
    };
    drop(_run_claim);
    drop(_tenant_place);
    if let Err(e) = coordination
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .release_run(&run_id)
    {
        eprintln!("weir: could not release this run's concurrency groups: {e}");
    }
    // The tee ends at `RunFinished`, the last event of a run.
    let mut notifier = None;
    if let Ok((recorder, n)) = tee.await {
        notifier = Some(n);
        if let Err(e) = recorder.finish() {
            eprintln!("weir: the run history could not record this run completely: {e}");
        }
    }
    let _ = reporter.await;
    if let Some(n) = notifier.filter(|n| !n.is_empty()) {
        let deliveries = n.finish().await;
        for d in deliveries.iter().filter(|d| !d.delivered) {
            eprintln!(
                "weir: webhook {}: `{}` was not delivered after {} attempt(s): {}",
                d.url, d.event, d.attempts, d.last
            );
        }
        let recorded = coordination
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_deliveries(&run_id, &deliveries);
        if let Err(e) = recorded {
            eprintln!("weir: could not record webhook deliveries: {e}");
        }
    }
    match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(1),
        RunStatus::Cancelled => ExitCode::from(130),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, not when first polled.
fn cancel_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                tracing::warn!("cannot listen for Ctrl-C; the run can only be stopped by killing it");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// `20261121-223501-4f2a`: sortable, readable, unique enough per host.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, mo, d) = crate::report::style::civil_from_days((secs / 86_400) as i64);
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!(
        "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{:04x}",
        hasher.finish() & 0xffff
    )
}

/// `.weir/runs/RUN` (in the state directory), absolute: the run's
/// workspace (unless given), reports and artifacts live here.
pub fn run_dir(run_id: &str) -> PathBuf {
    state_dir().join("runs").join(run_id)
}

/// The run's workspace: the one given, else a fresh directory under the
/// tenant's root (`ROOT/runs/RUN/workspace`) or, for a tenant without a
/// root, under `.weir/runs/RUN`. A tenant with a root may not use a
/// workspace outside it.
fn workspace_dir(given: Option<&Path>, run_id: &str, tenant: &Tenant) -> std::io::Result<PathBuf> {
    let dir = match (given, &tenant.root) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(root)) => root.join("runs").join(run_id).join("workspace"),
        (None, None) => run_dir(run_id).join("workspace"),
    };
    let cannot = |e: std::io::Error| {
        std::io::Error::other(format!("cannot create the workspace {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(cannot)?;
    let dir = dir.canonicalize().map_err(cannot)?;
    state_outside(&dir).map_err(std::io::Error::other)?;
    if let Some(root) = &tenant.root {
        let root = root.canonicalize()?;
        if !dir.starts_with(&root) {
            return Err(std::io::Error::other(format!(
                "{} is outside the root of tenant `{}` ({}); a tenant's runs live under its root",
                dir.display(),
                tenant.name,
                root.display()
            )));
        }
    }
    Ok(dir)
}

/// What git says about the commit around the pipeline file.
#[derive(Debug, Default)]
struct GitFacts {
    commit: Option<String>,
    tags: Vec<String>,
}

/// The commit checked out around `pipeline` and the tags pointing at it,
/// when git is installed and the file is in a repository.
fn detect_git(pipeline: &Path) -> GitFacts {
    let Some(dir) = pipeline
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    else {
        return GitFacts::default();
    };
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    GitFacts {
        commit: git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty()),
        tags: git(&["tag", "--points-at", "HEAD"])
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// The branch checked out in the git repository around `pipeline`, read
/// from `.git/HEAD` (no git needed). `None` when detached or not in git.
fn detect_branch(pipeline: &Path) -> Option<String> {
    let start = pipeline.canonicalize().ok()?;
    let mut dir = start.parent()?;
    loop {
        let head = dir.join(".git").join("HEAD");
        if head.is_file() {
            let text = std::fs::read_to_string(head).ok()?;
            return text.trim().strip_prefix("ref: refs/heads/").map(str::to_string);
        }
        dir = dir.parent()?;
    }
}
