//! The server's routes, and what every request goes through first: its
//! token (the caller's tenant), its rate, its size and its time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::App;
use super::auth::{Caller, bearer, hash};
use super::problem::Problem;

type Shared = State<Arc<App>>;

/// Every route of `weir serve`.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/runs", get(super::runs::list).post(super::runs::create))
        .route("/runs/{id}", get(super::runs::get))
        .route("/runs/{id}/cancel", post(super::runs::cancel))
        .route("/runs/{id}/rerun", post(super::runs::rerun))
        .route("/runs/{id}/logs", get(super::stream::logs))
        .route("/runs/{id}/events", get(super::stream::events))
        .route("/runs/{id}/artifacts", get(super::artifacts::list))
        .route(
            "/runs/{id}/artifacts/{stage}/{name}",
            get(super::artifacts::download),
        )
        .route("/runs/{id}/approvals/{stage}", post(super::gates::decide))
        .route("/approvals", get(super::gates::approvals))
        .route("/environments", get(super::gates::environments))
        .route("/environments/{service}", get(super::gates::environment))
        .route("/environments/{service}/rollback", post(super::gates::rollback))
        .route("/openapi.json", get(super::openapi::document))
        .route("/hooks/{forge}", post(super::hooks::receive));
    Router::new()
        .nest("/api/v1", api)
        .merge(super::web::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::openapi::metrics))
        .fallback(unknown)
        .method_not_allowed_fallback(not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body))
        .layer(middleware::from_fn_with_state(app.clone(), admit))
        .with_state(app)
}

/// Paths anyone may ask for: health, the API's description, and the
/// forges' webhooks (which carry their own signatures).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/api/v1/openapi.json") || path.starts_with("/api/v1/hooks/")
}

/// Authenticate, rate-limit and time every request.
async fn admit(State(app): Shared, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let streams = path.starts_with("/api/v1/runs/") && path.ends_with("/events");
    let peer = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "unknown".to_string(), |p| p.0.to_string());
    if super::web::is_page(&path) {
        return super::web::admit(app, request, next).await;
    }
    let mut cookie_read = false;
    let browser = request.headers().get(header::AUTHORIZATION).is_none()
        && matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
    if !public(&path) && browser && super::web::cookie(request.headers()).is_some() {
        // The dashboard's script reads the API with its session cookie;
        // it may only read: a change needs a form with the CSRF token.
        match super::web::session(&app, request.headers()).await {
            Ok(Some(viewer)) => {
                if let Err(wait) = app.limiter.take(&viewer.caller.token) {
                    return too_many(wait, "this session's token made too many requests a second");
                }
                request.extensions_mut().insert(viewer.caller);
                cookie_read = true;
            }
            Ok(None) => return unauthorized("the session ended: log in to the dashboard again"),
            Err(p) => return p.into_response(),
        }
    } else if !public(&path) {
        let presented = bearer(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .map(hash);
        let Some(presented) = presented else {
            return unauthorized(
                "this call needs an API token: send `Authorization: Bearer weir_…` (`weir serve token create` makes one)",
            );
        };
        let found = app.db.call(move |s| s.token_by_hash(&presented)).await;
        let token = match found {
            Ok(Some(t)) => t,
            Ok(None) => {
                // Guessing tokens costs the guesser: a few tries a second.
                if let Err(wait) = app.limiter.take(&format!("bad-token:{peer}")) {
                    return too_many(wait, "too many requests with unknown tokens from this address");
                }
                return unauthorized("the API token is not known, or was revoked");
            }
            Err(e) => return Problem::internal(e).into_response(),
        };
        if let Err(wait) = app.limiter.take(&token.id) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this token made more than {} requests a second; try again in {secs}s",
                    app.config.rate_limit
                ),
            );
            p.retry_after = Some(secs);
            return p.into_response();
        }
        request.extensions_mut().insert(Caller {
            token: token.id,
            tenant: token.tenant,
            label: token.label,
        });
    } else if path.starts_with("/api/v1/hooks/")
        && let Err(wait) = app.limiter.take(&format!("hooks:{peer}"))
    {
        // Per sender, so a flood from one address does not turn the
        // forge's own deliveries away.
        return too_many(wait, "too many deliveries from this address");
    }
    let limit = app.config.request_timeout;
    let response = if streams {
        next.run(request).await
    } else {
        match tokio::time::timeout(limit, next.run(request)).await {
            Ok(r) => r,
            Err(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request took longer than the server's request-timeout ({}s)",
                    limit.as_secs()
                ),
            )
            .into_response(),
        }
    };
    let mut response = response;
    if cookie_read {
        // A tenant's answer, read with a cookie: no cache may keep it.
        let h = response.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Cookie"));
    }
    let mut m = app.metrics.lock().unwrap_or_else(|e| e.into_inner());
    *m.requests.entry(response.status().as_u16()).or_insert(0) += 1;
    response
}

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{what}; try again in {secs}s"),
    );
    p.retry_after = Some(secs);
    p.into_response()
}

fn unauthorized(detail: &str) -> Response {
    let mut r = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"weir\""),
    );
    r
}

async fn unknown(request: Request) -> Response {
    let path = request.uri().path();
    if super::web::is_page(path) {
        return super::web::html::refusal(
            StatusCode::NOT_FOUND,
            "No such page",
            &format!("weir has no page at {path}."),
        );
    }
    Problem::not_found(format!("no such resource: {path}")).into_response()
}

async fn not_allowed(request: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The server is alive", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the history answers and the queue was taken up after the start.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The server takes runs", body = String, content_type = "text/plain"),
    (status = 503, description = "Not yet, or the history does not answer", body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(app): Shared) -> Response {
    if !app.ready.load(std::sync::atomic::Ordering::Acquire) {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue is still being taken up",
        )
        .into_response();
    }
    match app.db.call(|s| s.queue_depth()).await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the run history does not answer: {e}"),
        )
        .into_response(),
    }
}

/// Serve one connection: its head must arrive within `timeout`, so a
/// slow client cannot hold a connection open for nothing.
pub async fn serve_connection(stream: tokio::net::TcpStream, app: Router, timeout: Duration) {
    let peer = Peer(
        stream
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
    );
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(peer);
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, request.map(axum::body::Body::new)).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout.min(Duration::from_secs(10)))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
