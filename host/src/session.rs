//! A run, as a library call.
//!
//! Every front end runs pipelines the same way: [`launch::fresh`] (or
//! [`launch::resume`]) reads, plans and checks the pipeline against its
//! tenant and records the run, giving a [`Session`]; [`Session::run`] then
//! drives it to the end and returns its [`Outcome`]. Events go to the run
//! history first, then to the pipeline's webhooks, then to the caller's
//! observer (the CLI's live view, the service's log stream). A
//! [`CancelToken`] stops the run: no stage starts any more, running
//! guests trap at their next epoch check, running programs get SIGTERM
//! (SIGKILL 3 s later), and what is still running after the grace period
//! ([`crate::run::CANCEL_GRACE`], 5 s) is dropped. The run ends
//! `cancelled`.
//!
//! ```text
//! launch::fresh / launch::resume ─▶ Session ─▶ Session::run ─▶ Outcome
//!      (prepare: config → plan → plugins)       (run: the scheduler)
//! ```
//!
//! Nothing here prints: refusals are [`SessionError`]s, and what went wrong
//! after the run started (a webhook not delivered) is in
//! [`Outcome::problems`].

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

pub mod launch;
pub mod prepare;
pub mod replay;
pub mod state;

use crate::config::tenants::Tenant;
use crate::events::{Event, EventRecord, EventSink};
use crate::execute::{History, RunInfo, WasmExecutor};
use crate::notify::{Notifier, RunContext};
use crate::plan::RunFacts;
use crate::plan::environments::Resolved;
use crate::run::{self, Reuse, RunOptions, RunReport};
use crate::store::StoreError;
use crate::store::recorder::Recorder;
use crate::waits::StoreAdmission;
use prepare::{PrepareError, Prepared};

/// Why a run could not start. Nothing was run; a run refused before its
/// history was opened is not recorded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SessionError {
    /// The pipeline, its plugins, its environments or its tenant refused it.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Prepare(#[from] PrepareError),
    /// The run history cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The workspace cannot be made or is not allowed.
    #[error("{0}")]
    Workspace(std::io::Error),
    /// A recorded run cannot be resumed.
    #[error("run {id} {why}")]
    NotResumable {
        /// The run.
        id: String,
        /// Why not, after "run ID".
        why: String,
    },
}

/// Stops a run from anywhere: a signal handler, an API call, a newer run.
/// Clones share one state; once cancelled it stays cancelled. The same
/// one-way flag as the run's [`crate::capabilities::Stopping`], which the
/// run's Stores read.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(crate::capabilities::Stopping);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel the run (again is harmless).
    pub fn cancel(&self) {
        self.0.stop();
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_stopping()
    }

    /// Resolves once the token is cancelled.
    pub async fn cancelled(&self) {
        self.0.stopped().await;
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The run's id.
    pub run_id: String,
    /// How the run and each stage ended.
    pub report: RunReport,
    /// What went wrong around the run, for people: a concurrency group
    /// that could not be released, a webhook not delivered, why it was
    /// cancelled.
    pub problems: Vec<String>,
}

/// A planned, checked and recorded run, ready to [`run`](Session::run).
pub struct Session {
    pub(crate) prepared: Prepared,
    pub(crate) run_id: String,
    pub(crate) workspace: std::path::PathBuf,
    pub(crate) tenant: Tenant,
    pub(crate) options: launch::Options,
    pub(crate) recorder: Recorder,
    pub(crate) resume: u32,
    pub(crate) reuse: Vec<Reuse>,
    pub(crate) resolved: Resolved,
    /// Stages left out because the run's code is not trusted with them.
    pub(crate) left_out: Vec<String>,
    /// A connection of its own for the stage cache and replay records.
    pub(crate) history: History,
    /// The run as first recorded (a fresh run's).
    pub(crate) opened: Option<crate::store::recorder::NewRun>,
}

impl Session {
    /// The stages left out because the run's code is not trusted with
    /// them (a pull request from a fork), in plan order.
    pub fn left_out(&self) -> &[String] {
        &self.left_out
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// The run as it was first recorded, for a fresh run: what a worker
    /// tells the server.
    pub fn opened(&self) -> Option<&crate::store::recorder::NewRun> {
        self.opened.as_ref()
    }

    /// The stages that will run, in plan order: all but those that keep
    /// an earlier attempt's results.
    pub fn to_run(&self) -> Vec<String> {
        self.prepared
            .plan
            .stages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.reuse.iter().any(|r| r.stage == *i))
            .map(|(_, s)| s.name.to_string())
            .collect()
    }

    /// The concurrency groups the run or its stages hold: kept in the
    /// history of the machine that runs the run.
    pub fn concurrency_groups(&self) -> Vec<String> {
        let plan = &self.prepared.plan;
        let mut groups: Vec<String> = plan
            .concurrency
            .iter()
            .chain(plan.stages.iter().flat_map(|s| s.concurrency.iter()))
            .map(|c| c.group.clone())
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// The labels a worker needs to run it (`[pipeline] runs-on`).
    pub fn runs_on(&self) -> &[String] {
        &self.prepared.plan.runs_on
    }

    /// The stages, in plan order.
    pub fn stages(&self) -> Vec<String> {
        self.prepared
            .plan
            .stages
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    }

    /// Run to the end, or until `cancel`: events go to the history, then
    /// the webhooks, then `observer`.
    pub async fn run(self, observer: UnboundedSender<EventRecord>, cancel: CancelToken) -> Outcome {
        let Session {
            prepared,
            run_id,
            workspace,
            tenant: policy,
            options,
            recorder,
            resume,
            reuse,
            resolved,
            history,
            left_out,
            opened: _,
        } = self;
        let mut problems = Vec::new();
        if !left_out.is_empty() {
            problems.push(format!(
                "left out because this run's code is not trusted with secrets or deploys (a pull request from a fork): {}",
                left_out.join(", ")
            ));
        }
        let plan = prepared.plan;
        let stage_names: Vec<String> = plan.stages.iter().map(|s| s.name.to_string()).collect();
        let needs = plan
            .stages
            .iter()
            .filter(|s| !s.needs.is_empty())
            .map(|s| {
                let on = s
                    .needs
                    .iter()
                    .filter_map(|&i| stage_names.get(i).cloned())
                    .collect();
                (s.name.to_string(), on)
            })
            .collect();
        // Every secret a stage may open is masked from the start, with the
        // environments' secrets: masking is the second line behind handles.
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
        let tenant = policy.name.to_string();
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
        let mut provenance = crate::report::provenance::statement::Collector::new(provenance_inputs(
            &plan,
            &prepared.plugins,
            &prepared.rollouts,
            &run_id,
            &tenant,
            options.branch.clone(),
            resolved.environment.clone(),
        ));
        let reports = state::run_dir(&run_id).join("reports");
        // Every event goes to the history first, then to the webhooks and
        // the observer. The provenance is written before the observer
        // hears the run finished, so its summary can point at the file.
        let tee = tokio::spawn(async move {
            let mut written = None;
            while let Some(record) = events.recv().await {
                let done = matches!(record.event, Event::RunFinished { .. });
                recorder.record(record.clone());
                notifier.offer(&record);
                provenance.observe(&record);
                if done {
                    let key = crate::report::provenance::keys::signing_key_path();
                    written = Some(crate::report::provenance::write(
                        &provenance,
                        &reports,
                        key.as_deref(),
                    ));
                }
                let _ = observer.send(record);
                if done {
                    break;
                }
            }
            (recorder, notifier, written)
        });
        sink.emit(Event::RunStarted {
            version: crate::events::EVENTS_VERSION,
            pipeline: plan.name.clone(),
            stages: stage_names,
            workspace: workspace.display().to_string(),
            tenant: tenant.clone(),
            resume,
            needs,
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
            prepared.rollouts,
            RunInfo {
                run_id: run_id.clone(),
                pipeline: plan.name.clone(),
                tenant,
                workspace,
                limits: policy.limits.stage,
                secrets: policy.secrets.clone(),
                artifacts: crate::artifacts::ArtifactStore::new(state::run_dir(&run_id).join("artifacts"))
                    .with_limit(policy.limits.stage.disk_bytes)
                    .with_secrets(&secrets),
                history: Some(history),
                target: crate::capabilities::TargetSpec {
                    run_id: run_id.clone(),
                    dir: Some(state::target_dir()),
                    providers: plan.providers.clone(),
                    ..Default::default()
                },
                stopping: Default::default(),
            },
            sink.clone(),
        ));
        let run_options = RunOptions {
            cancel_grace: crate::run::CANCEL_GRACE,
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
        // A newer run of a `cancel-in-progress` group cancels this one the
        // same way as the caller's token.
        let asked = crate::waits::cancelled_by_another(coordination.clone(), run_id.clone());
        let why_cancelled = Arc::new(Mutex::new(None));
        let why = why_cancelled.clone();
        let mut cancel = Box::pin(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                (by, group) = asked => {
                    *why.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                        "run {by} took concurrency group `{group}` with cancel-in-progress; this run was cancelled"
                    ));
                }
            }
        });
        // The tenant's `max-runs` places, then the whole run's group, if
        // it has one: waited for like a stage's.
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
                        problems.push(e.to_string());
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
                        problems.push(e.to_string());
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
        if let Some(why) = why_cancelled.lock().unwrap_or_else(|e| e.into_inner()).take() {
            problems.insert(0, why);
        }
        drop(_run_claim);
        drop(_tenant_place);
        if let Err(e) = coordination
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release_run(&run_id)
        {
            problems.push(format!("could not release this run's concurrency groups: {e}"));
        }
        // The tee ends at `RunFinished`, the last event of a run.
        let mut notifier = None;
        if let Ok((recorder, n, written)) = tee.await {
            notifier = Some(n);
            if let Some(Err(e)) = written {
                problems.push(e);
            }
            if let Err(e) = recorder.finish() {
                problems.push(format!(
                    "the run history could not record this run completely: {e}"
                ));
            }
        }
        if let Some(n) = notifier.filter(|n| !n.is_empty()) {
            let deliveries = n.finish().await;
            for d in deliveries.iter().filter(|d| !d.delivered) {
                problems.push(format!(
                    "webhook {}: `{}` was not delivered after {} attempt(s): {}",
                    d.url, d.event, d.attempts, d.last
                ));
            }
            let recorded = coordination
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_deliveries(&run_id, &deliveries);
            if let Err(e) = recorded {
                problems.push(format!("could not record webhook deliveries: {e}"));
            }
        }
        Outcome {
            run_id,
            report,
            problems,
        }
    }
}

/// What the run's provenance says of its inputs.
fn provenance_inputs(
    plan: &crate::plan::Plan,
    plugins: &[Arc<crate::plugins::LoadedPlugin>],
    rollouts: &std::collections::BTreeMap<usize, Arc<crate::rollout::RolloutPlugins>>,
    run_id: &str,
    tenant: &str,
    branch: Option<String>,
    environment: Option<String>,
) -> crate::report::provenance::statement::Inputs {
    use sha2::Digest as _;
    let mut deps: Vec<crate::report::provenance::statement::PluginDependency> = Vec::new();
    let used = plugins.iter().chain(
        rollouts
            .values()
            .flat_map(|r| std::iter::once(&r.strategy.0).chain(r.checks.iter().map(|(p, _)| p))),
    );
    for p in used {
        if deps
            .iter()
            .any(|d| d.sha256 == p.info.sha256 && d.name == p.info.name)
        {
            continue;
        }
        deps.push(crate::report::provenance::statement::PluginDependency {
            name: p.info.name.clone(),
            source: p.info.source.clone(),
            version: p.info.manifest.version.clone(),
            sha256: p.info.sha256.clone(),
            wit: p.info.contract.package().to_string(),
            kind: crate::plugins::kind::kind_name(p.info.kind).to_string(),
        });
    }
    let repos = plan
        .stages
        .iter()
        .filter(|s| matches!(&s.plugin, crate::plan::PluginRef::Builtin(n) if n == "git"))
        .filter_map(|s| {
            let repo = s.with.get("repo")?.as_str()?;
            (!repo.contains("${{")).then(|| (s.name.to_string(), repo.to_string()))
        })
        .collect();
    crate::report::provenance::statement::Inputs {
        run_id: run_id.to_string(),
        pipeline: plan.name.clone(),
        pipeline_file: plan.source.path().display().to_string(),
        pipeline_sha256: hex::encode(sha2::Sha256::digest(plan.source.text().as_bytes())),
        branch,
        environment,
        tenant: tenant.to_string(),
        stages: plan
            .stages
            .iter()
            .map(|s| (s.name.to_string(), s.with.clone()))
            .collect(),
        repos,
        plugins: deps,
        builder_id: crate::report::provenance::statement::builder_id(),
    }
}
