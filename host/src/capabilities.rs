//! Host imports: one module per WIT interface, each owning its grant
//! check, its linker setup and its per-Store state.
//!
//! | import | state | linked when |
//! |---|---|---|
//! | `log` | [`log::LogCtx`] | always |
//! | `process` | [`process::ProcessCtx`] | manifest `process` + some `allow.exec`; bubblewrap where installed |
//! | `metrics` | [`metrics::MetricsCtx`] | manifest + some `allow.metrics`; `builtin` (the local target) and Prometheus |
//! | `secrets` | [`secrets::SecretsCtx`] | manifest + some `allow.secrets`; handles only, values swapped in by the consumers |
//! | `runtime` | [`runtime::RuntimeCtx`] | manifest + `allow.runtime`; the local target |
//! | WASI p2 | [`wasi`] | always: one preopen (the workspace), no sockets, declared env only |
//! | `wasi:http` outgoing | [`http::HttpGate`] | manifest `network` + some `allow.network`, each request checked after DNS resolution |
//!
//! The gated ones (all but `log` and WASI) implement [`Gated`]: what a
//! component imports them as, how a stage grants them, how their state is
//! built from one attempt's [`Facts`], and how they are linked. The
//! sandbox module keeps one table of them (its `gated_imports!`),
//! and links each only when the plugin's manifest declares it and the
//! stage grants some of it; the rest answer with a refusal.
//!
//! ## Adding a capability
//!
//! 1. Its interface in `wit/` and its manifest name in the `capability`
//!    enum.
//! 2. Its grant: a field of `allow` in the pipeline crate
//!    (`weir_pipeline::grants`, one table line there too: how it is
//!    parsed, checked against the tenant's policy and summarised).
//! 3. Its module here: the state, the `Host` impl, and `impl Gated`.
//! 4. One line in the sandbox's `gated_imports!` table.
//!
//! A linked import still checks each call against the exact grant (this
//! program, that host). [`tape`] records what `process`, `metrics` and
//! `secrets` answered, for `weir replay`.

use std::path::Path;
use std::time::Instant;

use crate::bindings::types::Capability;
use crate::config::tenants::SecretSource;
use crate::events::EventSink;
use crate::plan::Grants;

pub mod egress;
pub mod http;
pub mod log;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod tape;
pub mod unavailable;
pub mod wasi;

/// What a component imports a gated capability as, and how a user
/// grants it: the words of every refusal.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// The import's name without its version, e.g. `weir:plugin/process`.
    pub interface: &'static str,
    /// The manifest capability.
    pub capability: Capability,
    /// The manifest's name for it.
    pub declared_as: &'static str,
    /// How a stage grants it.
    pub grant_hint: &'static str,
}

impl Gate {
    /// Whether `import` (e.g. `weir:plugin/process@0.1.0`) is this one.
    pub fn names(&self, import: &str) -> bool {
        import.split('@').next() == Some(self.interface)
    }
}

/// A capability a plugin reaches only when its manifest declares it and
/// its stage grants it.
pub trait Gated: Send + Sized + 'static {
    /// Its names.
    const GATE: Gate;

    /// Whether `grants` grants any of it (linked only then).
    fn granted(grants: &Grants) -> bool;

    /// Its state in one Store.
    fn new(facts: &Facts<'_>) -> Self;

    /// Link its host functions, reaching its state through `get`.
    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static;
}

/// What one attempt's capability states are built from.
pub struct Facts<'a> {
    /// The stage, for messages.
    pub stage: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The plugin.
    pub plugin: &'a str,
    /// What the plugin's manifest declares (as far as this call may use it).
    pub declared: &'a [Capability],
    /// What the stage grants.
    pub grants: &'a Grants,
    /// The workspace on the host; empty for none.
    pub workspace: &'a Path,
    /// The stage's declared environment, values as they are.
    pub env: &'a [(String, String)],
    /// Where refusals and program output go.
    pub sink: &'a EventSink,
    /// The Store's log budget.
    pub budget: &'a log::LogBudget,
    /// Host-import calls are recorded here (or answered from it).
    pub tape: &'a tape::Tape,
    /// The secrets the Store opened.
    pub opened: &'a secrets::Opened,
    /// When the attempt must end.
    pub deadline: Instant,
    /// Bubblewrap or not.
    pub sandbox: &'a process::Sandbox,
    /// Limits per program.
    pub program_limits: process::ProcessLimits,
    /// The tenant's secret source.
    pub secret_source: &'a SecretSource,
    /// The deployment target and metrics providers.
    pub target: &'a TargetSpec,
    /// Whether the run is being cancelled.
    pub stopping: &'a Stopping,
}

impl Facts<'_> {
    /// Whether the manifest declares `capability`.
    pub fn declares(&self, capability: Capability) -> bool {
        self.declared.contains(&capability)
    }
}

/// Whether the run is being cancelled: set once by the executor, read by
/// every Store of the run (a guest traps at its next epoch check, a
/// program gets SIGTERM and [`process::CANCEL_GRACE`] to exit).
#[derive(Debug, Clone)]
pub struct Stopping(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Stopping {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Stopping {
    /// Ask every Store of the run to end.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`Stopping::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Stopping::stop`] is called.
    pub async fn stopped(&self) {
        let mut seen = self.0.subscribe();
        let _ = seen.wait_for(|s| *s).await;
    }
}

/// What the `runtime` and `metrics` imports need to know.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// The run.
    pub run_id: String,
    /// The local target's directory; `None` offers no target.
    pub dir: Option<std::path::PathBuf>,
    /// The pipeline's metrics providers, by name (`builtin` is implied).
    pub providers: std::collections::BTreeMap<String, metrics::Provider>,
    /// The release a deploy stage rolls out, which bounds `runtime`.
    pub runtime_scope: Option<runtime::RuntimeScope>,
}
