//! WASI p2 for one stage attempt: the run's workspace preopened read-write
//! as `.`, each directory the stage grants with `allow.read` preopened
//! read-only at its absolute host path (and nothing else), the environment
//! variables the stage declares and no others, no sockets or name lookups, bounded random bytes, and stdout and
//! stderr streamed line by line into the stage's log.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::log::{LogBudget, emit_line};
use crate::events::{EventSink, Level};

/// The workspace as a plugin sees it: relative paths resolve inside it.
pub const GUEST_WORKSPACE: &str = ".";

/// Host directories never preopened for a plugin, even when granted with
/// `allow.read`: the system (which programs see through bubblewrap, with
/// root-only files masked) and the kernel's views of processes and devices.
const NOT_FOR_PLUGINS: &[&str] = &[
    "/proc", "/sys", "/dev", "/boot", "/run", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/opt",
];

/// What a stage's WASI context is built from.
pub struct WasiSpec<'a> {
    /// The host directory preopened as the workspace; `None` gives the
    /// plugin no filesystem at all (used for `describe()`).
    pub workspace: Option<&'a Path>,
    /// Host directories the stage may read (`allow.read`), preopened
    /// read-only at their own absolute paths. Files, missing paths and
    /// system directories ([`NOT_FOR_PLUGINS`]) are left out: they stay for
    /// programs, which see them through bubblewrap.
    pub read_only: &'a [std::path::PathBuf],
    /// Directories weir made itself (replay's copies), preopened read-only
    /// at the given guest paths.
    pub mapped: &'a [(std::path::PathBuf, String)],
    /// The only environment variables the plugin sees.
    pub env: &'a [(String, String)],
    /// Most random bytes per call.
    pub max_random: u64,
    /// The stage, for log lines.
    pub stage: &'a str,
    /// Where stdout and stderr lines go.
    pub sink: EventSink,
    /// Shared with the `log` import.
    pub budget: LogBudget,
}

/// `granted` (an `allow.read` path) as a plugin with `files` may see it:
/// resolved now (what is checked is what is opened, symlinks followed),
/// a directory, not a system directory, not inside the workspace and not
/// containing it. `None` when it may not be opened.
pub fn plugin_readable(granted: &Path, workspace: &Path) -> Option<std::path::PathBuf> {
    let extra = granted.canonicalize().ok()?;
    let system = extra == Path::new("/") || NOT_FOR_PLUGINS.iter().any(|d| extra.starts_with(d));
    let workspace = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    if system || !extra.is_dir() || extra.starts_with(&workspace) || workspace.starts_with(&extra) {
        return None;
    }
    Some(extra)
}

/// Build the context; fails only when the workspace cannot be opened.
pub fn build(spec: WasiSpec<'_>) -> std::io::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    if let Some(dir) = spec.workspace {
        b.preopened_dir(dir, GUEST_WORKSPACE, FsPerms::ReadWrite)
            .map_err(|e| std::io::Error::other(format!("cannot open workspace {}: {e}", dir.display())))?;
        for granted in spec.read_only {
            let Some(extra) = plugin_readable(granted, dir) else {
                continue;
            };
            let extra = extra.as_path();
            let Some(guest) = extra.to_str() else { continue };
            b.preopened_dir(extra, guest, FsPerms::ReadOnly).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot open `allow.read` directory {}: {e}",
                    extra.display()
                ))
            })?;
        }
    }
    for (host, guest) in spec.mapped {
        b.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(|e| std::io::Error::other(format!("cannot open {} as {guest}: {e}", host.display())))?;
    }
    for (k, v) in spec.env {
        b.env(k, v);
    }
    b.max_random_size(spec.max_random)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .stdout(LogPipe::new(
            spec.stage,
            Level::Info,
            spec.sink.clone(),
            spec.budget.clone(),
        ))
        .stderr(LogPipe::new(spec.stage, Level::Warn, spec.sink, spec.budget));
    Ok(b.build())
}

/// A plugin's stdout or stderr: complete lines become log lines as they are
/// written; a partial last line is flushed when the pipe is dropped. Never
/// refuses a write (a refused write makes Rust's `println!` panic), so
/// output past the log limit is dropped and reported by the budget.
#[derive(Clone)]
pub struct LogPipe {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    stage: String,
    level: Level,
    sink: EventSink,
    budget: LogBudget,
    partial: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            self.emit(&line);
        }
        if self.partial.len() > super::log::MAX_LINE_BYTES {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        emit_line(
            &self.sink,
            &self.budget,
            &self.stage,
            self.level,
            &text,
            BTreeMap::new(),
        );
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

impl LogPipe {
    fn new(stage: &str, level: Level, sink: EventSink, budget: LogBudget) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LineBuffer {
                stage: stage.to_string(),
                level,
                sink,
                budget,
                partial: Vec::new(),
            })),
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
