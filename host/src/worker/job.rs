//! One job on a worker: from the message to the run's end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};

use super::Worker;
use super::forward::Forwarder;
use crate::events::EventRecord;
use crate::fleet::wire::{Envelope, JobMessage, SecretAnswer, SecretAsk};
use crate::fleet::{names, setup};
use crate::session::CancelToken;
use crate::session::launch::{self, Continued, RunRequest};
use weir_pipeline::config::tenants::{SecretLookup, SecretSource, Tenant, Tenants};

/// Take `message` (a [`JobMessage`]) and run it to its end.
pub async fn take(worker: &Arc<Worker>, message: Message, ack_wait: Duration) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
    let job: JobMessage = match serde_json::from_slice(&message.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(subject = %message.subject, "a job that is not weir's, dropped: {e}");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    if worker
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&job.run)
    {
        // Delivered again while this worker still runs it (NATS was away
        // longer than the ack wait): the run here goes on, and its
        // heartbeats keep the job.
        tracing::info!(run = %job.run, "delivered again while running here; it goes on");
        let _ = message.ack_with(AckKind::Progress).await;
        return;
    }
    // Kept alive while it runs: JetStream gives it to another worker only
    // when this one goes silent for the ack wait.
    let alive = {
        let message = message.clone();
        let every = (ack_wait / 3).max(Duration::from_millis(200));
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!("cannot keep the job alive: {e}");
                }
            }
        }))
    };
    let mut forwarder = Forwarder::new(&worker.fleet, &job.tenant, &job.run, &worker.id, delivered);
    let cancel = CancelToken::new();
    worker
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(job.run.clone(), cancel.clone());
    tracing::info!(run = %job.run, tenant = %job.tenant, delivery = delivered, "took a run");
    let ended = run(worker, &job, delivered, ack_wait, &mut forwarder, cancel).await;
    if let Err((status, reason)) = ended {
        forwarder
            .send(&Envelope::Ended {
                worker: worker.id.clone(),
                delivery: delivered,
                run: job.run.clone(),
                status: status.to_string(),
                reason,
            })
            .await;
    }
    drop(alive);
    worker
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&job.run);
    // Done only once all it sent is in NATS (the forwarder waited for
    // each message's ack).
    if let Err(e) = message.double_ack().await {
        tracing::warn!(run = %job.run, "cannot ack the job (another worker may take it up, and finds it ended): {e}");
    }
    worker.finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(worker.options.dir.join("checkouts").join(&job.run));
    let _ = std::fs::remove_dir_all(tenant_root(worker, &job.tenant).join("runs").join(&job.run));
    tracing::info!(run = %job.run, "done with the run");
}

/// Keeps a job alive until dropped (also when its run panics: the job
/// then goes silent, and to another worker).
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tenant_root(worker: &Worker, tenant: &str) -> PathBuf {
    worker.options.dir.join("tenants").join(tenant)
}

/// Run it; `Err((status, reason))` when it ends without its session
/// ending it.
async fn run(
    worker: &Arc<Worker>,
    job: &JobMessage,
    delivered: u32,
    ack_wait: Duration,
    forwarder: &mut Forwarder,
    cancel: CancelToken,
) -> Result<(), (&'static str, String)> {
    if delivered > job.max_deliveries {
        return Err((
            "failed",
            format!(
                "it was handed to workers {} times and none finished it (each stopped heartbeating: killed, or its machine gone); the limit is `weir serve --max-deliveries {}`",
                delivered - 1,
                job.max_deliveries
            ),
        ));
    }
    if let Ok(Some(by)) = worker.fleet.cancels.get(&job.run).await {
        return Err((
            "cancelled",
            format!("cancelled before it started ({})", String::from_utf8_lossy(&by)),
        ));
    }
    let checkout = worker.options.dir.join("checkouts").join(&job.run);
    let fetched = tokio::select! {
        r = crate::serve::checkout::checkout(&job.clone_url, &job.commit, job.fetch.as_deref(), &checkout) => r,
        () = cancel.cancelled() => return Err(("cancelled", "cancelled before it started".into())),
    };
    fetched.map_err(|e| {
        (
            "failed",
            format!(
                "cannot check out {} at {} on worker {}: {e}",
                job.repository, job.commit, worker.id
            ),
        )
    })?;
    let pipeline = crate::serve::checkout::inside(&checkout, &job.pipeline)
        .map_err(|why| ("failed", format!("cannot run {}: {why}", job.repository)))?;
    // `runs-on` is read once the pipeline is here: a job published for
    // any worker that needs labels this one lacks goes to the subject of
    // those labels, for a worker that has them.
    let wanted = runs_on(&pipeline);
    let lacking: Vec<&String> = wanted
        .iter()
        .filter(|l| !worker.options.labels.contains(l))
        .collect();
    if !lacking.is_empty() {
        if job.labels.is_some() {
            return Err((
                "failed",
                format!(
                    "its pipeline asks for labels {} that its job did not (the pipeline changed under it)",
                    wanted.join(", ")
                ),
            ));
        }
        let routed = JobMessage {
            labels: Some(wanted.clone()),
            ..job.clone()
        };
        setup::job_consumer(&worker.fleet, &job.tenant, &wanted, ack_wait)
            .await
            .map_err(|e| {
                (
                    "failed",
                    format!(
                        "cannot hand it to a worker with labels {}: {e}",
                        wanted.join(", ")
                    ),
                )
            })?;
        crate::serve::remote::publish_job(&worker.fleet, &routed)
            .await
            .map_err(|e| {
                (
                    "failed",
                    format!(
                        "cannot hand it to a worker with labels {}: {e}",
                        wanted.join(", ")
                    ),
                )
            })?;
        forwarder
            .send(&Envelope::Routed {
                worker: worker.id.clone(),
                run: job.run.clone(),
                labels: wanted,
            })
            .await;
        tracing::info!(run = %job.run, "needs labels this worker lacks; handed on");
        return Ok(());
    }

    let progress = super::progress::read(&worker.fleet, &job.tenant, &job.run)
        .await
        .map_err(|e| ("failed", e))?;
    let root = tenant_root(worker, &job.tenant);
    let workspace = root.join("runs").join(&job.run).join("workspace");
    let scratch = worker.options.dir.join("scratch");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ("failed", format!("cannot create {}: {e}", scratch.display())))?;
    let scratch = scratch.join(format!("{}.tar", job.run));
    let _ = std::fs::remove_dir_all(&workspace);
    let mut continued = None;
    if progress.opened {
        let restored = super::snapshot::restore(&worker.fleet, &job.run, &workspace, &scratch)
            .await
            .map_err(|e| ("failed", e))?;
        continued = Some(Continued {
            resumes: progress.continued + 1,
            // Without the workspace, nothing of before can be reused.
            succeeded: if restored {
                progress.succeeded.clone()
            } else {
                Vec::new()
            },
        });
    }
    std::fs::create_dir_all(&workspace)
        .map_err(|e| ("failed", format!("cannot create {}: {e}", workspace.display())))?;

    let tenant = tenant_of(worker, job, &root).map_err(|e| ("failed", e))?;
    let request = RunRequest {
        pipeline: Some(pipeline),
        branch: job.branch.clone(),
        environment: job.environment.clone(),
        tenant: Some(job.tenant.clone()),
        run_id: Some(job.run.clone()),
        untrusted: job.untrusted,
        source: Some(checkout.clone()),
        withheld_env: job.withheld_env.clone(),
        commit: Some(job.commit.clone()),
        workspace: Some(workspace.clone()),
        tenant_given: Some(tenant),
        service: true,
        continued: continued.clone(),
        ..RunRequest::default()
    };
    let session = launch::fresh(&request, None)
        .await
        .map_err(|e| ("failed", crate::serve::dispatch::render(&e)))?;
    let groups = session.concurrency_groups();
    let reason_to = |reason: String| Envelope::Reason {
        run: job.run.clone(),
        reason,
    };
    let mut held = crate::fleet::locks::take(
        &worker.fleet,
        &job.tenant,
        &job.run,
        &groups,
        &cancel,
        async |why| {
            forwarder.send(&reason_to(why)).await;
        },
    )
    .await
    .map_err(|why| {
        let status = if cancel.is_cancelled() {
            "cancelled"
        } else {
            "failed"
        };
        (status, why)
    })?;
    match (&continued, session.opened()) {
        (Some(_), _) => {
            forwarder
                .send(&Envelope::Continued {
                    worker: worker.id.clone(),
                    delivery: delivered,
                    run: job.run.clone(),
                    rerun: session.to_run(),
                })
                .await
        }
        (None, Some(opened)) => {
            forwarder
                .send(&Envelope::Opened {
                    worker: worker.id.clone(),
                    delivery: delivered,
                    run: opened.clone(),
                })
                .await
        }
        (None, None) => {}
    }
    if !session.left_out().is_empty() {
        forwarder
            .send(&Envelope::Reason {
                run: job.run.clone(),
                reason: format!(
                    "left out because this run's code is not trusted with secrets or deploys (a pull request from a fork): {}",
                    session.left_out().join(", ")
                ),
            })
            .await;
    }
    let (observer, events) = tokio::sync::mpsc::unbounded_channel::<EventRecord>();
    let (outcome, ()) = tokio::join!(
        session.run(observer, cancel),
        forwarder.forward(events, workspace, scratch)
    );
    held.give_back(&worker.fleet).await;
    if !outcome.problems.is_empty() {
        forwarder
            .send(&Envelope::Reason {
                run: job.run.clone(),
                reason: outcome.problems.join("\n"),
            })
            .await;
    }
    Ok(())
}

/// `[pipeline] runs-on` of the file at `path` (the plan checks it fully).
fn runs_on(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return Vec::new();
    };
    let mut labels: Vec<String> = table
        .get("pipeline")
        .and_then(|p| p.get("runs-on"))
        .and_then(|r| r.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    labels.sort();
    labels.dedup();
    labels
}

/// The run's tenant: the server's policy, this worker's root, and secrets
/// asked of the server one at a time.
fn tenant_of(worker: &Arc<Worker>, job: &JobMessage, root: &Path) -> Result<Tenant, String> {
    let mut tenant = match &job.tenants {
        Some((path, text)) => Tenants::parse(path, text.clone())
            .and_then(|t| t.get(Some(&job.tenant)))
            .map_err(|e| {
                format!(
                    "the server's tenants file does not give tenant {}: {e}",
                    job.tenant
                )
            })?,
        None => Tenant::unrestricted_default(),
    };
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    tenant.root = Some(root.to_path_buf());
    let client = worker.fleet.client.clone();
    let subject = names::secrets_subject(&job.tenant, &job.run);
    let id = worker.id.clone();
    let handle = tokio::runtime::Handle::current();
    let known: Arc<Mutex<HashMap<String, Option<String>>>> = Arc::default();
    let lookup = move |name: &str| -> Option<String> {
        if let Some(v) = known.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return v.clone();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let ask = serde_json::to_vec(&SecretAsk {
            worker: id.clone(),
            name: name.to_string(),
        })
        .unwrap_or_default();
        let (client, subject) = (client.clone(), subject.clone());
        handle.spawn(async move {
            let answer =
                tokio::time::timeout(Duration::from_secs(10), client.request(subject, ask.into())).await;
            let value = match answer {
                Ok(Ok(reply)) => serde_json::from_slice::<SecretAnswer>(&reply.payload)
                    .map(|a| {
                        if let Some(why) = &a.refused {
                            tracing::warn!("the server refused a secret: {why}");
                        }
                        a.value
                    })
                    .unwrap_or(None),
                Ok(Err(e)) => {
                    tracing::warn!("cannot ask the server for a secret: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!("the server did not answer a request for a secret within 10 s");
                    None
                }
            };
            let _ = tx.send(value);
        });
        let value = rx.recv_timeout(Duration::from_secs(12)).ok().flatten();
        known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), value.clone());
        value
    };
    tenant.secrets = SecretSource::Remote(SecretLookup {
        from: format!("the server's secrets of tenant {}", job.tenant),
        lookup: Arc::new(lookup),
    });
    Ok(tenant)
}
