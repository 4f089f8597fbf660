//! The dashboard: server-rendered pages over the same history and the same
//! tenancy as the API, with a little JavaScript that follows the run's
//! event stream. Everything it needs is inside the binary.
//!
//! A browser logs in with an API token and gets a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the server's public URL is
//! https). The session stands for that token: it sees what the token sees
//! and ends when the token is revoked. Every form that changes something
//! carries the session's CSRF token, checked here before any handler runs,
//! and a cross-site `Origin` is refused outright.
//!
//! | Page | What it shows |
//! |---|---|
//! | `/runs` | runs, filtered, live |
//! | `/runs/{id}` | a run's stage graph, logs, tests, findings, gates, metering |
//! | `/runs/{id}/rollout/{stage}` | a deploy's traffic and canary analysis |
//! | `/environments` | deployed services, their releases, rollback; approvals waiting |
//! | `/plugins` | the plugins a tenant can use, and what it may grant them |
//! | `/tenants` | operators: tenants, quotas and use |

pub mod assets;
pub mod chart;
pub mod environments_page;
pub mod graph;
pub mod html;
pub mod login;
pub mod plugins_page;
pub mod rollout_page;
pub mod run_page;
pub mod runs_page;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::App;
use super::auth::{Caller, hash};

/// The session cookie's name.
pub const COOKIE: &str = "weir_session";

/// How long a login lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Who is looking: the caller its session stands for, and the secret its
/// forms must carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// What the session's token may see.
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
}

/// The dashboard's routes.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runs") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/live", get(runs_page::live))
        .route("/runs", get(runs_page::page))
        .route("/runs/{id}", get(run_page::page))
        .route("/runs/{id}/rollout/{stage}", get(rollout_page::page))
        .route("/runs/{id}/approvals/{stage}", post(environments_page::decide))
        .route("/environments", get(environments_page::page))
        .route(
            "/environments/{service}/rollback",
            get(environments_page::confirm_rollback).post(environments_page::rollback),
        )
        .route("/plugins", get(plugins_page::page))
        .route("/tenants", get(plugins_page::tenants_page))
        .route("/assets/{name}", get(assets::serve))
}

/// Whether `path` is one of the dashboard's (not the API's, not health).
pub fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}

/// The session cookie's secret in `headers`, if one was sent.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The live session `headers` carry, if any.
pub async fn session(app: &App, headers: &HeaderMap) -> Result<Option<Viewer>, super::problem::Problem> {
    let Some(secret) = cookie(headers) else {
        return Ok(None);
    };
    let sha = hash(&secret);
    let found = app.db.call(move |s| s.web_session(&sha)).await?;
    Ok(found.map(|s| Viewer {
        caller: Caller {
            token: s.token.id,
            tenant: s.token.tenant,
            label: s.token.label,
        },
        csrf: s.csrf,
    }))
}

/// Whether the request came from another site: its `Origin` (browsers
/// send it with every POST) names another host than the one asked.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin == "null" || origin_host != host
}

/// Compare secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The dashboard's gate: a page needs a session (else: to the login
/// page); a form that changes something needs the session's CSRF token
/// and must come from this site.
pub async fn admit(app: Arc<App>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let open = path == "/login" || path.starts_with("/assets/");
    // Anything but a read changes something, and needs the form's token.
    let posting = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if posting && cross_site(request.headers()) {
        return html::refusal(
            StatusCode::FORBIDDEN,
            "This form was sent from another site",
            "weir accepts forms only from its own pages. Open the dashboard and try again.",
        );
    }
    if open {
        return next.run(request).await;
    }
    let viewer = match session(&app, request.headers()).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            if posting || path == "/live" {
                return html::refusal(
                    StatusCode::UNAUTHORIZED,
                    "Not logged in",
                    "Your session ended or was never started. Log in again.",
                );
            }
            let next_page = request
                .uri()
                .path_and_query()
                .map_or("/runs".to_string(), |p| p.as_str().to_string());
            let to = format!("/login?next={}", html::url_encode(&next_page));
            return Redirect::to(&to).into_response();
        }
        Err(p) => {
            return html::refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "The run history does not answer",
                &p.detail,
            );
        }
    };
    if path != "/live"
        && let Err(wait) = app.limiter.take(&viewer.caller.token)
    {
        let mut r = html::refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &format!(
                "This token made more than {} requests a second; wait a moment and reload.",
                app.config.rate_limit
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let (mut parts, body) = request.into_parts();
    let body = if posting {
        let bytes = match axum::body::to_bytes(body, app.config.max_body).await {
            Ok(b) => b,
            Err(_) => {
                return html::refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The form is too large",
                    "It is over the server's max-body.",
                );
            }
        };
        let sent = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !same_secret(&sent, &viewer.csrf) {
            return html::refusal(
                StatusCode::FORBIDDEN,
                "This form's CSRF token is missing or out of date",
                "Nothing was changed. Reload the page and send the form again.",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(viewer.caller.clone());
    parts.extensions.insert(viewer);
    let request = Request::from_parts(parts, body);
    if path == "/live" {
        return next.run(request).await;
    }
    // A page waits on the history and the target; neither may hold it for
    // ever.
    let limit = app.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(r) => r,
        Err(_) => html::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The page took too long",
            &format!(
                "It took longer than the server's request-timeout ({}s). Try again.",
                limit.as_secs()
            ),
        ),
    }
}

/// Answer a page's failure (a problem from the API's logic) as a page.
pub fn failed(p: super::problem::Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    html::refusal(status, &p.title, &p.detail)
}

/// The form fields of a posted body.
pub fn fields(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_an_empty_one_is_none() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; weir_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, "weir_session=".parse().expect("header"));
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn a_post_from_another_origin_is_cross_site_and_one_from_this_host_is_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().expect("header"));
        assert!(!cross_site(&h), "no Origin: not a browser's cross-site form");
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().expect("header"));
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().expect("header"));
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, "null".parse().expect("header"));
        assert!(cross_site(&h));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", "a"));
    }
}
