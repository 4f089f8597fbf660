//! The API's own description, OpenAPI 3.1, generated from the handlers'
//! types and annotations (served at `/api/v1/openapi.json`), and the
//! server's Prometheus metrics (`/metrics`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::App;
use super::auth::Caller;
use super::problem::Problem;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "weir serve",
        description = "weir as a service: runs of configured repositories, their logs and events, forge webhooks. Errors are application/problem+json (RFC 9457). Every call but health, this document and webhooks needs `Authorization: Bearer weir_…` (`weir serve token create`).",
        license(name = "Apache-2.0 OR MIT"),
    ),
    paths(
        super::runs::create,
        super::runs::list,
        super::runs::get,
        super::runs::cancel,
        super::runs::rerun,
        super::stream::logs,
        super::stream::events,
        super::artifacts::list,
        super::artifacts::download,
        super::gates::approvals,
        super::gates::decide,
        super::gates::environments,
        super::gates::environment,
        super::gates::rollback,
        super::hooks::receive,
        super::routes::healthz,
        super::routes::readyz,
        metrics,
    ),
    components(schemas(super::runs::RunStatusFilter)),
    modifiers(&Security),
    tags(
        (name = "runs", description = "Queue, list, show, cancel and re-run runs"),
        (name = "logs", description = "A run's log and its live events"),
        (name = "artifacts", description = "What a run's stages kept, with digests"),
        (name = "approvals", description = "Deploys waiting for a person"),
        (name = "environments", description = "Deployed services: current release, history, rollback"),
        (name = "webhooks", description = "Deliveries from git forges"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("weir_ and 64 hex digits")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, as JSON.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Response {
    let mut r = json().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Prometheus metrics: runs by status, the queue's depth, stage durations,
/// and each tenant's stage time. An operator's token only: it names every
/// tenant.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("token" = [])), responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "Not an operator's token", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
))]
pub async fn metrics(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    if caller.tenant.is_some() {
        return Err(Problem::not_found("no such resource: /metrics"));
    }
    let (by_status, depth) = app
        .db
        .call(|s| -> Result<_, crate::store::StoreError> { Ok((s.runs_by_status()?, s.queue_depth()?)) })
        .await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP weir_runs Runs in the history, by status.\n# TYPE weir_runs gauge"
    );
    for (status, n) in by_status {
        let _ = writeln!(out, "weir_runs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP weir_queue_depth Runs waiting to start.\n# TYPE weir_queue_depth gauge"
    );
    let _ = writeln!(out, "weir_queue_depth {depth}");
    let running = app.running_per_tenant();
    let _ = writeln!(
        out,
        "# HELP weir_runs_in_progress Runs this server is running, per tenant.\n# TYPE weir_runs_in_progress gauge"
    );
    let mut tenants: Vec<_> = running.into_iter().collect();
    tenants.sort();
    for (tenant, n) in tenants {
        let _ = writeln!(out, "weir_runs_in_progress{{tenant=\"{}\"}} {n}", label(&tenant));
    }
    let m = app.metrics.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(
        out,
        "# HELP weir_stage_duration_seconds Stage wall time, by how the stage ended.\n# TYPE weir_stage_duration_seconds histogram"
    );
    let mut outcomes: Vec<_> = m.stage_seconds.iter().collect();
    outcomes.sort_by(|a, b| a.0.cmp(b.0));
    for (status, h) in outcomes {
        for (bound, n) in super::STAGE_BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(
                out,
                "weir_stage_duration_seconds_bucket{{status=\"{status}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "weir_stage_duration_seconds_bucket{{status=\"{status}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "weir_stage_duration_seconds_sum{{status=\"{status}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "weir_stage_duration_seconds_count{{status=\"{status}\"}} {}",
            h.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_tenant_stage_seconds_total Stage wall time per tenant.\n# TYPE weir_tenant_stage_seconds_total counter"
    );
    let mut usage: Vec<_> = m.tenants.iter().collect();
    usage.sort_by(|a, b| a.0.cmp(b.0));
    for (tenant, u) in &usage {
        let _ = writeln!(
            out,
            "weir_tenant_stage_seconds_total{{tenant=\"{}\"}} {}",
            label(tenant),
            u.stage_seconds
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_tenant_stages_total Stages run per tenant.\n# TYPE weir_tenant_stages_total counter"
    );
    for (tenant, u) in &usage {
        let _ = writeln!(
            out,
            "weir_tenant_stages_total{{tenant=\"{}\"}} {}",
            label(tenant),
            u.stages
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_tenant_fuel_total Fuel its guests burned, per tenant (counted for tenants with a fuel limit).\n# TYPE weir_tenant_fuel_total counter"
    );
    for (tenant, u) in &usage {
        let _ = writeln!(
            out,
            "weir_tenant_fuel_total{{tenant=\"{}\"}} {}",
            label(tenant),
            u.fuel
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_tenant_peak_memory_bytes The most linear memory one of its guests held, per tenant.\n# TYPE weir_tenant_peak_memory_bytes gauge"
    );
    for (tenant, u) in &usage {
        let _ = writeln!(
            out,
            "weir_tenant_peak_memory_bytes{{tenant=\"{}\"}} {}",
            label(tenant),
            u.peak_memory
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_http_responses_total Responses, by status.\n# TYPE weir_http_responses_total counter"
    );
    let mut codes: Vec<_> = m.requests.iter().collect();
    codes.sort();
    for (code, n) in codes {
        let _ = writeln!(out, "weir_http_responses_total{{code=\"{code}\"}} {n}");
    }
    drop(m);
    if let Some(remote) = &app.remote {
        workers(
            &mut out,
            &remote.workers.lock().unwrap_or_else(|e| e.into_inner()),
        );
    }
    let mut r = (StatusCode::OK, out).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// The workers' figures, from their last heartbeats.
fn workers(out: &mut String, beats: &[crate::fleet::wire::WorkerBeat]) {
    let now = crate::events::now_ms();
    let _ = writeln!(
        out,
        "# HELP weir_worker_up Workers that sent a heartbeat in the last 30 s (1), by state.\n# TYPE weir_worker_up gauge"
    );
    for b in beats {
        let up = u8::from(now.saturating_sub(b.time_ms) < 30_000 && b.state != "stopped");
        let _ = writeln!(
            out,
            "weir_worker_up{{worker=\"{}\",state=\"{}\",labels=\"{}\",version=\"{}\"}} {up}",
            label(&b.id),
            label(&b.state),
            label(&b.labels.join(",")),
            label(&b.version)
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_worker_runs_in_progress Runs each worker is running.\n# TYPE weir_worker_runs_in_progress gauge"
    );
    for b in beats {
        let _ = writeln!(
            out,
            "weir_worker_runs_in_progress{{worker=\"{}\"}} {}",
            label(&b.id),
            b.running.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_worker_runs_finished_total Runs each worker finished since it started.\n# TYPE weir_worker_runs_finished_total counter"
    );
    for b in beats {
        let _ = writeln!(
            out,
            "weir_worker_runs_finished_total{{worker=\"{}\"}} {}",
            label(&b.id),
            b.finished
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_worker_heartbeat_age_seconds Seconds since each worker's last heartbeat.\n# TYPE weir_worker_heartbeat_age_seconds gauge"
    );
    for b in beats {
        let _ = writeln!(
            out,
            "weir_worker_heartbeat_age_seconds{{worker=\"{}\"}} {}",
            label(&b.id),
            now.saturating_sub(b.time_ms) as f64 / 1000.0
        );
    }
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        for path in [
            "/api/v1/runs",
            "/api/v1/runs/{id}",
            "/api/v1/runs/{id}/events",
            "/api/v1/hooks/{forge}",
            "/metrics",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is missing");
        }
        assert!(doc["components"]["schemas"].get("Problem").is_some());
    }
}
