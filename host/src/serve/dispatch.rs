//! The queue's runner: takes queued runs oldest first as places free up
//! (the server's `concurrency`, and each tenant's `max-runs`), fetches the
//! commit, and runs it with the session library under its tenant's policy.
//!
//! After a crash nothing is lost and nothing sticks: a run that was still
//! queued (or being checked out) is queued again, a run that was running
//! is resumed (the stages that succeeded keep their results), and one that
//! cannot be resumed ends `failed` with the reason.

use std::sync::Arc;
use std::time::Duration;

use super::{App, Job, Running};
use crate::events::{Event, EventRecord};
use crate::session::CancelToken;
use crate::session::launch::{self, ResumeRequest, RunRequest};

/// How often a run interrupted by a server's crash is resumed before it
/// ends `failed` instead (a run that crashes the server every time must
/// not do so forever).
pub const MAX_RESUMES: u32 = 2;

/// Look at the queue at least this often, besides when woken.
const TICK: Duration = Duration::from_secs(1);

/// Take up the queue, then start runs as places free up, forever.
pub async fn run(app: Arc<App>) {
    if let Err(e) = recover(&app).await {
        tracing::error!("cannot take up the queue: {e}");
    }
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    loop {
        if let Err(e) = start_ready(&app).await {
            tracing::error!("cannot read the queue: {e}");
        }
        tokio::select! {
            () = app.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Jobs a stopped server left `running`: back in the queue, or ended.
async fn recover(app: &Arc<App>) -> Result<(), crate::store::StoreError> {
    let jobs = app.db.call(|s| s.jobs("running")).await?;
    for job in jobs {
        let id = job.run_id.clone();
        let status = job.status.clone();
        let resumes = job.resumes;
        app.db
            .call(move |s| -> Result<(), crate::store::StoreError> {
                match status.as_str() {
                    // Not started, or interrupted and worth resuming.
                    "queued" => drop(s.move_job(&id, "running", "queued")?),
                    "interrupted" if resumes < MAX_RESUMES => drop(s.move_job(&id, "running", "queued")?),
                    "interrupted" => {
                        s.end_run(
                            &id,
                            "failed",
                            &format!(
                                "the server stopped while it ran, and it was resumed {resumes} times already"
                            ),
                        )?;
                    }
                    // Still running under another live weir: not ours.
                    "running" => {}
                    _ => drop(s.move_job(&id, "running", "done")?),
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// Start every queued run there is a place for.
async fn start_ready(app: &Arc<App>) -> Result<(), crate::store::StoreError> {
    let queued = app.db.call(|s| s.jobs("queued")).await?;
    if queued.is_empty() {
        return Ok(());
    }
    // Without its tenants file no run may start: their quotas and policies
    // are in it. The queue waits (and says why) until it can be read.
    let tenants = match weir_pipeline::config::tenants::Tenants::load(app.config.tenants.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!("the tenants file cannot be read, so no queued run starts: {e}");
            return Ok(());
        }
    };
    let mut per_tenant = app.running_per_tenant();
    for job in queued {
        let running = per_tenant.values().sum::<usize>();
        if running >= app.config.concurrency {
            break;
        }
        // A tenant at its `max-runs` waits; other tenants' runs go ahead.
        let max = tenants
            .as_ref()
            .and_then(|t| t.get(Some(&job.tenant)).ok())
            .and_then(|t| t.max_runs)
            .map(|m| m as usize);
        let ours = per_tenant.get(&job.tenant).copied().unwrap_or(0);
        if max.is_some_and(|max| ours >= max) {
            continue;
        }
        let id = job.run_id.clone();
        let taken = app.db.call(move |s| s.move_job(&id, "queued", "running")).await?;
        if !taken {
            continue;
        }
        *per_tenant.entry(job.tenant.clone()).or_insert(0) += 1;
        let cancel = CancelToken::new();
        app.running.lock().unwrap_or_else(|e| e.into_inner()).insert(
            job.run_id.clone(),
            Running {
                tenant: job.tenant.clone(),
                cancel: cancel.clone(),
            },
        );
        let app = app.clone();
        let handle = tokio::runtime::Handle::current();
        // A run's own future is driven on a thread of its own (its stages'
        // tasks still go to the runtime's workers): the session holds
        // borrows across its awaits that the compiler cannot prove `Send`
        // for every lifetime, and a run must not hold a worker anyway.
        tokio::task::spawn_blocking(move || {
            let id = job.run_id.clone();
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.block_on(run_job(&app, job, cancel));
            }));
            // Whatever happened, the run ends: a run its session left
            // unended (a panic, a history that failed to record the end)
            // is ended `failed` here, and its job is done.
            let why = match ran {
                Ok(()) => "the server lost track of it before it ended".to_string(),
                Err(_) => {
                    "the server hit a bug while running it (a panic; its log has the details)".to_string()
                }
            };
            app.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            let run = id.clone();
            let dir = app.checkouts.join(&id);
            let settled = app.db.with(move |s| -> Result<(), crate::store::StoreError> {
                s.end_run(&run, "failed", &why)?;
                s.move_job(&run, "running", "done")?;
                Ok(())
            });
            match settled {
                // The checkout served the run; a finished run needs it no
                // more (a crash leaves it for the resume).
                Ok(()) => drop(std::fs::remove_dir_all(&dir)),
                Err(e) => tracing::error!(run = %id, "cannot record that the run ended: {e}"),
            }
            app.wake.notify_one();
            app.events.send_modify(|n| *n += 1);
        });
    }
    Ok(())
}

/// End run `id` `status` for `reason`, when its session cannot.
async fn end(app: &Arc<App>, id: &str, status: &'static str, reason: String) {
    let run = id.to_string();
    tracing::warn!(run = %id, "{status}: {reason}");
    if let Err(e) = app.db.call(move |s| s.end_run(&run, status, &reason)).await {
        tracing::error!(run = %id, "cannot record how the run ended: {e}");
    }
}

/// The server's own variables (webhook secrets, status tokens): no stage
/// may inherit them.
pub(crate) fn withheld_env(config: &weir_pipeline::config::server::ServerConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .repositories
        .values()
        .flat_map(|r| r.secret_env.iter().chain(&r.status_token_env))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A refusal as people read it, with its causes and help, without colour.
pub(crate) fn render(e: &dyn miette::Diagnostic) -> String {
    let mut text = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut text, e).is_err() {
        return e.to_string();
    }
    text.trim_end().to_string()
}

async fn run_job(app: &Arc<App>, stored: crate::store::serving::Job, cancel: CancelToken) {
    let id = stored.run_id.clone();
    let job: Job = match serde_json::from_str(&stored.job) {
        Ok(j) => j,
        Err(e) => return end(app, &id, "failed", format!("its job cannot be read: {e}")).await,
    };
    let Some(repo) = app.config.repositories.get(&job.repository).cloned() else {
        return end(
            app,
            &id,
            "failed",
            format!(
                "repository `{}` is no longer in the server's configuration",
                job.repository
            ),
        )
        .await;
    };
    let dir = app.checkouts.join(&id);
    let withheld = withheld_env(&app.config);
    let session = if stored.status == "interrupted" {
        let request = ResumeRequest {
            tenants: app.config.tenants.clone(),
            source: Some(dir.clone()),
            withheld_env: withheld,
            service: true,
            ..ResumeRequest::default()
        };
        launch::resume(&id, &request).await
    } else {
        let fetched = tokio::select! {
            r = super::checkout::checkout(&repo.clone_url, &job.commit, job.fetch.as_deref(), &dir) => r,
            () = cancel.cancelled() => return end(app, &id, "cancelled", "cancelled before it started".into()).await,
        };
        if let Err(e) = fetched {
            return end(
                app,
                &id,
                "failed",
                format!("cannot check out {} at {}: {e}", repo.key, job.commit),
            )
            .await;
        }
        // The pipeline is the repository's own file, not a link to one of
        // the host's (whose text a parse error would show).
        let pipeline = match super::checkout::inside(&dir, &repo.pipeline) {
            Ok(p) => p,
            Err(why) => return end(app, &id, "failed", format!("cannot run {}: {why}", repo.key)).await,
        };
        let request = RunRequest {
            pipeline: Some(pipeline),
            branch: job.branch.clone(),
            environment: job.environment.clone(),
            tenant: Some(stored.tenant.clone()),
            tenants: app.config.tenants.clone(),
            run_id: Some(id.clone()),
            untrusted: job.untrusted,
            source: Some(dir.clone()),
            withheld_env: withheld,
            commit: Some(job.commit.clone()),
            service: true,
            ..RunRequest::default()
        };
        launch::fresh(&request, None).await
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => return end(app, &id, "failed", render(&e)).await,
    };
    if !session.left_out().is_empty() {
        // Said from the start, so whoever looks at the run sees why its
        // stages are fewer than its pipeline's.
        let reason = format!(
            "left out because this run's code is not trusted with secrets or deploys (a pull request from a fork): {}",
            session.left_out().join(", ")
        );
        let run = id.clone();
        if let Err(e) = app.db.call(move |s| s.set_reason(&run, &reason)).await {
            tracing::error!(run = %id, "cannot record what the run leaves out: {e}");
        }
    }
    if cancel.is_cancelled() {
        // Cancelled while it was being prepared: it still runs, and ends
        // at once, so its record is complete.
        tracing::info!(run = %id, "cancelled as it started");
    }
    let (observer, mut events) = tokio::sync::mpsc::unbounded_channel::<EventRecord>();
    let watcher = {
        let app = app.clone();
        let statuses = super::statuses::Reporter::new(&app.config, &repo, &id, &job.commit);
        tokio::spawn(async move {
            let mut statuses = statuses;
            while let Some(record) = events.recv().await {
                observe(&app, &stored.tenant, &record);
                if let Some(s) = statuses.as_mut() {
                    s.offer(&record);
                }
                app.events.send_modify(|n| *n += 1);
            }
        })
    };
    let outcome = session.run(observer, cancel).await;
    let _ = watcher.await;
    if !outcome.problems.is_empty() {
        let reason = outcome.problems.join("\n");
        let run = id.clone();
        if let Err(e) = app.db.call(move |s| s.set_reason(&run, &reason)).await {
            tracing::error!(run = %id, "cannot record the run's problems: {e}");
        }
    }
}

/// Count what `/metrics` shows of an event.
pub(crate) fn observe(app: &App, tenant: &str, record: &EventRecord) {
    let Event::StageFinished {
        status,
        duration_ms,
        usage,
        reused: None,
        ..
    } = &record.event
    else {
        return;
    };
    let secs = *duration_ms as f64 / 1000.0;
    let outcome = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut m = app.metrics.lock().unwrap_or_else(|e| e.into_inner());
    m.stage_seconds.entry(outcome).or_default().observe(secs);
    let tenant_usage = m.tenants.entry(tenant.to_string()).or_default();
    tenant_usage.stage_seconds += secs;
    tenant_usage.stages += 1;
    if let Some(used) = usage {
        tenant_usage.fuel = tenant_usage.fuel.saturating_add(used.fuel.unwrap_or(0));
        tenant_usage.peak_memory = tenant_usage.peak_memory.max(used.peak_memory_bytes);
    }
}
