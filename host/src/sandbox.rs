//! The state of one Store: one stage attempt (or one `describe()` call).
//!
//! Each capability keeps its own state here; none implements another's
//! interface. A Store is built fresh for every attempt and dropped after
//! it, whatever happened: a trapped, timed-out or cancelled Store is never
//! entered again.

use std::path::Path;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::log::{LogBudget, LogCtx};
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
    /// `process`, `metrics`, `secrets`, `runtime`: not offered yet.
    pub unavailable: Unavailable,
    /// Set by the epoch callback when the attempt's deadline passed.
    pub timed_out: bool,
}

/// What [`StageState::new`] needs.
pub struct StateSpec<'a> {
    /// The stage.
    pub stage: &'a str,
    /// Host directory preopened for the plugin; `None` for none.
    pub workspace: Option<&'a Path>,
    /// The plugin's environment.
    pub env: &'a [(String, String)],
    /// Limits for this Store.
    pub limits: StageLimits,
    /// Where log lines go.
    pub sink: EventSink,
}

impl StageState {
    /// Fresh state for one Store.
    pub fn new(spec: StateSpec<'_>) -> std::io::Result<Self> {
        let budget = LogBudget::new(spec.limits.log_bytes);
        let wasi = wasi::build(WasiSpec {
            workspace: spec.workspace,
            env: spec.env,
            max_random: spec.limits.random_bytes,
            stage: spec.stage,
            sink: spec.sink.clone(),
            budget: budget.clone(),
        })?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(spec.limits.resource_handles);
        Ok(Self {
            wasi,
            table,
            limiter: StageLimiter::new(spec.limits),
            log: LogCtx::new(spec.stage, spec.sink, budget),
            unavailable: Unavailable::new(spec.stage),
            timed_out: false,
        })
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
