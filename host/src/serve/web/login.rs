//! Logging in with an API token, and out.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{self, Section, esc};
use super::{COOKIE, SESSION_TTL_MS, Viewer};
use crate::serve::App;
use crate::serve::auth::hash;
use crate::serve::routes::Peer;

type Shared = State<Arc<App>>;

/// Where to go after logging in: a path of this site, never another's.
fn next_page(asked: Option<&str>) -> String {
    // Only a path of plain characters: a tab, a newline or a backslash
    // could turn `/\t/evil.example` into another site in a browser.
    let plain = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.~%?=&-+".contains(&b))
    };
    match asked {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && plain(p) => p.to_string(),
        _ => "/runs".to_string(),
    }
}

fn form_page(next: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<section class=\"login\"><h1>Log in to weir</h1>{error}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus \
          placeholder=\"weir_…\" aria-describedby=\"token-help\">\
         <p id=\"token-help\" class=\"help\">A tenant's or an operator's token: <code>weir serve token create --tenant NAME</code> makes one. \
          You see what the token sees.</p>\
         <button type=\"submit\">Log in</button></form></section>",
        next = esc(next)
    );
    html::page("Log in", Section::None, None, &body)
}

/// The login form.
pub async fn form(RawQuery(query): RawQuery) -> Response {
    let asked = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
    });
    form_page(&next_page(asked.as_deref()), None)
}

fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

/// Check the token, start a session, and go where the person was going.
pub async fn submit(State(app): Shared, peer: Option<Extension<Peer>>, body: Bytes) -> Response {
    let fields = super::fields(&body);
    let next = next_page(fields.get("next").map(String::as_str));
    let token = fields
        .get("token")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.0.0.to_string());
    let sha = hash(&token);
    let found = match app.db.call(move |s| s.token_by_hash(&sha)).await {
        Ok(f) => f,
        Err(e) => return super::failed(e.into()),
    };
    let Some(found) = found else {
        // The same brake as the API's: a few guesses a second per address.
        if app.limiter.take(&format!("bad-token:{peer}")).is_err() {
            let mut r = form_page(
                &next,
                Some("Too many tries from this address; wait a few seconds."),
            );
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return r;
        }
        let mut r = form_page(&next, Some("That token is not known, or was revoked."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let (Some(secret), Some(csrf)) = (random_hex(), random_hex()) else {
        return html::refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness",
            "The system's random source failed; no session was made.",
        );
    };
    let (sha, token_id, c) = (hash(&secret), found.id.clone(), csrf.clone());
    if let Err(e) = app
        .db
        .call(move |s| s.create_web_session(&sha, &token_id, &c, SESSION_TTL_MS))
        .await
    {
        return super::failed(e.into());
    }
    tracing::info!(token = %found.id, "dashboard login");
    let secure = app
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// End the session.
pub async fn logout(
    State(app): Shared,
    Extension(_viewer): Extension<Viewer>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(secret) = super::cookie(&headers) {
        let sha = hash(&secret);
        if let Err(e) = app.db.call(move |s| s.end_web_session(&sha)).await {
            return super::failed(e.into());
        }
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("weir_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_sites_paths_are_gone_to_after_login() {
        assert_eq!(next_page(Some("/runs/r1")), "/runs/r1");
        assert_eq!(next_page(Some("//evil.example/x")), "/runs");
        assert_eq!(next_page(Some("https://evil.example")), "/runs");
        assert_eq!(next_page(Some("/\\evil.example")), "/runs");
        assert_eq!(next_page(Some("/\t/evil.example")), "/runs");
        assert_eq!(next_page(Some("/runs\r\nSet-Cookie: x")), "/runs");
        assert_eq!(
            next_page(Some("/runs?status=failed&branch=main")),
            "/runs?status=failed&branch=main"
        );
        assert_eq!(next_page(None), "/runs");
    }
}
