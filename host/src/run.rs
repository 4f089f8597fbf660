//! The scheduler: runs a [`Plan`]'s DAG.
//!
//! Ready stages run concurrently (at most `jobs` at once); `needs` orders
//! them; a stage whose need did not succeed is skipped, and the run fails;
//! `retries` re-runs a failed attempt (the executor gives each attempt a
//! fresh Store); `when` skips stages; outputs flow downstream through
//! `${{ stages.X.outputs.Y }}`; cancelling the run asks every running
//! attempt to end ([`Executor::stop`]) and drops what is still running
//! after [`RunOptions::cancel_grace`]. Everything that happens is emitted as an [`Event`].
//!
//! The scheduler does not know wasmtime: it drives an [`Executor`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub use crate::attempt::{AttemptFailure, AttemptRequest, AttemptResult};
use crate::events::{Event, EventSink, FailureKind, Reused, RunStatus, StageStatus};
use crate::plan::{Plan, RunFacts};

mod stage;

use stage::{StageRun, finish, run_stage};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs attempts. The engine-backed one is the `WasmExecutor` in the
/// `execute` module; the unit tests script one.
pub trait Executor: Send + Sync + 'static {
    /// `name version` of the plugin a stage uses, for events.
    fn plugin_label(&self, stage: usize) -> String;
    /// Run one attempt to completion. Dropping the future cancels it.
    fn execute(&self, request: AttemptRequest) -> BoxFuture<AttemptResult>;
    /// Before a stage's first attempt: may its result come from the stage
    /// cache? The default executor has no cache.
    fn check_cache(&self, _request: &AttemptRequest) -> BoxFuture<CacheCheck> {
        Box::pin(async { CacheCheck::default() })
    }
    /// After a cacheable stage succeeded: keep its result under `key`.
    fn fill_cache(
        &self,
        _request: &AttemptRequest,
        _key: crate::stage_cache::Pending,
        _result: &AttemptResult,
    ) -> BoxFuture<()> {
        Box::pin(async {})
    }
    /// The run is cancelled: ask every running attempt to end (programs
    /// get SIGTERM, guests trap at their next epoch check). The scheduler
    /// then waits at most [`RunOptions::cancel_grace`] before it drops
    /// what is still running. The default does nothing: its attempts are
    /// dropped at the end of the grace period.
    fn stop(&self) {}
}

/// How long a cancelled run waits for its running stages to end after
/// asking them to, before dropping them.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// What the stage cache says about a stage before it runs.
#[derive(Debug, Default)]
pub struct CacheCheck {
    /// The `stage_cache` event, if there is something to say.
    pub event: Option<Event>,
    /// A stored result to use instead of running the stage.
    pub hit: Option<(AttemptResult, Reused)>,
    /// The key to store the result under if the stage runs and succeeds.
    pub key: Option<crate::stage_cache::Pending>,
}

/// A stage that already succeeded in an earlier start of the same run
/// (`weir run --resume`): it does not run again.
#[derive(Debug, Clone)]
pub struct Reuse {
    /// Index into the plan's stages.
    pub stage: usize,
    /// Its outputs, for the stages that need it.
    pub outputs: Vec<(String, String)>,
    /// Its recorded `stage_finished` event, emitted again marked
    /// `reused`, so reports cover the whole run.
    pub finished: Event,
}

/// What a stage must wait for before it starts: approvals, concurrency
/// groups. The permit it returns is held until the stage ends.
pub trait Admission: Send + Sync + std::fmt::Debug + 'static {
    /// Wait until `stage` may start, emitting what it waits for. `Err`
    /// fails the stage with that result.
    fn admit(&self, stage: &crate::plan::PlannedStage) -> BoxFuture<Result<Permit, AttemptResult>>;
}

/// Held while a stage runs; dropping it lets the next one in.
pub type Permit = Box<dyn Send>;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Most stages running at once.
    pub jobs: usize,
    /// Branch and environment, for `when`.
    pub facts: RunFacts,
    /// Start no new stage once one has failed.
    pub fail_fast: bool,
    /// Stages that succeeded before a resume.
    pub reuse: Vec<Reuse>,
    /// What stages wait for before they start, if anything.
    pub admission: Option<Arc<dyn Admission>>,
    /// How long a cancelled run waits for running stages to end
    /// ([`CANCEL_GRACE`] by default) before it drops them.
    pub cancel_grace: Duration,
}

/// How each stage and the run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run.
    pub status: RunStatus,
    /// Per stage, in plan order.
    pub stages: Vec<StageStatus>,
}

/// What a stage task returns: how it ended and its outputs. Which stage it
/// was is known from the task's id.
type StageEnd = (StageStatus, Vec<(String, String)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done(StageStatus),
}

/// Run `plan` to the end, or until `cancel` resolves.
pub async fn run(
    plan: &Plan,
    executor: Arc<dyn Executor>,
    sink: EventSink,
    options: RunOptions,
    cancel: impl Future<Output = ()>,
) -> RunReport {
    let started = Instant::now();
    let n = plan.stages.len();
    let order = plan.topological_order();
    let mut state = vec![State::Pending; n];
    let mut outputs: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    let mut running: JoinSet<StageEnd> = JoinSet::new();
    let mut task_stage: std::collections::HashMap<tokio::task::Id, usize> = std::collections::HashMap::new();
    let mut any_failed = false;
    let mut cancelled = false;
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = options.jobs.max(1);
    tokio::pin!(cancel);
    for r in &options.reuse {
        if r.stage < n {
            state[r.stage] = State::Done(StageStatus::Succeeded);
            outputs[r.stage] = r.outputs.clone();
            sink.emit(r.finished.clone());
        }
    }

    loop {
        // Settle every pending stage we can: skip it or start it.
        for &i in &order {
            if state[i] != State::Pending {
                continue;
            }
            let stage = &plan.stages[i];
            let blocked = stage.needs.iter().find_map(|&d| match state[d] {
                State::Done(StageStatus::Succeeded) => None,
                State::Done(s) => Some((d, s)),
                _ => None,
            });
            if let Some((d, s)) = blocked {
                let what = match s {
                    StageStatus::Failed => "failed",
                    StageStatus::Skipped => "was skipped",
                    _ => "was cancelled",
                };
                skip(
                    &sink,
                    &mut state,
                    i,
                    &stage.name,
                    format!("needs `{}`, which {what}", plan.stages[d].name),
                );
                continue;
            }
            if !stage
                .needs
                .iter()
                .all(|&d| state[d] == State::Done(StageStatus::Succeeded))
            {
                continue;
            }
            if options.fail_fast && any_failed {
                skip(
                    &sink,
                    &mut state,
                    i,
                    &stage.name,
                    "an earlier stage failed and --fail-fast is on".into(),
                );
                continue;
            }
            if let Err(reason) = stage.when.check(&options.facts) {
                skip(&sink, &mut state, i, &stage.name, reason.to_string());
                continue;
            }
            if running.len() >= jobs {
                continue;
            }
            state[i] = State::Running;
            // Upstream stages that produced nothing are left out: they
            // have nothing to give, and a long chain would otherwise hand
            // every stage a list as long as the chain.
            let inputs: Vec<(String, Vec<(String, String)>)> = stage
                .upstream
                .iter()
                .filter(|&&u| !outputs[u].is_empty())
                .map(|&u| (plan.stages[u].name.to_string(), outputs[u].clone()))
                .collect();
            let handle = running.spawn(run_stage(
                plan.stages[i].clone(),
                i,
                inputs,
                StageRun {
                    executor: executor.clone(),
                    sink: sink.clone(),
                    run_environment: options.facts.environment.clone(),
                    admission: options.admission.clone(),
                    stopping: stopping.clone(),
                },
            ));
            task_stage.insert(handle.id(), i);
        }

        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id() => {
                match joined {
                    Some(Ok((id, (status, outs)))) => {
                        if status == StageStatus::Failed {
                            any_failed = true;
                        }
                        if let Some(&i) = task_stage.get(&id) {
                            state[i] = State::Done(status);
                            outputs[i] = outs;
                        }
                    }
                    Some(Err(join_error)) => {
                        // A panic in weir's own code while running a stage:
                        // fail that stage (and only it), say so, go on.
                        any_failed = true;
                        if let Some(&i) = task_stage.get(&join_error.id()) {
                            state[i] = State::Done(StageStatus::Failed);
                            let result = AttemptResult::failed(
                                FailureKind::Host,
                                format!("weir itself failed while running this stage: {join_error}"),
                                None,
                            );
                            finish(&sink, &plan.stages[i].name, &executor.plugin_label(i), 0, started, &result);
                        } else {
                            tracing::error!("a stage task ended abnormally: {join_error}");
                        }
                    }
                    None => {}
                }
            }
            () = &mut cancel => {
                cancelled = true;
                stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                executor.stop();
                // Whatever they return now, these stages were cancelled.
                let drained = tokio::time::timeout(options.cancel_grace, async {
                    while running.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::debug!("stages still running after the cancel grace period are dropped");
                }
                running.abort_all();
                while running.join_next().await.is_some() {}
                break;
            }
        }
    }

    if cancelled {
        for &i in &order {
            match state[i] {
                State::Running => {
                    state[i] = State::Done(StageStatus::Cancelled);
                    sink.emit(cancelled_event(&plan.stages[i].name, "cancelled while running"));
                }
                State::Pending => {
                    state[i] = State::Done(StageStatus::Cancelled);
                    sink.emit(cancelled_event(
                        &plan.stages[i].name,
                        "the run was cancelled before it started",
                    ));
                }
                State::Done(_) => {}
            }
        }
    }

    let stages: Vec<StageStatus> = state
        .iter()
        .map(|s| match s {
            State::Done(s) => *s,
            _ => StageStatus::Cancelled,
        })
        .collect();
    let status = if cancelled {
        RunStatus::Cancelled
    } else if stages.contains(&StageStatus::Failed) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    let mut counts = BTreeMap::new();
    for s in &stages {
        let key = serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        *counts.entry(key).or_insert(0) += 1;
    }
    sink.emit(Event::RunFinished {
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        counts,
    });
    RunReport { status, stages }
}

fn cancelled_event(stage: &str, why: &str) -> Event {
    Event::StageFinished {
        stage: stage.to_string(),
        plugin: None,
        status: StageStatus::Cancelled,
        failure: None,
        attempts: 0,
        duration_ms: 0,
        outputs: BTreeMap::new(),
        artifacts: Vec::new(),
        summary: None,
        error: Some(why.to_string()),
        details: None,
        findings: Vec::new(),
        analysis: None,
        tests: None,
        sandbox: None,
        cases: Vec::new(),
        usage: None,
        reused: None,
    }
}

fn skip(sink: &EventSink, state: &mut [State], i: usize, name: &str, reason: String) {
    state[i] = State::Done(StageStatus::Skipped);
    sink.emit(Event::StageSkipped {
        stage: name.to_string(),
        reason,
    });
}

#[cfg(test)]
mod tests;
