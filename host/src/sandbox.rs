//! The state of one Store: one stage attempt (or one `describe()` call).
//!
//! Each capability keeps its own state here; none implements another's
//! interface. A Store is built fresh for every attempt and dropped after
//! it, whatever happened: a trapped, timed-out or cancelled Store is never
//! entered again.

use std::path::Path;
use std::time::Instant;

pub mod linking;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::types::Capability;
use crate::capabilities::log::{LogBudget, LogCtx};
use crate::capabilities::metrics::MetricsCtx;
use crate::capabilities::process::{ProcessCtx, ProcessLimits, Sandbox};
use crate::capabilities::runtime::RuntimeCtx;
use crate::capabilities::secrets::SecretsCtx;
use crate::capabilities::unavailable::Unavailable;
use crate::capabilities::wasi::{self, WasiSpec};
use crate::capabilities::{Facts, Gate, Gated, TargetSpec, http::HttpGate};
use crate::engine::{StageLimiter, StageLimits};
use crate::events::EventSink;
use crate::plan::Grants;

/// The table of gated capabilities: each line is a field of
/// [`GatedState`] and an entry of [`GATED`], in this order. Adding a
/// capability is its module (`impl Gated`) and one line here.
macro_rules! gated_imports {
    ($($field:ident: $state:ty,)*) => {
        /// The state of every gated capability in one Store (each built
        /// whether or not it is linked: a refusal still names its stage).
        pub struct GatedState {
            $(
                #[doc = concat!("`", stringify!($field), "`: see [`", stringify!($state), "`].")]
                pub $field: $state,
            )*
        }

        impl GatedState {
            fn new(facts: &Facts<'_>) -> Self {
                Self { $($field: <$state as Gated>::new(facts),)* }
            }
        }

        /// Every gated capability, as the linker sees it.
        pub const GATED: &[Entry] = &[$(
            Entry {
                gate: <$state as Gated>::GATE,
                granted: <$state as Gated>::granted,
                link: |linker| {
                    <$state as Gated>::add_to_linker(linker, |s: &mut StageState| -> &mut $state {
                        &mut s.gated.$field
                    })
                },
            },
        )*];
    };
}

gated_imports! {
    process: ProcessCtx,
    network: HttpGate,
    metrics: MetricsCtx,
    secrets: SecretsCtx,
    runtime: RuntimeCtx,
}

/// One line of the table, with its type erased.
pub struct Entry {
    /// Its names.
    pub gate: Gate,
    /// Whether a stage's grants grant any of it.
    pub granted: fn(&Grants) -> bool,
    /// Links its host functions into a Store's linker.
    pub link: fn(&mut Linker<StageState>) -> wasmtime::Result<()>,
}

/// Everything a Store holds.
pub struct StageState {
    /// The stage, for messages.
    pub stage: String,
    /// The tenant, for messages.
    pub tenant: String,
    /// Where log lines and refusals go.
    pub sink: EventSink,
    /// The Store's log budget.
    pub budget: LogBudget,
    /// WASI p2.
    pub wasi: WasiCtx,
    /// Resources handed to the guest (files, streams).
    pub table: ResourceTable,
    /// Memory and table accounting.
    pub limiter: StageLimiter,
    /// The `log` import.
    pub log: LogCtx,
    /// The shared `types` interface (no functions).
    pub unavailable: Unavailable,
    /// The gated capabilities.
    pub gated: GatedState,
    /// `wasi:http` state (field size limit), for `wasi:http/types`.
    pub http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    /// Set by the epoch callback when the attempt's deadline passed.
    pub timed_out: bool,
    /// Whether the run is being cancelled (the epoch callback traps then).
    pub stopping: crate::capabilities::Stopping,
    /// Its share of weir's file descriptors: the handle table's size.
    pub descriptors: crate::engine::descriptors::Lease,
}

/// What [`StageState::new`] needs.
pub struct StateSpec<'a> {
    /// The stage.
    pub stage: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The plugin.
    pub plugin: &'a str,
    /// What its manifest declares, as far as this call may use it.
    pub declared: &'a [Capability],
    /// The stage's grants.
    pub grants: &'a Grants,
    /// Host directory preopened for the plugin; `None` for none.
    pub workspace: Option<&'a Path>,
    /// Granted directories preopened read-only for the plugin (empty
    /// unless its manifest declares `files`).
    pub read_dirs: &'a [std::path::PathBuf],
    /// The plugin's environment.
    pub env: &'a [(String, String)],
    /// Names in `env` whose values are secrets.
    pub secret_env: &'a [String],
    /// Limits for this Store.
    pub limits: StageLimits,
    /// Where log lines go.
    pub sink: EventSink,
    /// When the attempt must end.
    pub deadline: Instant,
    /// Bubblewrap or not, for its programs.
    pub sandbox: Sandbox,
    /// The tenant's secret source.
    pub secret_source: &'a crate::config::tenants::SecretSource,
    /// Host-import calls are recorded here (or answered from it).
    pub tape: crate::capabilities::tape::Tape,
    /// Extra read-only preopens at a given guest path (replay's copies of
    /// recorded `allow.read` directories), opened as they are.
    pub mapped_dirs: &'a [(std::path::PathBuf, String)],
    /// The deployment target and metrics providers.
    pub target: &'a TargetSpec,
    /// Whether the run is being cancelled.
    pub stopping: crate::capabilities::Stopping,
}

impl StageState {
    /// Fresh state for one Store.
    pub fn new(spec: StateSpec<'_>) -> std::io::Result<Self> {
        let budget = LogBudget::new(spec.limits.log_bytes);
        // An environment's secrets reach the plugin as placeholders, like
        // an opened secret's; its programs get the values (`process` runs
        // them with the stage's env as it is).
        let opened = crate::capabilities::secrets::Opened::default();
        let plugin_env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| match spec.secret_env.contains(k) {
                true => (k.clone(), opened.hold(v.clone())),
                false => (k.clone(), v.clone()),
            })
            .collect();
        let wasi = wasi::build(WasiSpec {
            workspace: spec.workspace,
            read_only: spec.read_dirs,
            mapped: spec.mapped_dirs,
            env: &plugin_env,
            max_random: spec.limits.random_bytes,
            stage: spec.stage,
            sink: spec.sink.clone(),
            budget: budget.clone(),
        })?;
        let descriptors = crate::engine::descriptors::Lease::take(spec.limits.resource_handles);
        let mut table = ResourceTable::new();
        table.set_max_capacity(descriptors.handles());
        let gated = GatedState::new(&Facts {
            stage: spec.stage,
            tenant: spec.tenant,
            plugin: spec.plugin,
            declared: spec.declared,
            grants: spec.grants,
            workspace: spec.workspace.unwrap_or(Path::new("")),
            env: spec.env,
            sink: &spec.sink,
            budget: &budget,
            tape: &spec.tape,
            opened: &opened,
            deadline: spec.deadline,
            sandbox: &spec.sandbox,
            program_limits: ProcessLimits::for_store(&spec.limits),
            secret_source: spec.secret_source,
            target: spec.target,
            stopping: &spec.stopping,
        });
        let mut http_ctx = wasmtime_wasi_http::WasiHttpCtx::new();
        http_ctx.set_field_size_limit(crate::capabilities::http::FIELD_SIZE_LIMIT);
        Ok(Self {
            stage: spec.stage.to_string(),
            tenant: spec.tenant.to_string(),
            log: LogCtx::new(spec.stage, spec.sink.clone(), budget.clone()),
            sink: spec.sink,
            budget,
            http_ctx,
            gated,
            wasi,
            table,
            limiter: StageLimiter::new(spec.limits),
            unavailable: Unavailable,
            timed_out: false,
            stopping: spec.stopping,
            descriptors,
        })
    }
}

impl wasmtime_wasi_http::WasiHttpView for StageState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.gated.network,
        }
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
