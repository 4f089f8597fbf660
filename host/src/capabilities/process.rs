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

mod record;

use record::{command_json, exit_json, exit_of};
mod smuggling;
mod spawn;

pub use smuggling::{SAFE_GIT_CONFIG, smuggled};

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
/// How long a program has between SIGTERM and SIGKILL when its run is
/// cancelled: time to remove a lock file or flush a report (shorter than
/// the scheduler's own grace period).
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);

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
    /// Whether the missing pids cgroup was reported.
    pub warned_no_pids: std::sync::atomic::AtomicBool,
    /// Where calls are recorded (or, in replay, answered from).
    pub tape: Tape,
    /// The secrets the Store opened: placeholders in `env` values become
    /// values, and values in the output become `***`.
    pub secrets: super::secrets::Opened,
    /// Set when the run is cancelled: a running program gets SIGTERM.
    pub stopping: super::Stopping,
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
            warned_no_pids: std::sync::atomic::AtomicBool::new(false),
            tape: facts.tape.clone(),
            secrets: facts.opened.clone(),
            stopping: facts.stopping.clone(),
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

#[derive(Clone)]
pub(super) struct Prepared {
    pub(super) program: PathBuf,
    pub(super) cwd: PathBuf,
    pub(super) env: BTreeMap<String, String>,
    pub(super) timeout: Duration,
}

impl ProcessCtx {
    pub(super) fn who(&self) -> String {
        format!("stage `{}` (tenant `{}`)", self.stage, self.tenant)
    }

    /// Check both keys and every argument; resolve what to run.
    pub(super) fn prepare(&self, cmd: &Command) -> Result<Prepared, HostError> {
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
    pub(super) fn check_variable(&self, key: &str, value: &str) -> Result<(), HostError> {
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
    pub(super) fn resolve_in_workspace(&self, rel: &str, what: &str) -> Result<PathBuf, HostError> {
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
    pub(super) fn notice(&self, message: String) {
        if self.notices.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_NOTICES {
            emit_notice(&self.sink, &self.stage, Level::Warn, message);
        }
    }
}

#[cfg(test)]
mod tests;
