//! `weir worker`: runs queued runs of a `weir serve --nats` on this
//! machine. It pulls jobs from the JetStream consumers of the tenants it
//! serves and the labels it has, keeps each job alive while it runs
//! (in-progress acks), sends the run's events back through JetStream, and
//! acks the job only once everything it sent is stored in NATS. A worker
//! that dies leaves its job to be delivered to another, which takes the
//! run up from its last finished stage.
//!
//! `SIGTERM` drains: no new job is taken, the running ones finish.

pub mod forward;
pub mod job;
pub mod progress;
pub mod snapshot;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;

use crate::fleet::setup::ConsumerFor;
use crate::fleet::wire::WorkerBeat;
use crate::fleet::{Fleet, NatsError, NatsOptions};
use crate::session::CancelToken;

/// How often a worker says it is alive in `weir-workers`.
pub const BEAT: Duration = Duration::from_secs(2);

/// How often a worker looks for job consumers it may serve.
const DISCOVER: Duration = Duration::from_secs(1);

/// How long one pull waits for a job before it looks again.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// What `weir worker` is asked to be.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// NATS.
    pub nats: NatsOptions,
    /// Its labels (`runs-on` a pipeline may ask for).
    pub labels: Vec<String>,
    /// Most runs at once.
    pub concurrency: usize,
    /// The tenants whose runs it takes (empty: every tenant).
    pub tenants: Vec<String>,
    /// Where its checkouts, workspaces and scratch history live.
    pub dir: PathBuf,
    /// Its id (default: host name and process id).
    pub name: Option<String>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WorkerError {
    /// NATS cannot be used.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Nats(#[from] NatsError),
    /// Its directory cannot be used.
    #[error("cannot use the worker's directory {path}: {source}")]
    #[diagnostic(help("pass another --dir, or fix its permissions"))]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A label is not one.
    #[error("`{0}` is not a worker label")]
    #[diagnostic(help("labels are 1 to 32 lowercase letters, digits and `-`: --labels podman,gpu"))]
    Label(String),
}

/// A running worker, shared by its tasks.
pub struct Worker {
    /// Its options.
    pub options: WorkerOptions,
    /// Its id.
    pub id: String,
    /// NATS.
    pub fleet: Fleet,
    /// The runs it runs, with what cancels each.
    pub running: Mutex<HashMap<String, CancelToken>>,
    /// Runs finished since it started.
    pub finished: AtomicU64,
    /// Set on SIGTERM: take no new job.
    pub draining: AtomicBool,
    /// Places for runs.
    pub places: Arc<tokio::sync::Semaphore>,
    /// When it started.
    pub started_ms: u64,
}

impl Worker {
    /// Whether it takes runs of consumer `c`'s jobs.
    fn serves(&self, c: &ConsumerFor) -> bool {
        (self.options.tenants.is_empty() || self.options.tenants.contains(&c.tenant))
            && c.labels.iter().all(|l| self.options.labels.contains(l))
    }

    fn beat(&self, state: &str) -> WorkerBeat {
        let mut running: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        running.sort();
        WorkerBeat {
            id: self.id.clone(),
            labels: self.options.labels.clone(),
            tenants: self.options.tenants.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            concurrency: self.options.concurrency,
            running,
            finished: self.finished.load(Ordering::Relaxed),
            state: state.to_string(),
            time_ms: crate::events::now_ms(),
            started_ms: self.started_ms,
        }
    }

    async fn send_beat(&self, state: &str) {
        let body = serde_json::to_vec(&self.beat(state)).unwrap_or_default();
        if let Err(e) = self.fleet.workers.put(&self.id, body.into()).await {
            tracing::debug!("cannot send a heartbeat: {e}");
        }
    }
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Work until SIGTERM or SIGINT, then drain.
pub async fn work(options: WorkerOptions) -> Result<(), WorkerError> {
    if let Some(bad) = options
        .labels
        .iter()
        .find(|l| !weir_pipeline::plan::valid_label(l))
    {
        return Err(WorkerError::Label(bad.clone()));
    }
    let dir_err = |source| WorkerError::Dir {
        path: options.dir.clone(),
        source,
    };
    std::fs::create_dir_all(&options.dir).map_err(dir_err)?;
    let dir = options.dir.canonicalize().map_err(dir_err)?;
    let state = crate::session::state::choose_state_dir(&dir.join("state"));
    // The scratch history is made (and migrated) once, here: runs that
    // start together must not each make it.
    crate::store::Store::open(&state).map_err(|e| WorkerError::Dir {
        path: state.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let id = options.name.clone().unwrap_or_else(default_id);
    let url = options.nats.url().unwrap_or_default().to_string();
    let client = options.nats.connect(&format!("weir worker {id}")).await?;
    let fleet = crate::fleet::ensure(client, &url).await?;
    let worker = Arc::new(Worker {
        options: WorkerOptions {
            dir,
            ..options.clone()
        },
        id,
        fleet,
        running: Mutex::default(),
        finished: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        places: Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1))),
        started_ms: crate::events::now_ms(),
    });
    println!(
        "weir worker {}: taking runs from NATS at {url} (labels: {}; tenants: {}; {} at once)",
        worker.id,
        if worker.options.labels.is_empty() {
            "none".to_string()
        } else {
            worker.options.labels.join(", ")
        },
        if worker.options.tenants.is_empty() {
            "all".to_string()
        } else {
            worker.options.tenants.join(", ")
        },
        worker.options.concurrency.max(1),
    );
    worker.send_beat("running").await;
    let beats = tokio::spawn(beat_loop(worker.clone()));
    let cancels = tokio::spawn(watch_cancels(worker.clone()));
    let decisions = tokio::spawn(take_decisions(worker.clone(), state.clone()));
    let pulls = tokio::spawn(discover(worker.clone()));
    crate::serve::shutdown_signal().await;
    // Draining: what runs finishes; nothing new is taken.
    worker.draining.store(true, Ordering::Release);
    pulls.abort();
    let busy = worker.running.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!(
        "weir worker {}: draining; {busy} run(s) to finish, no new ones taken",
        worker.id
    );
    worker.send_beat("draining").await;
    let all = worker.options.concurrency.max(1) as u32;
    let second = async {
        crate::serve::shutdown_signal().await;
    };
    tokio::select! {
        _ = worker.places.acquire_many(all) => {}
        () = second => {
            println!("weir worker {}: asked again; cancelling the runs in progress", worker.id);
            for c in worker.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
                c.cancel();
            }
            let _ = tokio::time::timeout(crate::run::CANCEL_GRACE + Duration::from_secs(5), worker.places.acquire_many(all)).await;
        }
    }
    beats.abort();
    cancels.abort();
    decisions.abort();
    worker.send_beat("stopped").await;
    let _ = worker.fleet.client.flush().await;
    println!("weir worker {}: stopped", worker.id);
    Ok(())
}

async fn beat_loop(worker: Arc<Worker>) {
    loop {
        tokio::time::sleep(BEAT).await;
        let state = if worker.draining.load(Ordering::Acquire) {
            "draining"
        } else {
            "running"
        };
        worker.send_beat(state).await;
    }
}

/// Cancel the runs the API asks to cancel.
async fn watch_cancels(worker: Arc<Worker>) {
    loop {
        match worker.fleet.cancels.watch_all().await {
            Ok(mut watch) => {
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    if entry.operation != async_nats::jetstream::kv::Operation::Put {
                        continue;
                    }
                    if let Some(token) = worker
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&entry.key)
                    {
                        tracing::info!(run = %entry.key, "cancelled from the API");
                        token.cancel();
                    }
                }
            }
            Err(e) => tracing::debug!("cannot watch for cancels: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Bring approvals decided on the server into this worker's history,
/// where its runs' stages wait for them.
async fn take_decisions(worker: Arc<Worker>, state: PathBuf) {
    let mut store = match crate::store::Store::open(&state) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("approvals cannot reach this worker's runs: {e}");
            return;
        }
    };
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let runs: Vec<String> = worker
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for run in runs {
            let Ok(approvals) = store.approvals(&run) else {
                continue;
            };
            for pending in approvals.into_iter().filter(|a| a.decision == "pending") {
                let key = crate::fleet::names::decision_key(&run, &pending.stage);
                let Ok(Some(value)) = worker.fleet.decisions.get(key).await else {
                    continue;
                };
                let Ok(d) = serde_json::from_slice::<crate::fleet::wire::Decision>(&value) else {
                    continue;
                };
                match store.decide(&run, Some(&pending.stage), d.approve, &d.who, d.reason.as_deref()) {
                    Ok(_) => tracing::info!(%run, stage = %pending.stage, "approval decided on the server"),
                    Err(e) => {
                        tracing::warn!(%run, stage = %pending.stage, "cannot take the server's decision: {e}")
                    }
                }
            }
        }
    }
}

/// Find the job consumers this worker serves, and pull from each.
async fn discover(worker: Arc<Worker>) {
    let mut pulling: HashSet<String> = HashSet::new();
    loop {
        let mut consumers = worker.fleet.jobs.consumers();
        while let Some(info) = consumers.next().await {
            let Ok(info) = info else { break };
            let Some(for_) = info
                .config
                .description
                .as_deref()
                .and_then(|d| serde_json::from_str::<ConsumerFor>(d).ok())
            else {
                continue;
            };
            if !worker.serves(&for_) || pulling.contains(&info.name) {
                continue;
            }
            let Ok(consumer) = worker
                .fleet
                .jobs
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&info.name)
                .await
            else {
                continue;
            };
            tracing::info!(consumer = %info.name, tenant = %for_.tenant, labels = ?for_.labels, "taking jobs");
            pulling.insert(info.name.clone());
            tokio::spawn(pull(worker.clone(), consumer, info.config.ack_wait));
        }
        tokio::time::sleep(DISCOVER).await;
    }
}

/// Take jobs from `consumer` while there are places.
async fn pull(
    worker: Arc<Worker>,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    ack_wait: Duration,
) {
    loop {
        let Ok(place) = worker.places.clone().acquire_owned().await else {
            return;
        };
        if worker.draining.load(Ordering::Acquire) {
            return;
        }
        let batch = consumer
            .fetch()
            .max_messages(1)
            .expires(PULL_WAIT)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("cannot pull a job: {e}");
                drop(place);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match batch.next().await {
            Some(Ok(message)) => {
                let worker = worker.clone();
                let handle = tokio::runtime::Handle::current();
                // A run's future is not `Send` (as on the server): it is
                // driven on a thread of its own. A panic leaves the job
                // unacked and silent, so another worker takes it up.
                tokio::task::spawn_blocking(move || {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handle.block_on(job::take(&worker, message, ack_wait));
                    }));
                    if ran.is_err() {
                        tracing::error!(
                            "a run hit a bug on this worker (a panic); another worker takes it up"
                        );
                    }
                    drop(place);
                });
            }
            Some(Err(e)) => {
                tracing::debug!("a job did not arrive whole: {e}");
                drop(place);
            }
            None => drop(place),
        }
    }
}
