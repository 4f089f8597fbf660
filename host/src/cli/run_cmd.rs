//! `weir run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::RunArgs;
use super::prepare::prepare;
use crate::engine::StageLimits;
use crate::events::{Event, EventSink, RunStatus};
use crate::execute::{RunInfo, WasmExecutor};
use crate::plan::RunFacts;
use crate::report::{self, Mode, ReportSetup};
use crate::run::{self, RunOptions};
use crate::store::Store;
use crate::store::recorder::{NewRun, Recorder};

/// Where run state lives, relative to the working directory.
pub const STATE_DIR: &str = ".weir";

pub async fn run(args: RunArgs, verbose: bool) -> ExitCode {
    let prepared = match prepare(&args.pipeline, args.workspace.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    let plan = prepared.plan;
    let run_id = new_run_id();
    let workspace = match workspace_dir(args.workspace.as_deref(), &run_id) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("weir: cannot create the workspace: {e}");
            return ExitCode::from(2);
        }
    };
    let facts = RunFacts {
        branch: args.branch.clone().or_else(|| detect_branch(&args.pipeline)),
        environment: args.environment.clone(),
    };

    // The run history records every event; a history that cannot be opened
    // stops the run before anything happens (a run must not go unrecorded).
    let stage_names: Vec<String> = plan.stages.iter().map(|s| s.name.clone()).collect();
    let recorder = match Store::open(Path::new(STATE_DIR)).and_then(|store| {
        Recorder::start(
            store,
            &NewRun {
                id: run_id.clone(),
                pipeline: plan.name.clone(),
                pipeline_file: args.pipeline.display().to_string(),
                tenant: args.tenant.clone(),
                workspace: workspace.display().to_string(),
                stages: stage_names.clone(),
            },
        )
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };

    let (sink, mut events) = EventSink::channel(&run_id);
    // Every event goes to the history first, then to the reporter.
    let (to_reporter, rx) = tokio::sync::mpsc::unbounded_channel();
    let tee = tokio::spawn(async move {
        while let Some(record) = events.recv().await {
            let done = matches!(record.event, Event::RunFinished { .. });
            recorder.record(record.clone());
            let _ = to_reporter.send(record);
            if done {
                break;
            }
        }
        recorder
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
        },
        rx,
    ));
    sink.emit(Event::RunStarted {
        version: crate::events::EVENTS_VERSION,
        pipeline: plan.name.clone(),
        stages: stage_names,
        workspace: workspace.display().to_string(),
        tenant: args.tenant.clone(),
    });

    let executor = Arc::new(WasmExecutor::new(
        prepared.engine,
        prepared.plugins,
        RunInfo {
            run_id: run_id.clone(),
            pipeline: plan.name.clone(),
            tenant: args.tenant.clone(),
            workspace,
            limits: StageLimits::default(),
            artifacts: crate::artifacts::ArtifactStore::new(run_dir(&run_id).join("artifacts")),
        },
        sink.clone(),
    ));
    let options = RunOptions {
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        facts,
        fail_fast: args.fail_fast,
    };
    // Install the handlers before any stage starts, so an early Ctrl-C
    // cancels cleanly instead of killing the process mid-write.
    let cancel = cancel_signal();
    let report = run::run(&plan, executor, sink, options, cancel).await;
    // The tee ends at `RunFinished`, the last event of a run.
    if let Ok(recorder) = tee.await
        && let Err(e) = recorder.finish()
    {
        eprintln!("weir: the run history could not record this run completely: {e}");
    }
    let _ = reporter.await;
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

/// `.weir/runs/RUN`, absolute: the run's workspace (unless given),
/// reports and artifacts live here.
pub fn run_dir(run_id: &str) -> PathBuf {
    let rel = PathBuf::from(STATE_DIR).join("runs").join(run_id);
    std::path::absolute(&rel).unwrap_or(rel)
}

fn workspace_dir(given: Option<&Path>, run_id: &str) -> std::io::Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => run_dir(run_id).join("workspace"),
    };
    std::fs::create_dir_all(&dir)?;
    dir.canonicalize()
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
