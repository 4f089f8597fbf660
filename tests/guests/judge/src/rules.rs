// Shared by `judge` and `judge-strict`, which differ in `FACTOR` and the
// version: latency (printed by `cat latency.txt`, through the `process`
// import) times FACTOR must not exceed the threshold (read from
// `threshold.txt` through WASI). A `metrics` query is made too, so its
// answer is recorded; this host answers `unavailable`.

use weir_sdk::process::Command;
use weir_sdk::{
    Analysis, Analyzer, Capability, Context, Failure, Finding, Manifest, Plugin, Severity, Verdict,
};

struct Judge;

impl Plugin for Judge {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Analyzer, [Capability::Process, Capability::Metrics]);
        m.name = "judge".into();
        m
    }
}

fn number(text: &str, what: &str) -> Result<u64, Failure> {
    text.trim()
        .parse()
        .map_err(|_| Failure::new(format!("{what} is not a number: {text:?}")))
}

impl Analyzer for Judge {
    fn analyze(_ctx: Context) -> Result<Analysis, Failure> {
        let exit = weir_sdk::process::run(&Command::new("cat").args(["latency.txt"]))?;
        let latency = number(&String::from_utf8_lossy(&exit.stdout), "latency.txt")?;
        let threshold = std::fs::read_to_string("threshold.txt")
            .map_err(|e| Failure::new(format!("threshold.txt: {e}")))?;
        let threshold = number(&threshold, "threshold.txt")?;
        let metrics = weir_sdk::metrics::query_range(&weir_sdk::metrics::Query {
            provider: "builtin".into(),
            expr: "weir_requests_total".into(),
            start_ms: 0,
            end_ms: 1,
            step_ms: 1,
        });
        let judged = latency * FACTOR;
        let mut findings = Vec::new();
        if judged > threshold {
            findings.push(Finding::new(
                "latency",
                Severity::High,
                format!("latency {latency} ms × {FACTOR} is over the threshold {threshold} ms"),
            ));
        }
        let verdict = if findings.is_empty() { Verdict::Pass } else { Verdict::Fail };
        Ok(Analysis {
            findings,
            score: None,
            verdict,
            summary: Some(format!(
                "latency {latency}, threshold {threshold}, metrics {}",
                if metrics.is_ok() { "answered" } else { "unavailable" }
            )),
        })
    }
}

weir_sdk::export_analyzer!(Judge);
