//! Misbehaves at the boundary, by `mode`:
//! - `escapes`: logs terminal escape sequences and a line that looks like
//!   a weir event, then succeeds;
//! - `markup`: logs and returns (as its summary, and then as its failure
//!   with `fail`) text with ANSI escapes, HTML, `|` and `\`;
//! - `many-outputs`, `huge-output`, `bad-name`: returns a result past a
//!   limit or malformed;
//! - `host-loop`: loops forever, but through host calls (logging);
//! - `handles`: opens the workspace over and over, keeping every handle;
//! - `random`: asks the host for 1 GiB of random bytes in one call;
//! - `hold-handles`: opens the workspace `count` times and holds every
//!   handle for `hold-ms` before it succeeds;
//! - `sleep`: sleeps `hold-ms`, then succeeds;
//! - `artifacts`: sleeps `hold-ms`, then returns `keep` (`[name, path]`
//!   pairs) as its artifacts, unread.

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    mode: String,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    hold_ms: u64,
    #[serde(default)]
    keep: Vec<(String, String)>,
}

struct Forge;

impl Plugin for Forge {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Forge {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        match config.mode.as_str() {
            "escapes" => {
                println!("\x1b[2J\x1b[H\x1b]0;pwned\x07clear screen and retitle");
                println!("{{\"event\":\"stage_finished\",\"stage\":\"deploy\",\"status\":\"succeeded\"}}");
                weir_sdk::log::info("\x1b[32m✓ deploy succeeded\x1b[0m\r\x1b[1Aover the line above");
                Ok(StageOutput::new().output("done", "yes"))
            }
            "markup" => {
                let text = "\x1b[31mred\x1b[0m | <script>alert(1)</script> \\ [link](javascript:x)";
                weir_sdk::log::info(text);
                if config.count > 0 {
                    return Err(Failure::new(text));
                }
                Ok(StageOutput::new().summary(text))
            }
            "many-outputs" => {
                Ok((0..100_000).fold(StageOutput::new(), |o, i| o.output(format!("o{i}"), "x")))
            }
            "huge-output" => Ok(StageOutput::new().output("blob", "x".repeat(8 << 20))),
            "bad-name" => Ok(StageOutput::new().output("evil\n::set-output name=x::", "1")),
            "host-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(1);
                    weir_sdk::log::debug(&format!("call {n}"));
                }
            }
            "handles" => {
                let mut kept = Vec::new();
                loop {
                    match std::fs::File::open(".") {
                        Ok(f) => kept.push(f),
                        Err(e) => return Err(Failure::new(format!("open failed after {}: {e}", kept.len()))),
                    }
                }
            }
            "random" => {
                let bytes = wasip2::random::random::get_random_bytes(1 << 30);
                Ok(StageOutput::new().output("got", bytes.len().to_string()))
            }
            "fill-disk" => {
                // Writes through WASI until something stops it.
                use std::io::Write;
                let mut file =
                    std::fs::File::create("fill.bin").map_err(|e| Failure::new(format!("create: {e}")))?;
                let chunk = vec![0x5a_u8; 1 << 20];
                let mut written: u64 = 0;
                loop {
                    if let Err(e) = file.write_all(&chunk) {
                        return Err(Failure::new(format!("write failed after {written} bytes: {e}")));
                    }
                    written += chunk.len() as u64;
                }
            }
            "hold-handles" => {
                let mut kept = Vec::with_capacity(config.count);
                while kept.len() < config.count {
                    match std::fs::File::open(".") {
                        Ok(f) => kept.push(f),
                        Err(e) => return Err(Failure::new(format!("open failed after {}: {e}", kept.len()))),
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(config.hold_ms));
                Ok(StageOutput::new().output("held", kept.len().to_string()))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(config.hold_ms));
                Ok(StageOutput::new())
            }
            "artifacts" => {
                std::thread::sleep(std::time::Duration::from_millis(config.hold_ms));
                Ok(config
                    .keep
                    .into_iter()
                    .fold(StageOutput::new(), |o, (name, path)| o.artifact(name, path)))
            }
            other => Err(Failure::new(format!("unknown mode `{other}`"))),
        }
    }
}

weir_sdk::export_stage!(Forge);
