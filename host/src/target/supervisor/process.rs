//! An instance's process: spawned plain or isolated, waited on until
//! ready, and ended with SIGTERM then SIGKILL to its group.

use super::*;
use std::os::unix::fs::OpenOptionsExt;

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Send the command's stdout and stderr to `log` (appended), or nowhere.
pub(crate) fn log_to(cmd: &mut Command, log: Option<&std::path::Path>) -> std::io::Result<()> {
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
pub(super) enum Process {
    /// A plain child process, in a process group of its own.
    Plain(Child),
    /// bubblewrap with the program inside.
    Sandboxed(Sandboxed),
    /// `podman run` in the foreground, as long as its container runs.
    Container {
        /// The podman client.
        child: Child,
        /// The container's name.
        name: String,
        /// Sockets in its network namespace, for the relay.
        factory: Arc<crate::netns::Factory>,
    },
}

impl Process {
    pub(super) fn child(&mut self) -> &mut Child {
        match self {
            Process::Plain(c) | Process::Container { child: c, .. } => c,
            Process::Sandboxed(s) => &mut s.child,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        match self {
            Process::Plain(c) | Process::Container { child: c, .. } => c.id(),
            Process::Sandboxed(s) => s.child.id(),
        }
        .unwrap_or(0)
    }

    /// The limits its cgroup held it to so far, named, for the reason it
    /// exited: empty when none was hit.
    pub(super) fn limits_hit(&self) -> String {
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

    pub(super) fn factory(&self) -> Option<Arc<crate::netns::Factory>> {
        match self {
            Process::Plain(_) => None,
            Process::Container { factory, .. } => Some(factory.clone()),
            Process::Sandboxed(s) => Some(s.factory.clone()),
        }
    }
}

pub(super) fn spawn_plain(spec: &InstanceSpec, port: u16) -> std::io::Result<Child> {
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

pub(super) async fn spawn(spec: &InstanceSpec, port: u16, isolation: &Isolation) -> std::io::Result<Process> {
    if let Some(c) = &spec.container {
        return spawn_container(spec, c).await;
    }
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

/// Start `c` under podman, with a name of its own (a restart is a new
/// container, so stopping the one before never touches it), and make the
/// relay's factory in its network namespace once it runs.
async fn spawn_container(spec: &InstanceSpec, c: &ContainerSpec) -> std::io::Result<Process> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let podman = super::super::podman::Podman::get().map_err(std::io::Error::other)?;
    let name = format!(
        "weir-{}-{}-{}-{}-{}",
        c.key,
        spec.service,
        spec.version,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let env_file = if spec.env.is_empty() {
        None
    } else {
        let text = super::super::podman::env_file(&spec.env).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&c.env_dir)?;
        std::fs::set_permissions(&c.env_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let path = c.env_dir.join(format!("{name}.env"));
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        Some(path)
    };
    let started = podman.run(&super::super::podman::Run {
        name: &name,
        key: &c.key,
        service: &spec.service,
        version: &spec.version,
        launch: &c.launch,
        env_file: env_file.as_deref(),
        log: spec.log.as_deref(),
    });
    let running = match started {
        Ok(mut child) => match podman.pid_of(&name, &mut child, Duration::from_secs(60)).await {
            Ok(pid) => crate::netns::Factory::enter(pid).map(|f| (child, f)),
            Err(e) => {
                let _ = child.kill().await;
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    // podman has read it by the time the container runs.
    if let Some(path) = &env_file {
        let _ = std::fs::remove_file(path);
    }
    let (child, factory) = match running {
        Ok(r) => r,
        Err(e) => {
            podman.stop(&name, Duration::ZERO).await;
            return Err(e);
        }
    };
    Ok(Process::Container {
        child,
        name,
        factory: Arc::new(factory),
    })
}

/// Poll `GET path` until it answers 2xx (true), the child exits or the
/// time runs out (false).
pub(super) async fn wait_ready(
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
pub(super) async fn terminate(process: Process, grace: Duration) {
    let pid = process.pid();
    let leader = rustix::process::Pid::from_raw(pid as i32);
    match process {
        Process::Container { mut child, name, .. } => {
            if let Ok(podman) = super::super::podman::Podman::get() {
                podman.stop(&name, grace).await;
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
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
