//! The target process (`weir target serve`): one per state directory,
//! guarded by a lock file. It answers the control API ([`super::api`]) on a
//! Unix socket, serves each service's router on its own port and
//! `/metrics` on another, and keeps [`TargetState`] on disk after every
//! change.
//!
//! On start it puts every service back on its stable release: the stable
//! version's instances are started again from the target's own copy of the
//! program and take all traffic; a candidate that was mid-rollout when the
//! process died is marked rolled back. A restart therefore never leaves a
//! half-promoted candidate serving.

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::{TcpListener, UnixListener};

mod control;
mod releases;

use super::api::{ApiError, InstanceInfo, Sample, Samples, ServiceStatus, StartRequest, Status};
use super::instance_sandbox::Isolation;
use super::router::{Router, plain};
use super::state::{Launch, Release, ReleaseState, StateError, TargetState};
use super::supervisor::{ContainerSpec, InstanceSpec, Supervisor, Timing};
use crate::events::now_ms;

/// The control socket's file name in the target directory.
pub const SOCKET: &str = "control.sock";
/// The state file's name.
pub const STATE: &str = "state.json";
/// The target's own log.
pub const LOG: &str = "target.log";
/// Where clients put release files for the target to take.
pub const INCOMING: &str = "incoming";
/// Largest control request body.
const MAX_BODY: usize = 1 << 20;
/// Most instances one service may run at once (all versions).
pub const MAX_INSTANCES: usize = 256;

/// Why the target could not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Another target holds the lock.
    #[error("a target is already running for {dir} (`weir target status` shows it)")]
    AlreadyRunning {
        /// The directory.
        dir: String,
    },
    /// The state file is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io { what, source }
}

/// A failed control call: an HTTP status and what to tell the caller.
struct Refusal(StatusCode, ApiError);

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal(
        StatusCode::BAD_REQUEST,
        ApiError {
            kind: "invalid".into(),
            message: message.into(),
        },
    )
}

fn denied(message: impl Into<String>) -> Refusal {
    Refusal(
        StatusCode::FORBIDDEN,
        ApiError {
            kind: "denied".into(),
            message: message.into(),
        },
    )
}

fn not_found(message: impl Into<String>) -> Refusal {
    Refusal(
        StatusCode::NOT_FOUND,
        ApiError {
            kind: "not-found".into(),
            message: message.into(),
        },
    )
}

fn failed(message: impl Into<String>) -> Refusal {
    Refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        ApiError {
            kind: "failed".into(),
            message: message.into(),
        },
    )
}

/// Variables a start request may not set: what the program loads
/// (`LD_*`), where it finds programs (`PATH`, set by the target), and the
/// shell's startup files; and anything that is not a variable name.
fn refused_variable(key: &str) -> bool {
    key.is_empty()
        || key.contains('=')
        || key.contains('\0')
        || key.starts_with("LD_")
        || matches!(
            key,
            "PATH" | "PORT" | "BASH_ENV" | "ENV" | "PYTHONSTARTUP" | "NODE_OPTIONS"
        )
}

/// Whether the peer of a control connection is allowed: a process with
/// the target's own uid, in the target's own user and pid namespaces. A
/// program inside bubblewrap runs in a user namespace of its own (where
/// weir's uid may well look like its own), so it is refused even when
/// it could open the socket.
fn peer_allowed(stream: &tokio::net::UnixStream) -> Result<(), PeerRefused> {
    use std::os::unix::fs::MetadataExt;
    let cred = stream
        .peer_cred()
        .map_err(|e| PeerRefused::NoCredentials(e.to_string()))?;
    let me = rustix::process::geteuid().as_raw();
    if cred.uid() != me {
        return Err(PeerRefused::Uid { uid: cred.uid(), me });
    }
    let pid = cred.pid().ok_or(PeerRefused::NoPid)?;
    for ns in ["user", "pid"] {
        let unreadable = |error: std::io::Error| PeerRefused::Namespace {
            pid,
            ns,
            error: error.to_string(),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{ns}")).map_err(unreadable)?;
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).map_err(unreadable)?;
        if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
            return Err(PeerRefused::Sandboxed { pid, ns });
        }
    }
    Ok(())
}

/// Why a control connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PeerRefused {
    /// The socket gave no credentials.
    #[error("no peer credentials: {0}")]
    NoCredentials(String),
    /// Another user.
    #[error("uid {uid} is not the target's uid {me}")]
    Uid {
        /// The peer's uid.
        uid: u32,
        /// The target's.
        me: u32,
    },
    /// No pid to check its namespaces by.
    #[error("no peer pid")]
    NoPid,
    /// Its namespaces could not be read.
    #[error("pid {pid}: cannot read its {ns} namespace: {error}")]
    Namespace {
        /// The peer.
        pid: i32,
        /// `user` or `pid`.
        ns: &'static str,
        /// Why.
        error: String,
    },
    /// It runs inside a sandbox.
    #[error("pid {pid} is in another {ns} namespace (a sandbox)")]
    Sandboxed {
        /// The peer.
        pid: i32,
        /// `user` or `pid`.
        ns: &'static str,
    },
}

/// A fresh random token, hex.
fn new_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A service or version name that cannot be a file name and a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} `{name}` is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
)]
pub struct BadName {
    /// `service` or `version`.
    pub what: &'static str,
    /// The name.
    pub name: String,
}

/// Service and version names: they become file names and metric labels
/// (a version may hold dots, unlike the names of `weir_pipeline::names`).
pub fn check_name(what: &'static str, name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(BadName {
            what,
            name: name.to_string(),
        }),
    }
}

/// The running target.
pub struct Target {
    dir: PathBuf,
    pub(super) supervisor: Arc<Supervisor>,
    pub(super) state: tokio::sync::Mutex<TargetState>,
    serving: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    started_ms: u64,
    shutdown: tokio::sync::Notify,
    /// Every control call must carry it ([`super::api::TOKEN_HEADER`]).
    token: String,
    /// The label of this target's containers ([`super::podman::target_key`]).
    container_key: String,
    /// Rollouts' leases, by service: (run, when it lapses, its length).
    leases: Mutex<BTreeMap<String, (String, tokio::time::Instant, u64)>>,
    /// (service, run) whose lease lapsed or was given back: a late
    /// renewal from that rollout is refused, never taken as a new lease.
    ended_leases: Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl Target {
    fn state_file(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    async fn save(&self, state: &mut TargetState) -> Result<(), Refusal> {
        state.trim();
        state
            .save(&self.state_file())
            .map_err(|e| failed(format!("cannot save the target's state: {e}")))
    }

    /// Listen for `service`'s router on `port` (0: any), returning the
    /// port it got.
    async fn listen(&self, service: &str, port: u16) -> std::io::Result<u16> {
        if let Some(h) = self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            && !h.is_finished()
        {
            return Ok(port);
        }
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) if port != 0 => {
                tracing::warn!("service `{service}`: port {port} is taken ({e}); using another");
                TcpListener::bind(("127.0.0.1", 0)).await?
            }
            Err(e) => return Err(e),
        };
        let got = listener.local_addr()?.port();
        let router = self.supervisor.router(service);
        let task = tokio::spawn(router.serve(listener));
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_string(), task);
        Ok(got)
    }

    fn instance_info(&self, i: &super::supervisor::Instance) -> InstanceInfo {
        InstanceInfo {
            id: i.id.clone(),
            service: i.service.clone(),
            version: i.version.clone(),
            port: i.port,
            ready: self.supervisor.router(&i.service).is_ready(&i.id),
            restarts: i.restarts,
        }
    }

    fn service_status(&self, name: &str, s: &super::state::ServiceState) -> ServiceStatus {
        ServiceStatus {
            service: name.to_string(),
            tenant: s.owner().to_string(),
            address: format!("127.0.0.1:{}", s.port),
            weights: s.weights.iter().map(|(v, w)| (v.clone(), *w)).collect(),
            stable: s.stable().map(|r| r.version.clone()),
            instances: self
                .supervisor
                .instances(name)
                .iter()
                .map(|i| self.instance_info(i))
                .collect(),
            releases: s.releases.clone(),
        }
    }

    async fn status(&self) -> Status {
        let state = self.state.lock().await;
        Status {
            pid: std::process::id(),
            weir: env!("CARGO_PKG_VERSION").to_string(),
            metrics_url: format!("http://127.0.0.1:{}/metrics", state.metrics_port),
            started_ms: self.started_ms,
            container_label: format!("{}={}", super::podman::TARGET_LABEL, self.container_key),
            services: state
                .services
                .iter()
                .map(|(n, s)| self.service_status(n, s))
                .collect(),
        }
    }

    async fn service(&self, name: &str) -> Result<ServiceStatus, Refusal> {
        let state = self.state.lock().await;
        state
            .services
            .get(name)
            .map(|s| self.service_status(name, s))
            .ok_or_else(|| not_found(format!("the target runs no service `{name}`")))
    }

    async fn samples(&self, service: &str, since_ms: u64, until_ms: u64) -> Result<Samples, Refusal> {
        if !self.state.lock().await.services.contains_key(service) {
            return Err(not_found(format!("the target runs no service `{service}`")));
        }
        let mut out = Samples::default();
        for (version, stats) in self.supervisor.router(service).metrics().snapshot() {
            if stats.sample.len() >= super::metrics::SAMPLE
                && stats.sample.front().is_some_and(|o| o.at_ms > since_ms)
            {
                out.truncated = true;
            }
            let window: Vec<Sample> = stats
                .sample
                .iter()
                .filter(|o| o.at_ms >= since_ms && o.at_ms <= until_ms)
                .map(|o| Sample {
                    at_ms: o.at_ms,
                    status: o.status,
                    seconds: o.seconds,
                })
                .collect();
            out.versions.push((version, window));
        }
        Ok(out)
    }

    async fn metrics_text(&self) -> String {
        let names: Vec<String> = self.state.lock().await.services.keys().cloned().collect();
        let routers: Vec<Arc<Router>> = names.iter().map(|n| self.supervisor.router(n)).collect();
        super::metrics::render(routers.iter().map(|r| (r.service(), r.metrics().as_ref())))
    }

    /// Put every service back on its stable release (start-up). The
    /// containers a target that died left running are removed first: the
    /// stable release's are started again like its processes.
    async fn recover(&self) -> Result<(), TargetError> {
        // Wherever podman is, whatever the state says (it may be lost):
        // a container labelled with this target's key is a dead target's.
        let containers = {
            let state = self.state.lock().await;
            state
                .services
                .values()
                .any(|s| s.releases.iter().any(|r| r.launch.container.is_some()))
        };
        match super::podman::Podman::get() {
            Ok(podman) => {
                if containers {
                    tracing::info!("containers run with {}", podman.options());
                }
                match podman.remove_all(&self.container_key).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("removed {n} container(s) an earlier target left running"),
                    Err(e) => tracing::warn!("cannot remove the containers an earlier target left: {e}"),
                }
            }
            Err(e) if containers => tracing::error!("{e}"),
            Err(_) => {}
        }
        let services: Vec<(String, u16)> = {
            let state = self.state.lock().await;
            state.services.iter().map(|(n, s)| (n.clone(), s.port)).collect()
        };
        for (name, port) in services {
            let got = self
                .listen(&name, port)
                .await
                .map_err(io(format!("cannot listen for service `{name}`")))?;
            if let Some(s) = self.state.lock().await.services.get_mut(&name) {
                s.port = got;
            }
            let reason = "the target process restarted during the rollout";
            if let Err(Refusal(_, e)) = self.restore(&name, reason).await {
                tracing::error!(
                    "service `{name}` could not be put back on its stable release: {}",
                    e.message
                );
            }
        }
        Ok(())
    }
}

/// Run the target for state directory `dir` until `weir target down`,
/// SIGTERM or SIGINT; then drain and stop every instance.
pub async fn serve(dir: &Path, metrics_port: Option<u16>) -> Result<(), TargetError> {
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(io("cannot open the target's lock file"))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(TargetError::AlreadyRunning {
            dir: dir.display().to_string(),
        });
    }
    let mut state = TargetState::load(&dir.join(STATE))?;
    // A new token for each target process, written before the socket
    // exists: a client that can read it can reach the socket too.
    let token = new_token().map_err(io("cannot make the target's token"))?;
    {
        use std::io::Write;
        let path = dir.join(super::api::TOKEN_FILE);
        let tmp = dir.join(".token.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io(format!("cannot write {}", path.display())))?;
    }
    let incoming = dir.join(INCOMING);
    std::fs::create_dir_all(&incoming).map_err(io(format!("cannot create {}", incoming.display())))?;
    let metrics_listener =
        match TcpListener::bind(("127.0.0.1", metrics_port.unwrap_or(state.metrics_port))).await {
            Ok(l) => l,
            Err(e) if metrics_port.is_none() && state.metrics_port != 0 => {
                tracing::warn!(
                    "metrics port {} is taken ({e}); using another",
                    state.metrics_port
                );
                TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(io("cannot listen for /metrics"))?
            }
            Err(e) => return Err(io("cannot listen for /metrics")(e)),
        };
    state.metrics_port = metrics_listener
        .local_addr()
        .map_err(io("cannot listen for /metrics"))?
        .port();
    let target = Arc::new(Target {
        dir: dir.to_path_buf(),
        supervisor: Supervisor::isolated(Timing::default(), Isolation::detect()),
        state: tokio::sync::Mutex::new(state),
        serving: Mutex::new(BTreeMap::new()),
        started_ms: now_ms(),
        shutdown: tokio::sync::Notify::new(),
        token,
        container_key: super::podman::target_key(dir),
        leases: Mutex::new(BTreeMap::new()),
        ended_leases: Mutex::new(std::collections::BTreeSet::new()),
    });
    target.recover().await?;
    {
        let state = target.state.lock().await;
        state.save(&dir.join(STATE))?;
    }
    let metrics = {
        let target = target.clone();
        tokio::spawn(super::router::serve_with(
            metrics_listener,
            move |req: Request<Incoming>| {
                let target = target.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        let mut r = plain(StatusCode::OK, target.metrics_text().await);
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    } else {
                        plain(StatusCode::NOT_FOUND, "weir target: try /metrics\n".into())
                    }
                }
            },
        ))
    };
    let socket = dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let control =
        UnixListener::bind(&socket).map_err(io(format!("cannot listen on {}", socket.display())))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot restrict the control socket"))?;
    tracing::info!("target for {} up (pid {})", dir.display(), std::process::id());
    let app = control::router(target.clone());
    let watchdog = tokio::spawn(watch_leases(target.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io("cannot watch for SIGTERM"))?;
    loop {
        tokio::select! {
            accepted = control.accept() => {
                if let Ok((stream, _)) = accepted {
                    if let Err(why) = peer_allowed(&stream) {
                        tracing::warn!("control connection refused: {why}");
                        continue;
                    }
                    tokio::spawn(control::serve_connection(stream, app.clone()));
                }
            }
            () = target.shutdown.notified() => break,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Give the shutdown answer a moment to leave before instances stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let names: Vec<String> = target.state.lock().await.services.keys().cloned().collect();
    for name in names {
        for i in target.supervisor.instances(&name) {
            target.supervisor.stop(&i.id).await;
        }
    }
    // Last: `weir target down` waits for the socket to go.
    let _ = std::fs::remove_file(&socket);
    metrics.abort();
    watchdog.abort();
    drop(lock);
    Ok(())
}

/// Put back the stable release of every service whose rollout stopped
/// renewing its lease: its controller is gone (killed, or its machine
/// lost), and a candidate must not keep its share of traffic.
async fn watch_leases(target: Arc<Target>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        for (service, run, ttl_ms) in target.lapsed(tokio::time::Instant::now()) {
            let reason = format!(
                "controller lost: run {run} stopped renewing its lease on the target (held {:.1} s without a word), so the target put the stable release back",
                ttl_ms as f64 / 1000.0
            );
            match target.restore(&service, &reason).await {
                Ok(_) => tracing::warn!(%service, %run, "{reason}"),
                Err(Refusal(_, e)) => {
                    tracing::error!(%service, %run, "lease lapsed, restore failed: {}", e.message)
                }
            }
        }
    }
}

impl Target {
    /// Take or renew `service`'s lease. A rollout whose lease lapsed (or
    /// that gave it back) cannot take it again: the target already put the
    /// stable release back, and that rollout must end.
    fn hold(&self, service: &str, lease: super::api::Lease) -> Result<(), Refusal> {
        let ended = self
            .ended_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(service.to_string(), lease.run.clone()));
        if ended {
            return Err(Refusal(
                StatusCode::CONFLICT,
                ApiError {
                    kind: "lease-lost".into(),
                    message: format!(
                        "the lease of run {} on `{service}` lapsed or was given back; the target put the stable release back",
                        lease.run
                    ),
                },
            ));
        }
        let ttl = lease.ttl_ms.clamp(100, super::api::MAX_LEASE_MS);
        let until = tokio::time::Instant::now() + Duration::from_millis(ttl);
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_string(), (lease.run, until, ttl));
        Ok(())
    }

    /// Rollout `run` of `service` ended: its lease with it (another run's
    /// lease is left alone).
    fn let_go(&self, service: &str, run: &str) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(service).is_some_and(|(holder, _, _)| holder == run) {
            leases.remove(service);
        }
        drop(leases);
        self.ended(service, run);
    }

    fn ended(&self, service: &str, run: &str) {
        let mut ended = self.ended_leases.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the oldest are forgotten (their rollouts are long over).
        if ended.len() >= 4096 {
            ended.clear();
        }
        ended.insert((service.to_string(), run.to_string()));
    }

    /// The leases lapsed by `now`, taken out: (service, run, length).
    fn lapsed(&self, now: tokio::time::Instant) -> Vec<(String, String, u64)> {
        let gone: Vec<(String, String, u64)> = {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<String> = leases
                .iter()
                .filter(|(_, (_, until, _))| *until <= now)
                .map(|(s, _)| s.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|s| leases.remove(&s).map(|(run, _, ttl)| (s, run, ttl)))
                .collect()
        };
        for (service, run, _) in &gone {
            self.ended(service, run);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_files_and_labels_so_they_are_narrow() {
        assert!(check_name("service", "web").is_ok());
        assert!(check_name("version", "1.2.3-rc_1").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b", "x\"y", &"a".repeat(65)] {
            assert!(check_name("service", bad).is_err(), "{bad}");
        }
    }
}
