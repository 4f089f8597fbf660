//! Instances that are containers: the target runs a container release
//! through the `podman` program, one attached `podman run` per instance,
//! so the supervisor watches, restarts and stops it as it does a process.
//! The container publishes its port on a loopback port of the target's
//! choosing and sits behind the same router; nothing above the supervisor
//! knows the difference.
//!
//! Each container gets these limits and defaults, whatever its image says:
//! an init as PID 1 (`--init`, so SIGTERM stops it), the user nobody
//! (65534:65534, whatever user the image names), no capabilities (`--cap-drop=all`), `no-new-privileges`, a read-only
//! root (tmpfs on `/tmp`, `/run`), `--pids-limit` (256 unless `with`
//! says), `--memory` (512 MiB unless `with` says), `--cpus` when given,
//! and explicit `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`.
//!
//! Podman's own settings are detected once ([`Podman::detect`]):
//! `--cgroup-manager=cgroupfs` where systemd does not run, and `--runtime
//! runc` where cgroups are in hybrid mode (v1 with a v2 mount beside it),
//! which crun refuses. `WEIR_PODMAN_ARGS` replaces what was detected;
//! `WEIR_PODMAN` names the program.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// Memory a container gets when `with` does not say.
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// Processes a container may run when `with` does not say.
pub const DEFAULT_PIDS: u32 = 256;
/// Longest wait for an image to be pulled.
pub const PULL_WITHIN: Duration = Duration::from_secs(300);
/// The label every container of a target carries (its key).
pub const TARGET_LABEL: &str = "weir.target";

/// How to run a release as containers: part of the release's record, so
/// a rollback starts exactly this image again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLaunch {
    /// `REGISTRY/REPOSITORY@sha256:HEX`.
    pub image: String,
    /// The port it listens on inside.
    pub port: u16,
    /// Most memory, bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Most CPU, thousandths of a core.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    /// Most processes.
    #[serde(default)]
    pub pids: Option<u32>,
    /// Whether podman checks the registry's certificate (false: plain
    /// HTTP or an unchecked one).
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

fn yes() -> bool {
    true
}

/// Most memory a container may be given.
pub const MAX_MEMORY: u64 = 16 << 30;
/// Most processes a container may be given.
pub const MAX_PIDS: u32 = 4096;
/// CPU a container gets when `with` does not say: one core.
pub const DEFAULT_CPU_MILLIS: u32 = 1000;

/// The registry of `image` (`host[:port]`), when `image` is a registry
/// reference and nothing else: no transport (`docker-archive:`, `oci:`,
/// `dir:`, `containers-storage:` and the like name files or stores on
/// the host), a host with a dot, a port or `localhost`, a lower-case
/// repository path and a sha256 digest. What is wrong otherwise.
pub fn registry_of(image: &str) -> Result<&str, String> {
    let bad = |why: &str| {
        format!(
            "the image `{image}` is not a registry reference pinned by digest ({why}): write REGISTRY/REPOSITORY@sha256:HEX, the oci-image stage's `image` output, so a rollback runs exactly what was checked"
        )
    };
    let (name, digest) = image
        .split_once("@sha256:")
        .ok_or_else(|| bad("no @sha256: digest"))?;
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("a digest is 64 lower-case hex digits"));
    }
    let (host, path) = name.split_once('/').ok_or_else(|| bad("no registry host"))?;
    let (hostname, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "a registry's port is digits; a transport such as `oci:` is not taken",
        ));
    }
    let host_ok = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !hostname.starts_with(['-', '.'])
        && (hostname.contains('.') || port.is_some() || hostname == "localhost");
    if !host_ok {
        return Err(bad(
            "the part before the first `/` must be a registry host, with a dot, a port or `localhost`",
        ));
    }
    let path_ok = path.len() <= 255
        && path.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        });
    if !path_ok {
        return Err(bad(
            "a repository is lower-case letters, digits, `.`, `_`, `-` and `/`, with no tag",
        ));
    }
    Ok(host)
}

/// Whether a registry (`host[:port]`) is this machine.
pub fn loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    matches!(host, "localhost" | "127.0.0.1")
}

/// What is wrong with a container release.
pub fn check(launch: &ContainerLaunch) -> Result<(), String> {
    let registry = registry_of(&launch.image)?;
    if !launch.tls_verify && !loopback(registry) {
        return Err(format!(
            "`tls-verify = false` is taken only for a registry on this machine (127.0.0.1 or localhost), not {registry}: give podman the registry's CA instead (/etc/containers/certs.d/{registry}/ca.crt)"
        ));
    }
    if launch.port == 0 {
        return Err("a container's `port` (the one it listens on inside) must be 1 to 65535".into());
    }
    match launch.memory_bytes {
        Some(m) if m < 6 << 20 => {
            return Err("a container's `memory` must be at least 6 MiB (podman's floor)".into());
        }
        Some(m) if m > MAX_MEMORY => {
            return Err(format!(
                "a container's `memory` may be at most {} GiB (limit `container-memory`)",
                MAX_MEMORY >> 30
            ));
        }
        _ => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    match launch.cpu_millis {
        Some(0) => return Err("a container's `cpus` must be above zero".into()),
        Some(c) if c > cores * 1000 => {
            return Err(format!(
                "a container's `cpus` may be at most {cores}, the cores of this machine (limit `container-cpus`)"
            ));
        }
        _ => {}
    }
    match launch.pids {
        Some(0) => return Err("a container's `pids` must be above zero".into()),
        Some(p) if p > MAX_PIDS => {
            return Err(format!(
                "a container's `pids` may be at most {MAX_PIDS} (limit `container-processes`)"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The podman program and the global options this machine needs.
#[derive(Debug, Clone)]
pub struct Podman {
    program: PathBuf,
    global: Vec<String>,
}

impl Podman {
    /// The podman of this machine, found and set up once.
    pub fn get() -> Result<&'static Podman, String> {
        static ONE: OnceLock<Result<Podman, String>> = OnceLock::new();
        ONE.get_or_init(Self::detect).as_ref().map_err(Clone::clone)
    }

    /// Find podman and the options this machine needs (module docs).
    pub fn detect() -> Result<Podman, String> {
        let program = match std::env::var_os("WEIR_PODMAN") {
            Some(p) => PathBuf::from(p),
            None => find("podman").ok_or_else(|| {
                "podman is not installed: the container deployer runs releases as podman containers (Debian: apt-get install podman runc)"
                    .to_string()
            })?,
        };
        let global = match std::env::var("WEIR_PODMAN_ARGS") {
            Ok(args) => args.split_whitespace().map(str::to_string).collect(),
            Err(_) => detected_options(
                Path::new("/run/systemd/system").exists(),
                Path::new("/sys/fs/cgroup/unified").is_dir()
                    && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
                find("runc").is_some(),
            ),
        };
        Ok(Podman { program, global })
    }

    /// The global options in use, for the target's log.
    pub fn options(&self) -> String {
        format!("{} {}", self.program.display(), self.global.join(" "))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global)
            .env_clear()
            .env("PATH", crate::confine::bwrap::DEFAULT_PATH)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // What podman reads of its caller's environment: its own
        // configuration and, rootless, the user's runtime directory.
        for k in [
            "HOME",
            "USER",
            "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME",
            "CONTAINERS_CONF",
            "CONTAINERS_REGISTRIES_CONF",
            "REGISTRY_AUTH_FILE",
            "TMPDIR",
        ] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd
    }

    /// Run `args`, up to `within`; its output, or what it said on failure.
    async fn output(&self, args: &[&str], within: Duration) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = format!("podman {}", args.first().copied().unwrap_or_default());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        match tokio::time::timeout(within, child.wait_with_output()).await {
            Err(_) => Err(format!("{what} took longer than {} s", within.as_secs())),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Ok(Ok(out)) => {
                let said = String::from_utf8_lossy(&out.stderr);
                let last: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
                let tail = last[last.len().saturating_sub(3)..].join("; ");
                Err(format!("{what} failed ({}): {tail}", out.status))
            }
        }
    }

    /// Make sure the image is here: pulled (by its digest) unless it is.
    pub async fn pull(&self, launch: &ContainerLaunch) -> Result<(), String> {
        if self
            .output(&["image", "exists", &launch.image], Duration::from_secs(30))
            .await
            .is_ok()
        {
            return Ok(());
        }
        let tls = format!("--tls-verify={}", launch.tls_verify);
        self.output(&["pull", "--quiet", &tls, &launch.image], PULL_WITHIN)
            .await
            .map(drop)
            .map_err(|e| format!("cannot pull {}: {e}", launch.image))
    }

    /// Start container `name` in the foreground (its child is `podman
    /// run`, which lives as long as the container), publishing `inside`
    /// on 127.0.0.1:`port`.
    pub fn run(&self, run: &Run<'_>) -> std::io::Result<Child> {
        let l = run.launch;
        let mut cmd = self.command();
        cmd.arg("run").args(run_args(run));
        cmd.arg(&l.image);
        super::supervisor::log_to(&mut cmd, run.log)?;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory shared with the parent. The podman client then dies
        // with the target; the container lives on until the next target
        // removes it (remove_all) before it starts the stable release.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                    .map_err(std::io::Error::from)
            });
        }
        cmd.spawn()
    }

    /// The host pid of container `name`'s first process, once it runs;
    /// an error if `child` (its `podman run`) ends first or `within` passes.
    pub async fn pid_of(&self, name: &str, child: &mut Child, within: Duration) -> std::io::Result<u32> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "podman run ended ({status}) before the container ran"
                )));
            }
            if let Ok(out) = self
                .output(
                    &["inspect", "--format", "{{.State.Pid}}", name],
                    Duration::from_secs(10),
                )
                .await
                && let Ok(pid) = out.trim().parse::<u32>()
                && pid > 0
            {
                return Ok(pid);
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "container {name} did not start within {} s",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop container `name`: SIGTERM, SIGKILL after `grace`, removed.
    pub async fn stop(&self, name: &str, grace: Duration) {
        let secs = grace.as_secs().to_string();
        let within = grace + Duration::from_secs(20);
        if let Err(e) = self
            .output(&["stop", "--ignore", "-t", &secs, name], within)
            .await
        {
            tracing::warn!("{e}");
        }
        let _ = self
            .output(
                &["rm", "--force", "--ignore", "-t", "0", name],
                Duration::from_secs(20),
            )
            .await;
    }

    /// Remove every container of target `key` (those a target that died
    /// left behind); how many there were.
    pub async fn remove_all(&self, key: &str) -> Result<usize, String> {
        let filter = format!("label={TARGET_LABEL}={key}");
        let ids = self
            .output(
                &["ps", "--all", "--quiet", "--filter", &filter],
                Duration::from_secs(30),
            )
            .await?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args = vec!["rm", "--force", "--ignore", "-t", "0"];
        args.extend(ids.iter().copied());
        self.output(&args, Duration::from_secs(60)).await?;
        Ok(ids.len())
    }
}

/// One container to run.
pub struct Run<'a> {
    /// Its name.
    pub name: &'a str,
    /// The target's key ([`TARGET_LABEL`]).
    pub key: &'a str,
    /// The service.
    pub service: &'a str,
    /// The version.
    pub version: &'a str,
    /// What to run.
    pub launch: &'a ContainerLaunch,
    /// Its `--env-file` (see [`env_file`]), if it has an environment.
    pub env_file: Option<&'a Path>,
    /// Where podman's output goes.
    pub log: Option<&'a Path>,
}

/// `podman run`'s options for `run`, without the image.
pub fn run_args(run: &Run<'_>) -> Vec<String> {
    let l = run.launch;
    let mut a: Vec<String> = vec![
        "--rm".into(),
        "--replace".into(),
        format!("--name={}", run.name),
        format!("--label={TARGET_LABEL}={}", run.key),
        format!("--label=weir.service={}", run.service),
        format!("--label=weir.version={}", run.version),
        "--pull=missing".into(),
        // A tiny init as PID 1 passes SIGTERM on: a program that sets no
        // handler then stops at once instead of after the grace period.
        "--init".into(),
        format!("--tls-verify={}", l.tls_verify),
        // No network but its own loopback: the target's relay reaches the
        // container's port from inside its namespace, as it does a
        // sandboxed process's; the container reaches nothing.
        "--network=none".into(),
        "--no-healthcheck".into(),
        // An image's VOLUMEs become memory, not directories on the host.
        "--image-volume=tmpfs".into(),
        // Never root: not even a root inside a user namespace, since a
        // rootful podman maps none.
        "--user=65534:65534".into(),
        "--cap-drop=all".into(),
        "--security-opt=no-new-privileges".into(),
        "--read-only".into(),
        "--ulimit=nofile=1024:1024".into(),
        "--ulimit=nproc=1024:1024".into(),
        format!("--memory={}", l.memory_bytes.unwrap_or(DEFAULT_MEMORY)),
        // No swap beyond the memory limit.
        format!("--memory-swap={}", l.memory_bytes.unwrap_or(DEFAULT_MEMORY)),
        format!("--pids-limit={}", l.pids.unwrap_or(DEFAULT_PIDS)),
    ];
    let m = l.cpu_millis.unwrap_or(DEFAULT_CPU_MILLIS);
    a.push(format!("--cpus={}.{:03}", m / 1000, m % 1000));
    // The environment comes from a file only the target can read, not the
    // command line, which every process on the host can.
    if let Some(file) = run.env_file {
        a.push(format!("--env-file={}", file.display()));
    }
    a
}

/// The environment as an `--env-file`: one `KEY=VALUE` a line, so a
/// value may not hold a line break.
pub fn env_file(env: &[(String, String)]) -> Result<String, String> {
    let mut text = String::new();
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\n', '\0', '*']) || v.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "the variable `{}` cannot be given to a container: names have no `=` or `*`, values no line breaks",
                k.escape_debug()
            ));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(text)
}

fn detected_options(systemd: bool, hybrid_cgroups: bool, runc: bool) -> Vec<String> {
    let mut global = Vec::new();
    if !systemd {
        global.push("--cgroup-manager=cgroupfs".to_string());
    }
    if hybrid_cgroups && runc {
        global.push("--runtime=runc".to_string());
    }
    global
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The key of the target in `dir`: its containers carry it.
pub fn target_key(dir: &Path) -> String {
    use sha2::Digest;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(image: &str) -> ContainerLaunch {
        ContainerLaunch {
            image: image.into(),
            port: 8080,
            memory_bytes: None,
            cpu_millis: Some(500),
            pids: None,
            tls_verify: false,
        }
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_a_registry_reference_pinned_by_digest_is_taken() {
        assert!(check(&launch(&format!("127.0.0.1:5000/quickstart@sha256:{DIGEST}"))).is_ok());
        assert!(check(&launch(&format!("localhost/team/web@sha256:{DIGEST}"))).is_ok());
        for bad in [
            "127.0.0.1:5000/quickstart:latest".to_string(),
            format!("127.0.0.1:5000/Quick@sha256:{DIGEST}"),
            format!("--privileged@sha256:{DIGEST}"),
            "127.0.0.1:5000/q@sha256:abc".to_string(),
            format!("q w@sha256:{DIGEST}"),
            format!("docker-archive:/tmp/x@sha256:{DIGEST}"),
            format!("oci:/var/lib/x@sha256:{DIGEST}"),
            format!("dir:/etc@sha256:{DIGEST}"),
            format!("containers-storage:web@sha256:{DIGEST}"),
            format!("web/app@sha256:{DIGEST}"),
            format!("127.0.0.1:5000/app:v1@sha256:{DIGEST}"),
        ] {
            assert!(check(&launch(&bad)).is_err(), "{bad}");
        }
        let mut no_port = launch(&format!("r.example/q@sha256:{DIGEST}"));
        no_port.tls_verify = true;
        no_port.port = 0;
        assert!(check(&no_port).is_err());
        // Unchecked TLS only on this machine.
        assert!(check(&launch(&format!("ghcr.io/acme/web@sha256:{DIGEST}"))).is_err());
        let mut big = launch(&format!("127.0.0.1:5000/q@sha256:{DIGEST}"));
        big.memory_bytes = Some(MAX_MEMORY + 1);
        assert!(check(&big).is_err());
        big.memory_bytes = None;
        big.pids = Some(MAX_PIDS + 1);
        assert!(check(&big).is_err());
    }

    #[test]
    fn options_follow_the_machine_and_limits_are_always_explicit() {
        assert_eq!(
            detected_options(false, true, true),
            ["--cgroup-manager=cgroupfs", "--runtime=runc"]
        );
        assert!(detected_options(true, false, true).is_empty());
        assert_eq!(detected_options(true, true, false), Vec::<String>::new());
        let l = launch(&format!("127.0.0.1:5000/q@sha256:{DIGEST}"));
        let file = std::path::PathBuf::from("/t/run/env");
        let args = run_args(&Run {
            name: "weir-k-web-v1-1",
            key: "k",
            service: "web",
            version: "v1",
            launch: &l,
            env_file: Some(&file),
            log: None,
        });
        for want in [
            "--network=none",
            "--cap-drop=all",
            "--user=65534:65534",
            "--ulimit=nofile=1024:1024",
            "--ulimit=nproc=1024:1024",
            "--memory=536870912",
            "--memory-swap=536870912",
            "--pids-limit=256",
            "--cpus=0.500",
            "--env-file=/t/run/env",
            "--tls-verify=false",
            "--label=weir.target=k",
            "--image-volume=tmpfs",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--publish")), "{args:?}");
    }

    #[test]
    fn the_environment_file_refuses_what_would_split_a_line() {
        let ok = env_file(&[("MODE".into(), "a b=c".into())]).expect("fine");
        assert_eq!(ok, "MODE=a b=c\n");
        assert!(env_file(&[("MODE".into(), "a\nEVIL=1".into())]).is_err());
        assert!(env_file(&[("A=B".into(), "x".into())]).is_err());
        assert!(env_file(&[("GLOB*".into(), "x".into())]).is_err());
    }
}
