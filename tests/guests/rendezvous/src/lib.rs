//! Writes `<mark>.ready`, then waits for `<wait_for>.ready`. Two of these
//! waiting for each other both succeed only if they run at the same time.

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    mark: String,
    wait_for: String,
    within_ms: u64,
}

struct Rendezvous;

impl Plugin for Rendezvous {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

impl Stage for Rendezvous {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: Config = ctx.config()?;
        std::fs::write(format!("{}.ready", config.mark), b"").map_err(|e| Failure::new(e.to_string()))?;
        let start = std::time::Instant::now();
        let theirs = format!("{}.ready", config.wait_for);
        while std::fs::metadata(&theirs).is_err() {
            if start.elapsed().as_millis() as u64 > config.within_ms {
                return Err(Failure::new(format!(
                    "`{theirs}` never appeared: the stages did not run at the same time"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(StageOutput::new().output("met", config.wait_for))
    }
}

weir_sdk::export_stage!(Rendezvous);
