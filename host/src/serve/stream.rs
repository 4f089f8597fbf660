//! A run's log, whole, and its events live as Server-Sent Events.
//!
//! The stream reads the run history, not a channel: each event's SSE id is
//! its place in the run's event stream, so a client that reconnects with
//! `Last-Event-ID` gets exactly the events after it, with no gap and no
//! repeat, whether the run is still going or long over. New events wake
//! the stream; it also looks every half second, for runs another weir
//! process records.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::App;
use super::auth::Caller;
use super::problem::Problem;
use crate::store::queries::LogLine;

type Shared = State<Arc<App>>;

/// Events read from the history at a time.
const PAGE: u32 = 500;

/// Most live streams one token may hold open at once.
pub const MAX_STREAMS_PER_TOKEN: usize = 16;

/// A token's open stream, counted until it is dropped.
pub struct Open {
    app: Arc<App>,
    token: String,
}

impl Open {
    /// Count one more stream of `token`, or refuse it when the token has
    /// [`MAX_STREAMS_PER_TOKEN`] open.
    pub fn take(app: &Arc<App>, token: &str) -> Result<Open, Problem> {
        let mut open = app.streams.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(token.to_string()).or_insert(0);
        if *n >= MAX_STREAMS_PER_TOKEN {
            let mut p = Problem::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("this token has {MAX_STREAMS_PER_TOKEN} event streams open already; close one first"),
            );
            p.retry_after = Some(1);
            return Err(p);
        }
        *n += 1;
        Ok(Open {
            app: app.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self.app.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

/// How often a stream looks for new events when nothing woke it.
const POLL: Duration = Duration::from_millis(500);

/// A run's log lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Log {
    /// In order.
    pub lines: Vec<LogLine>,
}

fn query_params(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !known.contains(&k.as_ref()) {
            return Err(Problem::bad_request(format!(
                "unknown query parameter `{k}` (known: {})",
                known.join(", ")
            ))
            .field(k.to_string()));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn seq(key: &str, value: &str) -> Result<i64, Problem> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Problem::bad_request(format!("`{key}` must be an event's id (a number), not `{value}`"))
                .field(key)
        })
}

/// A run's log: every stage's lines, or one stage's.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "logs", security(("token" = [])),
    params(
        ("id" = String, Path, description = "The run's id"),
        ("stage" = Option<String>, Query, description = "Only this stage's lines"),
        ("after" = Option<i64>, Query, description = "Only lines after this event id", minimum = 0),
    ),
    responses(
        (status = 200, description = "The lines", body = Log),
        (status = 400, description = "A parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logs(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Log>, Problem> {
    let mut stage = None;
    let mut after = 0;
    for (k, v) in query_params(query.as_deref(), &["stage", "after"])? {
        match k.as_str() {
            "stage" => stage = Some(v),
            _ => after = seq("after", &v)?,
        }
    }
    super::runs::visible(&app, &caller, &id).await?;
    let lines = app.db.call(move |s| s.logs(&id, stage.as_deref(), after)).await?;
    Ok(axum::Json(Log { lines }))
}

/// One Server-Sent Event of a run's stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamedEvent {
    /// The event's place in the run's event stream: send it back as
    /// `Last-Event-ID` to go on after it.
    pub id: String,
    /// The event's kind (`stage_finished`).
    pub event: String,
    /// The event, as the JSON line `weir run --json` prints.
    pub data: String,
}

struct Follow {
    _open: Open,
    app: Arc<App>,
    id: String,
    last: i64,
    buffer: VecDeque<(i64, String, String)>,
    changes: tokio::sync::watch::Receiver<u64>,
    over: bool,
}

/// A run's events, live: `id` is the event's place in the run, `event`
/// its kind, `data` the same JSON line as `weir run --json`. Reconnect
/// with `Last-Event-ID` (or `?after=`) to go on where it stopped. The
/// stream ends after the run's last event.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", tag = "logs", security(("token" = [])),
    params(
        ("id" = String, Path, description = "The run's id"),
        ("after" = Option<i64>, Query, description = "Only events after this id (as Last-Event-ID)", minimum = 0),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "The last event id received"),
    ),
    responses(
        (status = 200, description = "The events, as Server-Sent Events", body = StreamedEvent, content_type = "text/event-stream"),
        (status = 400, description = "A parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut after = 0;
    if let Some(v) = headers.get("last-event-id") {
        after = seq("Last-Event-ID", v.to_str().unwrap_or("?"))?;
    }
    for (_, v) in query_params(query.as_deref(), &["after"])? {
        after = after.max(seq("after", &v)?);
    }
    super::runs::visible(&app, &caller, &id).await?;
    let open = Open::take(&app, &caller.token)?;
    let follow = Follow {
        _open: open,
        changes: app.events.subscribe(),
        app,
        id,
        last: after,
        buffer: VecDeque::new(),
        over: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some((seq, kind, body)) = f.buffer.pop_front() {
                f.last = seq;
                let event = SseEvent::default().id(seq.to_string()).event(kind).data(body);
                return Some((Ok::<_, Infallible>(event), f));
            }
            if f.over {
                return None;
            }
            // Whether the run goes on is read before its events, so an
            // event recorded just before it ended is not missed.
            let (id, last) = (f.id.clone(), f.last);
            let going = f.app.db.call(move |s| s.still_going(&id)).await.unwrap_or(false);
            let id = f.id.clone();
            match f.app.db.call(move |s| s.events_after(&id, last, PAGE)).await {
                Ok(rows) if !rows.is_empty() => {
                    f.buffer.extend(rows);
                    continue;
                }
                Ok(_) if !going => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run = %f.id, "cannot read the run's events: {e}");
                    f.over = true;
                    continue;
                }
            }
            tokio::select! {
                _ = f.changes.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
