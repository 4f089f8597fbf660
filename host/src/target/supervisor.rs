//! Service instances: processes started from a build artifact, each given
//! a loopback port in `PORT`, put behind their service's [`Router`] once
//! their readiness check answers 2xx, restarted when they crash, and on
//! stop drained (no new requests, those in flight finish) before SIGTERM
//! and, after a grace period, SIGKILL to their whole process group.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::instance_sandbox::{self, Isolation, Launch, Sandboxed, Slot};
use super::router::Router;

mod process;
mod restarts;

pub(crate) use process::log_to;
use process::{Process, free_port, spawn, terminate, wait_ready};
use restarts::{AbortOnDrop, Watched, watch_over};

/// What to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The service, e.g. `web`.
    pub service: String,
    /// The version it serves.
    pub version: String,
    /// The program (a build artifact).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, besides `PORT` and a default `PATH` (nothing else
    /// of weir's own environment is passed on).
    pub env: Vec<(String, String)>,
    /// Its working directory (unsandboxed; a sandboxed instance works in
    /// its release, read-only).
    pub dir: PathBuf,
    /// The service's own writable directory, in `DATA_DIR`.
    pub data_dir: PathBuf,
    /// The HTTP path that answers 2xx once it is ready.
    pub readiness_path: String,
    /// Where its stdout and stderr go (appended); `None` discards them.
    pub log: Option<PathBuf>,
    /// When set, the instance is this container, run by podman, and
    /// `program`, `args`, `dir` and `data_dir` are not used.
    pub container: Option<ContainerSpec>,
}

/// A container instance: the release's image and limits, and the key of
/// the target its containers are labelled with.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// What to run.
    pub launch: super::podman::ContainerLaunch,
    /// The target's key ([`super::podman::target_key`]).
    pub key: String,
    /// A directory only the target reads, for the containers' env files
    /// (each removed once its container runs).
    pub env_dir: PathBuf,
}

/// How long things may take.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From start to a 2xx readiness answer.
    pub ready_within: Duration,
    /// For requests in flight to finish, and then between SIGTERM and
    /// SIGKILL.
    pub stop_grace: Duration,
    /// Restarts after crashes before the instance is given up.
    pub max_restarts: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ready_within: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            max_restarts: 5,
        }
    }
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No sandbox, where running without one is not allowed.
    #[error(
        "cannot start `{service}` {version}: {why}; install bubblewrap (Debian: apt-get install bubblewrap)"
    )]
    Unsandboxed {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// Why there is no sandbox.
        why: String,
    },
    /// The program could not be run.
    #[error("cannot start {program} for `{service}` {version}: {source}")]
    Spawn {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Podman could not be used, or could not pull the image.
    #[error("cannot start `{service}` {version} as a container: {message}")]
    Container {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// What podman said.
        message: String,
    },
    /// It exited before it was ready.
    #[error("`{service}` {version} exited before it was ready ({status})")]
    Exited {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// How it exited.
        status: String,
    },
    /// Its readiness check did not pass in time.
    #[error(
        "`{service}` {version} was not ready within {seconds} s: GET {path} never answered 2xx (it was stopped)"
    )]
    NotReady {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// The readiness path.
        path: String,
        /// The limit.
        seconds: u64,
    },
}

/// A started instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its id, unique on this target.
    pub id: String,
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// Its loopback port.
    pub port: u16,
    /// How many times it was restarted after a crash.
    pub restarts: u32,
}

struct Running {
    instance: Instance,
    restarts: Arc<AtomicU32>,
    pid: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// Every service's router and instances.
pub struct Supervisor {
    routers: Mutex<BTreeMap<String, Arc<Router>>>,
    running: Mutex<BTreeMap<String, Running>>,
    timing: Timing,
    isolation: Isolation,
    next: AtomicU64,
}

impl Supervisor {
    /// A supervisor with no services yet, running instances as plain
    /// processes (for tests; the target uses [`Supervisor::isolated`]).
    pub fn new(timing: Timing) -> Arc<Self> {
        Self::isolated(timing, Isolation::Unsandboxed)
    }

    /// A supervisor that runs instances as `isolation` says.
    pub fn isolated(timing: Timing, isolation: Isolation) -> Arc<Self> {
        Arc::new(Self {
            routers: Mutex::new(BTreeMap::new()),
            running: Mutex::new(BTreeMap::new()),
            timing,
            isolation,
            next: AtomicU64::new(1),
        })
    }

    /// The router of `service` (created on first use).
    pub fn router(&self, service: &str) -> Arc<Router> {
        self.routers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_string())
            .or_insert_with(|| Router::new(service))
            .clone()
    }

    /// Start an instance, wait until it is ready, put it behind its
    /// service's router (taking the share of its version), and keep it
    /// running until [`Supervisor::stop`].
    pub async fn start(self: &Arc<Self>, spec: InstanceSpec) -> Result<Instance, StartError> {
        let cannot = |spec: &InstanceSpec, source: std::io::Error| StartError::Spawn {
            service: spec.service.clone(),
            version: spec.version.clone(),
            program: spec.program.display().to_string(),
            source,
        };
        if let Some(c) = &spec.container {
            let container = |message: String| StartError::Container {
                service: spec.service.clone(),
                version: spec.version.clone(),
                message,
            };
            let podman = super::podman::Podman::get().map_err(container)?;
            podman.pull(&c.launch).await.map_err(container)?;
        } else if let Isolation::Refused(why) = &self.isolation {
            return Err(StartError::Unsandboxed {
                service: spec.service,
                version: spec.version,
                why: why.clone(),
            });
        }
        // A sandboxed instance listens in its own namespace; the host's
        // side of its port is the relay, listening before it starts.
        let slot: Slot = Arc::new(Mutex::new(None));
        // A container has no network but its loopback either: the relay
        // reaches it the same way.
        let relayed = spec.container.is_some() || matches!(self.isolation, Isolation::Sandboxed(_));
        let (port, relay) = if relayed {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| cannot(&spec, e))?;
            let port = listener.local_addr().map_err(|e| cannot(&spec, e))?.port();
            // A container listens on its own port inside; a sandboxed
            // process on the same port as the relay.
            let inside = spec.container.as_ref().map_or(port, |c| c.launch.port);
            let relay = tokio::spawn(instance_sandbox::relay(listener, inside, slot.clone()));
            (port, Some(relay))
        } else {
            (free_port().map_err(|e| cannot(&spec, e))?, None)
        };
        let relay = AbortOnDrop(relay);
        let mut process = spawn(&spec, port, &self.isolation)
            .await
            .map_err(|e| cannot(&spec, e))?;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = process.factory();
        if let Err(exited) = wait_ready(
            process.child(),
            port,
            &spec.readiness_path,
            self.timing.ready_within,
        )
        .await
        {
            let hit = process.limits_hit();
            terminate(process, Duration::from_millis(200)).await;
            return Err(match exited {
                Some(status) => StartError::Exited {
                    service: spec.service,
                    version: spec.version,
                    status: format!("{status}{hit}"),
                },
                None => StartError::NotReady {
                    service: spec.service,
                    version: spec.version,
                    path: spec.readiness_path,
                    seconds: self.timing.ready_within.as_secs(),
                },
            });
        }
        let id = format!(
            "{}-{}-{}",
            spec.service,
            spec.version,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let router = self.router(&spec.service);
        router.add(&id, &spec.version, SocketAddr::from(([127, 0, 0, 1], port)));
        router.set_ready(&id, true);
        let instance = Instance {
            id: id.clone(),
            service: spec.service.clone(),
            version: spec.version.clone(),
            port,
            restarts: 0,
        };
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let restarts = Arc::new(AtomicU32::new(0));
        let pid = Arc::new(AtomicU32::new(process.pid()));
        tokio::spawn(watch_over(
            Watched {
                process,
                spec,
                port,
                id: id.clone(),
                slot,
                _relay: relay,
            },
            router,
            self.timing,
            self.isolation.clone(),
            restarts.clone(),
            pid.clone(),
            stop_rx,
            done_tx,
        ));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Running {
                instance: instance.clone(),
                restarts,
                pid,
                stop,
                done,
            },
        );
        Ok(instance)
    }

    /// The instances of `service`.
    pub fn instances(&self, service: &str) -> Vec<Instance> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.instance.service == service)
            .map(|r| Instance {
                restarts: r.restarts.load(Ordering::SeqCst),
                ..r.instance.clone()
            })
            .collect()
    }

    /// The service of instance `id`, if it runs.
    pub fn service_of(&self, id: &str) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|r| r.instance.service.clone())
    }

    /// The current process id of instance `id` (it changes on restart;
    /// bubblewrap's, for a sandboxed one).
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|r| r.pid.load(Ordering::SeqCst))
    }

    /// Drain instance `id` (no new requests; those in flight finish, up to
    /// the grace period), then stop its process. False if there is none.
    pub async fn stop(&self, id: &str) -> bool {
        let Some(running) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id) else {
            return false;
        };
        self.router(&running.instance.service)
            .remove(id, self.timing.stop_grace)
            .await;
        let _ = running.stop.send(true);
        let mut done = running.done;
        let _ = done.wait_for(|d| *d).await;
        true
    }
}

#[cfg(test)]
mod tests;
