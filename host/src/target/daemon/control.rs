//! The control API ([`crate::target::api`]) as an axum router: every call
//! carries the target's token, bodies are at most [`MAX_BODY`] bytes of
//! JSON, and every refusal (an unknown call included) answers with an
//! [`ApiError`] body that the client reads.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Serialize;

use super::{MAX_BODY, Refusal, Target, invalid, not_found};
use crate::target::api::{
    ApiError, Lease, Promote, Restore, StartRequest, TENANT_HEADER, TOKEN_HEADER, Weights,
};

type Shared = State<Arc<Target>>;
type Answer = Result<Response, Refusal>;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, error) = self;
        (status, axum::Json(error)).into_response()
    }
}

/// The routes of the control API, for `target`.
pub fn router(target: Arc<Target>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/instances", post(start))
        .route("/v1/instances/{id}", delete(stop))
        .route("/v1/services/{service}", get(service))
        .route("/v1/services/{service}/weights", put(set_weights))
        .route("/v1/services/{service}/promote", post(promote))
        .route("/v1/services/{service}/restore", post(restore))
        .route("/v1/services/{service}/rollback", post(rollback))
        .route("/v1/services/{service}/samples", get(samples))
        .route("/v1/services/{service}/lease", put(lease).delete(release_lease))
        .route("/v1/shutdown", post(shutdown))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(target.clone(), token))
        .with_state(target)
}

/// Refuse a call without the target's token, before anything reads it.
async fn token(State(target): Shared, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_bytes(presented, target.token.as_bytes()) {
        return Refusal(
            StatusCode::UNAUTHORIZED,
            ApiError {
                kind: "denied".into(),
                message: "the call does not carry the target's token".into(),
            },
        )
        .into_response();
    }
    next.run(request).await
}

/// Equal, in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A request body as `T`, or the refusal that says why not.
fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Refusal> {
    let body = body.map_err(|e| invalid(format!("cannot read the request: {}", e.body_text())))?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("malformed request: {e}")))
}

fn json(value: &impl Serialize) -> Answer {
    Ok(axum::Json(value).into_response())
}

async fn unknown(method: Method, uri: Uri) -> Refusal {
    not_found(format!("no control call {method} {}", uri.path()))
}

/// The tenant a call is made for ([`TENANT_HEADER`]); `None`: the operator.
fn tenant_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Refuse a call of another tenant about `service`.
async fn owned(t: &Target, service: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let tenant = tenant_of(headers);
    let state = t.state.lock().await;
    crate::target::state::may_touch(&state, service, tenant.as_deref()).map_err(super::denied)
}

async fn status(State(t): Shared, headers: HeaderMap) -> Answer {
    let mut status = t.status().await;
    if let Some(tenant) = tenant_of(&headers) {
        status.services.retain(|s| s.tenant == tenant);
    }
    json(&status)
}

async fn start(State(t): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Answer {
    let request: StartRequest = parse(body)?;
    json(&t.start(request, tenant_of(&headers)).await?)
}

async fn stop(State(t): Shared, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    // An instance is its service's: another tenant may not stop it.
    if let Some(service) = t.supervisor.service_of(&id) {
        owned(&t, &service, &headers).await?;
    }
    t.stop(&id).await?;
    json(&())
}

async fn service(State(t): Shared, headers: HeaderMap, Path(service): Path<String>) -> Answer {
    owned(&t, &service, &headers).await?;
    json(&t.service(&service).await?)
}

async fn set_weights(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let w: Weights = parse(body)?;
    json(&t.set_weights(&service, w.weights).await?)
}

async fn promote(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let p: Promote = parse(body)?;
    json(&t.promote(&service, &p.version).await?)
}

async fn restore(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let r: Restore = parse(body)?;
    json(&t.restore(&service, &r.reason).await?)
}

async fn rollback(State(t): Shared, headers: HeaderMap, Path(service): Path<String>) -> Answer {
    owned(&t, &service, &headers).await?;
    json(&t.rollback(&service).await?)
}

/// `?since_ms=&until_ms=`, each optional: the whole sample by default.
async fn samples(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let query = query.unwrap_or_default();
    let arg = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let window = t
        .samples(
            &service,
            arg("since_ms").unwrap_or(0),
            arg("until_ms").unwrap_or(u64::MAX),
        )
        .await?;
    json(&window)
}

async fn lease(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let l: Lease = parse(body)?;
    t.hold(&service, l)?;
    json(&())
}

async fn release_lease(
    State(t): Shared,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    owned(&t, &service, &headers).await?;
    let l: Lease = parse(body)?;
    t.let_go(&service, &l.run);
    json(&())
}

async fn shutdown(State(t): Shared) -> Answer {
    t.shutdown.notify_one();
    json(&())
}

/// Answer the control calls of one connection.
pub async fn serve_connection(stream: tokio::net::UnixStream, app: Router) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
        assert!(!same_bytes(b"", b"a"));
    }
}
