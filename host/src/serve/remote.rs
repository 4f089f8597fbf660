//! `weir serve --nats`: queued runs go to workers over JetStream instead
//! of running in this process. A queued run is published to its tenant's
//! subject (`weir.jobs.TENANT.any`) with the run id as its message id, so a
//! server that crashed between publishing and recording it cannot queue
//! it twice; the job then waits in the stream, not here, until a worker
//! takes it. What the workers send comes back through [`super::ingest`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fleet::setup::{self, Fleet};
use crate::fleet::wire::{JobMessage, WorkerBeat};
use crate::fleet::{NatsError, names};
use crate::store::StoreError;

use super::{App, Job};

/// How long a worker has to heartbeat before its job goes to another
/// (`--ack-wait`).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How many deliveries a job gets before its run ends `failed`
/// (`--max-deliveries`).
pub const DEFAULT_MAX_DELIVERIES: u32 = 3;

/// The server's side of the fleet.
pub struct Remote {
    /// Streams and buckets.
    pub fleet: Fleet,
    /// A job's ack wait.
    pub ack_wait: Duration,
    /// Deliveries before a run ends `failed`.
    pub max_deliveries: u32,
    /// The workers' last heartbeats, refreshed every few seconds.
    pub workers: Mutex<Vec<WorkerBeat>>,
}

impl Remote {
    /// Connect and set up.
    pub async fn connect(
        options: &crate::fleet::NatsOptions,
        ack_wait: Duration,
        max_deliveries: u32,
    ) -> Result<Self, NatsError> {
        let url = options.url().unwrap_or_default().to_string();
        let client = options.connect("weir serve").await?;
        let fleet = setup::ensure(client, &url).await?;
        Ok(Self {
            fleet,
            ack_wait,
            max_deliveries,
            workers: Mutex::default(),
        })
    }

    /// Ask the worker running `run` to cancel it; a worker that takes the
    /// run later sees the same.
    pub async fn cancel(&self, run: &str, by: &str) -> Result<(), String> {
        self.fleet
            .cancels
            .put(run, by.to_string().into())
            .await
            .map(drop)
            .map_err(|e| format!("cannot tell the workers through NATS: {e}"))
    }
}

/// Publish queued runs as places free up (each tenant's `max-runs`), and
/// keep the workers' heartbeats at hand, forever.
pub async fn run(app: Arc<App>, remote: Arc<Remote>) {
    if let Err(e) = recover(&app).await {
        tracing::error!("cannot take up the queue: {e}");
    }
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    tokio::spawn(watch_workers(remote.clone()));
    loop {
        if let Err(e) = publish_ready(&app, &remote).await {
            tracing::error!("cannot read the queue: {e}");
        }
        tokio::select! {
            () = app.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Jobs a stopped server left half-published go out again (the stream
/// drops a second copy within its duplicate window); runs this server ran
/// itself before it used NATS are queued again.
async fn recover(app: &Arc<App>) -> Result<(), StoreError> {
    for job in app.db.call(|s| s.jobs("publishing")).await? {
        let id = job.run_id.clone();
        app.db
            .call(move |s| s.move_job(&id, "publishing", "queued"))
            .await?;
    }
    for job in app.db.call(|s| s.jobs("running")).await? {
        let id = job.run_id.clone();
        let status = job.status.clone();
        app.db
            .call(move |s| -> Result<(), StoreError> {
                match status.as_str() {
                    "queued" | "interrupted" => drop(s.move_job(&id, "running", "queued")?),
                    "running" => {}
                    _ => drop(s.move_job(&id, "running", "done")?),
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

async fn publish_ready(app: &Arc<App>, remote: &Arc<Remote>) -> Result<(), StoreError> {
    let queued = app.db.call(|s| s.jobs("queued")).await?;
    if queued.is_empty() {
        return Ok(());
    }
    let tenants_text = match &app.config.tenants {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path.clone(), text)),
            Err(e) => {
                tracing::error!(
                    "the tenants file {} cannot be read, so no queued run starts: {e}",
                    path.display()
                );
                return Ok(());
            }
        },
        None => None,
    };
    let tenants = match weir_pipeline::config::tenants::Tenants::load(app.config.tenants.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("the tenants file cannot be read, so no queued run starts: {e}");
            return Ok(());
        }
    };
    let mut per_tenant: HashMap<String, usize> = app.db.call(|s| s.dispatched_per_tenant()).await?;
    let withheld = super::dispatch::withheld_env(&app.config);
    for job in queued {
        let max = tenants
            .get(Some(&job.tenant))
            .ok()
            .and_then(|t| t.max_runs)
            .map(|m| m as usize);
        let ours = per_tenant.get(&job.tenant).copied().unwrap_or(0);
        if max.is_some_and(|max| ours >= max) {
            continue;
        }
        let id = job.run_id.clone();
        if !app
            .db
            .call(move |s| s.move_job(&id, "queued", "publishing"))
            .await?
        {
            continue;
        }
        let message = match message(app, remote, &job, &tenants_text, &withheld) {
            Ok(m) => m,
            Err(why) => {
                let id = job.run_id.clone();
                tracing::warn!(run = %id, "failed: {why}");
                app.db.call(move |s| s.end_run(&id, "failed", &why)).await?;
                continue;
            }
        };
        match publish(remote, &message).await {
            Ok(()) => {
                let id = job.run_id.clone();
                app.db
                    .call(move |s| s.move_job(&id, "publishing", "dispatched"))
                    .await?;
                *per_tenant.entry(job.tenant.clone()).or_insert(0) += 1;
                tracing::info!(run = %job.run_id, tenant = %job.tenant, "handed to the workers");
            }
            Err(e) => {
                // NATS is away: the run stays queued and goes out when it
                // is back.
                let id = job.run_id.clone();
                app.db
                    .call(move |s| s.move_job(&id, "publishing", "queued"))
                    .await?;
                tracing::warn!(run = %job.run_id, "cannot hand the run to the workers yet: {e}");
                return Ok(());
            }
        }
    }
    Ok(())
}

fn message(
    app: &App,
    remote: &Remote,
    stored: &crate::store::serving::Job,
    tenants: &Option<(std::path::PathBuf, String)>,
    withheld: &[String],
) -> Result<JobMessage, String> {
    let job: Job = serde_json::from_str(&stored.job).map_err(|e| format!("its job cannot be read: {e}"))?;
    let repo = app.config.repositories.get(&job.repository).ok_or_else(|| {
        format!(
            "repository `{}` is no longer in the server's configuration",
            job.repository
        )
    })?;
    Ok(JobMessage {
        run: stored.run_id.clone(),
        tenant: stored.tenant.clone(),
        labels: None,
        repository: repo.key.clone(),
        clone_url: repo.clone_url.clone(),
        pipeline: repo.pipeline.clone(),
        commit: job.commit,
        branch: job.branch,
        fetch: job.fetch,
        environment: job.environment,
        untrusted: job.untrusted,
        tenants: tenants.clone(),
        withheld_env: withheld.to_vec(),
        max_deliveries: remote.max_deliveries,
    })
}

/// Publish `job` to the subject for its labels (made with its consumer
/// when missing), waiting for JetStream to have it.
pub async fn publish(remote: &Remote, job: &JobMessage) -> Result<(), String> {
    let labels = job.labels.clone().unwrap_or_default();
    setup::job_consumer(&remote.fleet, &job.tenant, &labels, remote.ack_wait)
        .await
        .map_err(|e| e.to_string())?;
    publish_job(&remote.fleet, job).await
}

/// Publish `job` once (the run id dedups a second copy).
pub async fn publish_job(fleet: &Fleet, job: &JobMessage) -> Result<(), String> {
    let labels = job.labels.clone().unwrap_or_default();
    let subject = names::job_subject(&job.tenant, &labels);
    let body = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}:{}", job.run, names::label_key(&labels)).as_str(),
    );
    let ack = fleet
        .js
        .publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .map_err(|_| "JetStream did not confirm the job within 10 s".to_string())?
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Every worker's last heartbeat, from the bucket.
pub async fn beats(fleet: &Fleet) -> Result<Vec<WorkerBeat>, String> {
    use futures_util::StreamExt as _;
    let mut keys = fleet.workers.keys().await.map_err(|e| e.to_string())?;
    let mut beats = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(value)) = fleet.workers.get(&key).await
            && let Ok(beat) = serde_json::from_slice::<WorkerBeat>(&value)
        {
            beats.push(beat);
        }
    }
    beats.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(beats)
}

async fn watch_workers(remote: Arc<Remote>) {
    loop {
        match beats(&remote.fleet).await {
            Ok(beats) => *remote.workers.lock().unwrap_or_else(|e| e.into_inner()) = beats,
            Err(e) => tracing::debug!("cannot read the workers' heartbeats: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
