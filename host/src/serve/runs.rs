//! `/api/v1/runs`: create a run of a configured repository, list runs
//! with filters and a cursor, show one, cancel it, run it again.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::problem::{Problem, parse_json};
use super::{App, Job};
use crate::store::coordination::ApprovalRecord;
use crate::store::queries::{RunDetail, RunFilter, RunSummary};
use crate::store::serving::{AttemptRecord, Enqueued, QueuedRun};

type Shared = State<Arc<App>>;

/// Most runs one page lists.
pub const MAX_PAGE: u32 = 200;

/// Runs one page lists when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;

/// Every status a run can have, as a list filters by it.
pub const STATUSES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
];

/// A request to run a configured repository.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The repository, as the server's configuration names it.
    pub repository: String,
    /// A branch or tag to build (its newest commit); default: `main`. With
    /// `commit`, the branch that commit is built as: it must be the ref's
    /// newest commit.
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// A commit to build (40 hex digits).
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{40}$")]
    pub commit: Option<String>,
    /// The environment to deploy to (default: the pipeline's).
    #[serde(default)]
    pub environment: Option<String>,
}

/// A run, as created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    /// The run.
    #[serde(flatten)]
    pub run: RunSummary,
    /// Where to follow it.
    pub links: Links,
}

/// Where to read more of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Links {
    /// The run.
    #[serde(rename = "self")]
    pub this: String,
    /// Its events, live (Server-Sent Events).
    pub events: String,
    /// Its log.
    pub logs: String,
}

fn links(id: &str) -> Links {
    Links {
        this: format!("/api/v1/runs/{id}"),
        events: format!("/api/v1/runs/{id}/events"),
        logs: format!("/api/v1/runs/{id}/logs"),
    }
}

/// One page of runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A run with everything recorded of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    /// The run and its stages (outputs, tests, findings, analysis,
    /// artifacts, rollout steps).
    #[serde(flatten)]
    pub detail: RunDetail,
    /// Every attempt of every stage.
    pub attempts: Vec<AttemptRecord>,
    /// Its deploys' approval requests and decisions.
    pub approvals: Vec<ApprovalRecord>,
}

/// Read a body, answering 413 for one over the limit.
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "the request body is larger than the server's max-body")
        } else {
            Problem::new(status, format!("cannot read the request body: {}", e.body_text()))
        }
    })
}

/// The run `id` if the caller may see it; 404 as for no run otherwise.
pub async fn visible(app: &App, caller: &Caller, id: &str) -> Result<RunSummary, Problem> {
    let lookup = id.to_string();
    let run = app.db.call(move |s| s.run_summary(&lookup)).await?;
    if caller.sees(&run.tenant) {
        Ok(run)
    } else {
        Err(Problem::not_found(format!("no run `{id}`")))
    }
}

/// Queue a run of a configured repository.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = CreateRun, security(("token" = [])), responses(
    (status = 201, description = "Queued", body = Created, headers(("Location" = String, description = "The run"))),
    (status = 400, description = "The body is malformed", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such repository for this token, or no such ref in it", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The ref is not at the commit given", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "The body is over max-body", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "The repository cannot be reached", body = Problem, content_type = "application/problem+json"),
))]
pub async fn create(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let request: CreateRun = parse_json(&body(raw)?)?;
    let Some(repo) = app.config.repositories.get(&request.repository) else {
        return Err(Problem::not_found(format!(
            "no repository `{}` in the server's configuration",
            request.repository
        ))
        .field("repository"));
    };
    let tenant = repo.tenant.clone().unwrap_or_else(|| "default".into());
    if !caller.sees(&tenant) {
        return Err(Problem::not_found(format!(
            "no repository `{}` in the server's configuration",
            request.repository
        ))
        .field("repository"));
    }
    if let Some(c) = &request.commit
        && !super::checkout::is_commit(c)
    {
        return Err(
            Problem::bad_request("`commit` must be a full commit id (40 hex digits)").field("commit"),
        );
    }
    let git_ref = request.git_ref.clone().unwrap_or_else(|| "main".into());
    // A commit alone is built as it is; a ref is resolved, and with a
    // commit too, must name that commit.
    let (commit, branch) = match (&request.commit, &request.git_ref) {
        (Some(c), None) => (c.to_ascii_lowercase(), None),
        _ => {
            let resolved = super::checkout::resolve(&repo.clone_url, &git_ref)
                .await
                .map_err(|e| match e {
                    super::checkout::CheckoutError::NoSuchRef(_) => {
                        Problem::not_found(format!("{e} `{}`", repo.key)).field("ref")
                    }
                    other => Problem::new(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot ask repository `{}` for `{git_ref}`: {other}", repo.key),
                    ),
                })?;
            if let Some(c) = request
                .commit
                .as_deref()
                .filter(|c| !c.eq_ignore_ascii_case(&resolved))
            {
                return Err(Problem::conflict(format!(
                    "`{git_ref}` is at {resolved}, not {c}; give the commit alone to build it"
                ))
                .field("commit"));
            }
            let branch = (!super::checkout::is_commit(&git_ref)).then_some(git_ref.clone());
            (resolved, branch)
        }
    };
    let job = Job {
        repository: repo.key.clone(),
        commit,
        branch,
        fetch: None,
        environment: request.environment,
        untrusted: false,
    };
    let run = enqueue(&app, &tenant, job, "api", None).await?;
    let Some(run) = run else {
        return Err(Problem::internal("the run was not queued"));
    };
    Ok(created(run))
}

/// 201 for a queued run: the run, its links, and `Location`.
fn created(run: RunSummary) -> Response {
    let location = format!("/api/v1/runs/{}", run.id);
    let mut response = (
        StatusCode::CREATED,
        axum::Json(Created {
            links: links(&run.id),
            run,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Queue `job` for `tenant`; `None` when `delivery` was taken before.
pub async fn enqueue(
    app: &Arc<App>,
    tenant: &str,
    job: Job,
    trigger: &str,
    delivery: Option<(String, String)>,
) -> Result<Option<RunSummary>, Problem> {
    let queued = QueuedRun {
        id: crate::session::launch::new_run_id(),
        tenant: tenant.to_string(),
        repository: job.repository.clone(),
        branch: job.branch.clone(),
        commit: job.commit.clone(),
        trigger: trigger.to_string(),
        job: serde_json::to_string(&job).map_err(Problem::internal)?,
    };
    let id = queued.id.clone();
    let enqueued = app
        .db
        .call(move |s| {
            s.enqueue(&queued, delivery.as_ref().map(|(f, d)| (f.as_str(), d.as_str())))
                .and_then(|e| match e {
                    Enqueued::Queued => s.run_summary(&id).map(Some),
                    Enqueued::Duplicate(_) => Ok(None),
                })
        })
        .await?;
    if let Some(run) = &enqueued {
        tracing::info!(run = %run.id, tenant, trigger, "queued");
        app.wake.notify_one();
    }
    Ok(enqueued)
}

/// A run's status, as a list filters by it.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(
    dead_code,
    reason = "only its schema is used: the filter is parsed from the query string"
)]
pub enum RunStatusFilter {
    /// Waiting for a place.
    Queued,
    /// Running now.
    Running,
    /// Every stage succeeded or was skipped.
    Succeeded,
    /// A stage failed, or the run could not start.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Its process died; it can be resumed.
    Interrupted,
}

/// The filters of a list, from its query string.
pub fn filter(query: Option<&str>, caller: &Caller) -> Result<RunFilter, Problem> {
    let mut f = RunFilter {
        limit: Some(DEFAULT_PAGE),
        ..RunFilter::default()
    };
    let mut tenant = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        let number = |what: &str| {
            value.parse::<i64>().map_err(|_| {
                Problem::bad_request(format!("`{key}` must be {what}, not `{value}`")).field(key.to_string())
            })
        };
        match key.as_ref() {
            "status" => {
                if !STATUSES.contains(&value.as_str()) {
                    return Err(Problem::bad_request(format!(
                        "`status` must be one of {}, not `{value}`",
                        STATUSES.join(", ")
                    ))
                    .field("status"));
                }
                f.status = Some(value);
            }
            "tenant" => tenant = Some(value),
            "pipeline" => f.pipeline = Some(value),
            "branch" => f.branch = Some(value),
            "since" => f.since_ms = Some(number("a time in ms since the Unix epoch")?),
            "until" => f.until_ms = Some(number("a time in ms since the Unix epoch")?),
            "limit" => {
                let n = number("a number")?;
                if !(1..=i64::from(MAX_PAGE)).contains(&n) {
                    return Err(
                        Problem::bad_request(format!("`limit` must be from 1 to {MAX_PAGE}")).field("limit"),
                    );
                }
                f.limit = Some(n as u32);
            }
            "cursor" => {
                let bad = || Problem::bad_request("`cursor` is not one this server gave").field("cursor");
                let (at, id) = value.split_once('.').ok_or_else(bad)?;
                f.after = Some((at.parse().map_err(|_| bad())?, id.to_string()));
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter `{other}` (known: status, tenant, pipeline, branch, since, until, limit, cursor)"
                ))
                .field(other.to_string()));
            }
        }
    }
    f.tenant = caller
        .scope(tenant)
        .map_err(|e| Problem::not_found(e).field("tenant"))?;
    Ok(f)
}

/// Runs, newest first, filtered, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", security(("token" = [])),
    params(
        ("status" = Option<RunStatusFilter>, Query, description = "queued, running, succeeded, failed, cancelled or interrupted"),
        ("tenant" = Option<String>, Query, description = "Only this tenant's (an operator's token; a tenant's token sees only its own)"),
        ("pipeline" = Option<String>, Query, description = "Only this pipeline's"),
        ("branch" = Option<String>, Query, description = "Only runs of this branch"),
        ("since" = Option<i64>, Query, description = "Started at or after, ms since the Unix epoch"),
        ("until" = Option<i64>, Query, description = "Started before, ms since the Unix epoch"),
        ("limit" = Option<u32>, Query, description = "At most this many (1 to 200; default 50)", minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before", pattern = r"^[0-9]{1,19}\.[0-9A-Za-z-]{1,64}$"),
    ),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A filter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Another tenant was asked for", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<RunPage>, Problem> {
    let f = filter(query.as_deref(), &caller)?;
    let limit = f.limit.unwrap_or(DEFAULT_PAGE) as usize;
    // One more than asked says whether there is a next page.
    let f = RunFilter {
        limit: Some(limit as u32 + 1),
        ..f
    };
    let mut runs = app.db.call(move |s| s.list_runs(&f)).await?;
    let next_cursor = (runs.len() > limit).then(|| {
        runs.truncate(limit);
        runs.last().map(|r| format!("{}.{}", r.started_ms, r.id))
    });
    Ok(axum::Json(RunPage {
        runs,
        next_cursor: next_cursor.flatten(),
    }))
}

/// One run: its stages, attempts, tests, findings, gate decisions and
/// rollout steps.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", security(("token" = [])),
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<RunView>, Problem> {
    visible(&app, &caller, &id).await?;
    let view = app
        .db
        .call(move |s| -> Result<RunView, crate::store::StoreError> {
            Ok(RunView {
                detail: s.run_detail(&id)?,
                attempts: s.attempts(&id)?,
                approvals: s.approvals(&id)?,
            })
        })
        .await?;
    Ok(axum::Json(view))
}

/// What cancelling did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// The run.
    pub id: String,
    /// `cancelled` when it never started; `cancelling` while its stages
    /// get their grace period to stop.
    pub status: String,
}

/// Cancel a run: a queued one ends `cancelled` at once; a running one
/// starts no new stage, and its stages get a grace period to stop.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", security(("token" = [])),
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Cancelled, or cancelling", body = Cancelled),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has ended, or another weir runs it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = visible(&app, &caller, &id).await?;
    let token = app
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .map(|r| r.cancel.clone());
    let answer = |status: &str| {
        (
            StatusCode::ACCEPTED,
            axum::Json(Cancelled {
                id: id.clone(),
                status: status.into(),
            }),
        )
            .into_response()
    };
    if let Some(token) = token {
        token.cancel();
        tracing::info!(run = %id, by = %caller.token, "cancelling");
        return Ok(answer("cancelling"));
    }
    if let Some(remote) = &app.remote {
        let run_id = id.clone();
        let state = app.db.call(move |s| s.job_state(&run_id)).await?;
        if let Some((_, "dispatched" | "publishing")) = state.as_ref().map(|(t, s)| (t, s.as_str())) {
            // The worker running it (or the one that takes it) sees this,
            // and stops it as a cancel here would.
            remote
                .cancel(&id, &format!("token {}", caller.token))
                .await
                .map_err(|why| Problem::new(StatusCode::SERVICE_UNAVAILABLE, why))?;
            tracing::info!(run = %id, by = %caller.token, "cancelling on its worker");
            if run.status != "queued" {
                return Ok(answer("cancelling"));
            }
        }
    }
    if matches!(run.status.as_str(), "queued" | "interrupted") {
        let (run_id, by) = (id.clone(), caller.token.clone());
        let ended = app
            .db
            .call(move |s| {
                s.end_run(
                    &run_id,
                    "cancelled",
                    &format!("cancelled while it waited to run (token {by})"),
                )
            })
            .await?;
        if ended {
            app.events.send_modify(|n| *n += 1);
            return Ok(answer("cancelled"));
        }
    }
    Err(Problem::conflict(format!(
        "run {id} is {}; only a queued run or one this server is running can be cancelled",
        run.status
    )))
}

/// Run a server run's commit again, as a new run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun", tag = "runs", security(("token" = [])),
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 201, description = "Queued", body = Created, headers(("Location" = String, description = "The new run"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run was not started by this server", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rerun(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = visible(&app, &caller, &id).await?;
    let lookup = id.clone();
    let job = app.db.call(move |s| s.job_of(&lookup)).await?;
    let Some(job) = job.and_then(|j| serde_json::from_str::<Job>(&j).ok()) else {
        return Err(Problem::conflict(format!(
            "run {id} was not started by this server (it has no job to run again); run it again with `weir run`"
        )));
    };
    let Some(new) = enqueue(&app, &run.tenant, job, "rerun", None).await? else {
        return Err(Problem::internal("the run was not queued"));
    };
    Ok(created(new))
}
