//! `canary-metrics`: judges a canary from the traffic of its analysis
//! window, the way Kayenta does, against the `builtin` provider (the
//! local target's router) or a Prometheus server scraping it.
//!
//! - Must have data: fewer than `min-requests` candidate requests in the
//!   window is `inconclusive`, never a pass.
//! - Thresholds: `max-error-rate` (5xx and failed upstreams over all
//!   requests), `max-p50-ms`, `max-p99-ms`, `min-request-rate` (per
//!   second).
//! - Comparison: when the stable version had traffic in the same window,
//!   a one-sided Mann-Whitney U test asks whether the candidate's
//!   latencies are larger than the baseline's. It fails the canary when
//!   the p-value is below `1 - confidence` *and* the candidate's median is
//!   more than `max-latency-increase` above the baseline's *and* more
//!   than `min-latency-increase-ms` higher in absolute terms (a
//!   significant but negligible difference, such as 1.0 ms against
//!   1.2 ms on a busy machine, is not a regression). With `builtin` the
//!   samples are single requests; with Prometheus, per-second mean
//!   latencies.
//!
//! Every measurement is a finding with its value, threshold and verdict
//! in `fields`; the comparison's finding carries U, z and the p-value.

use serde::Deserialize;
use weir_sdk::metrics::{self, Instant, Query};
use weir_sdk::stats::{Alternative, mann_whitney_u};
use weir_sdk::{
    Analysis, Analyzer, Capability, Context, Failure, Finding, HostError, Manifest, MetricSeries, Plugin,
    Severity, Verdict,
};

struct CanaryMetrics;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "default_provider")]
    provider: String,
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    max_p50_ms: Option<f64>,
    #[serde(default)]
    max_p99_ms: Option<f64>,
    #[serde(default)]
    min_request_rate: Option<f64>,
    #[serde(default = "default_min_requests")]
    min_requests: u64,
    #[serde(default = "default_compare")]
    compare: bool,
    #[serde(default = "default_confidence")]
    confidence: f64,
    #[serde(default = "default_increase")]
    max_latency_increase: f64,
    #[serde(default = "default_increase_ms")]
    min_latency_increase_ms: f64,
    /// Filled in by the rollout controller.
    rollout: Option<Window>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Window {
    service: String,
    stable: Option<String>,
    candidate: String,
    start_ms: u64,
    end_ms: u64,
}

fn default_provider() -> String {
    "builtin".into()
}
fn default_min_requests() -> u64 {
    20
}
fn default_compare() -> bool {
    true
}
fn default_confidence() -> f64 {
    0.95
}
fn default_increase() -> f64 {
    0.2
}
fn default_increase_ms() -> f64 {
    1.0
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "provider": {"type": "string", "description": "`builtin` (the local target) or a [providers.NAME] Prometheus (default builtin); the stage must grant it in allow.metrics"},
    "max-error-rate": {"type": "number", "minimum": 0, "maximum": 1, "description": "Most 5xx answers over all answers, 0 to 1"},
    "max-p50-ms": {"type": "number", "minimum": 0, "description": "Highest median latency in ms"},
    "max-p99-ms": {"type": "number", "minimum": 0, "description": "Highest 99th-percentile latency in ms"},
    "min-request-rate": {"type": "number", "minimum": 0, "description": "Fewest requests per second the candidate must get"},
    "min-requests": {"type": "integer", "minimum": 1, "description": "Fewest candidate requests in the window before any verdict (default 20); fewer is inconclusive"},
    "compare": {"type": "boolean", "description": "Compare the candidate's latency with the stable version's by the Mann-Whitney U test (default true)"},
    "confidence": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1, "description": "The comparison's confidence (default 0.95: fail when p < 0.05)"},
    "max-latency-increase": {"type": "number", "minimum": 0, "description": "How much slower the candidate's median may be, relative, before a significant difference fails it (default 0.2)"},
    "min-latency-increase-ms": {"type": "number", "minimum": 0, "description": "How many ms higher the candidate's median must also be before a significant difference fails it (default 1)"},
    "rollout": {"type": "object", "description": "Set by the rollout controller: the service, versions and window"}
  }
}"#;

fn host(e: HostError) -> Failure {
    let m = match e {
        HostError::Denied(m)
        | HostError::Unavailable(m)
        | HostError::Invalid(m)
        | HostError::Limit(m)
        | HostError::Failed(m) => m,
    };
    Failure::new(format!("the metrics query failed: {m}"))
}

/// What one version did in the window.
#[derive(Debug, Default)]
struct Traffic {
    requests: f64,
    errors: f64,
    /// Latency samples in seconds (single requests or per-step means).
    latencies: Vec<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

fn query(provider: &str, expr: String, w: &Window, step_ms: u64) -> Result<Vec<MetricSeries>, Failure> {
    metrics::query_range(&Query {
        provider: provider.into(),
        expr,
        start_ms: w.start_ms,
        end_ms: w.end_ms,
        step_ms,
    })
    .map_err(host)
}

fn sum_points(series: &[MetricSeries]) -> f64 {
    series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .sum()
}

fn last_point(series: &[MetricSeries]) -> Option<f64> {
    series
        .iter()
        .flat_map(|s| s.points.last())
        .map(|p| p.value)
        .find(|v| v.is_finite())
}

/// The `q` quantile by nearest rank.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn builtin(provider: &str, w: &Window, version: &str) -> Result<Traffic, Failure> {
    let sel = |name: &str| format!("{name}{{service=\"{}\",version=\"{version}\"}}", w.service);
    let whole = (w.end_ms - w.start_ms).max(1);
    let requests = sum_points(&query(provider, sel("weir_requests"), w, whole)?);
    let errors = sum_points(&query(provider, sel("weir_errors"), w, whole)?);
    let mut latencies: Vec<f64> = query(provider, sel("weir_latency_seconds"), w, whole)?
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value))
        .filter(|v| v.is_finite())
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Traffic {
        requests,
        errors,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        latencies,
    })
}

fn prometheus(provider: &str, w: &Window, version: &str) -> Result<Traffic, Failure> {
    let m = format!("service=\"{}\",version=\"{version}\"", w.service);
    let secs = ((w.end_ms - w.start_ms) / 1000).max(1);
    let one = |expr: String| -> Result<Option<f64>, Failure> {
        let series = metrics::query_instant(&Instant {
            provider: provider.into(),
            expr,
            at_ms: w.end_ms,
        })
        .map_err(host)?;
        Ok(last_point(&series))
    };
    let requests = one(format!("sum(increase(weir_requests_total{{{m}}}[{secs}s]))"))?.unwrap_or(0.0);
    let errors = one(format!(
        "sum(increase(weir_requests_total{{{m},code=\"5xx\"}}[{secs}s]))"
    ))?
    .unwrap_or(0.0);
    let quantile = |q: f64| {
        one(format!(
            "histogram_quantile({q}, sum by (le) (increase(weir_request_duration_seconds_bucket{{{m}}}[{secs}s])))"
        ))
    };
    let p50 = quantile(0.5)?;
    let p99 = quantile(0.99)?;
    let means = query(
        provider,
        format!(
            "sum(rate(weir_request_duration_seconds_sum{{{m}}}[5s])) / sum(rate(weir_request_duration_seconds_count{{{m}}}[5s]))"
        ),
        w,
        1000,
    )?;
    let latencies = means
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value))
        .filter(|v| v.is_finite())
        .collect();
    Ok(Traffic {
        requests,
        errors,
        latencies,
        p50: p50.filter(|v| v.is_finite()),
        p99: p99.filter(|v| v.is_finite()),
    })
}

fn measured(rule: &str, ok: bool, message: String, fields: &[(&str, String)]) -> Finding {
    let mut f = Finding::new(rule, if ok { Severity::Info } else { Severity::High }, message)
        .field("verdict", if ok { "pass" } else { "fail" });
    for (k, v) in fields {
        f = f.field(*k, v.clone());
    }
    f
}

impl Plugin for CanaryMetrics {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Analyzer, [Capability::Metrics]);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Analyzer for CanaryMetrics {
    fn analyze(ctx: Context) -> Result<Analysis, Failure> {
        let config: Config = ctx.config()?;
        let Some(w) = &config.rollout else {
            return Err(Failure::new(
                "canary-metrics judges a rollout: use it in a deploy stage's `checks`, not as a stage",
            ));
        };
        let read = |version: &str| {
            if config.provider == "builtin" {
                builtin(&config.provider, w, version)
            } else {
                prometheus(&config.provider, w, version)
            }
        };
        let canary = read(&w.candidate)?;
        let seconds = ((w.end_ms - w.start_ms) as f64 / 1000.0).max(0.001);
        let mut findings = Vec::new();
        if canary.requests < config.min_requests as f64 {
            findings.push(
                Finding::new(
                    "must-have-data",
                    Severity::Medium,
                    format!(
                        "{} {} answered {} requests in the {:.1} s window; at least {} are needed for a verdict",
                        w.service, w.candidate, canary.requests.round(), seconds, config.min_requests
                    ),
                )
                .field("requests", format!("{}", canary.requests.round()))
                .field("min-requests", config.min_requests.to_string())
                .field("verdict", "inconclusive"),
            );
            return Ok(Analysis {
                findings,
                score: None,
                verdict: Verdict::Inconclusive,
                summary: Some(format!(
                    "{} requests, {} needed",
                    canary.requests.round(),
                    config.min_requests
                )),
            });
        }
        let mut failed = Vec::new();
        let error_rate = canary.errors / canary.requests;
        if let Some(max) = config.max_error_rate {
            let ok = error_rate <= max;
            if !ok {
                failed.push(format!(
                    "error rate {:.1}% > {:.1}%",
                    error_rate * 100.0,
                    max * 100.0
                ));
            }
            findings.push(measured(
                "error-rate",
                ok,
                format!(
                    "error rate {:.2}% (limit {:.2}%)",
                    error_rate * 100.0,
                    max * 100.0
                ),
                &[
                    ("value", format!("{error_rate:.6}")),
                    ("threshold", max.to_string()),
                    ("requests", format!("{}", canary.requests.round())),
                ],
            ));
        }
        for (rule, q, max) in [
            ("p50-latency", canary.p50, config.max_p50_ms),
            ("p99-latency", canary.p99, config.max_p99_ms),
        ] {
            let Some(max) = max else { continue };
            let Some(v) = q.map(|s| s * 1000.0) else {
                failed.push(format!("{rule}: no latency data"));
                continue;
            };
            let ok = v <= max;
            if !ok {
                failed.push(format!("{rule} {v:.0} ms > {max} ms"));
            }
            findings.push(measured(
                rule,
                ok,
                format!("{rule} {v:.1} ms (limit {max} ms)"),
                &[("value-ms", format!("{v:.3}")), ("threshold-ms", max.to_string())],
            ));
        }
        if let Some(min) = config.min_request_rate {
            let rate = canary.requests / seconds;
            let ok = rate >= min;
            if !ok {
                failed.push(format!("request rate {rate:.1}/s < {min}/s"));
            }
            findings.push(measured(
                "request-rate",
                ok,
                format!("{rate:.1} requests/s (least {min}/s)"),
                &[("value", format!("{rate:.3}")), ("threshold", min.to_string())],
            ));
        }
        if config.compare
            && let Some(stable) = &w.stable
        {
            let baseline = read(stable)?;
            let alpha = 1.0 - config.confidence;
            if baseline.latencies.len() < 2 || canary.latencies.len() < 2 {
                findings.push(
                    Finding::new(
                        "latency-comparison",
                        Severity::Info,
                        format!(
                            "not compared: the baseline {stable} had {} latency samples in the window (it takes no traffic at this step)",
                            baseline.latencies.len()
                        ),
                    )
                    .field("verdict", "skipped"),
                );
            } else if let Some(t) =
                mann_whitney_u(&canary.latencies, &baseline.latencies, Alternative::Greater)
            {
                let mut b = baseline.latencies.clone();
                b.sort_by(f64::total_cmp);
                let mut c = canary.latencies.clone();
                c.sort_by(f64::total_cmp);
                let (mb, mc) = (quantile(&b, 0.5).unwrap_or(0.0), quantile(&c, 0.5).unwrap_or(0.0));
                let increase = if mb > 0.0 { mc / mb - 1.0 } else { 0.0 };
                let ok = !(t.p_value < alpha
                    && increase > config.max_latency_increase
                    && (mc - mb) * 1000.0 > config.min_latency_increase_ms);
                if !ok {
                    failed.push(format!(
                        "slower than {stable}: median {:.1} ms vs {:.1} ms (p = {:.2e})",
                        mc * 1000.0,
                        mb * 1000.0,
                        t.p_value
                    ));
                }
                findings.push(measured(
                    "latency-comparison",
                    ok,
                    format!(
                        "Mann-Whitney U = {:.1}, p = {:.3e} (alpha {alpha:.3}); median {:.1} ms vs baseline {:.1} ms ({:+.0}%)",
                        t.u,
                        t.p_value,
                        mc * 1000.0,
                        mb * 1000.0,
                        increase * 100.0
                    ),
                    &[
                        ("u", format!("{:.1}", t.u)),
                        ("p-value", format!("{:.6e}", t.p_value)),
                        ("z", t.z.map(|z| format!("{z:.4}")).unwrap_or_else(|| "exact".into())),
                        ("alpha", format!("{alpha}")),
                        ("candidate-samples", c.len().to_string()),
                        ("baseline-samples", b.len().to_string()),
                        ("median-increase", format!("{increase:.4}")),
                    ],
                ));
            }
        }
        let verdict = if failed.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let summary = if failed.is_empty() {
            format!(
                "{} requests, {:.2}% errors, p99 {}",
                canary.requests.round(),
                error_rate * 100.0,
                canary
                    .p99
                    .map(|v| format!("{:.0} ms", v * 1000.0))
                    .unwrap_or_else(|| "n/a".into())
            )
        } else {
            failed.join("; ")
        };
        Ok(Analysis {
            findings,
            score: None,
            verdict,
            summary: Some(summary),
        })
    }
}

weir_sdk::export_analyzer!(CanaryMetrics);
