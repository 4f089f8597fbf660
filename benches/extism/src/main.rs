//! Extism's create-plugin-and-call, the reference for weir's stage start
//! (`benches/run.sh`, section 1).
//!
//!   extism-bench ITERATIONS [ECHO_WASM]
//!
//! Prints `EXTISM <label> <median_ns> <p99_ns>` for:
//! - `precompiled`: `Plugin::new_from_compiled` from a `CompiledPlugin`
//!   made once, then one call of `echo` (Extism's cheapest path, and the
//!   one comparable to weir instantiating from an `InstancePre`);
//! - `from-bytes`: `Plugin::new` from the module's bytes (Extism's
//!   everyday path, which compiles the module every time unless a cache
//!   is configured), measured fewer times.
//!
//! WASI is linked in both, as it is for weir's `noop`.

use std::time::{Duration, Instant};

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};

const DEFAULT_ECHO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/echo/target/wasm32-unknown-unknown/release/extism_echo.wasm"
);

fn main() {
    if let Err(e) = run() {
        eprintln!("extism-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), extism::Error> {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3000);
    let path = args.next().unwrap_or_else(|| DEFAULT_ECHO.to_string());
    let bytes = std::fs::read(&path).map_err(|e| extism::Error::msg(format!("{path}: {e}")))?;
    let manifest = || Manifest::new([Wasm::data(bytes.clone())]);

    let compiled = CompiledPlugin::new(PluginBuilder::new(manifest()).with_wasi(true))?;
    let once = |plugin: &mut Plugin| -> Result<(), extism::Error> {
        let out: String = plugin.call("echo", "")?;
        if !out.is_empty() {
            return Err(extism::Error::msg("echo answered something else"));
        }
        Ok(())
    };
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 200 {
        let t = Instant::now();
        let mut plugin = Plugin::new_from_compiled(&compiled)?;
        once(&mut plugin)?;
        drop(plugin);
        if i >= 200 {
            samples.push(t.elapsed());
        }
    }
    report("precompiled", &mut samples);

    let mut samples = Vec::new();
    for i in 0..(iterations / 30).max(20) + 3 {
        let t = Instant::now();
        let mut plugin = Plugin::new(manifest(), [], true)?;
        once(&mut plugin)?;
        drop(plugin);
        if i >= 3 {
            samples.push(t.elapsed());
        }
    }
    report("from-bytes", &mut samples);
    Ok(())
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    println!("EXTISM {label} {} {}", at(0.5).as_nanos(), at(0.99).as_nanos());
}
