//! The state of one Store: one stage attempt (or one `describe()` call).
//!
//! Each capability keeps its own state here; none implements another's
//! interface. A Store is built fresh for every attempt and dropped after
//! it, whatever happened: a trapped, timed-out or cancelled Store is never
//! entered again.

use std::path::Path;

pub mod linking;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::log::{LogBudget, LogCtx};
use crate::capabilities::process::{ProcessCtx, ProcessLimits, Sandbox};
use crate::capabilities::unavailable::Unavailable;
use crate::capabilities::wasi::{self, WasiSpec};
use crate::engine::{StageLimiter, StageLimits};
use crate::events::EventSink;

/// Everything a Store holds.
pub struct StageState {
    /// WASI p2.
    pub wasi: WasiCtx,
    /// Resources handed to the guest (files, streams).
    pub table: ResourceTable,
    /// Memory and table accounting.
    pub limiter: StageLimiter,
    /// The `log` import.
    pub log: LogCtx,
    /// The `process` import.
    pub process: ProcessCtx,
    /// The shared `types` interface (no functions).
    pub unavailable: Unavailable,
    /// The `secrets` import.
    pub secrets: crate::capabilities::secrets::SecretsCtx,
    /// The `runtime` import.
    pub runtime: crate::capabilities::runtime::RuntimeCtx,
    /// The `metrics` import.
    pub metrics: crate::capabilities::metrics::MetricsCtx,
    /// `wasi:http` state (field size limit).
    pub http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    /// The gate every outgoing request passes.
    pub http: crate::capabilities::http::HttpGate,
    /// Set by the epoch callback when the attempt's deadline passed.
    pub timed_out: bool,
    /// Its share of weir's file descriptors: the handle table's size.
    pub descriptors: crate::engine::descriptors::Lease,
}

/// What [`StageState::new`] needs.
pub struct StateSpec<'a> {
    /// The stage.
    pub stage: &'a str,
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
    /// Who may run which programs, and how.
    pub process: ProcessSpec,
    /// Host-import calls are recorded here (or answered from it).
    pub tape: crate::capabilities::tape::Tape,
    /// Extra read-only preopens at a given guest path (replay's copies of
    /// recorded `allow.read` directories), opened as they are.
    pub mapped_dirs: &'a [(std::path::PathBuf, String)],
    /// The deployment target and metrics providers.
    pub target: TargetSpec,
}

/// What the `runtime` and `metrics` imports need to know.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// The run.
    pub run_id: String,
    /// The local target's directory; `None` offers no target.
    pub dir: Option<std::path::PathBuf>,
    /// The pipeline's metrics providers, by name (`builtin` is implied).
    pub providers: std::collections::BTreeMap<String, crate::capabilities::metrics::Provider>,
    /// Whether the plugin's manifest declares `runtime`.
    pub declares_runtime: bool,
    /// Whether it declares `metrics`.
    pub declares_metrics: bool,
    /// The release a deploy stage rolls out, which bounds `runtime`.
    pub runtime_scope: Option<crate::capabilities::runtime::RuntimeScope>,
}

/// What the `process` import needs to know about a stage attempt.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The plugin's name.
    pub plugin: String,
    /// The tenant.
    pub tenant: String,
    /// Whether the plugin's manifest declares `process`.
    pub declared: bool,
    /// The stage's grants.
    pub grants: crate::plan::Grants,
    /// When the attempt must end.
    pub deadline: std::time::Instant,
    /// Bubblewrap or not.
    pub sandbox: Sandbox,
    /// Limits per program.
    pub limits: ProcessLimits,
    /// Whether the plugin's manifest declares `secrets`.
    pub declares_secrets: bool,
    /// Whether it declares `network`.
    pub declares_network: bool,
    /// The tenant's secret source.
    pub secret_source: crate::config::tenants::SecretSource,
}

impl ProcessSpec {
    /// A spec that refuses every program (for `describe()`).
    pub fn none(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            tenant: String::new(),
            declared: false,
            grants: crate::plan::Grants::default(),
            deadline: std::time::Instant::now(),
            sandbox: Sandbox::Unavailable,
            limits: ProcessLimits::default(),
            declares_secrets: false,
            declares_network: false,
            secret_source: crate::config::tenants::Tenant::unrestricted_default().secrets,
        }
    }
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
        let plugin = spec.process.plugin.clone();
        let grants = spec.process.grants.clone();
        let secrets = crate::capabilities::secrets::SecretsCtx::new(
            spec.stage,
            &spec.process.tenant,
            &plugin,
            spec.process.declares_secrets,
            grants.secrets.clone(),
            spec.process.secret_source.clone(),
            opened.clone(),
            spec.tape.clone(),
        );
        let process = ProcessCtx {
            stage: spec.stage.to_string(),
            tenant: spec.process.tenant,
            plugin: spec.process.plugin,
            declared: spec.process.declared,
            grants: spec.process.grants,
            workspace: spec.workspace.map(Path::to_path_buf).unwrap_or_default(),
            env: spec.env.to_vec(),
            deadline: spec.process.deadline,
            sandbox: spec.process.sandbox,
            limits: spec.process.limits,
            sink: spec.sink.clone(),
            budget: budget.clone(),
            notices: std::sync::atomic::AtomicUsize::new(0),
            warned_unsandboxed: std::sync::atomic::AtomicBool::new(false),
            warned_no_pids: std::sync::atomic::AtomicBool::new(false),
            tape: spec.tape.clone(),
            secrets: opened,
        };
        let mut http_ctx = wasmtime_wasi_http::WasiHttpCtx::new();
        http_ctx.set_field_size_limit(crate::capabilities::http::FIELD_SIZE_LIMIT);
        let http = crate::capabilities::http::HttpGate {
            stage: spec.stage.to_string(),
            tenant: process.tenant.clone(),
            plugin: plugin.clone(),
            declared: spec.process.declares_network,
            granted: grants.network.clone(),
            secrets: process.secrets.clone(),
            sink: spec.sink.clone(),
            budget: budget.clone(),
        };
        Ok(Self {
            http_ctx,
            http,
            secrets,
            wasi,
            table,
            limiter: StageLimiter::new(spec.limits),
            process,
            log: LogCtx::new(spec.stage, spec.sink, budget),
            unavailable: Unavailable,
            runtime: crate::capabilities::runtime::RuntimeCtx {
                stage: spec.stage.to_string(),
                plugin: plugin.clone(),
                declared: spec.target.declares_runtime,
                granted: grants.runtime,
                workspace: spec.workspace.map(Path::to_path_buf).unwrap_or_default(),
                run_id: spec.target.run_id.clone(),
                target_dir: spec.target.dir.clone(),
                client: None,
                scope: spec.target.runtime_scope.clone(),
            },
            metrics: crate::capabilities::metrics::MetricsCtx {
                stage: spec.stage.to_string(),
                plugin,
                declared: spec.target.declares_metrics,
                granted: grants
                    .metrics
                    .iter()
                    .filter_map(|name| {
                        let provider = match spec.target.providers.get(name) {
                            Some(p) => p.clone(),
                            None if name == "builtin" => crate::capabilities::metrics::Provider::Builtin,
                            None => return None,
                        };
                        Some((name.clone(), provider))
                    })
                    .collect(),
                target_dir: spec.target.dir.clone(),
                tape: spec.tape,
            },
            timed_out: false,
            descriptors,
        })
    }
}

impl wasmtime_wasi_http::WasiHttpView for StageState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
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
