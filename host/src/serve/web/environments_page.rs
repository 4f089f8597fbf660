//! Deployed services with their releases and a rollback, and the deploys
//! waiting for a person's approval.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::Viewer;
use super::html::{self, Section, csrf_field, esc, url_encode};
use crate::serve::App;
use crate::serve::gates;

type Shared = State<Arc<App>>;

fn target() -> crate::target::client::TargetClient {
    crate::target::client::TargetClient::new(&crate::session::state::target_dir())
}

/// Approvals waiting, then every deployed service.
pub async fn page(State(app): Shared, Extension(viewer): Extension<Viewer>) -> Response {
    let tenant = viewer.caller.tenant.clone();
    let t = tenant.clone();
    let approvals = match app.db.call(move |s| s.pending_approvals(t.as_deref())).await {
        Ok(a) => a,
        Err(e) => return super::failed(e.into()),
    };
    let deployed = match app.db.call(move |s| s.deployed(tenant.as_deref())).await {
        Ok(d) => d,
        Err(e) => return super::failed(e.into()),
    };
    let mut body =
        String::from("<div data-live=\"all\"><div id=\"environments\" data-live-part><h1>Environments</h1>");
    body.push_str(
        "<section aria-labelledby=\"approvals-h\"><h2 id=\"approvals-h\">Waiting for approval</h2>",
    );
    if approvals.is_empty() {
        body.push_str("<p class=\"empty\">No deploy is waiting.</p>");
    }
    for a in &approvals {
        let who = if a.approvers.is_empty() {
            "anyone may decide".to_string()
        } else {
            format!("approvers: {}", a.approvers.join(", "))
        };
        let action = format!("/runs/{}/approvals/{}", url_encode(&a.run), url_encode(&a.stage));
        let _ = write!(
            body,
            "<article class=\"approval\" id=\"approval-{run}-{stage}\"><h3>Deploy <strong>{stage}</strong> of <a href=\"/runs/{run_url}\">{run}</a> to {env}</h3>\
             <p class=\"muted\">{who}; asked {asked}, times out {deadline}</p>\
             <form method=\"post\" action=\"{action}\">{csrf}\
             <label for=\"reason-{run}-{stage}\">Reason</label>\
             <input id=\"reason-{run}-{stage}\" name=\"reason\" required placeholder=\"checked the canary\">\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"reject\" class=\"danger\">Reject</button></form></article>",
            run = esc(&a.run),
            run_url = url_encode(&a.run),
            stage = esc(&a.stage),
            env = esc(&a.environment),
            who = esc(&who),
            asked = html::time(a.requested_ms),
            deadline = html::time(a.deadline_ms),
            action = esc(&action),
            csrf = csrf_field(&viewer),
        );
    }
    body.push_str(
        "</section><section aria-labelledby=\"services-h\"><h2 id=\"services-h\">Deployed services</h2>",
    );
    if deployed.is_empty() {
        body.push_str("<p class=\"empty\">Nothing deployed yet.</p>");
    }
    let client = target();
    for d in &deployed {
        let _ = write!(
            body,
            "<article class=\"service\"><h3><code>{svc}</code> <span class=\"muted\">{env} · {pipeline} · last by <a href=\"/runs/{run_url}\">{run}</a></span></h3>",
            svc = esc(&d.service),
            env = esc(d.environment.as_deref().unwrap_or("no environment")),
            pipeline = esc(&d.pipeline),
            run_url = url_encode(&d.last_run),
            run = esc(&d.last_run),
        );
        // Services two tenants deployed belong to neither.
        if gates::owned(&app, &viewer.caller, &d.service).await.is_err() {
            body.push_str("<p class=\"muted\">Another tenant deployed a service of this name too, so only an operator may manage it.</p></article>");
            continue;
        }
        match client.service(&d.service).await {
            Err(e) => {
                let _ = write!(
                    body,
                    "<p class=\"error\">The deployment target does not answer: {}</p>",
                    esc(&e.to_string())
                );
            }
            Ok(status) => {
                let view = gates::view(status);
                let split = view
                    .weights
                    .iter()
                    .map(|(v, w)| format!("{v} {w}%"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = write!(
                    body,
                    "<p>Current release: <strong>{}</strong>{}</p>",
                    esc(view.current.as_deref().unwrap_or("none")),
                    if split.is_empty() {
                        String::new()
                    } else {
                        format!(" · traffic {}", esc(&split))
                    }
                );
                body.push_str("<table><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">State</th><th scope=\"col\">Run</th><th scope=\"col\">Deployed</th><th scope=\"col\">Why</th></tr></thead><tbody>");
                for r in view.releases.iter().take(20) {
                    let run = r["run"].as_str().unwrap_or("");
                    let _ = write!(
                        body,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(r["version"].as_str().unwrap_or("")),
                        html::status(r["state"].as_str().unwrap_or("")),
                        if run.is_empty() {
                            String::new()
                        } else {
                            format!("<a href=\"/runs/{}\">{}</a>", url_encode(run), esc(run))
                        },
                        r["deployed_ms"].as_i64().map(html::time).unwrap_or_default(),
                        esc(r["reason"].as_str().unwrap_or("")),
                    );
                }
                body.push_str("</tbody></table>");
                if view.releases.len() > 1 {
                    let _ = write!(
                        body,
                        "<p><a class=\"button danger\" href=\"/environments/{}/rollback\">Roll back…</a></p>",
                        url_encode(&d.service)
                    );
                }
            }
        }
        body.push_str("</article>");
    }
    body.push_str("</section></div></div>");
    html::page("Environments", Section::Environments, Some(&viewer), &body)
}

/// Ask before rolling back: what is serving, and what will.
pub async fn confirm_rollback(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    Path(service): Path<String>,
) -> Response {
    if let Err(p) = gates::owned(&app, &viewer.caller, &service).await {
        return super::failed(p);
    }
    let view = match target().service(&service).await {
        Ok(s) => gates::view(s),
        Err(e) => return super::failed(gates::target_problem(e)),
    };
    let body = format!(
        "<section class=\"confirm\"><h1>Roll back <code>{svc}</code>?</h1>\
         <p>It serves <strong>{current}</strong> now. Rolling back puts all traffic on the release that was stable before it, at once.</p>\
         <form method=\"post\" action=\"/environments/{svc_url}/rollback\">{csrf}\
         <button type=\"submit\" class=\"danger\" id=\"confirm-rollback\">Roll back {svc}</button> <a href=\"/environments\">Cancel</a></form></section>",
        svc = esc(&service),
        svc_url = url_encode(&service),
        current = esc(view.current.as_deref().unwrap_or("nothing")),
        csrf = csrf_field(&viewer),
    );
    html::page(
        &format!("Roll back {service}"),
        Section::Environments,
        Some(&viewer),
        &body,
    )
}

/// Roll back, then show the environments.
pub async fn rollback(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    Path(service): Path<String>,
) -> Response {
    if let Err(p) = gates::owned(&app, &viewer.caller, &service).await {
        return super::failed(p);
    }
    match target().rollback(&service).await {
        Ok(_) => {
            tracing::info!(%service, by = %viewer.caller.token, "rolled back from the dashboard");
            Redirect::to("/environments").into_response()
        }
        Err(e) => super::failed(gates::target_problem(e)),
    }
}

/// Approve or reject from the page.
pub async fn decide(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    Path((id, stage)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let fields = super::fields(&body);
    let approve = match fields.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            return html::refusal(StatusCode::BAD_REQUEST, "No decision", "Press Approve or Reject.");
        }
    };
    let reason = fields
        .get("reason")
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.is_none() {
        return html::refusal(
            StatusCode::BAD_REQUEST,
            "A decision needs a reason",
            "Say why, for the run's people; nothing was decided.",
        );
    }
    match gates::decide_as(&app, &viewer.caller, id.clone(), stage, approve, reason).await {
        Ok(_) => {
            app.events.send_modify(|n| *n += 1);
            Redirect::to(&format!("/runs/{}", url_encode(&id))).into_response()
        }
        Err(p) => super::failed(p),
    }
}
