//! `weir serve`: weir as a service. A forge's push or an API call queues a
//! run in the history (SQLite, so `kill -9` loses nothing); the dispatcher
//! starts queued runs as places free up, each with the run-session library
//! under its tenant's policy; the API answers over HTTP what is running,
//! what failed and why, and streams each run's events as they happen.
//!
//! ```text
//! forge ──webhook──▶ hooks ─┐
//! client ──/api/v1──▶ runs ─┴▶ queue (SQLite) ─▶ dispatch ─▶ session ─▶ events ─▶ SSE, statuses
//! ```

pub mod artifacts;
pub mod auth;
pub mod checkout;
pub mod db;
pub mod dispatch;
pub mod gates;
pub mod hooks;
pub mod ingest;
pub mod openapi;
pub mod problem;
pub mod remote;
pub mod routes;
pub mod runs;
pub mod statuses;
pub mod stream;
pub mod web;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir_pipeline::config::server::ServerConfig;

use crate::session::CancelToken;
use crate::store::StoreError;

/// Why the server could not start or went down.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ServeError {
    /// The run history cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    #[diagnostic(help("pass another --listen ADDR, or stop what listens there"))]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// NATS cannot be used.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Nats(#[from] crate::fleet::NatsError),
    /// The tenants file cannot be used.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tenants(#[from] weir_pipeline::config::tenants::TenantsError),
    /// A repository names a tenant the tenants file lacks.
    #[error("repository `{repository}` belongs to tenant `{tenant}`, which the tenants file does not define")]
    #[diagnostic(help(
        "add [tenants.{tenant}] to the tenants file, or fix `tenant` in the server's configuration"
    ))]
    UnknownTenant {
        /// The repository's key.
        repository: String,
        /// The tenant it names.
        tenant: String,
    },
    /// A tenant sets a limit to unlimited, and the operator did not allow it.
    #[error("tenant `{tenant}` sets limits.{} = \"unlimited\" in {}, and a shared host needs every limit", keys.join(" and limits."), file.display())]
    #[diagnostic(help(
        "give it a size (\"20GiB\"), or leave it out for the service's default; to run it unlimited anyway, set allow-unlimited = true in [server]"
    ))]
    Unlimited {
        /// The tenant.
        tenant: String,
        /// The limits it leaves unbounded.
        keys: Vec<&'static str>,
        /// The tenants file.
        file: std::path::PathBuf,
    },
}

/// What a queued run is to do: recorded with it, so a restarted server
/// runs the same thing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The configured repository (its key).
    pub repository: String,
    /// The commit to build.
    pub commit: String,
    /// The branch, when it builds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A ref to fetch when the commit cannot be fetched by id (a pull
    /// request's head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<String>,
    /// The environment to deploy to (default: the pipeline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Code from outside the tenant: run without secrets and deploys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untrusted: bool,
}

/// Everything the handlers and the dispatcher share.
pub struct App {
    /// The server's configuration.
    pub config: ServerConfig,
    /// The run history.
    pub db: db::Db,
    /// Wakes the dispatcher (a run was queued or ended).
    pub wake: tokio::sync::Notify,
    /// Counts events seen, so log streams know to look again.
    pub events: tokio::sync::watch::Sender<u64>,
    /// The runs this server is running, with what cancels each.
    pub running: Mutex<HashMap<String, Running>>,
    /// Requests per token.
    pub limiter: auth::RateLimiter,
    /// Live event streams open, per token.
    pub streams: Mutex<HashMap<String, usize>>,
    /// Figures for `/metrics`.
    pub metrics: Mutex<Metrics>,
    /// Where checkouts go.
    pub checkouts: std::path::PathBuf,
    /// Set once the dispatcher has taken up the queue after a start.
    pub ready: std::sync::atomic::AtomicBool,
    /// The built-in plugins, read once when the dashboard first asks.
    pub plugins: tokio::sync::OnceCell<Vec<web::plugins_page::PluginRow>>,
    /// The workers' side, with `--nats`: runs go to them instead of
    /// running here.
    pub remote: Option<Arc<remote::Remote>>,
}

/// `weir serve --nats`: how to reach the workers.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// NATS.
    pub nats: crate::fleet::NatsOptions,
    /// How long a worker may go without a heartbeat before its job goes
    /// to another.
    pub ack_wait: std::time::Duration,
    /// Deliveries before a run ends `failed`.
    pub max_deliveries: u32,
}

/// A run this server is running.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its tenant.
    pub tenant: String,
    /// Cancels it.
    pub cancel: CancelToken,
}

/// What `/metrics` counts besides what the history holds.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Stage durations by outcome: (count, sum in seconds) per bucket
    /// bound (seconds), cumulative, as Prometheus histograms are.
    pub stage_seconds: HashMap<String, Histogram>,
    /// Per tenant: fuel used, peak memory (bytes) and stage wall time.
    pub tenants: HashMap<String, TenantUsage>,
    /// Requests answered, by status class.
    pub requests: HashMap<u16, u64>,
}

/// A Prometheus histogram.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Counts at or below each of [`STAGE_BUCKETS`].
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

/// The bounds of the stage-duration histogram, in seconds.
pub const STAGE_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

impl Histogram {
    /// Count one observation of `secs`.
    pub fn observe(&mut self, secs: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; STAGE_BUCKETS.len()];
        }
        for (i, bound) in STAGE_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// A tenant's use of the sandbox, summed over its stages.
#[derive(Debug, Default, Clone)]
pub struct TenantUsage {
    /// Fuel its guests burned.
    pub fuel: u64,
    /// The most memory one of its guests held, in bytes.
    pub peak_memory: u64,
    /// Stage wall time, in seconds.
    pub stage_seconds: f64,
    /// Stages run.
    pub stages: u64,
}

impl App {
    /// The runs this server is running, per tenant.
    pub fn running_per_tenant(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
            *counts.entry(r.tenant.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// Start the server: open the history, take up the queue, and answer on
/// `config.listen` until SIGINT or SIGTERM.
pub async fn serve(config: ServerConfig, workers: Option<RemoteOptions>) -> Result<(), ServeError> {
    let state = match &config.data_dir {
        Some(dir) => crate::session::state::choose_state_dir(dir),
        None => crate::session::state::state_dir(),
    };
    // Every repository's tenant must exist before anything is accepted.
    let tenants = weir_pipeline::config::tenants::Tenants::load(config.tenants.as_deref())?;
    for repo in config.repositories.values() {
        if let Some(t) = &repo.tenant
            && tenants.get(Some(t)).is_err()
        {
            return Err(ServeError::UnknownTenant {
                repository: repo.key.clone(),
                tenant: t.clone(),
            });
        }
    }
    if !config.allow_unlimited {
        for t in tenants.all() {
            let keys = t.limits.unlimited.keys();
            if !keys.is_empty() {
                return Err(ServeError::Unlimited {
                    tenant: t.name.to_string(),
                    keys,
                    file: t.file.clone().unwrap_or_default(),
                });
            }
        }
    }
    let db = db::Db::open(&state)?;
    let remote = match &workers {
        Some(w) => Some(Arc::new(
            remote::Remote::connect(&w.nats, w.ack_wait, w.max_deliveries).await?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let app = Arc::new(App {
        limiter: auth::RateLimiter::new(config.rate_limit),
        checkouts: state.join("checkouts"),
        config,
        db,
        wake: tokio::sync::Notify::new(),
        events: tokio::sync::watch::Sender::new(0),
        running: Mutex::default(),
        streams: Mutex::default(),
        metrics: Mutex::default(),
        ready: std::sync::atomic::AtomicBool::new(false),
        plugins: tokio::sync::OnceCell::new(),
        remote: remote.clone(),
    });
    // The one line a script waits for: where the server answers.
    println!(
        "weir serve: listening on http://{addr} (state in {})",
        state.display()
    );
    println!("weir serve: the dashboard is at http://{addr}/ (log in with an API token)");
    tracing::info!(%addr, "listening");
    let dispatcher = match &remote {
        Some(remote) => {
            println!(
                "weir serve: runs go to workers through NATS at {} (`weir worker --nats {}`)",
                remote.fleet.url, remote.fleet.url
            );
            tokio::spawn(ingest::run(app.clone(), remote.clone()));
            tokio::spawn(ingest::secrets(app.clone(), remote.clone()));
            tokio::spawn(remote::run(app.clone(), remote.clone()))
        }
        None => tokio::spawn(dispatch::run(app.clone())),
    };
    let router = routes::router(app.clone());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let router = router.clone();
                    let timeout = app.config.request_timeout;
                    tokio::spawn(routes::serve_connection(stream, router, timeout));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = &mut stop => break,
        }
    }
    // Stopping: running runs are cancelled (their stages get the grace
    // period) and end `cancelled`; queued runs stay queued for the next
    // start.
    // Whoever read stdout may be gone by now (a closed pipe must not
    // turn a clean stop into a panic).
    let _ = writeln!(
        std::io::stdout(),
        "weir serve: stopping; cancelling the runs in progress"
    );
    let cancels: Vec<CancelToken> = app
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|r| r.cancel.clone())
        .collect();
    for c in &cancels {
        c.cancel();
    }
    let deadline = tokio::time::Instant::now() + crate::run::CANCEL_GRACE + std::time::Duration::from_secs(5);
    while !app.running.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    dispatcher.abort();
    Ok(())
}

/// SIGINT or SIGTERM (`weir serve` and `weir worker` stop on either).
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
