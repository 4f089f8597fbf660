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

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Send the command's stdout and stderr to `log` (appended), or nowhere.
pub(super) fn log_to(cmd: &mut Command, log: Option<&std::path::Path>) -> std::io::Result<()> {
    match log {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::File::options().create(true).append(true).open(path)?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    Ok(())
}

/// One run of an instance's program.
enum Process {
    /// A plain child process, in a process group of its own.
    Plain(Child),
    /// bubblewrap with the program inside.
    Sandboxed(Sandboxed),
}

impl Process {
    fn child(&mut self) -> &mut Child {
        match self {
            Process::Plain(c) => c,
            Process::Sandboxed(s) => &mut s.child,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Process::Plain(c) => c.id(),
            Process::Sandboxed(s) => s.child.id(),
        }
        .unwrap_or(0)
    }

    /// The limits its cgroup held it to so far, named, for the reason it
    /// exited: empty when none was hit.
    fn limits_hit(&self) -> String {
        let Process::Sandboxed(Sandboxed { group: Some(g), .. }) = self else {
            return String::new();
        };
        let mut hit = String::new();
        let killed = g.oom_kills();
        if killed > 0 {
            hit.push_str(&format!(
                "; it used more than {} MiB of memory: {killed} process(es) killed (limit `instance-memory`)",
                instance_sandbox::INSTANCE_MEMORY >> 20
            ));
        }
        let refused = g.refused();
        if refused > 0 {
            hit.push_str(&format!(
                "; {refused} fork(s) past {} processes refused (limit `instance-processes`)",
                instance_sandbox::INSTANCE_PROCESSES
            ));
        }
        hit
    }

    fn factory(&self) -> Option<Arc<crate::netns::Factory>> {
        match self {
            Process::Plain(_) => None,
            Process::Sandboxed(s) => Some(s.factory.clone()),
        }
    }
}

fn spawn_plain(spec: &InstanceSpec, port: u16) -> std::io::Result<Child> {
    std::fs::create_dir_all(&spec.data_dir)?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.dir)
        .env_clear()
        .env("PATH", crate::confine::bwrap::DEFAULT_PATH)
        .envs(spec.env.iter().cloned())
        .env("PORT", port.to_string())
        .env("DATA_DIR", &spec.data_dir)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory shared with the parent. With it an instance dies with the
    // target process, so a killed target leaves no orphan on a port.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    log_to(&mut cmd, spec.log.as_deref())?;
    cmd.spawn()
}

async fn spawn(spec: &InstanceSpec, port: u16, isolation: &Isolation) -> std::io::Result<Process> {
    match isolation {
        Isolation::Unsandboxed => spawn_plain(spec, port).map(Process::Plain),
        Isolation::Sandboxed(sandbox) => sandbox
            .start(Launch {
                program: &spec.program,
                args: &spec.args,
                env: &spec.env,
                data_dir: &spec.data_dir,
                port,
                log: spec.log.as_deref(),
            })
            .await
            .map(Process::Sandboxed),
        Isolation::Refused(why) => Err(std::io::Error::other(why.clone())),
    }
}

/// Poll `GET path` until it answers 2xx (true), the child exits or the
/// time runs out (false).
async fn wait_ready(
    child: &mut Child,
    port: u16,
    path: &str,
    within: Duration,
) -> Result<(), Option<String>> {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + within;
    let Ok(uri) = format!("http://127.0.0.1:{port}{path}").parse::<hyper::Uri>() else {
        return Err(None);
    };
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Some(status.to_string()));
        }
        let answer = tokio::time::timeout(Duration::from_secs(1), client.get(uri.clone())).await;
        if let Ok(Ok(r)) = answer
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(None)
}

/// SIGTERM the program (the whole process group of a plain one; every
/// process inside a sandbox), then SIGKILL everything after `grace`.
async fn terminate(process: Process, grace: Duration) {
    let pid = process.pid();
    let leader = rustix::process::Pid::from_raw(pid as i32);
    match process {
        Process::Plain(mut child) => {
            if let Some(leader) = leader {
                let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::TERM);
                if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                    return;
                }
                let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
        }
        Process::Sandboxed(mut s) => {
            // bubblewrap itself would die of SIGTERM and take the sandbox
            // with it at once: only what runs inside is asked to stop.
            for inner in instance_sandbox::inside(pid as i32) {
                if let Some(inner) = rustix::process::Pid::from_raw(inner) {
                    let _ = rustix::process::kill_process(inner, rustix::process::Signal::TERM);
                }
            }
            if tokio::time::timeout(grace, s.child.wait()).await.is_err() {
                if let Some(leader) = leader {
                    let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
                }
                let _ = s.child.kill().await;
            }
            if let Some(group) = s.group.take() {
                group.close().await;
            }
        }
    }
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
        if let Isolation::Refused(why) = &self.isolation {
            return Err(StartError::Unsandboxed {
                service: spec.service,
                version: spec.version,
                why: why.clone(),
            });
        }
        // A sandboxed instance listens in its own namespace; the host's
        // side of its port is the relay, listening before it starts.
        let slot: Slot = Arc::new(Mutex::new(None));
        let (port, relay) = match &self.isolation {
            Isolation::Sandboxed(_) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(|e| cannot(&spec, e))?;
                let port = listener.local_addr().map_err(|e| cannot(&spec, e))?.port();
                let relay = tokio::spawn(instance_sandbox::relay(listener, port, slot.clone()));
                (port, Some(relay))
            }
            _ => (free_port().map_err(|e| cannot(&spec, e))?, None),
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

/// The ingress relay task, stopped with the instance.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// One instance, as its watcher holds it.
struct Watched {
    process: Process,
    spec: InstanceSpec,
    port: u16,
    id: String,
    /// The relay's way into the current process's namespace.
    slot: Slot,
    _relay: AbortOnDrop,
}

/// Keep one instance running: restart it when it exits on its own (out of
/// the router until it is ready again), stop it when told.
#[allow(clippy::too_many_arguments)]
async fn watch_over(
    mut w: Watched,
    router: Arc<Router>,
    timing: Timing,
    isolation: Isolation,
    restarts: Arc<AtomicU32>,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let id = w.id.clone();
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                terminate(w.process, timing.stop_grace).await;
                break;
            }
            status = w.process.child().wait() => {
                router.set_ready(&id, false);
                *w.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::warn!(
                    "instance {id} exited ({}{}); restarting",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    w.process.limits_hit()
                );
                let n = restarts.fetch_add(1, Ordering::SeqCst) + 1;
                if n > timing.max_restarts {
                    tracing::error!("instance {id} crashed {n} times; given up");
                    terminate(w.process, Duration::ZERO).await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(n.min(20)))).await;
                match spawn(&w.spec, w.port, &isolation).await {
                    Ok(next) => {
                        let old = std::mem::replace(&mut w.process, next);
                        terminate(old, Duration::ZERO).await;
                        pid.store(w.process.pid(), Ordering::SeqCst);
                        *w.slot.lock().unwrap_or_else(|p| p.into_inner()) = w.process.factory();
                        if wait_ready(w.process.child(), w.port, &w.spec.readiness_path, timing.ready_within).await.is_ok() {
                            router.set_ready(&id, true);
                        }
                    }
                    Err(e) => {
                        tracing::error!("instance {id} cannot be restarted: {e}");
                        terminate(w.process, Duration::ZERO).await;
                        break;
                    }
                }
            }
        }
    }
    let _ = done.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A Python HTTP server answering its VERSION on every path.
    fn spec(dir: &std::path::Path, version: &str) -> InstanceSpec {
        InstanceSpec {
            service: "web".into(),
            version: version.into(),
            program: PathBuf::from("python3"),
            args: vec![
                "-c".into(),
                r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["VERSION"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#
                .into(),
            ],
            env: vec![("VERSION".into(), version.into())],
            dir: dir.to_path_buf(),
            data_dir: dir.join("data"),
            readiness_path: "/healthz".into(),
            log: None,
        }
    }

    async fn get(port: u16) -> Option<String> {
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let r = client
            .get(format!("http://127.0.0.1:{port}/").parse().ok()?)
            .await
            .ok()?;
        let ok = r.status().is_success();
        let body = r.into_body().collect().await.ok()?.to_bytes();
        ok.then(|| String::from_utf8_lossy(&body).into_owned())
    }

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_when_ready_restarts_a_crash_and_stops_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(Timing {
            ready_within: Duration::from_secs(20),
            stop_grace: Duration::from_secs(2),
            max_restarts: 3,
        });
        let instance = sup.start(spec(dir.path(), "v1")).await.expect("ready");
        assert_eq!(get(instance.port).await.as_deref(), Some("v1"));
        let router = sup.router("web");
        router.set_weights(&[("v1".into(), 100)]);
        assert_eq!(sup.instances("web").len(), 1);

        // Killed from outside: it is restarted on the same port.
        let first = sup.pid(&instance.id).unwrap();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(first as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while (sup.pid(&instance.id) == Some(first) || get(instance.port).await.is_none())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(get(instance.port).await.as_deref(), Some("v1"), "restarted");
        assert_eq!(sup.instances("web")[0].restarts, 1);

        let second = sup.pid(&instance.id).unwrap();
        assert!(sup.stop(&instance.id).await);
        assert!(!alive(second), "the process is gone");
        assert!(sup.instances("web").is_empty());
        assert!(router.weights().contains_key("v1"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_program_that_exits_or_never_gets_ready_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(Timing {
            ready_within: Duration::from_millis(800),
            ..Timing::default()
        });
        let mut exits = spec(dir.path(), "bad");
        exits.args = vec!["-c".into(), "import sys; sys.exit(3)".into()];
        let e = sup.start(exits).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("exited before it was ready (exit status: 3)"),
            "{e}"
        );

        let mut sleeps = spec(dir.path(), "slow");
        sleeps.args = vec!["-c".into(), "import time; time.sleep(30)".into()];
        let e = sup.start(sleeps).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("was not ready within 0 s: GET /healthz never answered 2xx"),
            "{e}"
        );
    }
}
