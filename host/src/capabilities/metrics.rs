//! The `metrics` import: range queries against a provider the stage
//! grants (`allow = { metrics = ["builtin", "prom"] }`) and the plugin's
//! manifest declares (`metrics`).
//!
//! - `builtin` answers from the local target's router: the requests each
//!   version answered in the window. It takes a selector
//!   `NAME{service="web", version="v2"}` (version optional), where NAME is
//!   `weir_requests` (count per step), `weir_errors` (5xx and failed
//!   upstreams per step) or `weir_latency_seconds` (one point per request,
//!   its latency: the raw sample statistics tests need).
//! - A `[providers.NAME] prometheus = "http://..."` provider sends the
//!   expression, as PromQL, to that server's `/api/v1/query_range`
//!   (`query-range`) or `/api/v1/query` (`query-instant`).
//!
//! Every answer is recorded on the tape for `weir replay`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::tape::{self, Tape};
use crate::bindings::host::weir::plugin::metrics;
use crate::bindings::host::weir::plugin::types::{self, HostError, MetricPoint, MetricSeries};
use crate::target::client::{TargetClient, ensure_up};

/// Longest window a query may cover.
pub const MAX_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Most points one answer may hold (Prometheus' own limit per series is
/// 11,000; this bounds the whole answer).
pub const MAX_POINTS: usize = 100_000;
/// Largest Prometheus answer read.
const MAX_ANSWER: usize = 32 << 20;
/// How long a Prometheus query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

pub use weir_pipeline::providers::Provider;

/// Per-Store state of the `metrics` import.
#[derive(Debug)]
pub struct MetricsCtx {
    /// The stage.
    pub stage: String,
    /// The plugin.
    pub plugin: String,
    /// Whether its manifest declares `metrics`.
    pub declared: bool,
    /// Providers the stage may query, by name.
    pub granted: BTreeMap<String, Provider>,
    /// The target's directory, for `builtin`.
    pub target_dir: Option<std::path::PathBuf>,
    /// The stage's tenant: the builtin provider reads only its services.
    pub tenant: String,
    /// Answers are recorded here (or, in a replay, come from here).
    pub tape: Tape,
}

/// A `builtin` selector, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Selector {
    name: String,
    service: String,
    version: Option<String>,
}

/// Why a `builtin` query is not a selector it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadSelector {
    /// A metric the builtin provider does not keep.
    #[error(
        "the builtin provider has no metric `{0}`; it has weir_requests, weir_errors and weir_latency_seconds"
    )]
    Metric(String),
    /// Not `NAME{...}`.
    #[error("`{0}` is not a selector like NAME{{service=\"web\"}}")]
    Shape(String),
    /// A matcher without `=`.
    #[error("`{0}` is not a label matcher like service=\"web\"")]
    Matcher(String),
    /// An unquoted value.
    #[error("the value of `{0}` must be quoted")]
    Unquoted(String),
    /// No `service` label.
    #[error("`{0}` names no service; add service=\"NAME\"")]
    NoService(String),
    /// A label other than `service` and `version`.
    #[error("the builtin provider has no label `{0}`; it has service and version")]
    Label(String),
}

fn parse_selector(expr: &str) -> Result<Selector, BadSelector> {
    let expr = expr.trim();
    let (name, rest) = expr.split_once('{').unwrap_or((expr, "}"));
    let name = name.trim();
    if !matches!(name, "weir_requests" | "weir_errors" | "weir_latency_seconds") {
        return Err(BadSelector::Metric(name.to_string()));
    }
    let body = rest
        .trim()
        .strip_suffix('}')
        .ok_or_else(|| BadSelector::Shape(expr.to_string()))?;
    let mut labels = BTreeMap::new();
    for part in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| BadSelector::Matcher(part.to_string()))?;
        let v = v
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| BadSelector::Unquoted(k.trim().to_string()))?;
        labels.insert(k.trim().to_string(), v.to_string());
    }
    let service = labels
        .remove("service")
        .ok_or_else(|| BadSelector::NoService(expr.to_string()))?;
    let version = labels.remove("version");
    if let Some(k) = labels.keys().next() {
        return Err(BadSelector::Label(k.clone()));
    }
    Ok(Selector {
        name: name.to_string(),
        service,
        version,
    })
}

/// The series of one `builtin` query from the requests in the window.
fn builtin_series(
    sel: &Selector,
    q: &metrics::Query,
    samples: crate::target::api::Samples,
) -> Vec<MetricSeries> {
    let mut out = Vec::new();
    for (version, requests) in samples.versions {
        if sel.version.as_ref().is_some_and(|v| *v != version) {
            continue;
        }
        let labels = vec![
            ("service".to_string(), sel.service.clone()),
            ("version".to_string(), version.clone()),
        ];
        let points = if sel.name == "weir_latency_seconds" {
            requests
                .iter()
                .map(|r| MetricPoint {
                    timestamp_ms: r.at_ms,
                    value: r.seconds,
                })
                .collect()
        } else {
            let errors_only = sel.name == "weir_errors";
            let step = q.step_ms.max(1);
            let mut points = Vec::new();
            let mut t = q.start_ms.saturating_add(step);
            loop {
                let t_end = t.min(q.end_ms);
                let n = requests
                    .iter()
                    .filter(|r| r.at_ms.saturating_add(step) > t_end && r.at_ms <= t_end)
                    .filter(|r| !errors_only || r.status >= 500)
                    .count();
                points.push(MetricPoint {
                    timestamp_ms: t_end,
                    value: n as f64,
                });
                if t >= q.end_ms {
                    break;
                }
                t = t.saturating_add(step);
            }
            points
        };
        out.push(MetricSeries {
            name: sel.name.clone(),
            labels,
            points,
        });
    }
    out
}

/// Series from a Prometheus `query_range` answer.
fn prometheus_series(answer: &Value, expr: &str) -> Result<Vec<MetricSeries>, String> {
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus refused the query: {} ({})",
            answer["error"].as_str().unwrap_or("no reason given"),
            answer["errorType"].as_str().unwrap_or("error")
        ));
    }
    let data = &answer["data"];
    if data["resultType"] == "scalar" {
        let point = |p: &Value| -> Option<MetricPoint> {
            Some(MetricPoint {
                timestamp_ms: (p.get(0)?.as_f64()? * 1000.0).round() as u64,
                value: p.get(1)?.as_str()?.parse().ok()?,
            })
        };
        return Ok(vec![MetricSeries {
            name: expr.to_string(),
            labels: Vec::new(),
            points: point(&data["result"]).into_iter().collect(),
        }]);
    }
    let Some(results) = data["result"].as_array() else {
        return Err("Prometheus answered without a result".into());
    };
    let mut out = Vec::new();
    for r in results {
        let mut labels: Vec<(String, String)> = r["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let name = labels
            .iter()
            .position(|(k, _)| k == "__name__")
            .map(|i| labels.remove(i).1)
            .unwrap_or_else(|| expr.to_string());
        let values: Vec<Value> = match (r["values"].as_array(), r.get("value")) {
            (Some(v), _) => v.clone(),
            (None, Some(one)) => vec![one.clone()],
            (None, None) => Vec::new(),
        };
        let points = values
            .iter()
            .filter_map(|p| {
                let t = p.get(0)?.as_f64()?;
                let v = p.get(1)?.as_str()?.parse::<f64>().ok()?;
                Some(MetricPoint {
                    timestamp_ms: (t * 1000.0).round() as u64,
                    value: v,
                })
            })
            .collect();
        out.push(MetricSeries { name, labels, points });
    }
    Ok(out)
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

async fn query_prometheus(base: &str, q: &metrics::Query) -> Result<Vec<MetricSeries>, HostError> {
    let url = format!(
        "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
        base.trim_end_matches('/'),
        crate::events::url_encoded(&q.expr),
        secs(q.start_ms),
        secs(q.end_ms),
        secs(q.step_ms.max(1))
    );
    prometheus_get(base, &url, &q.expr).await
}

/// GET a Prometheus API URL and read its series.
async fn prometheus_get(base: &str, url: &str, expr: &str) -> Result<Vec<MetricSeries>, HostError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| HostError::Invalid(format!("the provider URL {base} is not usable: {e}")))?;
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let work = async {
        let r = client
            .get(uri)
            .await
            .map_err(|e| HostError::Failed(format!("Prometheus at {base} did not answer: {e}")))?;
        let status = r.status();
        let body = Limited::new(r.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                HostError::Limit(format!(
                    "Prometheus' answer could not be read (limit {MAX_ANSWER} bytes): {e}"
                ))
            })?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).map_err(|e| {
            HostError::Failed(format!(
                "Prometheus at {base} answered {status} with no JSON: {e}"
            ))
        })?;
        prometheus_series(&answer, expr).map_err(HostError::Failed)
    };
    tokio::time::timeout(QUERY_TIMEOUT, work).await.map_err(|_| {
        HostError::Limit(format!(
            "Prometheus at {base} did not answer within {} s",
            QUERY_TIMEOUT.as_secs()
        ))
    })?
}

impl super::Gated for MetricsCtx {
    const GATE: super::Gate = super::Gate {
        interface: "weir:plugin/metrics",
        capability: crate::bindings::types::Capability::Metrics,
        declared_as: "metrics",
        grant_hint: "allow = { metrics = [\"PROVIDER\"] }",
    };

    fn granted(grants: &crate::plan::Grants) -> bool {
        !grants.metrics.is_empty()
    }

    /// The granted providers, by name: the pipeline's, and `builtin`
    /// (the local target) without declaring it; a granted name the
    /// pipeline does not define is not reachable.
    fn new(facts: &super::Facts<'_>) -> Self {
        let granted = facts
            .grants
            .metrics
            .iter()
            .filter_map(|name| {
                let provider = match facts.target.providers.get(name) {
                    Some(p) => p.clone(),
                    None if name == "builtin" => Provider::Builtin,
                    None => return None,
                };
                Some((name.clone(), provider))
            })
            .collect();
        Self {
            stage: facts.stage.to_string(),
            plugin: facts.plugin.to_string(),
            declared: facts.declares(Self::GATE.capability),
            granted,
            target_dir: facts.target.dir.clone(),
            tenant: facts.tenant.to_string(),
            tape: facts.tape.clone(),
        }
    }

    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static,
    {
        metrics::add_to_linker::<_, wasmtime::component::HasSelf<Self>>(linker, get)
    }
}

impl MetricsCtx {
    /// Both keys: the manifest declares `metrics`, the stage grants
    /// `provider`.
    fn provider(&self, call: &str, provider: &str) -> Result<Provider, HostError> {
        if !self.declared {
            return Err(HostError::Denied(format!(
                "metrics:{call} refused: plugin `{}` does not declare the `metrics` capability in its manifest",
                self.plugin
            )));
        }
        self.granted.get(provider).cloned().ok_or_else(|| {
            HostError::Denied(format!(
                "metrics provider `{provider}` is not granted to stage `{}`; grant it with allow = {{ metrics = [\"{provider}\"] }}",
                self.stage
            ))
        })
    }

    async fn instant(&mut self, q: &metrics::Instant) -> Result<Vec<MetricSeries>, HostError> {
        match self.provider("query-instant", &q.provider)? {
            Provider::Builtin => Err(HostError::Invalid(
                "the builtin provider answers range queries only (its data is a window of requests); use query-range"
                    .into(),
            )),
            Provider::Prometheus(base) => {
                let url = format!(
                    "{}/api/v1/query?query={}&time={}",
                    base.trim_end_matches('/'),
                    crate::events::url_encoded(&q.expr),
                    secs(q.at_ms)
                );
                let series = prometheus_get(&base, &url, &q.expr).await?;
                let points: usize = series.iter().map(|s| s.points.len()).sum();
                if points > MAX_POINTS {
                    return Err(HostError::Limit(format!(
                        "the answer holds {points} series; the limit is {MAX_POINTS} (narrow the query)"
                    )));
                }
                Ok(series)
            }
        }
    }

    async fn query(&mut self, q: &metrics::Query) -> Result<Vec<MetricSeries>, HostError> {
        let provider = self.provider("query-range", &q.provider)?;
        if q.end_ms < q.start_ms || q.end_ms - q.start_ms > MAX_WINDOW_MS {
            return Err(HostError::Invalid(format!(
                "the window {}..{} ms is empty, backwards or longer than the limit of {} h",
                q.start_ms,
                q.end_ms,
                MAX_WINDOW_MS / 3_600_000
            )));
        }
        let steps = (q.end_ms - q.start_ms) / q.step_ms.max(1);
        if steps as usize > MAX_POINTS {
            return Err(HostError::Limit(format!(
                "the query asks for {steps} steps; the limit is {MAX_POINTS} points (use a longer step)"
            )));
        }
        let series = match provider {
            Provider::Builtin => {
                let sel = parse_selector(&q.expr).map_err(|e| HostError::Invalid(e.to_string()))?;
                let Some(dir) = &self.target_dir else {
                    return Err(HostError::Unavailable(
                        "the builtin provider needs the local target, which is not offered here".into(),
                    ));
                };
                let client: TargetClient = ensure_up(dir, None)
                    .await
                    .map(|(c, _)| c.for_tenant(&self.tenant))
                    .map_err(super::runtime::host_error)?;
                let samples = client
                    .samples(&sel.service, q.start_ms, q.end_ms)
                    .await
                    .map_err(super::runtime::host_error)?;
                builtin_series(&sel, q, samples)
            }
            Provider::Prometheus(url) => query_prometheus(&url, q).await?,
        };
        let points: usize = series.iter().map(|s| s.points.len()).sum();
        if points > MAX_POINTS {
            return Err(HostError::Limit(format!(
                "the answer holds {points} points; the limit is {MAX_POINTS} (narrow the window or the query)"
            )));
        }
        Ok(series)
    }
}

fn series_json(series: &[MetricSeries]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "labels": s.labels.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                    "points": s.points.iter().map(|p| json!([p.timestamp_ms, p.value])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

impl metrics::Host for MetricsCtx {
    async fn query_range(&mut self, q: metrics::Query) -> Result<Vec<types::MetricSeries>, HostError> {
        let request = json!({
            "provider": q.provider,
            "expr": q.expr,
            "start_ms": q.start_ms,
            "end_ms": q.end_ms,
            "step_ms": q.step_ms,
        });
        if let Some(answer) = self.tape.answer("metrics.query-range", &request) {
            return match tape::error_of(&answer) {
                Some(e) => Err(e),
                None => Ok(super::unavailable::series_of(&answer["ok"])),
            };
        }
        let result = self.query(&q).await;
        let answer = match &result {
            Ok(series) => json!({ "ok": series_json(series) }),
            Err(e) => tape::error_answer(e),
        };
        self.tape.record("metrics.query-range", request, answer);
        result
    }

    async fn query_instant(&mut self, q: metrics::Instant) -> Result<Vec<types::MetricSeries>, HostError> {
        let request = json!({ "provider": q.provider, "expr": q.expr, "at_ms": q.at_ms });
        if let Some(answer) = self.tape.answer("metrics.query-instant", &request) {
            return match tape::error_of(&answer) {
                Some(e) => Err(e),
                None => Ok(super::unavailable::series_of(&answer["ok"])),
            };
        }
        let result = self.instant(&q).await;
        let answer = match &result {
            Ok(series) => json!({ "ok": series_json(series) }),
            Err(e) => tape::error_answer(e),
        };
        self.tape.record("metrics.query-instant", request, answer);
        result
    }
}

#[cfg(test)]
mod tests;
