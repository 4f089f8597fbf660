//! The scheduler alone: a scripted executor stands in for wasmtime, so
//! these drive the DAG, retries, limits, conditions, cancellation and
//! resume directly.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::events::EventRecord;
use std::time::Duration;

/// Plays back what each stage's attempts return, in order; a stage with
/// nothing scripted succeeds. Each attempt takes `delay`.
#[derive(Default)]
struct Scripted {
    script: Mutex<HashMap<String, VecDeque<AttemptResult>>>,
    asked: Mutex<Vec<AttemptRequest>>,
    delay: Duration,
    running: AtomicUsize,
    most: AtomicUsize,
    /// Attempts end early when asked to stop (as the wasm executor's do).
    honours_stop: bool,
    stop: tokio::sync::Notify,
    stopped: std::sync::atomic::AtomicBool,
    /// Attempts that ran to their end after being asked to stop.
    wound_down: AtomicUsize,
}

impl Scripted {
    fn with(mut self, stage: &str, results: Vec<AttemptResult>) -> Self {
        self.script
            .get_mut()
            .expect("not poisoned")
            .insert(stage.to_string(), results.into());
        self
    }

    fn slow(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    fn stoppable(self) -> Self {
        Self {
            honours_stop: true,
            ..self
        }
    }

    fn attempts(&self, stage: &str) -> Vec<AttemptRequest> {
        let asked = self.asked.lock().expect("not poisoned");
        asked.iter().filter(|r| r.stage_name == stage).cloned().collect()
    }
}

/// The scheduler's handle on a [`Scripted`] the test also holds.
struct Shared(Arc<Scripted>);

impl Executor for Shared {
    fn plugin_label(&self, _stage: usize) -> String {
        "scripted 1.0".into()
    }

    fn execute(&self, request: AttemptRequest) -> BoxFuture<AttemptResult> {
        let me = self.0.clone();
        me.asked.lock().expect("not poisoned").push(request.clone());
        let result = me
            .script
            .lock()
            .expect("not poisoned")
            .get_mut(&request.stage_name)
            .and_then(VecDeque::pop_front)
            .unwrap_or_default();
        let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
        me.most.fetch_max(now, Ordering::SeqCst);
        Box::pin(async move {
            let stop = async {
                if me.honours_stop {
                    let asked = me.stop.notified();
                    if !me.stopped.load(Ordering::SeqCst) {
                        asked.await;
                    }
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(me.delay) => {}
                () = stop => {
                    me.wound_down.fetch_add(1, Ordering::SeqCst);
                }
            }
            me.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.stop.notify_waiters();
    }
}

/// `s`, for the test to look at afterwards, and as the scheduler's
/// executor.
fn executor(s: Scripted) -> (Arc<Scripted>, Arc<dyn Executor>) {
    let s = Arc::new(s);
    (s.clone(), Arc::new(Shared(s)))
}

fn plan(stages: &str) -> Plan {
    let text = format!("[pipeline]\nname = \"t\"\n{stages}");
    let loaded = crate::config::parse(std::path::Path::new("pipeline.toml"), text).expect("parses");
    crate::plan::build(loaded, &crate::plugins::builtin::names()).expect("plans")
}

fn options() -> RunOptions {
    RunOptions {
        jobs: 4,
        facts: RunFacts::default(),
        fail_fast: false,
        reuse: Vec::new(),
        admission: None,
        cancel_grace: Duration::from_secs(5),
    }
}

async fn drive(
    plan: &Plan,
    executor: Arc<dyn Executor>,
    options: RunOptions,
    cancel: impl Future<Output = ()>,
) -> (RunReport, Vec<Event>) {
    let (sink, mut rx) = EventSink::channel("r");
    let report = super::run(plan, executor, sink, options, cancel).await;
    let mut events = Vec::new();
    while let Ok(EventRecord { event, .. }) = rx.try_recv() {
        events.push(event);
    }
    (report, events)
}

fn status_of(plan: &Plan, report: &RunReport, stage: &str) -> StageStatus {
    report.stages[plan.index_of(stage).expect("a stage")]
}

fn failed(kind: FailureKind, message: &str) -> AttemptResult {
    AttemptResult::failed(kind, message, None)
}

fn finished<'a>(events: &'a [Event], stage: &str) -> &'a Event {
    events
        .iter()
        .find(|e| matches!(e, Event::StageFinished { stage: s, .. } if s == stage))
        .expect("the stage finished")
}

#[tokio::test]
async fn a_failed_need_skips_its_dependents_and_fails_the_run() {
    let plan = plan(
        "[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\n",
    );
    let (_, ex) = executor(Scripted::default().with("a", vec![failed(FailureKind::Plugin, "no")]));
    let (report, events) = drive(&plan, ex, options(), std::future::pending()).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&plan, &report, "b"), StageStatus::Skipped);
    assert_eq!(status_of(&plan, &report, "c"), StageStatus::Succeeded);
    assert!(events.iter().any(|e| matches!(e,
        Event::StageSkipped { stage, reason } if stage == "b" && reason == "needs `a`, which failed")));
}

#[tokio::test]
async fn fail_fast_starts_nothing_after_a_failure() {
    let plan = plan(
        "[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.d]\nuses = \"noop\"\n",
    );
    // One at a time: `a` runs first and fails; `d`, which needs nothing,
    // was not started yet, and must not start now.
    let (exec, ex) = executor(Scripted::default().with("a", vec![failed(FailureKind::Plugin, "no")]));
    let (report, events) = drive(
        &plan,
        ex,
        RunOptions {
            jobs: 1,
            fail_fast: true,
            ..options()
        },
        std::future::pending(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&plan, &report, "d"), StageStatus::Skipped);
    assert!(exec.attempts("d").is_empty(), "d never ran");
    assert!(events.iter().any(|e| matches!(e,
        Event::StageSkipped { stage, reason } if stage == "d" && reason.contains("--fail-fast"))));
}

#[tokio::test]
async fn a_retryable_failure_is_retried_until_it_passes() {
    let plan = plan("[stages.a]\nuses = \"noop\"\nretries = 3\n");
    let flaky = AttemptResult::plugin_failed("busy", None, true);
    let (exec, ex) = executor(Scripted::default().with("a", vec![flaky.clone(), flaky]));
    let (report, events) = drive(&plan, ex, options(), std::future::pending()).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let attempts: Vec<u32> = exec.attempts("a").iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let retrying = events
        .iter()
        .filter(|e| matches!(e, Event::StageRetrying { .. }))
        .count();
    assert_eq!(retrying, 2);
    assert!(matches!(
        finished(&events, "a"),
        Event::StageFinished { attempts: 3, .. }
    ));
}

#[tokio::test]
async fn a_failure_that_would_end_the_same_way_is_not_retried() {
    let plan = plan(
        "[stages.a]\nuses = \"noop\"\nretries = 3\n[stages.b]\nuses = \"noop\"\nretries = 3\n[stages.c]\nuses = \"noop\"\nretries = 1\n",
    );
    let (exec, ex) = executor(
        Scripted::default()
            .with("a", vec![AttemptResult::plugin_failed("bad config", None, false)])
            .with("b", vec![failed(FailureKind::Limit, "memory limit hit")])
            .with(
                "c",
                vec![
                    failed(FailureKind::Timeout, "slow"),
                    failed(FailureKind::Timeout, "slow"),
                ],
            ),
    );
    let (report, events) = drive(&plan, ex, options(), std::future::pending()).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(exec.attempts("a").len(), 1);
    assert_eq!(exec.attempts("b").len(), 1);
    // A timeout may pass next time: tried again, up to `retries`.
    assert_eq!(exec.attempts("c").len(), 2);
    let Event::StageFinished { error, .. } = finished(&events, "a") else {
        unreachable!()
    };
    assert_eq!(
        error.as_deref(),
        Some("bad config (not retried: the plugin said another attempt would not help)")
    );
    let Event::StageFinished { error, .. } = finished(&events, "c") else {
        unreachable!()
    };
    assert_eq!(error.as_deref(), Some("slow"), "its retries were used up");
}

#[tokio::test]
async fn each_attempt_gets_its_stage_timeout() {
    let plan = plan("[stages.a]\nuses = \"noop\"\ntimeout = \"90s\"\n");
    let (exec, ex) = executor(Scripted::default());
    drive(&plan, ex, options(), std::future::pending()).await;
    assert_eq!(exec.attempts("a")[0].timeout, Duration::from_secs(90));
}

#[tokio::test]
async fn no_more_than_jobs_stages_run_at_once() {
    let stages: String = (0..6)
        .map(|i| format!("[stages.s{i}]\nuses = \"noop\"\n"))
        .collect();
    let plan = plan(&stages);
    let (exec, ex) = executor(Scripted::default().slow(Duration::from_millis(30)));
    let (report, _) = drive(
        &plan,
        ex,
        RunOptions { jobs: 2, ..options() },
        std::future::pending(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(exec.most.load(Ordering::SeqCst), 2, "two at a time, and no more");
}

#[tokio::test]
async fn when_skips_a_stage_on_another_branch_and_runs_it_on_its_own() {
    let plan = plan("[stages.deploy]\nuses = \"noop\"\nwhen = { branch = \"main\" }\n");
    let facts = |branch: &str| RunOptions {
        facts: RunFacts {
            branch: Some(branch.into()),
            environment: None,
        },
        ..options()
    };
    let (exec, ex) = executor(Scripted::default());
    let (report, events) = drive(&plan, ex, facts("topic"), std::future::pending()).await;
    assert_eq!(
        report.status,
        RunStatus::Succeeded,
        "a skipped stage does not fail the run"
    );
    assert_eq!(report.stages, [StageStatus::Skipped]);
    assert!(exec.attempts("deploy").is_empty());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StageSkipped { reason, .. } if reason.contains("main")))
    );
    let (exec, ex) = executor(Scripted::default());
    let (report, _) = drive(&plan, ex, facts("main"), std::future::pending()).await;
    assert_eq!(report.stages, [StageStatus::Succeeded]);
    assert_eq!(exec.attempts("deploy").len(), 1);
}

#[tokio::test]
async fn cancelling_ends_running_and_waiting_stages_cancelled() {
    let plan = plan("[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n");
    let (exec, ex) = executor(Scripted::default().slow(Duration::from_secs(3600)));
    let (report, events) = drive(
        &plan,
        ex,
        RunOptions {
            cancel_grace: Duration::from_millis(50),
            ..options()
        },
        tokio::time::sleep(Duration::from_millis(50)),
    )
    .await;
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.stages, [StageStatus::Cancelled, StageStatus::Cancelled]);
    assert_eq!(exec.attempts("a").len(), 1);
    assert!(exec.attempts("b").is_empty());
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            status: RunStatus::Cancelled,
            ..
        })
    ));
}

#[tokio::test]
async fn a_cancelled_run_lets_its_stages_wind_down_within_the_grace_period() {
    let plan = plan("[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\n");
    // Both honour the stop and end well inside an hour-long grace: the
    // scheduler waits for them rather than dropping them.
    let (exec, ex) = executor(Scripted::default().slow(Duration::from_secs(3600)).stoppable());
    let (report, _) = drive(
        &plan,
        ex,
        RunOptions {
            cancel_grace: Duration::from_secs(3600),
            ..options()
        },
        tokio::time::sleep(Duration::from_millis(50)),
    )
    .await;
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.stages, [StageStatus::Cancelled, StageStatus::Cancelled]);
    assert_eq!(exec.wound_down.load(Ordering::SeqCst), 2, "both ran to their end");
    assert_eq!(exec.running.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn what_ignores_the_stop_is_dropped_when_the_grace_period_ends() {
    let plan = plan("[stages.a]\nuses = \"noop\"\n");
    let (exec, ex) = executor(Scripted::default().slow(Duration::from_secs(3600)));
    let (report, _) = drive(
        &plan,
        ex,
        RunOptions {
            cancel_grace: Duration::from_millis(100),
            ..options()
        },
        tokio::time::sleep(Duration::from_millis(50)),
    )
    .await;
    assert_eq!(report.stages, [StageStatus::Cancelled]);
    assert_eq!(exec.wound_down.load(Ordering::SeqCst), 0);
    // Dropped mid-sleep: it never got to count itself out.
    assert_eq!(exec.running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_resumed_run_keeps_what_succeeded_and_hands_its_outputs_on() {
    let plan = plan(
        "[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\nwith = { got = \"${{ stages.a.outputs.digest }}\" }\n",
    );
    let (_, first) = executor(Scripted::default());
    let (_, events) = drive(&plan, first, options(), std::future::pending()).await;
    let earlier = finished(&events, "a").clone();
    let (exec, ex) = executor(Scripted::default());
    let (report, events) = drive(
        &plan,
        ex,
        RunOptions {
            reuse: vec![Reuse {
                stage: 0,
                outputs: vec![("digest".into(), "abc".into())],
                finished: earlier,
            }],
            ..options()
        },
        std::future::pending(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(exec.attempts("a").is_empty(), "a is not run again");
    let b = exec.attempts("b");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].config, r#"{"got":"abc"}"#);
    assert_eq!(
        b[0].inputs,
        [("a".to_string(), vec![("digest".to_string(), "abc".to_string())])]
    );
    // Reports cover the whole run: a's finish is emitted again.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StageFinished { stage, .. } if stage == "a"))
    );
}

#[tokio::test]
async fn a_missing_output_fails_the_stage_before_any_attempt_naming_what_exists() {
    let plan = plan(
        "[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\nwith = { got = \"${{ stages.a.outputs.nope }}\" }\n",
    );
    let ok = AttemptResult {
        outputs: vec![("digest".into(), "abc".into())],
        ..AttemptResult::default()
    };
    let (exec, ex) = executor(Scripted::default().with("a", vec![ok]));
    let (report, events) = drive(&plan, ex, options(), std::future::pending()).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(exec.attempts("b").is_empty());
    let Event::StageFinished { error, .. } = finished(&events, "b") else {
        unreachable!()
    };
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("produced no output `nope` (its outputs: digest)")),
        "{error:?}"
    );
}
