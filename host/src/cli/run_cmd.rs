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

    let (sink, rx) = EventSink::channel(&run_id);
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Live
    } else {
        Mode::Plain
    };
    let stage_names: Vec<String> = plan.stages.iter().map(|s| s.name.clone()).collect();
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
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!(
        "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{:04x}",
        hasher.finish() & 0xffff
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `.weir/runs/RUN`, absolute: the run's workspace (unless given),
/// reports and artifacts live here.
fn run_dir(run_id: &str) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
    }
}
