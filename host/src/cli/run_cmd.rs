//! `weir run`, and `weir run --resume RUN`: arguments in, a
//! [`Session`](crate::session::Session) run, its events rendered.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::RunArgs;
use crate::events::RunStatus;
use crate::report::{self, Mode, ReportSetup};
use crate::session::launch::{self, Focus, ResumeRequest, RunRequest};
use crate::session::state::run_dir;
use crate::session::{CancelToken, Session, SessionError};

/// `weir run`.
pub async fn run(args: RunArgs, verbose: bool) -> ExitCode {
    if let Some(id) = args.resume.clone() {
        let request = ResumeRequest {
            jobs: args.jobs,
            fail_fast: args.fail_fast,
            tenants: args.tenants.clone(),
            ..ResumeRequest::default()
        };
        return match launch::resume(&id, &request).await {
            Ok(session) => start(session, &args, verbose).await,
            Err(e) => refused(e),
        };
    }
    run_with(args, verbose, None).await
}

/// `weir run`, or with `focus`, the run `weir dev` makes.
pub async fn run_with(args: RunArgs, verbose: bool, focus: Option<&Focus>) -> ExitCode {
    let request = RunRequest {
        pipeline: args.pipeline.clone(),
        branch: args.branch.clone(),
        environment: args.environment.clone(),
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        tags: args.tag.clone(),
        workspace: args.workspace.clone(),
        tenant: args.tenant.clone(),
        tenants: args.tenants.clone(),
        ..RunRequest::default()
    };
    match launch::fresh(&request, focus).await {
        Ok(session) => start(session, &args, verbose).await,
        Err(e) => refused(e),
    }
}

/// A run that did not start: configuration errors with their source
/// location, the rest in a line. Exit 2.
fn refused(e: SessionError) -> ExitCode {
    match e {
        SessionError::Prepare(e) => super::render(e),
        other => eprintln!("weir: {other}"),
    }
    ExitCode::from(2)
}

/// Run `session` with the live view (or JSON lines) showing its events;
/// Ctrl-C or SIGTERM cancels it.
async fn start(session: Session, args: &RunArgs, verbose: bool) -> ExitCode {
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Live
    } else {
        Mode::Plain
    };
    let (observer, events) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(report::report(
        ReportSetup {
            mode,
            verbose,
            stages: session.stages(),
            reports: Some(run_dir(session.id()).join("reports")),
            explain_cache: args.explain_cache,
        },
        events,
    ));
    // Installed before any stage starts, so an early Ctrl-C cancels
    // cleanly instead of killing the process mid-write.
    let cancel = CancelToken::new();
    let signal = cancel_signal();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        signal.await;
        on_signal.cancel();
    });
    let outcome = session.run(observer, cancel).await;
    watcher.abort();
    let _ = reporter.await;
    for problem in &outcome.problems {
        eprintln!("weir: {problem}");
    }
    match outcome.report.status {
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
