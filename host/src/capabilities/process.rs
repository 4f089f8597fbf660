//! The `process` import: run a program in the workspace.
//!
//! Two keys, both required: the plugin's manifest declares `process`, and
//! the stage's `allow = { exec = [...] }` names the program. Then:
//! - the environment is cleared: the program sees `PATH` (the stage's, or
//!   a system default), the variables the stage declares, and the extras
//!   the plugin passes for this call;
//! - the working directory must resolve inside the workspace (no `..`,
//!   no absolute path, no symlink out);
//! - it runs in its own process group, with rlimits (CPU time, open files,
//!   processes, file size), and a timeout (the call's, capped by what is
//!   left of the stage's) that sends SIGTERM to the group, then SIGKILL;
//! - stdout and stderr stream line by line into the stage's log while it
//!   runs, and what is returned is cut at [`ProcessLimits::output_bytes`]
//!   (the cut is flagged and logged, never silent);
//! - where bubblewrap is installed, inside it: the workspace read-write,
//!   system directories and an allow-list of `/etc` read-only, with
//!   everything in them other users may not read hidden
//!   ([`unreadable_in`]), no network unless the stage grants
//!   `allow.network`, a new session, killed with its parent. A stage can
//!   opt out with `sandbox = "none"`.
//!
//! Dropping the call (the stage timed out or the run was cancelled) kills
//! the program's whole process group.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use super::log::{LogBudget, MAX_LINE_BYTES, emit_line, emit_notice};
use super::tape::{self, Tape};
use crate::bindings::host::weir::plugin::process::{Command, Exit, Host};
use crate::bindings::host::weir::plugin::types::HostError;
use crate::confine::cgroup::ProgramGroup;
use crate::engine::limits::DEFAULT_PROCESSES;
use crate::events::{EventSink, Level};
use crate::plan::Grants;

use weir_pipeline::sandbox::SYSTEM_DIRS;

pub use crate::confine::bwrap::{
    DEFAULT_PATH, ETC_ALLOWED, Masked, SHM_BYTES, Sandbox, TMP_BYTES, UNPRIVILEGED, find_program, mount_view,
    private_mounts, sandbox_pid, unreadable_in,
};

/// Notices (limit hits, kills) one stage may emit; past that they are
/// dropped, so a plugin cannot flood the event stream through them.
const MAX_NOTICES: usize = 32;

/// How long to wait for output to end after SIGKILL: a process that left
/// the group (possible without bubblewrap) may hold the pipes open.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// How long a program has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// Limits on one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Bytes of stdout (and, separately, stderr) returned to the plugin.
    pub output_bytes: usize,
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_seconds: u64,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Processes of the user (RLIMIT_NPROC; not enforced for root).
    pub processes: u64,
    /// Largest file it may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// Data (heap) bytes per process (RLIMIT_DATA), if limited.
    pub data_bytes: Option<u64>,
    /// Processes and threads at once, in the program's pids cgroup: the
    /// tenant's `limits.processes` (required), or `None` for
    /// [`DEFAULT_PROCESSES`] where the host has a pids cgroup.
    pub pids: Option<u64>,
    /// Bytes of memory the program and all it starts may use at once, in
    /// their memory cgroup (shared memory and the sandbox's in-memory
    /// `/tmp` and `/dev/shm` included): the tenant's
    /// `limits.program-memory`, if set.
    pub memory_bytes: Option<u64>,
    /// The tenant's `limits.disk`, which bounds the sandbox's in-memory
    /// filesystems too.
    pub disk_bytes: Option<u64>,
}

impl ProcessLimits {
    /// The limits of a Store's programs: its output size, and the
    /// tenant's program memory, disk and process limits.
    pub fn for_store(limits: &crate::engine::StageLimits) -> Self {
        Self {
            output_bytes: limits.output_bytes,
            data_bytes: limits.program_memory,
            memory_bytes: limits.program_memory,
            disk_bytes: limits.disk_bytes,
            pids: limits.processes,
            ..Self::default()
        }
    }

    /// The sizes of the sandbox's `/tmp` and `/dev/shm`: their defaults,
    /// each at most the tenant's disk limit.
    pub fn tmpfs_sizes(&self) -> (u64, u64) {
        let cap = |n: u64| self.disk_bytes.map_or(n, |d| d.min(n)).max(4096);
        (cap(TMP_BYTES), cap(SHM_BYTES))
    }
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            output_bytes: 1 << 20,
            cpu_seconds: 3600,
            open_files: 4096,
            processes: 4096,
            file_bytes: 8 << 30,
            data_bytes: None,
            pids: None,
            memory_bytes: None,
            disk_bytes: None,
        }
    }
}

/// Per-Store state of the `process` import.
pub struct ProcessCtx {
    /// The stage, tenant and plugin, for messages.
    pub stage: String,
    /// The tenant.
    pub tenant: String,
    /// The plugin.
    pub plugin: String,
    /// Whether the plugin's manifest declares `process`.
    pub declared: bool,
    /// What the stage grants.
    pub grants: Grants,
    /// The workspace on the host (canonical).
    pub workspace: PathBuf,
    /// The stage's declared environment.
    pub env: Vec<(String, String)>,
    /// When the stage attempt must end.
    pub deadline: Instant,
    /// Bubblewrap or not.
    pub sandbox: Sandbox,
    /// Limits per program.
    pub limits: ProcessLimits,
    /// Where output lines go.
    pub sink: EventSink,
    /// The stage's log budget.
    pub budget: LogBudget,
    /// Notices emitted so far (see [`MAX_NOTICES`]).
    pub notices: std::sync::atomic::AtomicUsize,
    /// Whether the "no bubblewrap" warning was given.
    pub warned_unsandboxed: std::sync::atomic::AtomicBool,
    /// Whether the missing pids cgroup was reported.
    pub warned_no_pids: std::sync::atomic::AtomicBool,
    /// Where calls are recorded (or, in replay, answered from).
    pub tape: Tape,
    /// The secrets the Store opened: placeholders in `env` values become
    /// values, and values in the output become `***`.
    pub secrets: super::secrets::Opened,
}

impl super::Gated for ProcessCtx {
    const GATE: super::Gate = super::Gate {
        interface: "weir:plugin/process",
        capability: crate::bindings::types::Capability::Process,
        declared_as: "process",
        grant_hint: "allow = { exec = [\"PROGRAM\"] }",
    };

    fn granted(grants: &Grants) -> bool {
        !grants.exec.is_empty()
    }

    fn new(facts: &super::Facts<'_>) -> Self {
        Self {
            stage: facts.stage.to_string(),
            tenant: facts.tenant.to_string(),
            plugin: facts.plugin.to_string(),
            declared: facts.declares(Self::GATE.capability),
            grants: facts.grants.clone(),
            workspace: facts.workspace.to_path_buf(),
            env: facts.env.to_vec(),
            deadline: facts.deadline,
            sandbox: facts.sandbox.clone(),
            limits: facts.program_limits,
            sink: facts.sink.clone(),
            budget: facts.budget.clone(),
            notices: std::sync::atomic::AtomicUsize::new(0),
            warned_unsandboxed: std::sync::atomic::AtomicBool::new(false),
            warned_no_pids: std::sync::atomic::AtomicBool::new(false),
            tape: facts.tape.clone(),
            secrets: facts.opened.clone(),
        }
    }

    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static,
    {
        crate::bindings::host::weir::plugin::process::add_to_linker::<_, wasmtime::component::HasSelf<Self>>(
            linker, get,
        )
    }
}

impl Host for ProcessCtx {
    async fn run(&mut self, cmd: Command) -> Result<Exit, HostError> {
        let request = command_json(&cmd);
        if let Some(answer) = self.tape.answer("process.run", &request) {
            return exit_of(&answer);
        }
        let result = match self.prepare(&cmd) {
            Ok(prepared) => self.execute(cmd, prepared).await.map(|mut exit| {
                let mask = |bytes: Vec<u8>, cut: bool| match cut {
                    true => self.secrets.mask_cut(bytes),
                    false => self.secrets.mask(bytes),
                };
                exit.stdout = mask(std::mem::take(&mut exit.stdout), exit.stdout_truncated);
                exit.stderr = mask(std::mem::take(&mut exit.stderr), exit.stderr_truncated);
                exit
            }),
            Err(e) => Err(e),
        };
        let answer = match &result {
            Ok(exit) => exit_json(exit),
            Err(e) => tape::error_answer(e),
        };
        self.tape.record("process.run", request, answer);
        result
    }
}

/// The two pipes between weir and a bubblewrap whose namespace gets the
/// egress proxy: bubblewrap writes its child's pid to `info`, and waits
/// to read a byte from `block`. Both are close-on-exec here; the child's
/// ends are made inheritable only in the forked bubblewrap.
struct NamespacePipes {
    /// Read: bubblewrap's JSON with `child-pid`.
    info: std::os::fd::OwnedFd,
    /// bubblewrap's end of `info`.
    info_child: std::os::fd::OwnedFd,
    /// Write: one byte lets bubblewrap go on.
    block: std::os::fd::OwnedFd,
    /// bubblewrap's end of `block`.
    block_child: std::os::fd::OwnedFd,
}

impl NamespacePipes {
    fn new() -> std::io::Result<Self> {
        let (info, info_child) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (block_child, block) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Self {
            info,
            info_child,
            block,
            block_child,
        })
    }

    fn child_ends(&self) -> [std::os::fd::RawFd; 2] {
        use std::os::fd::AsRawFd;
        [self.info_child.as_raw_fd(), self.block_child.as_raw_fd()]
    }
}

/// Why running `program` with `args` would run something the stage was
/// not granted, if it would: `env PROG` runs PROG (so PROG must be granted
/// too; `env -S` is refused outright), and git's global options that name
/// a command to run (`-c`, `--config-env`, `--exec-path`,
/// `--upload-pack`, `--receive-pack`) are refused. What a granted program
/// does on its own, from files in the workspace, is bounded by the sandbox
/// it runs in, not by this list.
pub fn smuggled(program: &str, args: &[String], granted: &[String]) -> Option<String> {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "env" => {
            let mut i = 0;
            while let Some(a) = args.get(i) {
                match a.as_str() {
                    "-S" | "--split-string" => {
                        return Some(
                            "`env -S` splits a string into a command line; run the program itself".into(),
                        );
                    }
                    _ if a.starts_with("-S") || a.starts_with("--split-string=") => {
                        return Some(
                            "`env -S` splits a string into a command line; run the program itself".into(),
                        );
                    }
                    "-u" | "--unset" | "-C" | "--chdir" => i += 2,
                    "--" => {
                        i += 1;
                        break;
                    }
                    _ if a.starts_with('-') || a.contains('=') => i += 1,
                    _ => break,
                }
            }
            let target = args.get(i)?;
            let target_name = target.rsplit('/').next().unwrap_or(target);
            (!granted.iter().any(|g| g == target || g == target_name)).then(|| {
                format!("`env` would run `{target}`, which is not granted; grant it with allow = {{ exec = [\"{target_name}\"] }}")
            })
        }
        "git" => {
            // Global options, before the subcommand. `-c KEY=VALUE` may only
            // set keys that cannot name a command.
            let mut i = 0;
            while let Some(a) = args.get(i) {
                if !a.starts_with('-') {
                    break;
                }
                let option = a.split('=').next().unwrap_or(a);
                if matches!(option, "--config-env" | "--exec-path") {
                    return Some(format!("git's `{option}` can make git run any command"));
                }
                if matches!(
                    a.as_str(),
                    "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
                ) {
                    i += 2;
                    continue;
                }
                if let Some(rest) = a.strip_prefix("-c") {
                    let setting = if rest.is_empty() {
                        i += 1;
                        args.get(i).map(String::as_str).unwrap_or_default()
                    } else {
                        rest
                    };
                    let key = setting.split('=').next().unwrap_or_default();
                    if !SAFE_GIT_CONFIG.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        return Some(format!(
                            "git's `-c {key}` is not one of the settings a plugin may pass ({}); others can make git run any command",
                            SAFE_GIT_CONFIG.join(", ")
                        ));
                    }
                }
                i += 1;
            }
            args.iter()
                .find(|a| {
                    (a.starts_with("--upload-pack") || a.starts_with("--receive-pack") || a.as_str() == "-u")
                        && a.as_str() != SAFE_UPLOAD_PACK
                })
                .filter(|_| {
                    args.iter().any(|a| {
                        matches!(
                            a.as_str(),
                            "clone" | "fetch" | "ls-remote" | "pull" | "push" | "archive"
                        )
                    })
                })
                .map(|a| {
                    format!("git's `{a}` names a program for git to run; it is not allowed from a plugin")
                })
        }
        _ => None,
    }
}

/// git settings a plugin may pass with `-c`: none can name a command.
pub const SAFE_GIT_CONFIG: &[&str] = &[
    "protocol.file.allow",
    "uploadpack.allowAnySHA1InWant",
    "safe.directory",
    "init.defaultBranch",
    "user.name",
    "user.email",
    "advice.detachedHead",
    "gc.auto",
    "color.ui",
];

/// The one `--upload-pack` a plugin may pass: git's own, allowing a fetch
/// by commit.
const SAFE_UPLOAD_PACK: &str = "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack";

/// A call's arguments, as the replay tape keeps them.
fn command_json(cmd: &Command) -> serde_json::Value {
    serde_json::json!({
        "program": cmd.program,
        "args": cmd.args,
        "cwd": cmd.cwd,
        "env": cmd.env,
        "stdin": cmd.stdin.as_deref().map(tape::bytes),
        "timeout_ms": cmd.timeout_ms,
        "quiet": cmd.quiet,
    })
}

fn exit_json(e: &Exit) -> serde_json::Value {
    serde_json::json!({ "ok": {
        "code": e.code,
        "signal": e.signal,
        "stdout": tape::bytes(&e.stdout),
        "stderr": tape::bytes(&e.stderr),
        "stdout_truncated": e.stdout_truncated,
        "stderr_truncated": e.stderr_truncated,
        "timed_out": e.timed_out,
        "duration_ms": e.duration_ms,
    }})
}

fn exit_of(answer: &serde_json::Value) -> Result<Exit, HostError> {
    if let Some(e) = tape::error_of(answer) {
        return Err(e);
    }
    let ok = &answer["ok"];
    let int = |k: &str| ok[k].as_i64().and_then(|n| i32::try_from(n).ok());
    Ok(Exit {
        code: int("code"),
        signal: int("signal"),
        stdout: tape::bytes_of(&ok["stdout"]),
        stderr: tape::bytes_of(&ok["stderr"]),
        stdout_truncated: ok["stdout_truncated"].as_bool().unwrap_or(false),
        stderr_truncated: ok["stderr_truncated"].as_bool().unwrap_or(false),
        timed_out: ok["timed_out"].as_bool().unwrap_or(false),
        duration_ms: ok["duration_ms"].as_u64().unwrap_or(0),
    })
}

struct Prepared {
    program: PathBuf,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    timeout: Duration,
}

impl ProcessCtx {
    fn who(&self) -> String {
        format!("stage `{}` (tenant `{}`)", self.stage, self.tenant)
    }

    /// Check both keys and every argument; resolve what to run.
    fn prepare(&self, cmd: &Command) -> Result<Prepared, HostError> {
        let program = cmd.program.trim();
        if program.is_empty() {
            return Err(HostError::Invalid("the program name is empty".into()));
        }
        if !self.declared {
            return Err(HostError::Denied(format!(
                "process:exec `{program}` refused: plugin `{}` does not declare the `process` capability in its manifest, so {} cannot run programs through it",
                self.plugin,
                self.who()
            )));
        }
        if !self.grants.exec.iter().any(|g| g == program) {
            return Err(HostError::Denied(format!(
                "process:exec `{program}` is not granted to {}; grant it with allow = {{ exec = [\"{program}\"] }}",
                self.who()
            )));
        }

        if let Some(why) = smuggled(program, &cmd.args, &self.grants.exec) {
            return Err(HostError::Denied(format!(
                "process:exec `{program}` refused for {}: {why}",
                self.who()
            )));
        }

        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), DEFAULT_PATH.into());
        env.extend(self.env.iter().cloned());
        // What is looked up and what is loaded is the pipeline's decision:
        // the plugin's per-call variables cannot redirect either.
        let stage_path = env.get("PATH").cloned().unwrap_or_else(|| DEFAULT_PATH.into());
        for (k, v) in &cmd.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(HostError::Invalid(format!(
                    "`{k}` is not a valid environment variable"
                )));
            }
            self.check_variable(k, v)?;
            // A secret's placeholder becomes its value here, host-side.
            env.insert(k.clone(), self.secrets.substitute(v));
        }

        let cwd = self.resolve_in_workspace(cmd.cwd.as_deref().unwrap_or("."), "working directory")?;
        if !cwd.is_dir() {
            return Err(HostError::Invalid(format!(
                "working directory `{}` is not a directory in the workspace",
                cmd.cwd.as_deref().unwrap_or(".")
            )));
        }
        let program_path = if program.contains('/') {
            // A path names a program in the workspace, such as ./gradlew.
            self.resolve_in_workspace(program, "program")?
        } else {
            find_program(program, &stage_path).ok_or_else(|| {
                HostError::Failed(format!(
                    "program `{program}` was not found on PATH ({stage_path})"
                ))
            })?
        };

        let left = self.deadline.saturating_duration_since(Instant::now());
        let asked = cmd.timeout_ms.map(Duration::from_millis).unwrap_or(left);
        Ok(Prepared {
            program: program_path,
            cwd,
            env,
            timeout: asked.min(left),
        })
    }

    /// Whether the plugin may set `key = value` for a program: `PATH` and
    /// `LD_*` never (they are the pipeline's), the inert settings always,
    /// anything else only when the stage lists it in `allow.env`. A
    /// dangerous name listed there was accepted by the tenancy check.
    fn check_variable(&self, key: &str, value: &str) -> Result<(), HostError> {
        use weir_pipeline::env_policy;
        if env_policy::pipeline_only(key) {
            return Err(HostError::Denied(format!(
                "plugin `{}` may not set `{key}` for programs: where programs are found and what they load is set by the stage's `env` in pipeline.toml",
                self.plugin
            )));
        }
        if env_policy::inert(key, value) || self.grants.env.iter().any(|g| g == key) {
            return Ok(());
        }
        let why = env_policy::dangerous(key)
            .map(|why| {
                format!(
                    " It is one the tenant must also allow by name ([tenants.{}] allow.env): {why}.",
                    self.tenant
                )
            })
            .unwrap_or_default();
        Err(HostError::Denied(format!(
            "plugin `{}` may not set `{key}` for programs: {} does not list it; add allow = {{ env = [\"{key}\"] }} to the stage if the pipeline means it.{why}",
            self.plugin,
            self.who()
        )))
    }

    /// `rel` inside the workspace, canonical; refuses `..`, absolute paths
    /// and symlinks that lead out.
    fn resolve_in_workspace(&self, rel: &str, what: &str) -> Result<PathBuf, HostError> {
        let path = Path::new(rel);
        if path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(HostError::Invalid(format!(
                "{what} `{rel}` must be a relative path inside the workspace, without `..`"
            )));
        }
        let full = self
            .workspace
            .join(path)
            .canonicalize()
            .map_err(|e| HostError::Invalid(format!("{what} `{rel}` cannot be used: {e}")))?;
        if !full.starts_with(&self.workspace) {
            return Err(HostError::Invalid(format!(
                "{what} `{rel}` resolves outside the workspace (through a symlink)"
            )));
        }
        Ok(full)
    }

    /// Report something the host did to a program, by name; at most
    /// [`MAX_NOTICES`] per stage.
    fn notice(&self, message: String) {
        if self.notices.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_NOTICES {
            emit_notice(&self.sink, &self.stage, Level::Warn, message);
        }
    }

    async fn execute(&self, cmd: Command, p: Prepared) -> Result<Exit, HostError> {
        let name = cmd.program.trim().to_string();
        if self.sandbox == Sandbox::Unavailable
            && !self
                .warned_unsandboxed
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.notice(format!(
                "bubblewrap is not installed, so `{name}` runs without a sandbox: allow.read and allow.network are not enforced (install bubblewrap, or set sandbox = \"none\" to accept this)"
            ));
        }
        let group = self.program_group(&name)?;
        // A program granted network reaches it only through weir's proxy,
        // from a namespace of its own: bubblewrap tells where that is
        // (`--info-fd`) and waits (`--block-fd`) until the proxy listens.
        let egress = match (&self.sandbox, self.grants.network.is_empty()) {
            (Sandbox::Bubblewrap(_), false) => Some(
                NamespacePipes::new()
                    .map_err(|e| HostError::Failed(format!("cannot prepare `{name}`'s network: {e}")))?,
            ),
            _ => None,
        };
        let mut command = match &self.sandbox {
            Sandbox::Bubblewrap(bwrap) => {
                let view = self.read_only_view();
                let shown = view.clone();
                let workspace = self.workspace.clone();
                let masked = tokio::task::spawn_blocking(move || unreadable_in(&shown, &workspace))
                    .await
                    .map_err(|e| HostError::Failed(format!("cannot prepare the sandbox: {e}")))?;
                self.bubblewrap(bwrap, &p, &cmd.args, &view, &masked, egress.as_ref())
            }
            Sandbox::Unavailable | Sandbox::OptedOut => {
                let mut c = tokio::process::Command::new(&p.program);
                c.args(&cmd.args).current_dir(&p.cwd);
                c
            }
        };
        command
            .env_clear()
            .envs(&p.env)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if egress.is_some() {
            command.env_remove("NO_PROXY").env_remove("no_proxy");
            command.envs(super::egress::proxy_env());
        }
        let limits = self.limits;
        let procs = group.as_ref().map(ProgramGroup::procs);
        let inherited = egress.as_ref().map(NamespacePipes::child_ends);
        // SAFETY: only async-signal-safe calls (open, write, close,
        // setrlimit, fcntl) between fork and exec, touching no memory
        // shared with the parent.
        unsafe {
            command.pre_exec(move || {
                if let Some(procs) = &procs {
                    crate::confine::cgroup::join(procs)?;
                }
                if let Some(fds) = inherited {
                    for fd in fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                apply_rlimits(&limits)
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| HostError::Failed(format!("cannot start `{}`: {e}", p.program.display())))?;
        let process_group = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        // From here on, however this call ends (even dropped mid-way), the
        // whole process group is killed, and then (dropping `group`) all
        // that is left in the program's cgroup.
        let _guard = GroupGuard(process_group);
        // The proxy lives as long as this call.
        let _proxy = match egress {
            Some(pipes) => Some(self.start_proxy(&name, pipes).await.map_err(|e| {
                HostError::Failed(format!(
                    "`{name}` was not started: cannot give it its network (the proxy to the hosts {} grants): {e}",
                    self.who()
                ))
            })?),
            None => None,
        };

        if let (Some(input), Some(mut stdin)) = (cmd.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let out = child
            .stdout
            .take()
            .map(|s| self.collect(s, Level::Info, "stdout", cmd.quiet));
        let err = child
            .stderr
            .take()
            .map(|s| self.collect(s, Level::Warn, "stderr", cmd.quiet));
        let streams = async {
            let (o, e) = tokio::join!(
                async {
                    match out {
                        Some(f) => f.await,
                        None => (Vec::new(), false),
                    }
                },
                async {
                    match err {
                        Some(f) => f.await,
                        None => (Vec::new(), false),
                    }
                }
            );
            let status = child.wait().await;
            (o, e, status)
        };
        tokio::pin!(streams);

        let (timed_out, ((stdout, stdout_cut), (stderr, stderr_cut), status)) = match tokio::time::timeout(
            p.timeout,
            &mut streams,
        )
        .await
        {
            Ok(done) => (false, done),
            Err(_) => {
                signal_group(process_group, rustix::process::Signal::TERM);
                let done = match tokio::time::timeout(KILL_GRACE, &mut streams).await {
                    Ok(done) => done,
                    Err(_) => {
                        signal_group(process_group, rustix::process::Signal::KILL);
                        // What left the process group is still in the
                        // cgroup.
                        if let Some(g) = &group {
                            g.kill_all().await;
                        }
                        match tokio::time::timeout(DRAIN_AFTER_KILL, &mut streams).await {
                            Ok(done) => done,
                            Err(_) => {
                                self.report_refused_forks(&name, group.as_ref());
                                if let Some(g) = group {
                                    g.close().await;
                                }
                                self.notice(format!(
                                        "`{name}` was killed at its timeout, but a process it started left its process group and still holds its output open (run it inside bubblewrap to contain such processes)"
                                    ));
                                return Ok(Exit {
                                    code: None,
                                    signal: Some(9),
                                    stdout: Vec::new(),
                                    stderr: Vec::new(),
                                    stdout_truncated: true,
                                    stderr_truncated: true,
                                    timed_out: true,
                                    duration_ms: started.elapsed().as_millis() as u64,
                                });
                            }
                        }
                    }
                };
                self.notice(format!(
                    "`{name}` ran past its timeout of {} ms and was killed with its process group",
                    p.timeout.as_millis()
                ));
                (true, done)
            }
        };
        self.report_refused_forks(&name, group.as_ref());
        if let Some(g) = group {
            g.close().await;
        }
        let status = status.map_err(|e| HostError::Failed(format!("waiting for `{name}` failed: {e}")))?;
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(24) => self.notice(format!(
                "`{name}` was killed for using more than {} s of CPU time (limit `process-cpu`)",
                self.limits.cpu_seconds
            )),
            Some(25) => self.notice(format!(
                "`{name}` was killed for writing a file larger than {} (limit `process-file-size`)",
                crate::engine::limits::human_bytes(self.limits.file_bytes as usize)
            )),
            _ => {}
        }
        Ok(Exit {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            stdout_truncated: stdout_cut,
            stderr_truncated: stderr_cut,
            timed_out,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The pids cgroup `name` runs in. Where the host has none: a refusal
    /// if the tenant sets `limits.processes`, else a notice when weir runs
    /// as root (RLIMIT_NPROC then holds nothing) and no cgroup.
    fn program_group(&self, name: &str) -> Result<Option<ProgramGroup>, HostError> {
        let max = self.limits.pids.unwrap_or(DEFAULT_PROCESSES);
        let mut group = match ProgramGroup::create(max) {
            Ok(group) => Some(group),
            Err(why) if self.limits.pids.is_some() || self.limits.memory_bytes.is_some() => {
                let limit = match self.limits.pids {
                    Some(_) => format!("{max} processes (limit `processes`)"),
                    None => "their memory (limit `program-memory`), for which each needs a cgroup of its own"
                        .into(),
                };
                return Err(HostError::Failed(format!(
                    "`{name}` was not started: tenant `{}` limits programs to {limit}, which cannot be enforced here: {why}",
                    self.tenant
                )));
            }
            Err(why) => {
                if rustix::process::geteuid().is_root()
                    && !self
                        .warned_no_pids
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    self.notice(format!(
                        "`{name}` runs without a process limit: weir runs as root, where RLIMIT_NPROC holds nothing, and {why}"
                    ));
                }
                None
            }
        };
        if let (Some(bytes), Some(g)) = (self.limits.memory_bytes, group.as_mut()) {
            g.limit_memory(bytes).map_err(|crate::confine::cgroup::NoMemoryCgroup(why)| {
                HostError::Failed(format!(
                    "`{name}` was not started: tenant `{}` limits programs to {} of memory (limit `program-memory`), which cannot be enforced here: {why}",
                    self.tenant,
                    crate::engine::limits::human_bytes(bytes as usize)
                ))
            })?;
        }
        Ok(group)
    }

    /// The egress proxy inside the namespace of the bubblewrap that
    /// `pipes` were given to; then bubblewrap may go on.
    async fn start_proxy(
        &self,
        name: &str,
        pipes: NamespacePipes,
    ) -> std::io::Result<super::egress::Serving> {
        let NamespacePipes {
            info,
            info_child,
            block,
            block_child,
        } = pipes;
        // bubblewrap holds its own copies now: a bubblewrap that fails
        // early then ends `info` for us.
        drop((info_child, block_child));
        let listener = tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpListener> {
            let pid = sandbox_pid(std::fs::File::from(info))?;
            crate::netns::Factory::enter(pid)?.listener(super::egress::PROXY_PORT)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (sink, budget, stage) = (self.sink.clone(), self.budget.clone(), self.stage.clone());
        let serving = super::egress::serve(
            listener,
            super::egress::Egress {
                granted: self.grants.network.clone(),
                who: self.who(),
                program: name.to_string(),
                refused: Box::new(move |message| {
                    emit_line(&sink, &budget, &stage, Level::Warn, &message, Default::default());
                }),
            },
        )?;
        use std::io::Write;
        std::fs::File::from(block).write_all(b"1")?;
        Ok(serving)
    }

    /// A notice when the program's cgroup refused forks.
    fn report_refused_forks(&self, name: &str, group: Option<&ProgramGroup>) {
        let killed = group.map_or(0, ProgramGroup::oom_kills);
        if let (true, Some(bytes)) = (killed > 0, self.limits.memory_bytes) {
            self.notice(format!(
                "`{name}` used more than {} of memory with what it started (shared memory and in-memory files included): {killed} process(es) killed (limit `program-memory`)",
                crate::engine::limits::human_bytes(bytes as usize)
            ));
        }
        let refused = group.map_or(0, ProgramGroup::refused);
        if refused > 0 {
            self.notice(format!(
                "`{name}` hit its limit of {} processes at once: {refused} fork(s) refused (limit `processes`)",
                self.limits.pids.unwrap_or(DEFAULT_PROCESSES)
            ));
        }
    }

    /// What the sandbox shows of the host, read-only: the system
    /// directories, the allowed parts of `/etc`, and the toolchains and
    /// `allow.read` directories the stage's own environment names.
    fn read_only_view(&self) -> Vec<PathBuf> {
        let mut view: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
        view.extend(ETC_ALLOWED.iter().map(|e| Path::new("/etc").join(e)));
        view.extend(self.extra_read_only());
        view.retain(|p| p.exists());
        view
    }

    /// The bubblewrap command line for `p`, showing `view` read-only with
    /// `masked` (what in it others may not read) hidden.
    fn bubblewrap(
        &self,
        bwrap: &Path,
        p: &Prepared,
        args: &[String],
        view: &[PathBuf],
        masked: &[Masked],
        egress: Option<&NamespacePipes>,
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bwrap);
        // Fresh /proc, /dev and a bounded /tmp and /dev/shm first: later
        // mounts (the workspace may well live under /tmp) go on top of
        // them, not under. Every other in-memory filesystem bubblewrap
        // makes (the root, /dev) is made read-only last, so nothing the
        // program writes in memory escapes these sizes.
        let (tmp, shm) = self.limits.tmpfs_sizes();
        private_mounts(&mut c, tmp, shm);
        mount_view(&mut c, view, masked);
        let ws = self.workspace.display().to_string();
        c.args(["--bind", &ws, &ws])
            .args(["--remount-ro", "/dev", "--remount-ro", "/"])
            .args(["--unshare-all", "--new-session", "--die-with-parent"])
            .args(UNPRIVILEGED);
        // Its own network namespace always (only loopback in it); the
        // proxy is its way out when the stage grants network.
        if let Some(pipes) = egress {
            let [info, block] = pipes.child_ends();
            c.arg("--info-fd").arg(info.to_string());
            c.arg("--block-fd").arg(block.to_string());
        }
        c.arg("--chdir").arg(&p.cwd).arg("--").arg(&p.program).args(args);
        c
    }

    /// Read-only mounts beyond the system directories: the entries of the
    /// stage's `PATH` (a toolchain in `~/.cargo/bin`; the program was found
    /// on it) and what the stage grants with `allow.read`. Nothing the
    /// plugin chooses can add to these.
    fn extra_read_only(&self) -> Vec<PathBuf> {
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let mut dirs: Vec<PathBuf> = path.split(':').map(PathBuf::from).collect();
        dirs.extend(self.grants.read.iter().cloned());
        dirs.retain(|d| {
            d.is_absolute()
                && d.exists()
                && d != Path::new("/")
                && !d.starts_with("/etc")
                && !SYSTEM_DIRS.iter().any(|s| d.starts_with(s))
                && !d.starts_with(&self.workspace)
        });
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Stream `stream` into the log line by line and keep the first
    /// `output_bytes` of it; returns (kept, cut). Reads in chunks, so a
    /// program that never prints a newline cannot grow a line without
    /// bound: lines are cut at [`MAX_LINE_BYTES`] for the log.
    fn collect<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        stream: R,
        level: Level,
        name: &'static str,
        quiet: bool,
    ) -> impl std::future::Future<Output = (Vec<u8>, bool)> + Send + 'static {
        let sink = self.sink.clone();
        let budget = self.budget.clone();
        let stage = self.stage.clone();
        let limit = self.limits.output_bytes;
        let over_limit_notice = self.notices.load(std::sync::atomic::Ordering::Relaxed) < MAX_NOTICES;
        let secrets = self.secrets.clone();
        async move {
            let mut reader = BufReader::new(stream);
            let mut kept = Vec::new();
            let mut cut = false;
            let mut line: Vec<u8> = Vec::new();
            // A line longer than MAX_LINE_BYTES is cut: a value the cut
            // splits must not reach the log in part.
            let flush = |line: &mut Vec<u8>| {
                if !quiet && !line.is_empty() {
                    let shown = match line.len() >= MAX_LINE_BYTES {
                        true => secrets.mask_cut(std::mem::take(line)),
                        false => std::mem::take(line),
                    };
                    emit_line(
                        &sink,
                        &budget,
                        &stage,
                        level,
                        &String::from_utf8_lossy(&shown),
                        BTreeMap::new(),
                    );
                }
                line.clear();
            };
            loop {
                let chunk = match reader.fill_buf().await {
                    Ok([]) | Err(_) => break,
                    Ok(chunk) => chunk,
                };
                let (piece, newline) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (&chunk[..=i], true),
                    None => (chunk, false),
                };
                let n = piece.len();
                let room = limit - kept.len();
                if n <= room {
                    kept.extend_from_slice(piece);
                } else {
                    kept.extend_from_slice(&piece[..room]);
                    if !cut && over_limit_notice {
                        emit_notice(
                            &sink,
                            &stage,
                            Level::Warn,
                            format!(
                                "{name} cut at {} for the plugin (limit `process-output`); the program kept running",
                                crate::engine::limits::human_bytes(limit)
                            ),
                        );
                    }
                    cut = true;
                }
                let line_room = MAX_LINE_BYTES.saturating_sub(line.len());
                line.extend_from_slice(&piece[..n.min(line_room)]);
                reader.consume(n);
                if newline {
                    flush(&mut line);
                }
            }
            flush(&mut line);
            (kept, cut)
        }
    }
}

/// Kills a process group when dropped.
struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, rustix::process::Signal::KILL);
    }
}

fn signal_group(group: Option<rustix::process::Pid>, signal: rustix::process::Signal) {
    if let Some(pid) = group {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn apply_rlimits(l: &ProcessLimits) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let set = |r: Resource, v: u64| {
        // Never above the current hard limit: raising it would fail.
        let v = getrlimit(r).maximum.map_or(v, |hard| hard.min(v));
        setrlimit(
            r,
            Rlimit {
                current: Some(v),
                maximum: Some(v),
            },
        )
    };
    set(Resource::Cpu, l.cpu_seconds)?;
    set(Resource::Nofile, l.open_files)?;
    set(Resource::Nproc, l.processes)?;
    set(Resource::Fsize, l.file_bytes)?;
    if let Some(data) = l.data_bytes {
        set(Resource::Data, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampolines_cannot_run_what_is_not_granted() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let granted = g(&["env", "git", "true"]);
        assert!(
            smuggled("env", &g(&["sh", "-c", "id"]), &granted)
                .unwrap()
                .contains("`env` would run `sh`")
        );
        assert!(
            smuggled("env", &g(&["-u", "true", "sh"]), &granted).is_some(),
            "-u takes a value"
        );
        assert!(smuggled("env", &g(&["-i", "A=1", "/bin/sh"]), &granted).is_some());
        assert!(smuggled("env", &g(&["-S", "sh -c id"]), &granted).is_some());
        assert_eq!(smuggled("env", &g(&["A=1", "true"]), &granted), None);
        assert!(smuggled("git", &g(&["-c", "core.sshCommand=sh", "fetch"]), &granted).is_some());
        assert_eq!(
            smuggled(
                "git",
                &g(&["-c", "protocol.file.allow=always", "fetch", SAFE_UPLOAD_PACK]),
                &granted
            ),
            None
        );
        assert!(smuggled("git", &g(&["-ccore.pager=sh", "log"]), &granted).is_some());
        assert!(smuggled("git", &g(&["ls-remote", "--upload-pack=sh", "x"]), &granted).is_some());
        assert_eq!(
            smuggled("git", &g(&["commit", "-c", "HEAD"]), &granted),
            None,
            "-c after the subcommand is its own"
        );
        assert!(
            smuggled(
                "git",
                &g(&["-C", ".", "-c", "core.fsmonitor=sh", "status"]),
                &granted
            )
            .is_some()
        );
        assert_eq!(smuggled("git", &g(&["add", "-u"]), &granted), None);
    }
}
