//! Deployed instances inside bubblewrap, as programs run: an unprivileged
//! uid with no capabilities, a private `/proc`, `/dev`, bounded `/tmp` and
//! `/dev/shm`, the system directories and the harmless part of `/etc`
//! read-only (what the host keeps from other users hidden), the release
//! read-only at [`RELEASE`] and the service's own data directory writable
//! at [`DATA`]. Nothing else of the host is there: not the target's state
//! and token, not the other services, not another tenant's files.
//!
//! Each instance has a network namespace of its own with only loopback in
//! it, so it reaches neither the host's loopback listeners nor the cloud
//! metadata address nor anything else. Its one way in is the ingress
//! relay: the target listens on the host's 127.0.0.1:PORT, and hands each
//! connection to a socket connected, from inside the namespace (a
//! [`Factory`]), to the instance's own 127.0.0.1:PORT. It has no way out.
//!
//! Each runs in a cgroup of its own: at most [`INSTANCE_PROCESSES`]
//! processes and [`INSTANCE_MEMORY`] of memory (shared memory and
//! in-memory files included).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::process::{Child, Command};

use crate::confine::bwrap::{
    DEFAULT_PATH, ETC_ALLOWED, Masked, UNPRIVILEGED, mount_view, private_mounts, unreadable_in,
};
use crate::confine::cgroup::{self, ProgramGroup};
use crate::netns::Factory;

/// Where the release's files are, read-only, inside the sandbox.
pub const RELEASE: &str = "/release";
/// Where the service's data directory is, writable, inside the sandbox
/// (also in `DATA_DIR`).
pub const DATA: &str = "/data";
/// Processes one instance may have at once (limit `instance-processes`).
pub const INSTANCE_PROCESSES: u64 = 256;
/// Memory one instance may use, everything it starts included (limit
/// `instance-memory`).
pub const INSTANCE_MEMORY: u64 = 1 << 30;
/// Its private `/tmp`.
pub const INSTANCE_TMP: u64 = 256 << 20;
/// Its private `/dev/shm`.
pub const INSTANCE_SHM: u64 = 64 << 20;
/// Connections the ingress relay carries at once per instance; more wait
/// in the listener's backlog.
const RELAY_CONNECTIONS: usize = 1024;

/// How the target runs instances.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// As plain processes of the target's user: the unit tests, and a
    /// host without bubblewrap where weir is not root (with a warning).
    Unsandboxed,
    /// Inside bubblewrap.
    Sandboxed(Arc<InstanceSandbox>),
    /// Not at all, and why: weir runs as root and bubblewrap is missing,
    /// so an instance would be root on the host.
    Refused(String),
}

impl Isolation {
    /// What this host allows: bubblewrap where it works; else plain
    /// processes, but never as root.
    pub fn detect() -> Self {
        match crate::confine::bwrap::Sandbox::usable() {
            Ok(bwrap) => Isolation::Sandboxed(Arc::new(InstanceSandbox::new(bwrap))),
            Err(why) if rustix::process::geteuid().is_root() => Isolation::Refused(format!(
                "weir runs as root and instances run only inside bubblewrap, which cannot be used here: {why}"
            )),
            Err(why) => {
                tracing::warn!(
                    "deployed instances run without a sandbox, as this user, with the host's network: {why}"
                );
                Isolation::Unsandboxed
            }
        }
    }
}

/// bubblewrap, and what of the host an instance sees.
#[derive(Debug)]
pub struct InstanceSandbox {
    bwrap: PathBuf,
    /// The read-only view and what in it is hidden, found once.
    view: OnceLock<(Vec<PathBuf>, Vec<Masked>)>,
}

/// A started sandboxed instance: bubblewrap, the instance's cgroup and
/// the socket factory in its network namespace. Dropping it kills all
/// three.
pub struct Sandboxed {
    /// bubblewrap (the process group leader of everything inside).
    pub child: Child,
    /// Its namespace's socket factory, for the ingress relay.
    pub factory: Arc<Factory>,
    /// Its cgroup, when the host has one.
    pub group: Option<ProgramGroup>,
}

/// What the sandbox needs to know of one instance.
pub struct Launch<'a> {
    /// The program, a file in the release directory.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// Its variables (PATH, PORT and DATA_DIR are set here).
    pub env: &'a [(String, String)],
    /// The service's data directory on the host.
    pub data_dir: &'a Path,
    /// Its port, on its own loopback.
    pub port: u16,
    /// Where stdout and stderr go.
    pub log: Option<&'a Path>,
}

impl InstanceSandbox {
    /// Instances run by `bwrap`.
    pub fn new(bwrap: PathBuf) -> Self {
        Self {
            bwrap,
            view: OnceLock::new(),
        }
    }

    /// The system directories and allowed `/etc` entries, and what in
    /// them other users may not read (walked once: a slow first start).
    fn view(&self) -> &(Vec<PathBuf>, Vec<Masked>) {
        self.view.get_or_init(|| {
            let mut view: Vec<PathBuf> = weir_pipeline::sandbox::SYSTEM_DIRS
                .iter()
                .map(PathBuf::from)
                .collect();
            view.extend(ETC_ALLOWED.iter().map(|e| Path::new("/etc").join(e)));
            view.retain(|p| p.exists());
            let masked = unreadable_in(&view, Path::new("/nonexistent"));
            (view, masked)
        })
    }

    /// Start `launch` inside the sandbox; returns once its namespace is
    /// known (not once it is ready).
    pub async fn start(self: &Arc<Self>, launch: Launch<'_>) -> std::io::Result<Sandboxed> {
        let release = launch
            .program
            .parent()
            .ok_or_else(|| std::io::Error::other("the release has no directory"))?
            .to_path_buf();
        let name = launch
            .program
            .file_name()
            .ok_or_else(|| std::io::Error::other("the release has no file name"))?
            .to_owned();
        std::fs::create_dir_all(launch.data_dir)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.view();
        })
        .await
        .map_err(std::io::Error::other)?;
        let (view, masked) = self.view();

        let group = match ProgramGroup::create(INSTANCE_PROCESSES) {
            Ok(mut group) => match group.limit_memory(INSTANCE_MEMORY) {
                Ok(()) => Some(group),
                Err(cgroup::NoMemoryCgroup(why)) => {
                    warn_once(&format!(
                        "deployed instances run without a memory limit (instance-memory): {why}"
                    ));
                    Some(group)
                }
            },
            Err(why) => {
                warn_once(&format!(
                    "deployed instances run without process or memory limits (instance-processes, instance-memory): {why}"
                ));
                None
            }
        };

        let (info, info_child) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut c = Command::new(&self.bwrap);
        private_mounts(&mut c, INSTANCE_TMP, INSTANCE_SHM);
        mount_view(&mut c, view, masked);
        c.arg("--ro-bind").arg(&release).arg(RELEASE);
        c.arg("--bind").arg(launch.data_dir).arg(DATA);
        c.args(["--remount-ro", "/dev", "--remount-ro", "/"])
            .args(["--unshare-all", "--die-with-parent"])
            .args(UNPRIVILEGED)
            .arg("--info-fd")
            .arg(info_child.as_raw_fd().to_string())
            .args(["--chdir", RELEASE, "--"])
            .arg(Path::new(RELEASE).join(&name))
            .args(launch.args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(launch.env.iter().cloned())
            .env("PORT", launch.port.to_string())
            .env("DATA_DIR", DATA)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        super::supervisor::log_to(&mut c, launch.log)?;
        let procs = group.as_ref().map(ProgramGroup::procs);
        let info_fd = info_child.as_raw_fd();
        // SAFETY: only async-signal-safe calls (setsid, prctl, open,
        // write, close, fcntl) between fork and exec, touching no memory
        // shared with the parent.
        unsafe {
            c.pre_exec(move || {
                // A session of its own, with no controlling terminal (no
                // TIOCSTI into the operator's shell), and one process group
                // that holds everything inside.
                rustix::process::setsid().map_err(std::io::Error::from)?;
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                    .map_err(std::io::Error::from)?;
                if let Some(procs) = &procs {
                    cgroup::join(procs)?;
                }
                if libc::fcntl(info_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn()?;
        drop(info_child);
        let factory = enter(info).await.map_err(|e| {
            std::io::Error::other(format!(
                "the instance's sandbox did not start ({e}); bubblewrap's own error is in the service's log"
            ))
        })?;
        Ok(Sandboxed {
            child,
            factory: Arc::new(factory),
            group,
        })
    }
}

/// The factory in the namespace of the sandbox bubblewrap reports on
/// `info`.
async fn enter(info: OwnedFd) -> std::io::Result<Factory> {
    tokio::task::spawn_blocking(move || {
        let pid = crate::confine::bwrap::sandbox_pid(std::fs::File::from(info))?;
        Factory::enter(pid)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn warn_once(message: &str) {
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.iter().any(|s| s == message) {
        tracing::warn!("{message}");
        said.push(message.to_string());
    }
}

/// The factory the relay connects through; replaced on each restart.
pub type Slot = Arc<Mutex<Option<Arc<Factory>>>>;

/// Carry each connection to the host's `listener` to the instance's own
/// 127.0.0.1:`port`, through whichever factory `slot` holds; a connection
/// that comes while the instance is down (or full) is closed.
pub async fn relay(listener: tokio::net::TcpListener, port: u16, slot: Slot) {
    let permits = Arc::new(tokio::sync::Semaphore::new(RELAY_CONNECTIONS));
    loop {
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let mut inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, most likely: wait, do not spin.
                tracing::warn!("instance relay on port {port}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let factory = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(factory) = factory else { continue };
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(outbound)) = tokio::task::spawn_blocking(move || factory.connect(port)).await else {
                return;
            };
            let Ok(mut outbound) = outbound
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(outbound))
            else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// The processes inside the sandbox that bubblewrap `leader` leads,
/// other than bubblewrap and the sandbox's own init (which ignores
/// SIGTERM): those a graceful stop signals.
pub fn inside(leader: i32) -> Vec<i32> {
    if leader <= 1 {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != leader)
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command name: state ppid pgrp …
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace().skip(1);
            let ppid: Option<i32> = fields.next().and_then(|f| f.parse().ok());
            let pgrp: Option<i32> = fields.next().and_then(|f| f.parse().ok());
            pgrp == Some(leader) && ppid != Some(leader)
        })
        .collect()
}
