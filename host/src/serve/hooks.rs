//! Webhooks from git forges: a push to a configured repository, or a pull
//! request against it, queues a run of its pipeline at that commit.
//!
//! Nothing is read from a delivery before its signature holds: GitHub's
//! `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature` (HMAC-SHA256 of
//! the body under the repository's secret), GitLab's `X-Gitlab-Token` (the
//! secret itself), each compared in constant time. A bad or missing one
//! answers 401 and queues nothing. Each delivery id is taken once: a
//! redelivery answers with what the first did.
//!
//! A pull request from a fork runs code from outside the tenant. Unless
//! the repository says `fork-pull-requests = "trusted"`, it runs without
//! the stages that deploy or read secrets (GitHub's `pull_request` rather
//! than `pull_request_target`), or not at all with `"ignore"`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use weir_pipeline::config::server::{Forge, ForkPolicy, Repository};

use super::problem::Problem;
use super::{App, Job};

type Shared = State<Arc<App>>;

/// What a delivery did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookAnswer {
    /// `queued`, `duplicate` (taken before), `ignored` or `pong`.
    pub status: String,
    /// The run it queued (or queued the first time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Why it was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn answer(status: StatusCode, what: &str, run: Option<String>, reason: Option<String>) -> Response {
    (
        status,
        axum::Json(HookAnswer {
            status: what.into(),
            run,
            reason,
        }),
    )
        .into_response()
}

fn ignored(reason: impl Into<String>) -> Response {
    answer(StatusCode::ACCEPTED, "ignored", None, Some(reason.into()))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Does the delivery carry `secret`'s signature of `body`?
pub fn signed(forge: Forge, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let hmac = || hex::encode(crate::notify::hmac_sha256(secret.as_bytes(), body));
    match forge {
        Forge::Github => header(headers, "x-hub-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|s| same(s.to_ascii_lowercase().as_bytes(), hmac().as_bytes())),
        Forge::Gitea => header(headers, "x-gitea-signature")
            .or_else(|| header(headers, "x-forgejo-signature"))
            .is_some_and(|s| same(s.to_ascii_lowercase().as_bytes(), hmac().as_bytes())),
        Forge::Gitlab => {
            header(headers, "x-gitlab-token").is_some_and(|t| same(t.as_bytes(), secret.as_bytes()))
        }
    }
}

/// The delivery's id and event kind, as the forge names them.
fn delivery(forge: Forge, headers: &HeaderMap) -> (Option<&str>, Option<&str>) {
    match forge {
        Forge::Github => (
            header(headers, "x-github-delivery"),
            header(headers, "x-github-event"),
        ),
        Forge::Gitea => (
            header(headers, "x-gitea-delivery").or_else(|| header(headers, "x-forgejo-delivery")),
            header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event")),
        ),
        Forge::Gitlab => (
            header(headers, "x-gitlab-event-uuid")
                .or_else(|| header(headers, "x-gitlab-webhook-uuid"))
                .or_else(|| header(headers, "idempotency-key")),
            header(headers, "x-gitlab-event"),
        ),
    }
}

fn text<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// What a delivery asks to run, or why it asks nothing.
#[derive(Debug, PartialEq)]
pub enum Asked {
    /// Run this.
    Run {
        /// The commit.
        commit: String,
        /// The branch (none for tags and forks' pull requests).
        branch: Option<String>,
        /// A ref to fetch the commit by.
        fetch: Option<String>,
        /// From a fork.
        fork: bool,
        /// `push` or `pull_request`.
        trigger: &'static str,
    },
    /// Nothing, for this reason.
    Nothing(String),
    /// The forge checking the hook works.
    Ping,
}

/// Read what `event` asks of the server.
pub fn asked(forge: Forge, event: &str, payload: &Value) -> Result<Asked, String> {
    let zero = |sha: &str| sha.bytes().all(|b| b == b'0');
    let commit = |sha: Option<&str>, field: &str| -> Result<String, String> {
        match sha {
            Some(s) if super::checkout::is_commit(s) => Ok(s.to_ascii_lowercase()),
            _ => Err(format!("the payload's `{field}` is not a commit id")),
        }
    };
    let push = |sha_field: &str| -> Result<Asked, String> {
        let git_ref = text(payload, &["ref"]).ok_or("the payload has no `ref`")?;
        let sha = text(payload, &[sha_field]);
        if sha.is_none_or(zero) || payload.get("deleted").and_then(Value::as_bool) == Some(true) {
            return Ok(Asked::Nothing(format!("{git_ref} was deleted")));
        }
        let branch = git_ref.strip_prefix("refs/heads/").map(str::to_string);
        if branch.is_none() && !git_ref.starts_with("refs/tags/") {
            return Ok(Asked::Nothing(format!("{git_ref} is not a branch or a tag")));
        }
        Ok(Asked::Run {
            commit: commit(sha, sha_field)?,
            branch,
            fetch: None,
            fork: false,
            trigger: "push",
        })
    };
    match (forge, event) {
        (Forge::Github | Forge::Gitea, "ping") => Ok(Asked::Ping),
        (Forge::Github | Forge::Gitea, "push") => push("after"),
        (Forge::Gitlab, "Push Hook" | "Tag Push Hook") => push("checkout_sha"),
        (Forge::Github | Forge::Gitea, "pull_request") => {
            let action = text(payload, &["action"]).unwrap_or_default();
            if !matches!(action, "opened" | "synchronize" | "synchronized" | "reopened") {
                return Ok(Asked::Nothing(format!(
                    "pull request action `{action}` builds nothing"
                )));
            }
            let pr = payload
                .get("pull_request")
                .ok_or("the payload has no `pull_request`")?;
            let number = pr
                .get("number")
                .or_else(|| payload.get("number"))
                .and_then(Value::as_u64)
                .ok_or("the payload has no pull request `number`")?;
            let head = text(pr, &["head", "repo", "full_name"]);
            let base = text(pr, &["base", "repo", "full_name"]);
            let fork = head.is_none() || head != base;
            Ok(Asked::Run {
                commit: commit(text(pr, &["head", "sha"]), "pull_request.head.sha")?,
                branch: (!fork)
                    .then(|| text(pr, &["head", "ref"]).map(str::to_string))
                    .flatten(),
                fetch: Some(format!("refs/pull/{number}/head")),
                fork,
                trigger: "pull_request",
            })
        }
        (Forge::Gitlab, "Merge Request Hook") => {
            let mr = payload
                .get("object_attributes")
                .ok_or("the payload has no `object_attributes`")?;
            let action = text(mr, &["action"]).unwrap_or_default();
            if !matches!(action, "open" | "reopen" | "update") {
                return Ok(Asked::Nothing(format!(
                    "merge request action `{action}` builds nothing"
                )));
            }
            let iid = mr
                .get("iid")
                .and_then(Value::as_u64)
                .ok_or("the payload has no merge request `iid`")?;
            let source = mr.get("source_project_id").and_then(Value::as_u64);
            let target = mr.get("target_project_id").and_then(Value::as_u64);
            let fork = source.is_none() || source != target;
            Ok(Asked::Run {
                commit: commit(
                    text(mr, &["last_commit", "id"]),
                    "object_attributes.last_commit.id",
                )?,
                branch: (!fork)
                    .then(|| text(mr, &["source_branch"]).map(str::to_string))
                    .flatten(),
                fetch: Some(format!("refs/merge-requests/{iid}/head")),
                fork,
                trigger: "pull_request",
            })
        }
        (_, other) => Ok(Asked::Nothing(format!("`{other}` events build nothing"))),
    }
}

/// The repository's name as the payload gives it.
fn repository_name(forge: Forge, payload: &Value) -> Option<&str> {
    match forge {
        Forge::Github | Forge::Gitea => text(payload, &["repository", "full_name"]),
        Forge::Gitlab => text(payload, &["project", "path_with_namespace"]),
    }
}

/// Receive a forge's webhook delivery.
#[utoipa::path(post, path = "/api/v1/hooks/{forge}", tag = "webhooks",
    params(("forge" = String, Path, description = "github, gitea or gitlab")),
    request_body(content = Object, description = "The forge's event payload, signed", content_type = "application/json"),
    responses(
        (status = 200, description = "A delivery taken before, or a ping", body = HookAnswer),
        (status = 202, description = "Queued, or ignored with the reason", body = HookAnswer),
        (status = 400, description = "The payload is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad or missing signature; nothing was queued", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such forge, or no such repository configured", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over max-body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many deliveries", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(app): Shared,
    Path(forge): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let forge = match forge.as_str() {
        "github" => Forge::Github,
        "gitea" | "forgejo" => Forge::Gitea,
        "gitlab" => Forge::Gitlab,
        other => {
            return Err(Problem::not_found(format!(
                "no forge `{other}` (known: github, gitea, gitlab)"
            )));
        }
    };
    let body = super::runs::body(raw)?;
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the payload is not JSON: {e}")))?;
    let name = repository_name(forge, &payload)
        .ok_or_else(|| Problem::bad_request("the payload names no repository").field("repository"))?;
    let Some(repo) = app.config.repository_named(forge, name).cloned() else {
        return Err(Problem::not_found(format!(
            "no {} repository `{name}` in the server's configuration",
            forge.as_str()
        )));
    };
    let secret = repo
        .secret_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        tracing::error!(repository = %repo.key, "a webhook came for a repository with no secret (set `secret-env` and the variable)");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "the server has no webhook secret for this repository, so no delivery can be trusted",
        ));
    };
    if !signed(forge, &headers, &body, &secret) {
        tracing::warn!(repository = %repo.key, "a webhook delivery's signature did not hold");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "the delivery's signature does not match the repository's secret; nothing was queued",
        ));
    }
    let (id, event) = delivery(forge, &headers);
    let Some(event) = event else {
        return Err(
            Problem::bad_request("the delivery does not say which event it is").field("X-GitHub-Event"),
        );
    };
    let Some(id) = id.filter(|d| !d.is_empty() && d.len() <= 200).map(str::to_string) else {
        return Err(Problem::bad_request(
            "the delivery has no id, so a redelivery could not be told apart",
        ));
    };
    let asked = asked(forge, event, &payload).map_err(Problem::bad_request)?;
    let (commit, branch, fetch, fork, trigger) = match asked {
        Asked::Ping => return Ok(answer(StatusCode::OK, "pong", None, None)),
        Asked::Nothing(why) => return Ok(ignored(why)),
        Asked::Run {
            commit,
            branch,
            fetch,
            fork,
            trigger,
        } => (commit, branch, fetch, fork, trigger),
    };
    let untrusted = fork && repo.fork_pull_requests != ForkPolicy::Trusted;
    if fork && repo.fork_pull_requests == ForkPolicy::Ignore {
        return Ok(ignored(format!(
            "pull requests from forks are not built for {} (fork-pull-requests = \"ignore\")",
            repo.key
        )));
    }
    queue(
        &app,
        &repo,
        forge,
        id,
        Job {
            repository: repo.key.clone(),
            commit,
            branch,
            fetch,
            environment: None,
            untrusted,
        },
        trigger,
    )
    .await
}

async fn queue(
    app: &Arc<App>,
    repo: &Repository,
    forge: Forge,
    id: String,
    job: Job,
    trigger: &str,
) -> Result<Response, Problem> {
    let tenant = repo.tenant.clone().unwrap_or_else(|| "default".into());
    // Keyed by the repository too: ids are the forge's, not the world's.
    let key = format!("{}:{id}", repo.key);
    let delivery = (forge.as_str().to_string(), key.clone());
    match super::runs::enqueue(app, &tenant, job, trigger, Some(delivery)).await? {
        Some(run) => Ok(answer(StatusCode::ACCEPTED, "queued", Some(run.id), None)),
        None => {
            let forge = forge.as_str();
            let earlier = app.db.call(move |s| s.delivery_run(forge, &key)).await?;
            Ok(answer(StatusCode::OK, "duplicate", earlier, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn signatures_hold_only_for_the_secret_and_the_body() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mac = hex::encode(crate::notify::hmac_sha256(b"s3cret", body));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", format!("sha256={mac}").parse().unwrap());
        assert!(signed(Forge::Github, &h, body, "s3cret"));
        assert!(!signed(Forge::Github, &h, body, "other"));
        assert!(!signed(Forge::Github, &h, b"{}", "s3cret"));
        assert!(
            !signed(Forge::Gitea, &h, body, "s3cret"),
            "gitea reads its own header"
        );
        let mut g = HeaderMap::new();
        g.insert("x-gitea-signature", mac.parse().unwrap());
        assert!(signed(Forge::Gitea, &g, body, "s3cret"));
        let mut l = HeaderMap::new();
        l.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(signed(Forge::Gitlab, &l, body, "s3cret"));
        assert!(!signed(Forge::Gitlab, &l, body, "s3cre"));
        assert!(!signed(Forge::Github, &HeaderMap::new(), body, "s3cret"));
    }

    #[test]
    fn a_push_runs_its_commit_and_a_deleted_branch_nothing() {
        let push = json!({"ref": "refs/heads/main", "after": SHA, "repository": {"full_name": "acme/app"}});
        assert_eq!(
            asked(Forge::Github, "push", &push).unwrap(),
            Asked::Run {
                commit: SHA.into(),
                branch: Some("main".into()),
                fetch: None,
                fork: false,
                trigger: "push"
            }
        );
        let deleted = json!({"ref": "refs/heads/old", "after": "0".repeat(40), "deleted": true});
        assert!(matches!(
            asked(Forge::Github, "push", &deleted).unwrap(),
            Asked::Nothing(_)
        ));
        let gitlab = json!({"ref": "refs/tags/v1", "checkout_sha": SHA});
        assert!(matches!(
            asked(Forge::Gitlab, "Tag Push Hook", &gitlab).unwrap(),
            Asked::Run { branch: None, .. }
        ));
        assert!(
            asked(
                Forge::Github,
                "push",
                &json!({"ref": "refs/heads/x", "after": "nope"})
            )
            .is_err()
        );
    }

    #[test]
    fn a_pull_request_from_a_fork_is_marked_and_gets_no_branch() {
        let pr = |head: &str| {
            json!({"action": "synchronize", "number": 7, "pull_request": {
                "head": {"sha": SHA, "ref": "main", "repo": {"full_name": head}},
                "base": {"ref": "main", "repo": {"full_name": "acme/app"}}}})
        };
        let Asked::Run {
            fork, branch, fetch, ..
        } = asked(Forge::Github, "pull_request", &pr("mallory/app")).unwrap()
        else {
            panic!("runs")
        };
        assert!(fork);
        assert_eq!(branch, None, "a fork's branch called main is not main");
        assert_eq!(fetch.as_deref(), Some("refs/pull/7/head"));
        let Asked::Run { fork, branch, .. } = asked(Forge::Github, "pull_request", &pr("acme/app")).unwrap()
        else {
            panic!("runs")
        };
        assert!(!fork);
        assert_eq!(branch.as_deref(), Some("main"));
        let closed = json!({"action": "closed", "pull_request": {}});
        assert!(matches!(
            asked(Forge::Github, "pull_request", &closed).unwrap(),
            Asked::Nothing(_)
        ));
        let mr = json!({"object_attributes": {"action": "open", "iid": 3, "source_project_id": 9, "target_project_id": 4,
            "source_branch": "feature", "last_commit": {"id": SHA}}});
        assert!(matches!(
            asked(Forge::Gitlab, "Merge Request Hook", &mr).unwrap(),
            Asked::Run { fork: true, .. }
        ));
    }
}
