//! The one wasmtime [`Engine`] a host runs, configured for untrusted guests.
//!
//! - async, with the pooling allocator sized for many concurrent stages;
//! - epoch interruption driven by a ticker thread, so a guest in a loop is
//!   stopped at its deadline and yields to other stages meanwhile;
//! - a bounded wasm stack, well below the async stack, so deep recursion is
//!   a trap and never a host stack overflow;
//! - proposals weir does not use (threads, shared memory, memory64, GC,
//!   stack switching) switched off.

pub mod cache;
pub mod descriptors;
pub mod limits;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmFeatures};

pub use cache::{CacheOutcome, CompileCache};
pub use limits::{LimitHit, StageLimiter, StageLimits};

/// How often the epoch advances. A guest is interrupted (to yield, or to be
/// stopped at its deadline) at most this long after it should be.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Wasm stack a guest may use. A deeper recursion traps with "call stack
/// exhausted" instead of overflowing the host's stack.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// The native stack each running guest gets; must exceed [`MAX_WASM_STACK`]
/// with room for host calls made from the guest.
pub const ASYNC_STACK: usize = 4 << 20;

/// The largest linear memory any single plugin memory may reach; the
/// per-stage limit (default 256 MiB) is enforced below it by
/// [`StageLimiter`].
pub const MAX_MEMORY_PER_SLOT: usize = 4 << 30;

/// Settings for [`WeirEngine::new`].
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How many Stores may be alive at once. Each live stage uses one.
    pub max_live_stores: u32,
    /// Count wasm instructions (fuel) so a CPU budget can be set per stage.
    pub fuel: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_live_stores: 1000,
            fuel: false,
        }
    }
}

/// The engine and the ticker that drives its epochs.
#[derive(Clone)]
pub struct WeirEngine {
    engine: Engine,
    fuel: bool,
    _ticker: Arc<Ticker>,
}

impl WeirEngine {
    /// Build the engine and start its epoch ticker.
    pub fn new(settings: &EngineSettings) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(settings.fuel)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(ASYNC_STACK)
            .wasm_features(
                WasmFeatures::THREADS
                    | WasmFeatures::SHARED_EVERYTHING_THREADS
                    | WasmFeatures::MEMORY64
                    | WasmFeatures::GC
                    | WasmFeatures::STACK_SWITCHING
                    | WasmFeatures::EXCEPTIONS,
                false,
            );

        let n = settings.max_live_stores;
        let mut pool = PoolingAllocationConfig::new();
        // A Rust std guest instantiates a handful of core instances (the
        // program plus WASI adapters); Python and JavaScript guests more.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(MAX_MEMORY_PER_SLOT)
            // At least the per-stage table limit, so the limiter (which
            // names the limit) is what stops table growth, not the pool.
            .table_elements(StageLimits::default().table_elements)
            // Keep a few pages resident so reused slots start warm.
            .linear_memory_keep_resident(64 << 10)
            .max_unused_warm_slots(64);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

        let engine = Engine::new(&config)?;
        // Without the ticker no deadline ever fires and a looping guest
        // would pin a worker thread forever: refuse to run instead.
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Self {
            engine,
            fuel: settings.fuel,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether fuel metering is on.
    pub fn fuel(&self) -> bool {
        self.fuel
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "the ticker is its own OS thread, not a tokio worker"
                    )]
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
