//! What waits for people, and what was deployed: deploys waiting for
//! approval (approve or reject them with a reason), and the services the
//! caller's runs deployed, with their current release, their history, and
//! a rollback.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::App;
use super::auth::Caller;
use super::problem::{Problem, parse_json};
use crate::store::coordination::{ApprovalRecord, DecideError};
use crate::store::serving::Deployed;

type Shared = State<Arc<App>>;

/// Deploys waiting for a person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Approvals {
    /// Oldest first.
    pub approvals: Vec<ApprovalRecord>,
}

/// Deploys waiting for approval, the caller's tenant's (an operator's:
/// all).
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", security(("token" = [])), responses(
    (status = 200, description = "Waiting approvals", body = Approvals),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
))]
pub async fn approvals(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Approvals>, Problem> {
    let tenant = caller.tenant.clone();
    let approvals = app
        .db
        .call(move |s| s.pending_approvals(tenant.as_deref()))
        .await?;
    Ok(axum::Json(Approvals { approvals }))
}

/// A person's decision on a waiting deploy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approve` or `reject`.
    pub decision: DecisionKind,
    /// Why, for the run's people and its record.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    /// The deploy goes ahead.
    Approve,
    /// The deploy's stage fails.
    Reject,
}

/// Approve or reject stage `stage` of run `id`'s deploy. Who decides is
/// the token's label (`weir serve token create --label alice`), matched
/// against the environment's `approvers`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approvals/{stage}", tag = "approvals", security(("token" = [])),
    params(("id" = String, Path, description = "The run's id"), ("stage" = String, Path, description = "The waiting stage")),
    request_body = Decision,
    responses(
        (status = 200, description = "Decided", body = ApprovalRecord),
        (status = 400, description = "The body is malformed, or its reason is empty", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's label is not one of the environment's approvers", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run for this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing of that stage waits", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over max-body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path((id, stage)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ApprovalRecord>, Problem> {
    let decision: Decision = parse_json(&super::runs::body(raw)?)?;
    let approve = decision.decision == DecisionKind::Approve;
    let reason = Some(decision.reason).filter(|r| !r.trim().is_empty());
    if reason.is_none() {
        return Err(
            Problem::bad_request("a decision needs a `reason`, for the run's people").field("reason"),
        );
    }
    decide_as(&app, &caller, id, stage, approve, reason)
        .await
        .map(axum::Json)
}

/// Approve or reject stage `stage` of run `id` as `caller`: the API's and
/// the dashboard's one way to decide.
pub async fn decide_as(
    app: &App,
    caller: &Caller,
    id: String,
    stage: String,
    approve: bool,
    reason: Option<String>,
) -> Result<ApprovalRecord, Problem> {
    super::runs::visible(app, caller, &id).await?;
    let who = caller.label.clone().unwrap_or_else(|| caller.token.clone());
    let relay = (id.clone(), stage.clone(), who.clone(), reason.clone());
    let decided = app
        .db
        .call(move |s| -> Result<_, DecideError> {
            s.decide(&id, Some(&stage), approve, &who, reason.as_deref())
        })
        .await;
    match decided {
        Ok(mut d) if !d.is_empty() => {
            if let Some(remote) = &app.remote {
                // The worker running the run waits on its own history: it
                // takes the decision from here.
                let (run, stage, who, reason) = relay;
                let decision = crate::fleet::wire::Decision { approve, who, reason };
                let body = serde_json::to_vec(&decision).unwrap_or_default();
                remote
                    .fleet
                    .decisions
                    .put(crate::fleet::names::decision_key(&run, &stage), body.into())
                    .await
                    .map_err(|e| {
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "decided, but the worker cannot be told through NATS yet: {e}; decide again"
                            ),
                        )
                    })?;
            }
            Ok(d.remove(0))
        }
        Ok(_) => Err(Problem::conflict("nothing was decided")),
        Err(DecideError::NothingPending(why)) => Err(Problem::conflict(why)),
        Err(e @ DecideError::NotAnApprover { .. }) => Err(Problem::new(StatusCode::FORBIDDEN, e.to_string())),
        Err(DecideError::Store(e)) => Err(e.into()),
    }
}

/// Services the caller's runs deployed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Environments {
    /// By service.
    pub environments: Vec<Deployed>,
}

/// The services the caller's runs deployed, with the environment of the
/// newest deploy.
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", security(("token" = [])), responses(
    (status = 200, description = "Deployed services", body = Environments),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
))]
pub async fn environments(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Environments>, Problem> {
    let tenant = caller.tenant.clone();
    let environments = app.db.call(move |s| s.deployed(tenant.as_deref())).await?;
    Ok(axum::Json(Environments { environments }))
}

/// One service: its current release and traffic split, and every release.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    /// The service.
    pub service: String,
    /// The stable version, serving.
    pub current: Option<String>,
    /// The traffic split, version to weight.
    #[schema(value_type = Vec<Object>)]
    pub weights: Vec<(String, u32)>,
    /// Every release, newest first.
    #[schema(value_type = Vec<Object>)]
    pub releases: Vec<serde_json::Value>,
}

/// A tenant's service is one only its runs deployed: the target's
/// services are one namespace, so a name two tenants deployed belongs to
/// neither (an operator's token still reaches it).
pub async fn owned(app: &App, caller: &Caller, service: &str) -> Result<(), Problem> {
    let deployed = app.db.call(|s| s.deployed(None)).await?;
    let deployers: Vec<&str> = deployed
        .iter()
        .filter(|d| d.service == service)
        .map(|d| d.tenant.as_str())
        .collect();
    let ours = match &caller.tenant {
        None => !deployers.is_empty(),
        Some(t) => !deployers.is_empty() && deployers.iter().all(|d| d == t),
    };
    if ours {
        Ok(())
    } else {
        Err(Problem::not_found(format!("no deployed service `{service}`")))
    }
}

/// What the API shows of a service's status.
pub fn view(status: crate::target::api::ServiceStatus) -> ServiceView {
    ServiceView {
        service: status.service,
        current: status.stable,
        weights: status.weights,
        releases: status
            .releases
            .iter()
            .rev()
            .filter_map(|r| serde_json::to_value(r).ok())
            .map(|mut r| {
                // How to start it is the host's business.
                if let Some(m) = r.as_object_mut() {
                    m.remove("launch");
                }
                r
            })
            .collect(),
    }
}

/// The target's failure as a problem: 503.
pub fn target_problem(e: crate::target::client::ClientError) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the deployment target: {e}"),
    )
}

/// A deployed service's current release and history.
#[utoipa::path(get, path = "/api/v1/environments/{service}", tag = "environments", security(("token" = [])),
    params(("service" = String, Path, description = "The service")),
    responses(
        (status = 200, description = "The service", body = ServiceView),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service deployed by this token's tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The deployment target does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn environment(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Result<axum::Json<ServiceView>, Problem> {
    owned(&app, &caller, &service).await?;
    let client = crate::target::client::TargetClient::new(&crate::session::state::target_dir());
    let status = client.service(&service).await.map_err(target_problem)?;
    Ok(axum::Json(view(status)))
}

/// Put a service back on the release that was stable before the current
/// one, with all traffic.
#[utoipa::path(post, path = "/api/v1/environments/{service}/rollback", tag = "environments", security(("token" = [])),
    params(("service" = String, Path, description = "The service")),
    responses(
        (status = 200, description = "Rolled back", body = ServiceView),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service deployed by this token's tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the token's rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The deployment target does not answer, or has nothing to roll back to", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rollback(
    State(app): Shared,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Result<axum::Json<ServiceView>, Problem> {
    owned(&app, &caller, &service).await?;
    let client = crate::target::client::TargetClient::new(&crate::session::state::target_dir());
    let status = client.rollback(&service).await.map_err(target_problem)?;
    tracing::info!(%service, by = %caller.token, "rolled back");
    Ok(axum::Json(view(status)))
}
