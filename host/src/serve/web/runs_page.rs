//! The runs list, and the stream that tells open pages something changed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::Viewer;
use super::html::{self, Section, esc, url_encode};
use crate::serve::App;
use crate::store::queries::{RunFilter, RunSummary};

type Shared = State<Arc<App>>;

/// Runs a page shows.
const PAGE: u32 = 50;

/// The filters a person can set, as (query key, label).
const FILTERS: [(&str, &str); 3] = [
    ("pipeline", "Pipeline"),
    ("branch", "Branch"),
    ("tenant", "Tenant"),
];

/// The runs page: newest first, filtered, updating while it is open.
pub async fn page(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    // A form sends every field, set or not; an empty one filters nothing.
    let asked: Vec<(String, String)> = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let kept = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(asked.iter().filter(|(k, _)| k != "limit"))
        .finish();
    let f = match crate::serve::runs::filter(Some(&kept), &viewer.caller) {
        Ok(f) => f,
        Err(p) => return super::failed(p),
    };
    let f = RunFilter {
        limit: Some(PAGE + 1),
        ..f
    };
    let mut runs = match app.db.call(move |s| s.list_runs(&f)).await {
        Ok(r) => r,
        Err(e) => return super::failed(e.into()),
    };
    let more = runs.len() > PAGE as usize;
    runs.truncate(PAGE as usize);
    let value = |k: &str| {
        asked
            .iter()
            .find(|(key, _)| key == k)
            .map_or("", |(_, v)| v.as_str())
    };

    let mut body = String::from("<h1>Runs</h1>");
    body.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/runs\" role=\"search\" aria-label=\"Filter runs\">",
    );
    let _ = write!(
        body,
        "<label>Status <select name=\"status\"><option value=\"\">any</option>"
    );
    for s in crate::serve::runs::STATUSES {
        let sel = if value("status") == s { " selected" } else { "" };
        let _ = write!(body, "<option{sel}>{s}</option>");
    }
    body.push_str("</select></label>");
    for (key, label) in FILTERS {
        if key == "tenant" && viewer.caller.tenant.is_some() {
            continue;
        }
        let _ = write!(
            body,
            "<label>{label} <input name=\"{key}\" value=\"{}\" size=\"12\"></label>",
            esc(value(key))
        );
    }
    body.push_str("<button type=\"submit\">Filter</button> <a href=\"/runs\">Clear</a></form>");
    body.push_str(
        "<div class=\"table-wrap\"><table class=\"runs\"><thead><tr><th scope=\"col\">Status</th><th scope=\"col\">Run</th>\
         <th scope=\"col\">Pipeline</th><th scope=\"col\">Branch</th><th scope=\"col\">Commit</th><th scope=\"col\">Tenant</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Duration</th></tr></thead>",
    );
    let _ = write!(
        body,
        "<tbody id=\"runs-rows\" data-live-part>{}</tbody></table></div>",
        rows(&runs)
    );
    if more && let Some(last) = runs.last() {
        let mut next: Vec<(String, String)> = asked.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        next.push(("cursor".into(), format!("{}.{}", last.started_ms, last.id)));
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        let _ = write!(
            body,
            "<p><a href=\"/runs?{}\" rel=\"next\">Older runs →</a></p>",
            esc(&q)
        );
    }
    let wrapped = format!("<div data-live=\"all\">{body}</div>");
    html::page("Runs", Section::Runs, Some(&viewer), &wrapped)
}

fn rows(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "<tr><td colspan=\"8\" class=\"empty\">No runs yet. Push to a configured repository, or \
                <code>POST /api/v1/runs</code>.</td></tr>"
            .into();
    }
    let mut out = String::new();
    for r in runs {
        let href = format!("/runs/{}", url_encode(&r.id));
        let commit: String = r.commit.as_deref().unwrap_or("").chars().take(10).collect();
        let duration = r.duration_ms.map(html::duration).unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{status}</td><td><a href=\"{href}\">{id}</a></td><td>{pipeline}</td><td>{branch}</td>\
             <td><code>{commit}</code></td><td>{tenant}</td><td>{started}</td><td class=\"num\">{duration}</td></tr>",
            status = html::status(&r.status),
            id = esc(&r.id),
            pipeline = esc(&r.pipeline),
            branch = esc(r.branch.as_deref().unwrap_or("")),
            commit = esc(&commit),
            tenant = esc(&r.tenant),
            started = html::time(r.started_ms),
        );
    }
    out
}

/// Something changed: a run was queued, started, or recorded an event.
/// Pages that list runs listen, and fetch themselves again.
pub async fn live(State(app): Shared, Extension(viewer): Extension<Viewer>) -> Response {
    // Counted with the token's event streams, so one session cannot hold
    // the server's connections.
    let open = match crate::serve::stream::Open::take(&app, &viewer.caller.token) {
        Ok(o) => o,
        Err(p) => return p.into_response(),
    };
    let changes = app.events.subscribe();
    let stream = futures_util::stream::unfold((changes, open), |(mut changes, open)| async move {
        changes.changed().await.ok()?;
        // At most one a second, however busy the server is.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        changes.mark_unchanged();
        Some((
            Ok::<_, Infallible>(SseEvent::default().event("change").data("changed")),
            (changes, open),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
