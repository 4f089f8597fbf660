//! What workers send, into the server's history: each message of
//! `WEIR_EVENTS` is applied and then acked, in order, through the server's
//! consumer. The history keeps how far it has read (in the same
//! transaction as what it recorded), so a server that was down reads on
//! from the next message, in order, none twice and none lost.
//!
//! Also here: the answers to workers' requests for their runs' secrets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures_util::StreamExt as _;

use super::remote::Remote;
use super::{App, Job};
use crate::events::{Event, EventRecord};
use crate::fleet::names;
use crate::fleet::wire::{Envelope, SecretAnswer, SecretAsk};

/// Most messages read at once.
const BATCH: usize = 256;

/// What the reader keeps of the runs it has seen.
#[derive(Default)]
pub struct Runs {
    /// Their commit-status reporters.
    reporters: HashMap<String, super::statuses::Reporter>,
    /// Which worker holds each, on which delivery of its job: events
    /// from another (one cut off from NATS for longer than the ack wait,
    /// whose run went to another worker) are dropped.
    holders: HashMap<String, Holder>,
}

impl Runs {
    fn get_mut(&mut self, run: &str) -> Option<&mut super::statuses::Reporter> {
        self.reporters.get_mut(run)
    }
    fn remove(&mut self, run: &str) {
        self.reporters.remove(run);
        self.holders.remove(run);
    }
    fn contains_key(&self, run: &str) -> bool {
        self.reporters.contains_key(run)
    }
    fn insert(&mut self, run: String, reporter: super::statuses::Reporter) {
        self.reporters.insert(run, reporter);
    }

    /// Who holds `run`, from the history when not seen yet.
    async fn holder(&mut self, app: &Arc<App>, run: &str) -> Option<Holder> {
        if let Some(h) = self.holders.get(run) {
            return Some(h.clone());
        }
        let id = run.to_string();
        let held = app.db.call(move |s| s.run_holder(&id)).await.ok().flatten()?;
        let holder = Holder::parse(&held);
        self.holders.insert(run.to_string(), holder.clone());
        Some(holder)
    }

    /// Whether `worker`, on `delivery`, holds `run` (events of a run not
    /// opened yet are anyone's: there is nothing to check them against).
    async fn held_by(&mut self, app: &Arc<App>, run: &str, worker: &str, delivery: u32) -> bool {
        self.holder(app, run)
            .await
            .is_none_or(|h| h.worker == worker && h.delivery == delivery)
    }

    /// Whether `worker`, on `delivery`, may end `run`: its holder, or the
    /// one a later delivery went to (which could not take it up).
    async fn may_end(&mut self, app: &Arc<App>, run: &str, worker: &str, delivery: u32) -> bool {
        self.holder(app, run)
            .await
            .is_none_or(|h| delivery > h.delivery || (h.worker == worker && h.delivery == delivery))
    }
}

/// A worker on one delivery of a job, as `host_start` keeps it
/// (`worker:ID#DELIVERY`, without the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The worker.
    pub worker: String,
    /// The delivery.
    pub delivery: u32,
}

impl Holder {
    fn parse(held: &str) -> Self {
        match held.rsplit_once('#') {
            Some((worker, n)) => Self {
                worker: worker.to_string(),
                delivery: n.parse().unwrap_or(1),
            },
            None => Self {
                worker: held.to_string(),
                delivery: 1,
            },
        }
    }

    fn mark(&self) -> String {
        format!("{}#{}", self.worker, self.delivery)
    }
}

/// Read workers' messages into the store, forever.
pub async fn run(app: Arc<App>, remote: Arc<Remote>) {
    let mut reporters = Runs::default();
    loop {
        if let Err(why) = read_on(&app, &remote, &mut reporters).await {
            tracing::warn!("reading the workers' events again from the last one recorded: {why}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// From the message after the last one recorded, in order, until
/// something goes wrong (NATS away, a gap, a store error).
async fn read_on(app: &Arc<App>, remote: &Remote, reporters: &mut Runs) -> Result<(), String> {
    let cursor = app
        .db
        .call(|s| s.stream_cursor(names::EVENTS_STREAM))
        .await
        .map_err(|e| e.to_string())?;
    // The consumer starts where the history says, not where NATS last
    // delivered: what was delivered but not recorded comes again, and
    // nothing comes out of order.
    let _ = remote.fleet.events.delete_consumer(names::SERVER_CONSUMER).await;
    let consumer = remote
        .fleet
        .events
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names::SERVER_CONSUMER.into()),
            description: Some("weir serve: workers' events into the history".into()),
            filter_subject: "weir.events.>".into(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: cursor + 1,
            },
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read the workers' events: {e}"))?;
    let mut next = cursor + 1;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| format!("cannot read the workers' events: {e}"))?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| format!("a worker's message did not arrive whole: {e}"))?;
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            if seq < next {
                // Recorded already.
                let _ = m.ack().await;
                continue;
            }
            if seq > next {
                return Err(format!(
                    "message {next} of {} did not arrive",
                    names::EVENTS_STREAM
                ));
            }
            next += 1;
            messages.push((seq, m));
        }
        if !messages.is_empty() {
            take(app, remote, reporters, messages).await?;
        }
    }
}

/// Apply `messages` in order, then ack them; runs of events go into the
/// store together.
async fn take(
    app: &Arc<App>,
    remote: &Remote,
    reporters: &mut Runs,
    messages: Vec<(u64, async_nats::jetstream::Message)>,
) -> Result<(), String> {
    let mut records: Vec<EventRecord> = Vec::new();
    let mut pending = Vec::new();
    for (seq, message) in messages {
        let envelope = match serde_json::from_slice::<Envelope>(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subject = %message.subject, "a message that is not weir's, skipped: {e}");
                flush(app, remote, reporters, &mut records, &mut pending).await?;
                mark(app, seq).await?;
                let _ = message.ack().await;
                continue;
            }
        };
        // Only a worker's own tenant's subject may speak of a run: a
        // message about another tenant's run is dropped.
        let tenant = message
            .subject
            .as_str()
            .split('.')
            .nth(2)
            .unwrap_or_default()
            .to_string();
        match envelope {
            Envelope::Events {
                records: mut more,
                worker,
                delivery,
                ..
            } => {
                more.retain(|r| owns(&message.subject, &r.run));
                if let Some(run) = more.first().map(|r| r.run.clone())
                    && !reporters.held_by(app, &run, &worker, delivery).await
                {
                    tracing::warn!(%run, %worker, "events from a worker that no longer holds the run (it went to another); dropped");
                    more.clear();
                }
                records.append(&mut more);
                pending.push((seq, message));
            }
            other => {
                flush(app, remote, reporters, &mut records, &mut pending).await?;
                apply(app, remote, reporters, &tenant, &message.subject, other)
                    .await
                    .map_err(|e| format!("cannot record a worker's message: {e}"))?;
                mark(app, seq).await?;
                let _ = message.ack().await;
            }
        }
    }
    flush(app, remote, reporters, &mut records, &mut pending).await
}

async fn mark(app: &Arc<App>, seq: u64) -> Result<(), String> {
    app.db
        .call(move |s| s.set_stream_cursor(names::EVENTS_STREAM, seq))
        .await
        .map_err(|e| e.to_string())
}

/// Whether the message on `subject` may speak of `run`.
fn owns(subject: &str, run: &str) -> bool {
    subject.rsplit('.').next() == Some(run)
}

async fn flush(
    app: &Arc<App>,
    remote: &Remote,
    reporters: &mut Runs,
    records: &mut Vec<EventRecord>,
    pending: &mut Vec<(u64, async_nats::jetstream::Message)>,
) -> Result<(), String> {
    let Some(upto) = pending.last().map(|(seq, _)| *seq) else {
        return Ok(());
    };
    let mut batch = std::mem::take(records);
    let acks = std::mem::take(pending);
    for record in &mut batch {
        fetch_artifacts(remote, record).await;
    }
    let written = batch.clone();
    app.db
        .call(move |s| s.apply_remote(&written, names::EVENTS_STREAM, upto))
        .await
        .map_err(|e| format!("cannot record workers' events: {e}"))?;
    for (_, m) in acks {
        let _ = m.ack().await;
    }
    for record in &batch {
        if matches!(record.event, Event::StageFinished { .. }) {
            let run = record.run.clone();
            let tenant = app
                .db
                .call(move |s| s.job_state(&run))
                .await
                .ok()
                .flatten()
                .map(|(t, _)| t)
                .unwrap_or_default();
            super::dispatch::observe(app, &tenant, record);
        }
        if let Some(r) = reporters.get_mut(&record.run) {
            r.offer(record);
        }
        if let Event::StageWaiting {
            stage,
            approval: Some(request),
            ..
        } = &record.event
        {
            // The worker asked for an approval: it is asked here too, where
            // people decide it (the decision goes back in weir-decisions).
            let (run, stage, request) = (record.run.clone(), stage.clone(), request.clone());
            let left = request.deadline_ms.saturating_sub(crate::events::now_ms()) as i64;
            if let Err(e) = app
                .db
                .call(move |s| {
                    s.request_approval(&run, &stage, &request.environment, &request.approvers, left)
                })
                .await
            {
                tracing::error!(run = %record.run, "cannot record the run's request for approval: {e}");
            }
        }
        if let Event::ApprovalDecided { stage, decision, .. } = &record.event
            && decision == "timed_out"
        {
            let (run, stage) = (record.run.clone(), stage.clone());
            let _ = app.db.call(move |s| s.expire_approval(&run, &stage)).await;
        }
        if matches!(record.event, Event::RunFinished { .. }) {
            reporters.remove(&record.run);
            finished(app, remote, &record.run).await;
        }
    }
    app.events.send_modify(|n| *n += 1);
    Ok(())
}

/// The run ended: its job is done, and what it left in NATS goes.
async fn finished(app: &Arc<App>, remote: &Remote, run: &str) {
    let id = run.to_string();
    if let Ok(Some((tenant, _))) = app.db.call(move |s| s.job_state(&id)).await {
        crate::fleet::locks::give_back_all(&remote.fleet, &tenant, run).await;
    }
    let id = run.to_string();
    let _ = app.db.call(move |s| s.move_job(&id, "dispatched", "done")).await;
    let _ = remote.fleet.workspaces.delete(run).await;
    let _ = remote.fleet.cancels.purge(run).await;
    // Its decisions are left to expire with the bucket's age limit.
    app.wake.notify_one();
}

/// Bring the artifacts a finished stage kept on its worker into the
/// server's own store, where the API serves them.
async fn fetch_artifacts(remote: &Remote, record: &mut EventRecord) {
    use tokio::io::AsyncReadExt as _;
    let Event::StageFinished { artifacts, .. } = &mut record.event else {
        return;
    };
    if artifacts.is_empty() {
        return;
    }
    let dir = crate::session::state::run_dir(&record.run).join("artifacts");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(run = %record.run, "cannot keep the run's artifacts in {}: {e}", dir.display());
        return;
    }
    for artifact in artifacts.iter_mut() {
        let name = names::artifact_object(&record.run, &artifact.sha256);
        let path = dir.join(&artifact.sha256);
        if !path.is_file() {
            let mut object = match remote.fleet.artifacts.get(&name).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(run = %record.run, artifact = %artifact.name, "the worker's copy is not in NATS: {e}");
                    continue;
                }
            };
            let mut bytes = Vec::new();
            if let Err(e) = object.read_to_end(&mut bytes).await {
                tracing::warn!(run = %record.run, artifact = %artifact.name, "cannot read the worker's copy: {e}");
                continue;
            }
            if let Err(e) = crate::serve::ingest::write_private(&path, &bytes) {
                tracing::warn!(run = %record.run, artifact = %artifact.name, "cannot keep it: {e}");
                continue;
            }
        }
        artifact.stored = path.display().to_string();
        let _ = remote.fleet.artifacts.delete(&name).await;
    }
}

/// Write `bytes` to `path`, readable by weir alone.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("part");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

async fn apply(
    app: &Arc<App>,
    remote: &Remote,
    reporters: &mut Runs,
    tenant: &str,
    subject: &str,
    envelope: Envelope,
) -> Result<(), crate::store::StoreError> {
    match envelope {
        Envelope::Events { .. } => Ok(()),
        Envelope::Opened {
            worker,
            delivery,
            run,
        } => {
            if !owns(subject, &run.id) || run.tenant != tenant {
                tracing::warn!(%subject, run = %run.id, tenant = %run.tenant, "a worker opened a run on another's subject; dropped");
                return Ok(());
            }
            let id = run.id.clone();
            let new_run = run;
            let holder = Holder {
                worker: worker.clone(),
                delivery,
            };
            let w = holder.mark();
            let opened = app.db.call(move |s| s.open_remote(&new_run, &w)).await?;
            if !opened {
                tracing::warn!(run = %id, %worker, "a worker opened a run that is not queued or running here; not recorded");
            }
            if opened {
                reporters.holders.insert(id.clone(), holder);
                tracing::info!(run = %id, %worker, "started on a worker");
                if let Some(r) = reporter(app, &id).await {
                    reporters.insert(id, r);
                }
            }
            app.events.send_modify(|n| *n += 1);
            Ok(())
        }
        Envelope::Continued {
            worker,
            delivery,
            run,
            rerun,
        } => {
            if !owns(subject, &run) {
                return Ok(());
            }
            let id = run.clone();
            let holder = Holder {
                worker: worker.clone(),
                delivery,
            };
            let w = holder.mark();
            if app.db.call(move |s| s.continue_remote(&id, &rerun, &w)).await? {
                reporters.holders.insert(run.clone(), holder);
            }
            tracing::info!(%run, %worker, "taken up again on a worker");
            if !reporters.contains_key(&run)
                && let Some(r) = reporter(app, &run).await
            {
                reporters.insert(run, r);
            }
            app.events.send_modify(|n| *n += 1);
            Ok(())
        }
        Envelope::Routed { worker, run, labels } => {
            if !owns(subject, &run) {
                return Ok(());
            }
            let reason = format!(
                "waiting for a worker with the labels {} (`runs-on`; {worker} lacks them)",
                labels.join(", ")
            );
            app.db.call(move |s| s.set_reason(&run, &reason)).await?;
            app.events.send_modify(|n| *n += 1);
            Ok(())
        }
        Envelope::Reason { run, reason } => {
            if !owns(subject, &run) {
                return Ok(());
            }
            app.db.call(move |s| s.set_reason(&run, &reason)).await?;
            Ok(())
        }
        Envelope::Ended {
            worker,
            delivery,
            run,
            status,
            reason,
        } => {
            if !owns(subject, &run) || !reporters.may_end(app, &run, &worker, delivery).await {
                tracing::warn!(%run, %worker, "an end from a worker that does not hold the run; dropped");
                return Ok(());
            }
            let status = if status == "cancelled" {
                "cancelled"
            } else {
                "failed"
            };
            tracing::warn!(%run, %worker, "{status}: {reason}");
            let id = run.clone();
            let mark = Holder {
                worker: worker.clone(),
                delivery,
            }
            .mark();
            app.db
                .call(move |s| -> Result<(), crate::store::StoreError> {
                    if s.end_run(&id, status, &reason)? {
                        s.set_run_holder(&id, &mark)?;
                    }
                    Ok(())
                })
                .await?;
            reporters.remove(&run);
            finished(app, remote, &run).await;
            app.events.send_modify(|n| *n += 1);
            Ok(())
        }
    }
}

/// The commit-status reporter of server run `run`, when its repository
/// has a status token.
async fn reporter(app: &Arc<App>, run: &str) -> Option<super::statuses::Reporter> {
    let id = run.to_string();
    let job = app.db.call(move |s| s.job_of(&id)).await.ok().flatten()?;
    let job: Job = serde_json::from_str(&job).ok()?;
    let repo = app.config.repositories.get(&job.repository)?;
    super::statuses::Reporter::new(&app.config, repo, run, &job.commit)
}

/// Answer workers' requests for secrets: one secret of one run, to the
/// worker the run was handed to, when the run's tenant grants it.
pub async fn secrets(app: Arc<App>, remote: Arc<Remote>) {
    let client = remote.fleet.client.clone();
    let mut requests = match client.subscribe("weir.secrets.>").await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot answer workers' requests for secrets: {e}");
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let answer = answer(&app, request.subject.as_str(), &request.payload).await;
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        if let Err(e) = client.publish(reply, body.into()).await {
            tracing::warn!("cannot answer a worker's request for a secret: {e}");
        }
    }
}

async fn answer(app: &Arc<App>, subject: &str, payload: &[u8]) -> SecretAnswer {
    let refuse = |why: String| SecretAnswer {
        value: None,
        refused: Some(why),
    };
    let parts: Vec<&str> = subject.split('.').collect();
    let [_, _, tenant, run] = parts.as_slice() else {
        return refuse("not a secrets subject".into());
    };
    let Ok(ask) = serde_json::from_slice::<SecretAsk>(payload) else {
        return refuse("not a request for a secret".into());
    };
    let id = run.to_string();
    let state = app.db.call(move |s| s.job_state(&id)).await;
    match state {
        Ok(Some((t, state))) if t == *tenant && state == "dispatched" => {}
        _ => {
            tracing::warn!(%run, worker = %ask.worker, secret = %ask.name, "refused a secret: the run is not one running on a worker");
            return refuse(format!("run {run} of tenant {tenant} is not running on a worker"));
        }
    }
    let tenant = match weir_pipeline::config::tenants::Tenants::load(app.config.tenants.as_deref())
        .and_then(|t| t.get(Some(tenant)))
    {
        Ok(t) => t,
        Err(e) => return refuse(format!("the tenants file cannot be read: {e}")),
    };
    if let Some(allow) = &tenant.allow
        && !allow.secrets.contains(&ask.name)
    {
        tracing::warn!(%run, worker = %ask.worker, secret = %ask.name, "refused a secret the tenant does not grant");
        return refuse(format!(
            "tenant {} does not grant secret {}",
            tenant.name, ask.name
        ));
    }
    tracing::info!(%run, worker = %ask.worker, secret = %ask.name, "secret handed to the worker running the run");
    SecretAnswer {
        value: tenant.secrets.get(&ask.name),
        refused: None,
    }
}
