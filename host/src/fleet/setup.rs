//! The streams, consumers and buckets, made when missing; both sides call
//! [`ensure`], so whichever starts first sets them up.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};

use super::NatsError;
use super::names::*;

/// How long events stay in [`EVENTS_STREAM`] after they are written: the
/// server normally reads them within milliseconds; this is how long it may
/// be down without losing any.
pub const EVENTS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a heartbeat stays in [`WORKERS_BUCKET`] after the last one.
pub const BEAT_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The largest message (NATS' own default is 1 MiB).
pub const MAX_MESSAGE: i32 = 1024 * 1024;

/// What is set up, ready to use.
#[derive(Clone)]
pub struct Fleet {
    /// The URL, for messages.
    pub url: String,
    /// The connection.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// [`JOBS_STREAM`].
    pub jobs: stream::Stream,
    /// [`EVENTS_STREAM`].
    pub events: stream::Stream,
    /// [`WORKERS_BUCKET`].
    pub workers: kv::Store,
    /// [`CANCEL_BUCKET`].
    pub cancels: kv::Store,
    /// [`DECISIONS_BUCKET`].
    pub decisions: kv::Store,
    /// [`LOCKS_BUCKET`].
    pub locks: kv::Store,
    /// [`WORKSPACES_BUCKET`].
    pub workspaces: object_store::ObjectStore,
    /// [`ARTIFACTS_BUCKET`].
    pub artifacts: object_store::ObjectStore,
}

fn refused(url: &str, what: impl Into<String>) -> impl Fn(String) -> NatsError + '_ {
    let what = what.into();
    move |why| NatsError::JetStream {
        url: url.to_string(),
        what: what.clone(),
        why,
    }
}

/// Connect and make sure everything exists.
pub async fn ensure(client: async_nats::Client, url: &str) -> Result<Fleet, NatsError> {
    let js = jetstream::new(client.clone());
    let jobs = js
        .get_or_create_stream(stream::Config {
            name: JOBS_STREAM.into(),
            description: Some("weir: queued runs, each taken by one worker".into()),
            subjects: vec!["weir.jobs.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_message_size: MAX_MESSAGE,
            // A server that crashed between publishing a job and recording
            // it publishes it again; the run id dedups it for this long.
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .map_err(|e| refused(url, format!("cannot create stream {JOBS_STREAM}"))(e.to_string()))?;
    let events = js
        .get_or_create_stream(stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("weir: what workers send the server, in order".into()),
            subjects: vec!["weir.events.>".into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: EVENTS_KEPT,
            max_message_size: MAX_MESSAGE,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| refused(url, format!("cannot create stream {EVENTS_STREAM}"))(e.to_string()))?;
    let workers = bucket(&js, url, WORKERS_BUCKET, "weir: workers' heartbeats").await?;
    let cancels = bucket(&js, url, CANCEL_BUCKET, "weir: runs the API cancelled").await?;
    let locks = bucket(
        &js,
        url,
        LOCKS_BUCKET,
        "weir: concurrency groups held by runs on workers",
    )
    .await?;
    let decisions = bucket(
        &js,
        url,
        DECISIONS_BUCKET,
        "weir: approvals decided on the server",
    )
    .await?;
    let workspaces = object_bucket(&js, url, WORKSPACES_BUCKET, "weir: unfinished runs' workspaces").await?;
    let artifacts = object_bucket(
        &js,
        url,
        ARTIFACTS_BUCKET,
        "weir: artifacts on their way to the server",
    )
    .await?;
    Ok(Fleet {
        url: url.to_string(),
        client,
        js,
        jobs,
        events,
        workers,
        cancels,
        decisions,
        locks,
        workspaces,
        artifacts,
    })
}

/// Key-value bucket `name`, made when missing. Made as the stream it is
/// (`KV_NAME`, the shape the client library gives one): the library's own
/// `create_key_value` first reads account fields that nats-server 2.9
/// (Debian's) does not send.
async fn bucket(
    js: &jetstream::Context,
    url: &str,
    name: &str,
    description: &str,
) -> Result<kv::Store, NatsError> {
    if let Ok(kv) = js.get_key_value(name).await {
        return Ok(kv);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: BEAT_KEPT,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| refused(url, format!("cannot create bucket {name}"))(e.to_string()))?;
    js.get_key_value(name)
        .await
        .map_err(|e| refused(url, format!("cannot open bucket {name}"))(e.to_string()))
}

async fn object_bucket(
    js: &jetstream::Context,
    url: &str,
    name: &str,
    description: &str,
) -> Result<object_store::ObjectStore, NatsError> {
    if let Ok(store) = js.get_object_store(name).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: name.into(),
        description: Some(description.into()),
        storage: stream::StorageType::File,
        max_age: EVENTS_KEPT,
        ..Default::default()
    })
    .await
    .map_err(|e| refused(url, format!("cannot create object store {name}"))(e.to_string()))
}

/// What a job consumer serves, in its description, so workers can tell
/// which consumers are theirs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerFor {
    /// The tenant.
    pub tenant: String,
    /// The labels its jobs need (empty: any worker, or not known yet).
    pub labels: Vec<String>,
}

/// The durable consumer of `tenant`'s jobs that need `labels`, made when
/// missing. Redelivery after `ack_wait` without an ack or a heartbeat is
/// JetStream's; the limit on deliveries is weir's (the worker that gets a
/// job once too often ends its run `failed`, with the reason), so
/// JetStream itself never drops one.
pub async fn job_consumer(
    fleet: &Fleet,
    tenant: &str,
    labels: &[String],
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, NatsError> {
    let name = job_consumer_name(tenant, labels);
    let labels = {
        let mut l = labels.to_vec();
        l.sort();
        l.dedup();
        l
    };
    let description = serde_json::to_string(&ConsumerFor {
        tenant: tenant.to_string(),
        labels: labels.clone(),
    })
    .unwrap_or_default();
    fleet
        .jobs
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                description: Some(description),
                filter_subject: job_subject(tenant, &labels),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| refused(&fleet.url, format!("cannot create consumer {name}"))(e.to_string()))
}

fn job_consumer_name(tenant: &str, labels: &[String]) -> String {
    super::names::job_consumer(tenant, labels)
}
