//! weir's benchmark harness: what a sandboxed stage costs, each figure
//! beside its reference measured in the same process on the same cores.
//!
//! ```sh
//! benches/run.sh                                  # everything, with ratios
//! cargo bench --bench stages -- start             # one section
//! ```
//!
//! Sections (`start`, `pipeline`, `process`, `concurrency`, `memory`) are
//! meant to run one per process, as `benches/run.sh` does, so each one's
//! peak RSS is its own. Nothing here asserts a time: these are
//! measurements, reported as medians, p99s and ratios.
//!
//! - `start`: one no-op stage (the built-in `noop`, WASI linked) through
//!   weir, against the same component instantiated and called with bare
//!   wasmtime, against spawning `/bin/true`, and against Extism's
//!   create-plugin-and-call when `WEIR_BENCH_EXTISM` names the
//!   `benches/extism` harness.
//! - `pipeline`: `weir run` of no-op pipelines of 1 to 1,000 stages (a
//!   chain and a fan-out) with the run history on; the cost per stage.
//! - `process`: `weir run` of one stage as a whole process, warm and cold
//!   compile cache, against `/bin/true`.
//! - `concurrency`: 1,000 runs of a five-stage chain from 100 tenants at
//!   once in one host, against bare wasmtime's throughput on the same
//!   runtime.
//! - `memory`: RSS per live stage with 1,000 stages alive at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use weir::bindings::stage::StagePluginPre;
use weir::bindings::types;
use weir::engine::{EngineSettings, StageLimits, WeirEngine};
use weir::events::{EventRecord, EventSink};
use weir::execute::{RunInfo, WasmExecutor};
use weir::plan::{Plan, PluginRef};
use weir::plugins::{LoadedPlugin, PluginLoader};
use weir::run::{AttemptRequest, AttemptResult, BoxFuture, Executor, RunOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

fn main() {
    // `cargo bench` passes `--bench`; the section is the first other word.
    let section = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "all".into());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start the tokio runtime: {e}")),
    };
    let outcome = runtime.block_on(async {
        match section.as_str() {
            "start" => start().await,
            "pipeline" => pipeline().await,
            "process" => process().await,
            "concurrency" => concurrency().await,
            "memory" => memory().await,
            "all" => {
                start().await?;
                pipeline().await?;
                process().await?;
                concurrency().await?;
                memory().await
            }
            other => Err(format!(
                "unknown section `{other}`: one of start, pipeline, process, concurrency, memory, all"
            )
            .into()),
        }
    });
    if let Err(e) = outcome {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(1);
}

// ---------------------------------------------------------------------------
// Figures

/// Median, p99 and mean of a set of samples.
#[derive(Debug, Clone, Copy)]
struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort();
        let n = samples.len().max(1);
        let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = samples.iter().sum();
        Stats {
            median: at(0.5),
            p99: at(0.99),
            mean: total / n as u32,
        }
    }
}

fn us(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 10_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn row(what: &str, s: &Stats, reference: Option<(&str, Duration)>) {
    let versus = reference
        .map(|(name, r)| format!("  {:.2}× {name}", ratio(s.median, r)))
        .unwrap_or_default();
    println!(
        "  {what:<46} median {:>10}  p99 {:>10}{versus}",
        us(s.median),
        us(s.p99)
    );
}

/// A line `benches/run.sh` collects into its summary.
fn figure(name: &str, value: f64, unit: &str, note: &str) {
    println!("FIGURE {name} {value:.3} {unit} {note}");
}

/// Resident KiB by kind of mapping: wasmtime's pool (reservations of a
/// GiB or more: linear memories, tables, fiber stacks), the memfd images
/// guests' memories start from, and everything else (the host's heap,
/// code, thread stacks).
fn rss_by_region() -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut pool, mut image, mut other) = (0, 0, 0);
    let mut size_kib = 0u64;
    let mut is_image = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: `start-end perms offset dev inode [path]`.
            let (start, end) = first.split_once('-').unwrap_or(("0", "0"));
            let start = u64::from_str_radix(start, 16).unwrap_or(0);
            let end = u64::from_str_radix(end, 16).unwrap_or(0);
            size_kib = end.saturating_sub(start) / 1024;
            is_image = line.contains("memfd:");
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if is_image {
                image += kib;
            } else if size_kib >= 1 << 20 {
                pool += kib;
            } else {
                other += kib;
            }
        }
    }
    (pool, image, other)
}

/// (current, peak) resident set of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---------------------------------------------------------------------------
// Set-up shared by the sections

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("weir-bench-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir.canonicalize()?))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn engine(max_live_stores: u32) -> Result<WeirEngine> {
    Ok(WeirEngine::new(&EngineSettings {
        max_live_stores,
        fuel: false,
    })
    .map_err(|e| format!("{e:#}"))?)
}

async fn load(loader: &PluginLoader, plugin: PluginRef) -> Result<Arc<LoadedPlugin>> {
    Ok(loader.load(&plugin).await.map_err(|e| e.to_string())?)
}

fn noop_ref() -> PluginRef {
    PluginRef::Builtin("noop".into())
}

/// An event sink whose events are counted and dropped, as a reporter
/// would read them.
fn sink(run: &str) -> (EventSink, tokio::task::JoinHandle<u64>) {
    let (sink, mut rx) = EventSink::channel(run);
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(_record) = rx.recv().await {
            let _: EventRecord = _record;
            n += 1;
        }
        n
    });
    (sink, drain)
}

fn run_info(run_id: &str, tenant: &str, workspace: &Path, artifacts: &Path) -> RunInfo {
    RunInfo {
        run_id: run_id.into(),
        pipeline: "bench".into(),
        tenant: tenant.into(),
        workspace: workspace.to_path_buf(),
        limits: StageLimits::default(),
        secrets: weir::config::tenants::Tenant::unrestricted_default().secrets,
        artifacts: weir::artifacts::ArtifactStore::new(artifacts.to_path_buf()),
        history: None,
        target: Default::default(),
        stopping: Default::default(),
    }
}

fn request(stage: &str, config: &str) -> AttemptRequest {
    AttemptRequest {
        stage: 0,
        stage_name: stage.into(),
        attempt: 1,
        config: config.into(),
        env: Vec::new(),
        secret_env: Vec::new(),
        inputs: Vec::new(),
        timeout: Duration::from_secs(600),
        environment: None,
        grants: Default::default(),
        sandbox: Default::default(),
        gate: Default::default(),
        cache: Default::default(),
    }
}

fn succeeded(result: &AttemptResult) -> Result<()> {
    match &result.failure {
        None => Ok(()),
        Some(f) => Err(format!("a stage failed: {}", f.message).into()),
    }
}

/// A plan from pipeline text, with the built-in plugins.
fn plan(dir: &Path, text: String) -> Result<Plan> {
    let path = dir.join("pipeline.toml");
    let loaded = weir::config::parse(&path, text).map_err(|e| format!("{e:?}"))?;
    Ok(weir::plan::build(loaded, &weir::plugins::builtin::names()).map_err(|e| format!("{e:?}"))?)
}

/// `n` no-op stages: a chain (each needs the one before) or a fan-out
/// (none needs another).
fn noop_pipeline(n: usize, chain: bool) -> String {
    let mut text = String::from("[pipeline]\nname = \"bench\"\n");
    for i in 0..n {
        // The stage cache off: every stage runs (a no-op plugin is
        // pure, so it would otherwise be served from the cache).
        text.push_str(&format!("\n[stages.s{i}]\nuses = \"noop\"\ncache = false\n"));
        if chain && i > 0 {
            text.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    text
}

// ---------------------------------------------------------------------------
// Bare wasmtime: the floor

/// What a bare host gives a guest: WASI and nothing else.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The `noop` component linked with only WASI (weir's own imports are
/// traps), on weir's engine so both run the same compiled code.
struct Floor {
    engine: WeirEngine,
    pre: StagePluginPre<Bare>,
}

impl Floor {
    fn new(engine: &WeirEngine) -> Result<Floor> {
        let bytes = weir::plugins::builtin::bytes("noop").ok_or("the built-in `noop` is missing")?;
        let component = Component::new(engine.engine(), bytes).map_err(|e| format!("{e:#}"))?;
        let mut linker = Linker::<Bare>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| format!("{e:#}"))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| format!("{e:#}"))?;
        let pre = StagePluginPre::new(pre).map_err(|e| format!("{e:#}"))?;
        Ok(Floor {
            engine: engine.clone(),
            pre,
        })
    }

    /// One fresh Store, instantiate, call `run`, drop.
    async fn call(&self, ctx: &types::Context) -> Result<()> {
        let mut store = Store::new(
            self.engine.engine(),
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        // The engine interrupts by epoch; keep yielding, as weir does.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("{e:#}"))?;
        instance
            .weir_plugin_stage()
            .call_run(&mut store, ctx)
            .await
            .map_err(|e| format!("{e:#}"))?
            .map_err(|f| f.message)?;
        Ok(())
    }
}

fn context() -> types::Context {
    types::Context {
        run_id: "bench".into(),
        pipeline: "bench".into(),
        stage: "s0".into(),
        tenant: "default".into(),
        environment: None,
        attempt: 1,
        config: "{}".into(),
        inputs: Vec::new(),
        workspace: "/workspace".into(),
    }
}

// ---------------------------------------------------------------------------
// (1) The stage-start floor

const START_ITERS: usize = 3000;
const SPAWN_ITERS: usize = 500;
/// Length of the chain whose per-stage share is weir's stage start.
const CHAIN: usize = 100;

/// Iterations of (1), `WEIR_BENCH_ITERS` to change (a profiler run wants
/// fewer).
fn start_iters() -> usize {
    std::env::var("WEIR_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(START_ITERS)
}

async fn start() -> Result<()> {
    let iters = start_iters();
    println!("(1) stage start: one no-op stage, {iters} times each, one at a time");
    let scratch = Scratch::new("start")?;
    let workspace = scratch.0.join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let engine = engine(1000)?;
    let loader = PluginLoader::new(engine.clone(), None).map_err(|e| format!("{e:#}"))?;
    let noop = load(&loader, noop_ref()).await?;

    // The floor: bare wasmtime, same component, same engine.
    let floor = Floor::new(&engine)?;
    let ctx = context();
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + 200 {
        let t = Instant::now();
        floor.call(&ctx).await?;
        if i >= 200 {
            samples.push(t.elapsed());
        }
    }
    let bare = Stats::of(&mut samples);

    // weir's attempt: fresh StageState (WASI, limits, log, grants), a
    // Store with its deadline, instantiate, call, the result converted.
    let (events, drained) = sink("bench");
    let executor = Arc::new(WasmExecutor::new(
        engine.clone(),
        vec![noop.clone(); CHAIN],
        Default::default(),
        run_info("bench", "default", &workspace, &scratch.0.join("artifacts")),
        events.clone(),
    ));
    let req = request("s0", "{}");
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + 200 {
        let t = Instant::now();
        let result = executor.execute(req.clone()).await;
        if i >= 200 {
            samples.push(t.elapsed());
        }
        succeeded(&result)?;
    }
    let attempt = Stats::of(&mut samples);

    // A stage as the scheduler runs it, in a pipeline: the per-stage
    // share of an in-process 100-stage chain (stage events, inputs and
    // outputs, the attempt), and a whole one-stage run (which adds the
    // run's own set-up and `run_finished`).
    let chain = plan(&scratch.0, noop_pipeline(CHAIN, true))?;
    let staged = time_runs(&chain, &executor, &events, (iters / CHAIN).max(10), 2).await?;
    let one = plan(&scratch.0, noop_pipeline(1, true))?;
    let whole = time_runs(&one, &executor, &events, iters, 200).await?;
    drop(executor);
    drop(events);
    let _ = drained.await;

    // A native process per stage.
    let mut samples = Vec::with_capacity(SPAWN_ITERS);
    for i in 0..SPAWN_ITERS + 20 {
        let t = Instant::now();
        let status = Command::new("/bin/true").status()?;
        if i >= 20 {
            samples.push(t.elapsed());
        }
        if !status.success() {
            return Err("/bin/true failed".into());
        }
    }
    let spawn = Stats::of(&mut samples);

    row("bare wasmtime (the floor)", &bare, None);
    row(
        "weir attempt (Store, WASI, limits, call)",
        &attempt,
        Some(("floor", bare.median)),
    );
    row(
        &format!("weir stage in a pipeline (a {CHAIN}-chain / {CHAIN})"),
        &staged,
        Some(("floor", bare.median)),
    );
    row(
        "weir one-stage run, in-process",
        &whole,
        Some(("floor", bare.median)),
    );
    row(
        "spawn and wait for /bin/true",
        &spawn,
        Some(("floor", bare.median)),
    );
    println!(
        "  weir stage start (the attempt): {:.2}× the floor (goal ≤ 1.5×), {:.1}× faster than a process spawn (goal ≥ 10×)",
        ratio(attempt.median, bare.median),
        ratio(spawn.median, attempt.median)
    );
    println!(
        "  with the scheduler's hand-offs and events, in a pipeline: {:.2}× the floor, {:.1}× faster than a process spawn",
        ratio(staged.median, bare.median),
        ratio(spawn.median, staged.median)
    );
    figure("start.floor_us", bare.median.as_secs_f64() * 1e6, "us", "median");
    figure("start.floor_p99_us", bare.p99.as_secs_f64() * 1e6, "us", "p99");
    figure(
        "start.attempt_us",
        attempt.median.as_secs_f64() * 1e6,
        "us",
        "median",
    );
    figure("start.weir_us", staged.median.as_secs_f64() * 1e6, "us", "median");
    figure("start.weir_p99_us", staged.p99.as_secs_f64() * 1e6, "us", "p99");
    figure("start.run_us", whole.median.as_secs_f64() * 1e6, "us", "median");
    figure("start.spawn_us", spawn.median.as_secs_f64() * 1e6, "us", "median");

    if let Some(extism) = std::env::var_os("WEIR_BENCH_EXTISM") {
        let out = Command::new(&extism).arg(iters.to_string()).output()?;
        if !out.status.success() {
            return Err(format!(
                "the Extism harness failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| l.starts_with("EXTISM ")) {
            // EXTISM <label> <median_ns> <p99_ns>
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [_, label, median, p99] = parts[..] else {
                continue;
            };
            let (Ok(median), Ok(p99)) = (median.parse::<u64>(), p99.parse::<u64>()) else {
                continue;
            };
            let s = Stats {
                median: Duration::from_nanos(median),
                p99: Duration::from_nanos(p99),
                mean: Duration::ZERO,
            };
            row(&format!("extism {label}"), &s, Some(("floor", bare.median)));
            println!(
                "  weir is {:.1}× faster than extism {label} (the attempt; {:.1}× in a pipeline) (goal ≥ 3×)",
                ratio(s.median, attempt.median),
                ratio(s.median, staged.median)
            );
            figure(
                &format!("start.extism_{label}_us"),
                s.median.as_secs_f64() * 1e6,
                "us",
                "median",
            );
        }
    } else {
        println!("  (Extism not measured: benches/run.sh builds benches/extism and sets WEIR_BENCH_EXTISM)");
    }
    let _ = bare.mean;
    Ok(())
}

/// `plan` run in process `reps` times after `warmup` runs; each sample is
/// one run's time divided by its stages.
async fn time_runs(
    plan: &Plan,
    executor: &Arc<WasmExecutor>,
    events: &EventSink,
    reps: usize,
    warmup: usize,
) -> Result<Stats> {
    let stages = plan.stages.len().max(1) as u32;
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps + warmup {
        let t = Instant::now();
        let report = weir::run::run(
            plan,
            executor.clone(),
            events.clone(),
            options(2),
            std::future::pending(),
        )
        .await;
        if i >= warmup {
            samples.push(t.elapsed() / stages);
        }
        if report.status != weir::events::RunStatus::Succeeded {
            return Err(format!("a {stages}-stage run failed").into());
        }
    }
    Ok(Stats::of(&mut samples))
}

fn options(jobs: usize) -> RunOptions {
    RunOptions {
        admission: None,
        jobs,
        facts: Default::default(),
        fail_fast: false,
        reuse: Vec::new(),
        cancel_grace: weir::run::CANCEL_GRACE,
    }
}

// ---------------------------------------------------------------------------
// (2) and (3): `weir run`, the whole process

fn weir_bin() -> PathBuf {
    std::env::var_os("WEIR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir")))
}

/// What one `weir run --json` took: the process, and the run as it
/// reports itself (`run_finished.duration_ms`).
struct Timed {
    process: Duration,
    run_ms: u64,
}

fn weir_run(dir: &Path, cache: &Path) -> Result<Timed> {
    let t = Instant::now();
    let out = Command::new(weir_bin())
        .args(["run", "--json", "pipeline.toml"])
        .current_dir(dir)
        .env("WEIR_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()?;
    let process = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "`weir run` in {} failed: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("")
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run_ms = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "run_finished")
        .and_then(|v| v["duration_ms"].as_u64())
        .ok_or("`weir run --json` printed no run_finished event")?;
    Ok(Timed { process, run_ms })
}

fn median_of(mut v: Vec<Duration>) -> Duration {
    Stats::of(&mut v).median
}

/// The floor from (1), measured again here so this section stands alone.
async fn floor_median() -> Result<Duration> {
    let engine = engine(16)?;
    let floor = Floor::new(&engine)?;
    let ctx = context();
    let mut samples = Vec::new();
    for i in 0..3500 {
        let t = Instant::now();
        floor.call(&ctx).await?;
        if i >= 500 {
            samples.push(t.elapsed());
        }
    }
    Ok(median_of(samples))
}

async fn pipeline() -> Result<()> {
    println!("(2) pipeline overhead: `weir run` of no-op pipelines, run history on, warm compile cache");
    let floor = floor_median().await?;
    let scratch = Scratch::new("pipeline")?;
    let cache = scratch.0.join("cache");
    let mut base: Option<Duration> = None;
    println!(
        "  {:<18} {:>6} {:>12} {:>12} {:>14} {:>10}",
        "shape", "stages", "process", "run", "per stage", "vs floor"
    );
    for chain in [true, false] {
        for n in [1usize, 10, 100, 1000] {
            if !chain && n == 1 {
                continue;
            }
            let dir = scratch
                .0
                .join(format!("{}-{n}", if chain { "chain" } else { "fan" }));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("pipeline.toml"), noop_pipeline(n, chain))?;
            let reps = match n {
                1 | 10 => 40,
                100 => 20,
                _ => 5,
            };
            // One run first: the compile cache and the history's database.
            weir_run(&dir, &cache)?;
            let mut process = Vec::new();
            let mut run = Vec::new();
            for _ in 0..reps {
                let t = weir_run(&dir, &cache)?;
                process.push(t.process);
                run.push(Duration::from_millis(t.run_ms));
            }
            let process = median_of(process);
            let run = median_of(run);
            if n == 1 {
                base = Some(process);
            }
            // The cost of the stages themselves: this pipeline's process
            // less the one-stage process, spread over the extra stages,
            // plus one stage's share.
            let per_stage = match base {
                Some(b) if n > 1 => process.saturating_sub(b) / (n as u32 - 1),
                _ => process,
            };
            let shape = if chain { "chain" } else { "fan-out" };
            let (per, versus) = if n > 1 {
                (us(per_stage), format!("{:.1}×", ratio(per_stage, floor)))
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "  {shape:<18} {n:>6} {:>12} {:>12} {per:>14} {versus:>10}",
                us(process),
                format!("{} ms", run.as_millis()),
            );
            if n > 1 {
                figure(
                    &format!("pipeline.{shape}_{n}_per_stage_us"),
                    per_stage.as_secs_f64() * 1e6,
                    "us",
                    "marginal",
                );
            }
            figure(
                &format!("pipeline.{shape}_{n}_process_ms"),
                process.as_secs_f64() * 1e3,
                "ms",
                "median",
            );
            if chain && n == 100 {
                let stages = process.saturating_sub(base.unwrap_or_default()) * 100 / 99;
                println!(
                    "  a 100-stage chain costs {} beyond the process start: {:.2}× 100 × the floor ({}) (goal ≤ 3×)",
                    us(stages),
                    ratio(stages, floor * 100),
                    us(floor * 100)
                );
                figure(
                    "pipeline.chain_100_vs_floor",
                    ratio(stages, floor * 100),
                    "x",
                    "ratio",
                );
            }
        }
    }
    println!(
        "  (floor: {} per stage, bare wasmtime, measured in this section)",
        us(floor)
    );
    Ok(())
}

async fn process() -> Result<()> {
    println!("(3) process start to finish: `weir run` of a one-stage pipeline");
    let scratch = Scratch::new("process")?;
    let dir = scratch.0.join("p");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("pipeline.toml"), noop_pipeline(1, true))?;
    let warm_cache = scratch.0.join("cache");
    weir_run(&dir, &warm_cache)?;
    let mut warm = Vec::new();
    for _ in 0..30 {
        warm.push(weir_run(&dir, &warm_cache)?.process);
    }
    let mut cold = Vec::new();
    for i in 0..8 {
        let empty = scratch.0.join(format!("cold-{i}"));
        cold.push(weir_run(&dir, &empty)?.process);
    }
    let mut spawn = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        Command::new("/bin/true").status()?;
        spawn.push(t.elapsed());
    }
    let warm = Stats::of(&mut warm);
    let cold = Stats::of(&mut cold);
    let spawn = Stats::of(&mut spawn);
    row("/bin/true", &spawn, None);
    row(
        "weir run, warm compile cache",
        &warm,
        Some(("/bin/true", spawn.median)),
    );
    row(
        "weir run, cold compile cache",
        &cold,
        Some(("/bin/true", spawn.median)),
    );
    println!(
        "  a cold cache adds {} (compiling `noop`)",
        us(cold.median.saturating_sub(warm.median))
    );
    figure("process.warm_ms", warm.median.as_secs_f64() * 1e3, "ms", "median");
    figure("process.cold_ms", cold.median.as_secs_f64() * 1e3, "ms", "median");
    figure(
        "process.true_ms",
        spawn.median.as_secs_f64() * 1e3,
        "ms",
        "median",
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// (4) Concurrency

const RUNS: usize = 1000;
const TENANTS: usize = 100;
const STAGES_PER_RUN: usize = 5;

/// Times every attempt the scheduler asks for.
struct Timing {
    inner: WasmExecutor,
    samples: Arc<Mutex<Vec<Duration>>>,
}

impl Executor for Timing {
    fn plugin_label(&self, stage: usize) -> String {
        self.inner.plugin_label(stage)
    }

    fn execute(&self, request: AttemptRequest) -> BoxFuture<AttemptResult> {
        let call = self.inner.execute(request);
        let samples = self.samples.clone();
        Box::pin(async move {
            let t = Instant::now();
            let result = call.await;
            if let Ok(mut s) = samples.lock() {
                s.push(t.elapsed());
            }
            result
        })
    }
}

async fn concurrency() -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "(4) concurrency: {RUNS} runs of a {STAGES_PER_RUN}-stage no-op chain from {TENANTS} tenants at once, {workers} worker threads"
    );
    let scratch = Scratch::new("concurrency")?;
    let engine = engine(RUNS as u32 + 16)?;
    let loader = PluginLoader::new(engine.clone(), None).map_err(|e| format!("{e:#}"))?;
    let noop = load(&loader, noop_ref()).await?;
    let chain = Arc::new(plan(&scratch.0, noop_pipeline(STAGES_PER_RUN, true))?);

    // Bare wasmtime on the same runtime: as many instantiate-and-call
    // tasks as weir runs stages, RUNS at a time.
    let floor = Arc::new(Floor::new(&engine)?);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RUNS {
        let floor = floor.clone();
        tasks.spawn(async move {
            let ctx = context();
            for _ in 0..STAGES_PER_RUN {
                floor.call(&ctx).await?;
            }
            Ok::<(), Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let bare_wall = t.elapsed();
    let bare_rate = (RUNS * STAGES_PER_RUN) as f64 / bare_wall.as_secs_f64();
    let (rss_before, _) = rss_kib();

    // weir: one executor (workspace, events) per run, in the tenant's root.
    let samples = Arc::new(Mutex::new(Vec::with_capacity(RUNS * STAGES_PER_RUN)));
    let mut runs = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let tenant = format!("tenant-{:03}", i % TENANTS);
        let run_id = format!("run-{i:04}");
        let root = scratch.0.join(&tenant).join(&run_id);
        let workspace = root.join("workspace");
        std::fs::create_dir_all(&workspace)?;
        let (events, drained) = sink(&run_id);
        let executor = Arc::new(Timing {
            inner: WasmExecutor::new(
                engine.clone(),
                vec![noop.clone(); STAGES_PER_RUN],
                Default::default(),
                run_info(&run_id, &tenant, &workspace, &root.join("artifacts")),
                events.clone(),
            ),
            samples: samples.clone(),
        });
        runs.push((executor, events, drained));
    }
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut drains = Vec::new();
    for (executor, events, drained) in runs {
        let chain = chain.clone();
        drains.push(drained);
        tasks.spawn(async move {
            weir::run::run(&chain, executor, events, options(2), std::future::pending()).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        if done?.status != weir::events::RunStatus::Succeeded {
            return Err("a run failed".into());
        }
    }
    let wall = t.elapsed();
    let mut events = 0;
    for d in drains {
        events += d.await?;
    }
    let (_, peak) = rss_kib();
    let rate = (RUNS * STAGES_PER_RUN) as f64 / wall.as_secs_f64();
    let mut latencies = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let latency = Stats::of(&mut latencies);
    println!(
        "  bare wasmtime       {:>9.0} stages/s  ({} for {} stages)",
        bare_rate,
        us(bare_wall),
        RUNS * STAGES_PER_RUN
    );
    println!(
        "  weir                {:>9.0} stages/s  ({} for {} stages, {events} events): {:.2}× bare wasmtime (goal ≥ 0.5×)",
        rate,
        us(wall),
        RUNS * STAGES_PER_RUN,
        rate / bare_rate
    );
    println!(
        "  stage latency under this load: median {}, p99 {}",
        us(latency.median),
        us(latency.p99)
    );
    println!(
        "  peak RSS {} MiB (before the runs: {} MiB)",
        peak / 1024,
        rss_before / 1024
    );
    figure("concurrency.weir_stages_per_s", rate, "1/s", "");
    figure("concurrency.bare_stages_per_s", bare_rate, "1/s", "");
    figure("concurrency.ratio", rate / bare_rate, "x", "");
    figure(
        "concurrency.p99_stage_ms",
        latency.p99.as_secs_f64() * 1e3,
        "ms",
        "",
    );
    figure("concurrency.peak_rss_mib", peak as f64 / 1024.0, "MiB", "");
    Ok(())
}

// ---------------------------------------------------------------------------
// (5) Memory per live stage

const LIVE: usize = 1000;

fn rendezvous_path() -> PathBuf {
    std::env::var_os("WEIR_BENCH_LIVE_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/guests/wasm32-wasip2/release/rendezvous.wasm")
        })
}

async fn memory() -> Result<()> {
    println!("(5) memory: {LIVE} live stages at once (each waits, inside its plugin, for a file)");
    let scratch = Scratch::new("memory")?;
    let workspace = scratch.0.join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let engine = engine(LIVE as u32 + 16)?;
    let loader = PluginLoader::new(engine.clone(), None).map_err(|e| format!("{e:#}"))?;
    let path = rendezvous_path();
    if !path.is_file() {
        return Err(format!(
            "{} is missing; `cargo build` builds it (tests/guests/rendezvous)",
            path.display()
        )
        .into());
    }
    let plugin = load(
        &loader,
        PluginRef::File {
            name: "rendezvous".into(),
            path,
            sha256: None,
        },
    )
    .await?;
    let (events, drained) = sink("bench");
    let executor = Arc::new(WasmExecutor::new(
        engine.clone(),
        vec![plugin],
        Default::default(),
        run_info("bench", "default", &workspace, &scratch.0.join("artifacts")),
        events.clone(),
    ));
    // One stage first, so what every stage shares (code, the allocator's
    // first slots, the runtime's threads) is in the baseline.
    std::fs::write(workspace.join("go.ready"), b"")?;
    succeeded(
        &executor
            .execute(request(
                "warm",
                r#"{"mark":"warm","wait_for":"go","within_ms":60000}"#,
            ))
            .await,
    )?;
    std::fs::remove_file(workspace.join("go.ready"))?;
    std::fs::remove_file(workspace.join("warm.ready"))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, _) = rss_kib();
    let regions_before = rss_by_region();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..LIVE {
        let executor = executor.clone();
        tasks.spawn(async move {
            let config = format!(r#"{{"mark":"s{i}","wait_for":"go","within_ms":600000}}"#);
            executor.execute(request(&format!("s{i}"), &config)).await
        });
    }
    // Every stage is live once it has written its mark.
    let waited = Instant::now();
    loop {
        let marks = std::fs::read_dir(&workspace)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
            .count();
        if marks >= LIVE {
            break;
        }
        if waited.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {marks} of {LIVE} stages started within 120 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (live, _) = rss_kib();
    let regions_live = rss_by_region();
    std::fs::write(workspace.join("go.ready"), b"")?;
    while let Some(done) = tasks.join_next().await {
        succeeded(&done?)?;
    }
    drop(executor);
    drop(events);
    let _ = drained.await;
    let per = (live.saturating_sub(before)) as f64 / LIVE as f64;
    println!(
        "  RSS {} MiB before, {} MiB with {LIVE} live: {per:.1} KiB per live stage (goal < 64 KiB)",
        before / 1024,
        live / 1024
    );
    let share = |live: u64, before: u64| live.saturating_sub(before) as f64 / LIVE as f64;
    println!(
        "  of which: wasmtime's pool (guest memories, tables, fiber stacks) {:.1} KiB, memory images {:.1} KiB, host heap and the rest {:.1} KiB",
        share(regions_live.0, regions_before.0),
        share(regions_live.1, regions_before.1),
        share(regions_live.2, regions_before.2),
    );
    figure("memory.per_live_stage_kib", per, "KiB", "");
    Ok(())
}
