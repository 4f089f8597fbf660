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

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};

use super::api::{
    ApiError, InstanceInfo, Promote, Restore, Sample, Samples, ServiceStatus, StartRequest, Status, Weights,
};
use super::instance_sandbox::Isolation;
use super::router::{Body, Router, plain};
use super::state::{Launch, Release, ReleaseState, StateError, TargetState};
use super::supervisor::{InstanceSpec, Supervisor, Timing};
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
fn peer_allowed(stream: &tokio::net::UnixStream) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("no peer credentials: {e}"))?;
    let me = rustix::process::geteuid().as_raw();
    if cred.uid() != me {
        return Err(format!("uid {} is not the target's uid {me}", cred.uid()));
    }
    let pid = cred.pid().ok_or("no peer pid")?;
    for ns in ["user", "pid"] {
        let ours = std::fs::metadata(format!("/proc/self/ns/{ns}")).map_err(|e| e.to_string())?;
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
            .map_err(|e| format!("pid {pid}: cannot read its {ns} namespace: {e}"))?;
        if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
            return Err(format!("pid {pid} is in another {ns} namespace (a sandbox)"));
        }
    }
    Ok(())
}

/// A fresh random token, hex.
fn new_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Service and version names: they become file names and metric labels.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ))
    }
}

/// The running target.
pub struct Target {
    dir: PathBuf,
    supervisor: Arc<Supervisor>,
    state: tokio::sync::Mutex<TargetState>,
    serving: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    started_ms: u64,
    shutdown: tokio::sync::Notify,
    /// Every control call must carry it ([`super::api::TOKEN_HEADER`]).
    token: String,
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

    /// Move the release file `name` that a client put in `incoming/` into
    /// the target's release directory (so the run that built it can be
    /// pruned) and return its new path. Only a plain name in `incoming/`,
    /// opened without following a symlink: a request cannot point the
    /// target at any other file on the host.
    fn keep_program(&self, service: &str, version: &str, name: &str) -> Result<PathBuf, Refusal> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
            return Err(invalid(format!(
                "release `{name}` must be the name of a file in the target's incoming directory"
            )));
        }
        let incoming = self.dir.join(INCOMING);
        let mut source = crate::beneath::open_root(&incoming)
            .and_then(|dir| crate::beneath::open_file(&dir, std::ffi::OsStr::new(name)))
            .map_err(|e| {
                invalid(format!(
                    "release `{name}` is not a file the target was given: {e}"
                ))
            })?;
        let dir = self.dir.join("releases").join(service).join(version);
        std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let copy = dir.join(name);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".program.{}.tmp",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        // Durable before it is recorded: a stable release's program must
        // survive a power cut with the state that names it.
        std::fs::File::create(&tmp)
            .and_then(|mut out| {
                std::io::copy(&mut source, &mut out)?;
                out.sync_all()
            })
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&tmp, &copy))
            .and_then(|()| std::fs::File::open(&dir)?.sync_all())
            .map_err(|e| failed(format!("cannot copy release `{name}` into the target: {e}")))?;
        Ok(copy)
    }

    async fn start_from(
        &self,
        service: &str,
        version: &str,
        launch: &Launch,
    ) -> Result<super::supervisor::Instance, Refusal> {
        let running = self.supervisor.instances(service).len();
        if running >= MAX_INSTANCES {
            return Err(invalid(format!(
                "service `{service}` already runs {running} instances, the limit is {MAX_INSTANCES}; stop some first"
            )));
        }
        let spec = InstanceSpec {
            service: service.to_string(),
            version: version.to_string(),
            program: launch.program.clone(),
            args: launch.args.clone(),
            env: launch.env.clone(),
            dir: launch
                .program
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.dir.clone()),
            data_dir: self.dir.join("data").join(service),
            readiness_path: launch.readiness_path.clone(),
            log: Some(self.dir.join("logs").join(service).join(format!("{version}.log"))),
        };
        self.supervisor
            .start(spec)
            .await
            .map_err(|e| failed(e.to_string()))
    }

    async fn start(&self, req: StartRequest) -> Result<InstanceInfo, Refusal> {
        check_name("service", &req.service).map_err(invalid)?;
        check_name("version", &req.version).map_err(invalid)?;
        if let Some((k, _)) = req.env.iter().find(|(k, _)| refused_variable(k)) {
            return Err(invalid(format!(
                "variable `{k}` cannot be set for a service: it changes what the program loads or runs (LD_*, PATH, BASH_ENV, ENV), or is not a variable name"
            )));
        }
        if !req.readiness_path.starts_with('/') {
            return Err(invalid(format!(
                "the readiness path `{}` must start with `/`",
                req.readiness_path
            )));
        }
        // A release that is or was stable is never changed: another
        // instance of it runs what it ran, so a rollback restores exactly
        // that.
        let kept = {
            let state = self.state.lock().await;
            state.services.get(&req.service).and_then(|s| {
                s.releases
                    .iter()
                    .rev()
                    .find(|r| {
                        r.version == req.version
                            && matches!(r.state, ReleaseState::Stable | ReleaseState::Superseded)
                    })
                    .map(|r| r.launch.clone())
            })
        };
        if let Some(launch) = kept {
            let instance = self.start_from(&req.service, &req.version, &launch).await?;
            return Ok(self.instance_info(&instance));
        }
        let launch = Launch {
            program: self.keep_program(&req.service, &req.version, &req.release)?,
            args: req.args,
            env: req.env,
            readiness_path: req.readiness_path,
        };
        {
            let mut state = self.state.lock().await;
            let known = state.services.get(&req.service).map(|s| s.port);
            let port = self
                .listen(&req.service, known.unwrap_or(req.port))
                .await
                .map_err(|e| failed(format!("cannot listen for service `{}`: {e}", req.service)))?;
            let s = state.services.entry(req.service.clone()).or_default();
            s.port = port;
            let now = now_ms();
            match s.release_mut(&req.version) {
                Some(r) if matches!(r.state, ReleaseState::Candidate | ReleaseState::Stable) => {
                    r.launch = launch.clone();
                }
                _ => s.releases.push(Release {
                    version: req.version.clone(),
                    state: ReleaseState::Candidate,
                    run: req.run.clone(),
                    deployed_ms: now,
                    changed_ms: now,
                    reason: None,
                    replicas: 0,
                    launch: launch.clone(),
                }),
            }
            self.save(&mut state).await?;
        }
        let instance = self.start_from(&req.service, &req.version, &launch).await?;
        let mut state = self.state.lock().await;
        let running = self
            .supervisor
            .instances(&req.service)
            .iter()
            .filter(|i| i.version == req.version)
            .count() as u32;
        if let Some(r) = state
            .services
            .get_mut(&req.service)
            .and_then(|s| s.release_mut(&req.version))
        {
            r.replicas = r.replicas.max(running);
        }
        self.save(&mut state).await?;
        Ok(self.instance_info(&instance))
    }

    async fn stop(&self, id: &str) -> Result<(), Refusal> {
        if self.supervisor.stop(id).await {
            Ok(())
        } else {
            Err(not_found(format!("the target runs no instance `{id}`")))
        }
    }

    async fn set_weights(
        &self,
        service: &str,
        weights: Vec<(String, u32)>,
    ) -> Result<ServiceStatus, Refusal> {
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total != 100 {
            return Err(invalid(format!(
                "the weights of `{service}` add up to {total}; they must add up to 100"
            )));
        }
        if !self.state.lock().await.services.contains_key(service) {
            return Err(not_found(format!("the target runs no service `{service}`")));
        }
        let router = self.supervisor.router(service);
        let ids: Vec<_> = self.supervisor.instances(service);
        for (version, w) in &weights {
            if *w > 0
                && !ids
                    .iter()
                    .any(|i| i.version == *version && router.is_ready(&i.id))
            {
                return Err(invalid(format!(
                    "version `{version}` of `{service}` has no ready instance; deploy it before sending it traffic"
                )));
            }
        }
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        s.weights = weights.iter().filter(|(_, w)| *w > 0).cloned().collect();
        router.set_weights(&weights);
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    async fn promote(&self, service: &str, version: &str) -> Result<ServiceStatus, Refusal> {
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        if s.release_mut(version).is_none() {
            return Err(not_found(format!("`{service}` has no release `{version}`")));
        }
        let now = now_ms();
        for r in s.releases.iter_mut() {
            if r.state == ReleaseState::Stable && r.version != version {
                r.state = ReleaseState::Superseded;
                r.changed_ms = now;
            }
        }
        if let Some(r) = s.release_mut(version) {
            r.state = ReleaseState::Stable;
            r.changed_ms = now;
        }
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    /// All traffic to `version` (its instances started if none is ready),
    /// every other instance drained and stopped.
    async fn settle_on(
        &self,
        service: &str,
        version: &str,
        launch: &Launch,
        replicas: u32,
    ) -> Result<(), Refusal> {
        let router = self.supervisor.router(service);
        let ready = self
            .supervisor
            .instances(service)
            .iter()
            .filter(|i| i.version == version && router.is_ready(&i.id))
            .count() as u32;
        // Traffic moves first when the version can take it, so a slow
        // start of the missing instances never leaves the candidate
        // serving.
        if ready > 0 {
            router.set_weights(&[(version.to_string(), 100)]);
        }
        for _ in ready..replicas.max(1) {
            self.start_from(service, version, launch).await?;
        }
        router.set_weights(&[(version.to_string(), 100)]);
        let others: Vec<String> = self
            .supervisor
            .instances(service)
            .into_iter()
            .filter(|i| i.version != version)
            .map(|i| i.id)
            .collect();
        for id in others {
            self.supervisor.stop(&id).await;
        }
        Ok(())
    }

    /// Back to the stable release (the rollout controller's promise).
    async fn restore(&self, service: &str, reason: &str) -> Result<ServiceStatus, Refusal> {
        let stable = {
            let state = self.state.lock().await;
            let Some(s) = state.services.get(service) else {
                return Err(not_found(format!("the target runs no service `{service}`")));
            };
            s.stable().cloned()
        };
        match &stable {
            Some(r) => self.settle_on(service, &r.version, &r.launch, r.replicas).await?,
            None => {
                // Nothing was ever promoted: the only safe state is none.
                self.supervisor.router(service).set_weights(&[]);
                for i in self.supervisor.instances(service) {
                    self.supervisor.stop(&i.id).await;
                }
            }
        }
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        let now = now_ms();
        for r in s
            .releases
            .iter_mut()
            .filter(|r| r.state == ReleaseState::Candidate)
        {
            r.state = ReleaseState::RolledBack;
            r.reason = Some(reason.to_string());
            r.changed_ms = now;
        }
        s.weights = stable.iter().map(|r| (r.version.clone(), 100)).collect();
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
    }

    /// `weir rollback`: the release before the stable one becomes stable
    /// again and takes all traffic.
    async fn rollback(&self, service: &str) -> Result<ServiceStatus, Refusal> {
        let (current, previous) = {
            let state = self.state.lock().await;
            let Some(s) = state.services.get(service) else {
                return Err(not_found(format!("the target runs no service `{service}`")));
            };
            let current = s.stable().cloned();
            let previous = s
                .releases
                .iter()
                .rev()
                .find(|r| r.state == ReleaseState::Superseded)
                .cloned();
            (current, previous)
        };
        let Some(previous) = previous else {
            return Err(invalid(format!(
                "`{service}` has no earlier stable release to roll back to (`weir releases {service}` lists them)"
            )));
        };
        self.settle_on(service, &previous.version, &previous.launch, previous.replicas)
            .await?;
        let mut state = self.state.lock().await;
        let Some(s) = state.services.get_mut(service) else {
            return Err(not_found(format!("the target runs no service `{service}`")));
        };
        let now = now_ms();
        for r in s.releases.iter_mut() {
            if r.state == ReleaseState::Candidate
                || current
                    .as_ref()
                    .is_some_and(|c| c.version == r.version && r.state == ReleaseState::Stable)
            {
                r.state = ReleaseState::RolledBack;
                r.reason = Some("rolled back by hand (`weir rollback`)".into());
                r.changed_ms = now;
            }
        }
        if let Some(r) = s
            .releases
            .iter_mut()
            .rev()
            .find(|r| r.version == previous.version && r.state == ReleaseState::Superseded)
        {
            r.state = ReleaseState::Stable;
            r.changed_ms = now;
        }
        s.weights = [(previous.version.clone(), 100)].into_iter().collect();
        let status = self.service_status(service, s);
        self.save(&mut state).await?;
        Ok(status)
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

    /// Put every service back on its stable release (start-up).
    async fn recover(&self) -> Result<(), TargetError> {
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

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let presented = req
            .headers()
            .get(super::api::TOKEN_HEADER)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        if !same_bytes(&presented, self.token.as_bytes()) {
            return refusal(Refusal(
                StatusCode::UNAUTHORIZED,
                ApiError {
                    kind: "denied".into(),
                    message: "the call does not carry the target's token".into(),
                },
            ));
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return refusal(invalid(format!("cannot read the request: {e}"))),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (&method, parts.as_slice()) {
            (&Method::GET, ["v1", "status"]) => json(&self.status().await),
            (&Method::POST, ["v1", "instances"]) => match parse::<StartRequest>(&body) {
                Ok(r) => self.start(r).await.and_then(|i| json(&i)),
                Err(e) => Err(e),
            },
            (&Method::DELETE, ["v1", "instances", id]) => self.stop(id).await.and_then(|()| json(&())),
            (&Method::GET, ["v1", "services", s]) => self.service(s).await.and_then(|s| json(&s)),
            (&Method::PUT, ["v1", "services", s, "weights"]) => match parse::<Weights>(&body) {
                Ok(w) => self.set_weights(s, w.weights).await.and_then(|s| json(&s)),
                Err(e) => Err(e),
            },
            (&Method::POST, ["v1", "services", s, "promote"]) => match parse::<Promote>(&body) {
                Ok(p) => self.promote(s, &p.version).await.and_then(|s| json(&s)),
                Err(e) => Err(e),
            },
            (&Method::POST, ["v1", "services", s, "restore"]) => match parse::<Restore>(&body) {
                Ok(r) => self.restore(s, &r.reason).await.and_then(|s| json(&s)),
                Err(e) => Err(e),
            },
            (&Method::POST, ["v1", "services", s, "rollback"]) => {
                self.rollback(s).await.and_then(|s| json(&s))
            }
            (&Method::GET, ["v1", "services", s, "samples"]) => {
                let arg = |k: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                self.samples(
                    s,
                    arg("since_ms").unwrap_or(0),
                    arg("until_ms").unwrap_or(u64::MAX),
                )
                .await
                .and_then(|x| json(&x))
            }
            (&Method::POST, ["v1", "shutdown"]) => {
                self.shutdown.notify_one();
                json(&())
            }
            _ => Err(not_found(format!("no control call {method} {path}"))),
        };
        match result {
            Ok(r) => r,
            Err(e) => refusal(e),
        }
    }
}

/// Equal, in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("malformed request: {e}")))
}

fn json(value: &impl Serialize) -> Result<Response<Body>, Refusal> {
    let text = serde_json::to_string(value).map_err(|e| failed(e.to_string()))?;
    let mut r = plain(StatusCode::OK, text);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn refusal(Refusal(status, e): Refusal) -> Response<Body> {
    let mut r = plain(status, serde_json::to_string(&e).unwrap_or_default());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
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
                    let target = target.clone();
                    tokio::spawn(super::router::serve_connection(stream, move |req| {
                        let target = target.clone();
                        async move { target.answer(req).await }
                    }));
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
    drop(lock);
    Ok(())
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
