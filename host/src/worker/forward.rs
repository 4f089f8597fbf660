//! A run's messages to the server, through `WEIR_EVENTS`, in order and
//! each exactly once: a message is published again until JetStream has
//! it (its id dedups a second copy), so NATS restarting mid-run loses
//! nothing; the run goes on meanwhile, its events waiting here.
//!
//! Before the end of a stage that succeeded is sent, what a worker taking
//! the run up would need of it is kept in NATS: the workspace, and the
//! artifacts the stage kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{Event, EventRecord, StageStatus};
use crate::fleet::Fleet;
use crate::fleet::names;
use crate::fleet::wire::Envelope;

/// Most events in one message.
const MAX_EVENTS: usize = 256;
/// About the most bytes of events in one message (NATS takes 1 MiB).
const MAX_BYTES: usize = 256 * 1024;

/// Sends one run's messages.
pub struct Forwarder {
    fleet: Fleet,
    subject: String,
    worker: String,
    /// Which delivery of the job this is.
    delivery: u32,
    /// Distinguishes this attempt's message ids from another's.
    attempt: String,
    sent: u64,
}

impl Forwarder {
    /// For run `run` of `tenant`, on `worker`'s attempt `attempt`.
    pub fn new(fleet: &Fleet, tenant: &str, run: &str, worker: &str, delivery: u32) -> Self {
        Self {
            fleet: fleet.clone(),
            subject: names::events_subject(tenant, run),
            worker: worker.to_string(),
            delivery,
            // Message ids unique to this run, worker and delivery:
            // JetStream drops a second message with an id it has seen (a
            // retry), and only that.
            attempt: format!("{run}:{worker}:{delivery}"),
            sent: 0,
        }
    }

    /// Publish `envelope`, again until JetStream has it.
    pub async fn send(&mut self, envelope: &Envelope) {
        let body = match serde_json::to_vec(envelope) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                tracing::error!("cannot encode a message for the server: {e}");
                return;
            }
        };
        self.sent += 1;
        let id = format!("{}:{}", self.attempt, self.sent);
        let mut wait = Duration::from_millis(50);
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let published = match self
                .fleet
                .js
                .publish_with_headers(self.subject.clone(), headers, body.clone())
                .await
            {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match published {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(subject = %self.subject, "NATS did not take a message yet, trying again: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Send every event from `events` until it closes (the run ended),
    /// keeping the workspace and artifacts of each stage that succeeded
    /// first.
    pub async fn forward(
        &mut self,
        mut events: UnboundedReceiver<EventRecord>,
        workspace: PathBuf,
        scratch: PathBuf,
    ) {
        let mut batch: Vec<EventRecord> = Vec::new();
        let mut size = 0;
        loop {
            // Take what is there now, up to a message's worth; wait only
            // when there is nothing.
            let next = if batch.is_empty() {
                events.recv().await
            } else {
                match events.try_recv() {
                    Ok(r) => Some(r),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        self.flush(&mut batch, &mut size, &workspace, &scratch).await;
                        continue;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(record) = next else { break };
            let kept = finished_well(&record);
            size += serde_json::to_string(&record).map_or(0, |s| s.len());
            batch.push(record);
            if kept || batch.len() >= MAX_EVENTS || size >= MAX_BYTES {
                self.flush(&mut batch, &mut size, &workspace, &scratch).await;
            }
        }
        self.flush(&mut batch, &mut size, &workspace, &scratch).await;
    }

    async fn flush(
        &mut self,
        batch: &mut Vec<EventRecord>,
        size: &mut usize,
        workspace: &Path,
        scratch: &Path,
    ) {
        if batch.is_empty() {
            return;
        }
        *size = 0;
        let records = std::mem::take(batch);
        let mut workspace_kept = None;
        if let Some(last) = records.last()
            && finished_well(last)
        {
            workspace_kept = Some(self.keep(last, workspace, scratch).await);
        }
        let envelope = Envelope::Events {
            worker: self.worker.clone(),
            delivery: self.delivery,
            records,
            workspace_kept,
        };
        self.send(&envelope).await;
    }

    /// Keep what the stage that `record` ends left, before its end is
    /// sent; whether the workspace was kept.
    async fn keep(&self, record: &EventRecord, workspace: &Path, scratch: &Path) -> bool {
        let Event::StageFinished { stage, artifacts, .. } = &record.event else {
            return false;
        };
        for artifact in artifacts {
            let name = names::artifact_object(&record.run, &artifact.sha256);
            match tokio::fs::File::open(&artifact.stored).await {
                Ok(mut file) => {
                    if let Err(e) = self.fleet.artifacts.put(name.as_str(), &mut file).await {
                        tracing::warn!(run = %record.run, %stage, artifact = %artifact.name, "cannot hand the artifact to the server: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(run = %record.run, %stage, artifact = %artifact.name, "cannot read the artifact: {e}")
                }
            }
        }
        match super::snapshot::keep(&self.fleet, &record.run, workspace, scratch).await {
            Ok(bytes) => {
                tracing::debug!(run = %record.run, %stage, bytes, "workspace kept");
                true
            }
            Err(e) => {
                tracing::warn!(run = %record.run, %stage, "the workspace is not kept, so a worker taking the run up would run this stage again: {e}");
                false
            }
        }
    }
}

/// A stage that succeeded by running (not one kept from before).
pub fn finished_well(record: &EventRecord) -> bool {
    matches!(
        &record.event,
        Event::StageFinished {
            status: StageStatus::Succeeded,
            reused: None,
            ..
        }
    )
}
