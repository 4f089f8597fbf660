//! A run: its stage graph, each stage's log (streamed by the page's
//! script), tests, findings, gate decisions and metering.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::Viewer;
use super::graph::{self, Node};
use super::html::{self, Section, esc, url_encode};
use crate::serve::App;
use crate::store::coordination::ApprovalRecord;
use crate::store::queries::{RunDetail, StageRecord};

type Shared = State<Arc<App>>;

/// Everything the page shows, read in one go.
struct Facts {
    detail: RunDetail,
    approvals: Vec<ApprovalRecord>,
    /// Each stage's `needs`, from `run_started`.
    needs: BTreeMap<String, Vec<String>>,
    /// Each finished stage's `usage`, from `stage_finished`.
    usage: HashMap<String, Value>,
    /// Failed and errored test cases, per stage.
    failed_tests: HashMap<String, Vec<Value>>,
}

fn read(s: &crate::store::Store, id: &str) -> Result<Facts, crate::store::StoreError> {
    let detail = s.run_detail(id)?;
    let approvals = s.approvals(id)?;
    let mut needs = BTreeMap::new();
    if let Some(first) = s.events_of_kind(id, "run_started")?.last()
        && let Ok(v) = serde_json::from_str::<Value>(first)
        && let Some(n) = v.get("needs").cloned()
    {
        needs = serde_json::from_value(n).unwrap_or_default();
    }
    let mut usage = HashMap::new();
    for body in s.events_of_kind(id, "stage_finished")? {
        if let Ok(v) = serde_json::from_str::<Value>(&body)
            && let (Some(stage), Some(u)) = (v["stage"].as_str(), v.get("usage"))
        {
            usage.insert(stage.to_string(), u.clone());
        }
    }
    let mut failed_tests = HashMap::new();
    for st in &detail.stages {
        if st
            .tests
            .as_ref()
            .is_some_and(|t| t["failed"].as_u64().unwrap_or(0) + t["errored"].as_u64().unwrap_or(0) > 0)
        {
            failed_tests.insert(st.name.clone(), s.failed_tests(id, &st.name)?);
        }
    }
    Ok(Facts {
        detail,
        approvals,
        needs,
        usage,
        failed_tests,
    })
}

/// What a stage is now, as the graph names it.
fn state(st: &StageRecord, approvals: &[ApprovalRecord], run_status: &str) -> String {
    let waits = approvals
        .iter()
        .any(|a| a.stage == st.name && a.decision == "pending");
    match st.status.as_str() {
        "waiting" if waits => "waiting".into(),
        "waiting" if matches!(run_status, "running" | "queued") => "pending".into(),
        "waiting" => "not run".into(),
        other => other.into(),
    }
}

/// The run page.
pub async fn page(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    let run = match crate::serve::runs::visible(&app, &viewer.caller, &id).await {
        Ok(r) => r,
        Err(p) => return super::failed(p),
    };
    let lookup = id.clone();
    let f = match app.db.call(move |s| read(s, &lookup)).await {
        Ok(f) => f,
        Err(e) => return super::failed(e.into()),
    };
    let stages = &f.detail.stages;
    let nodes: Vec<Node> = stages
        .iter()
        .map(|st| Node {
            name: st.name.clone(),
            state: state(st, &f.approvals, &run.status),
            duration_ms: st.duration_ms,
            cached: st.reused.as_ref().is_some_and(|r| r["from"] == "cache"),
            retries: (st.attempts.max(1) - 1) as u32,
            needs: f.needs.get(&st.name).cloned().unwrap_or_default(),
        })
        .collect();

    let mut head = String::new();
    let _ = write!(
        head,
        "<div class=\"run-head\"><h1>Run <code>{id}</code> {status}</h1><dl class=\"facts\">\
         <div><dt>Pipeline</dt><dd>{pipeline}</dd></div>",
        id = esc(&run.id),
        status = html::status(&run.status),
        pipeline = esc(&run.pipeline),
    );
    let mut fact = |name: &str, value: String| {
        let _ = write!(head, "<div><dt>{name}</dt><dd>{value}</dd></div>");
    };
    if let Some(b) = &run.branch {
        fact("Branch", esc(b));
    }
    if let Some(c) = &run.commit {
        fact(
            "Commit",
            format!("<code>{}</code>", esc(&c.chars().take(12).collect::<String>())),
        );
    }
    fact("Tenant", esc(&run.tenant));
    if let Some(t) = &run.trigger {
        fact("Trigger", esc(t));
    }
    fact("Started", html::time(run.started_ms));
    fact(
        "Duration",
        run.duration_ms
            .map(html::duration)
            .unwrap_or_else(|| "running".into()),
    );
    head.push_str("</dl>");
    if let Some(r) = &run.reason {
        let _ = write!(head, "<p class=\"reason\">{}</p>", esc(r));
    }
    head.push_str("</div>");

    let mut body = format!(
        "<div data-live-run=\"{id}\" data-live-done=\"{done}\">\
         <div id=\"run-head\" data-live-part>{head}</div>\
         <section aria-labelledby=\"graph-h\"><h2 id=\"graph-h\">Stages</h2>\
         <div class=\"graph-wrap\" id=\"run-graph\" data-live-part>{svg}</div></section>",
        id = esc(&run.id),
        done = !matches!(run.status.as_str(), "running" | "queued"),
        svg = graph::svg(&nodes),
    );
    // The log panel: the page's script fills it from the event stream and
    // draws only the lines in view, so a long log stays responsive.
    let _ = write!(
        body,
        "<section aria-labelledby=\"logs-h\" class=\"logs\"><h2 id=\"logs-h\">Logs</h2>\
         <div class=\"log-bar\"><label>Stage <select id=\"log-stage\"><option value=\"\">all stages</option>{options}</select></label>\
         <label>Find <input id=\"log-find\" type=\"search\" placeholder=\"text in the log\" size=\"18\"></label>\
         <span id=\"log-count\" class=\"muted\" aria-live=\"polite\"></span>\
         <a href=\"/api/v1/runs/{rid}/logs\">raw</a></div>\
         <div id=\"log-view\" class=\"log\" tabindex=\"0\" role=\"log\" aria-label=\"Log lines\"><div class=\"log-space\"></div><pre class=\"log-lines\"></pre></div>\
         <noscript><p>The log needs JavaScript; <a href=\"/api/v1/runs/{rid}/logs\">the raw log</a> does not.</p></noscript></section>",
        options = stages
            .iter()
            .map(|s| format!("<option>{}</option>", esc(&s.name)))
            .collect::<String>(),
        rid = url_encode(&run.id),
    );
    let _ = write!(
        body,
        "<div id=\"run-details\" data-live-part>{}</div></div>",
        details(&run.id, &f)
    );
    html::page(&format!("Run {}", run.id), Section::Runs, Some(&viewer), &body)
}

fn details(id: &str, f: &Facts) -> String {
    let stages = &f.detail.stages;
    let mut out = String::new();

    // Rollouts.
    let deploys: Vec<&StageRecord> = stages.iter().filter(|s| !s.rollout.is_empty()).collect();
    if !deploys.is_empty() {
        out.push_str("<section><h2>Rollouts</h2><ul>");
        for s in deploys {
            let steps = s.rollout.iter().filter(|r| r["phase"] == "analysis").count();
            let back = s.rollout.iter().any(|r| r["phase"] == "rolled_back");
            let _ = write!(
                out,
                "<li><a href=\"/runs/{}/rollout/{}\">{} — {} analysis step{}{}</a></li>",
                url_encode(id),
                url_encode(&s.name),
                esc(&s.name),
                steps,
                if steps == 1 { "" } else { "s" },
                if back { ", rolled back" } else { "" }
            );
        }
        out.push_str("</ul></section>");
    }

    // Tests.
    let tested: Vec<&StageRecord> = stages.iter().filter(|s| s.tests.is_some()).collect();
    if !tested.is_empty() {
        out.push_str("<section><h2>Tests</h2><table><thead><tr><th scope=\"col\">Stage</th><th scope=\"col\">Passed</th><th scope=\"col\">Failed</th><th scope=\"col\">Skipped</th><th scope=\"col\">Errored</th></tr></thead><tbody>");
        for s in &tested {
            let t = s.tests.as_ref().unwrap_or(&Value::Null);
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&s.name),
                n("passed"),
                n("failed"),
                n("skipped"),
                n("errored")
            );
        }
        out.push_str("</tbody></table>");
        for s in &tested {
            let Some(cases) = f.failed_tests.get(&s.name).filter(|c| !c.is_empty()) else {
                continue;
            };
            let _ = write!(
                out,
                "<h3>Failures in {}</h3><ul class=\"failures\">",
                esc(&s.name)
            );
            for c in cases {
                let _ = write!(
                    out,
                    "<li><strong>{}{}</strong> {}{}<pre>{}</pre></li>",
                    c["suite"]
                        .as_str()
                        .map(|s| format!("{} :: ", esc(s)))
                        .unwrap_or_default(),
                    esc(c["name"].as_str().unwrap_or("")),
                    html::status(c["status"].as_str().unwrap_or("failed")),
                    c["file"]
                        .as_str()
                        .map(|f| format!(" <code>{}</code>", esc(f)))
                        .unwrap_or_default(),
                    esc(c["message"].as_str().unwrap_or("")),
                );
            }
            out.push_str("</ul>");
        }
        out.push_str("</section>");
    }

    // Findings.
    let analyzed: Vec<&StageRecord> = stages
        .iter()
        .filter(|s| s.analysis.is_some() || !s.findings.is_empty())
        .collect();
    if !analyzed.is_empty() {
        out.push_str("<section><h2>Findings</h2>");
        for s in analyzed {
            let suppressed = s
                .summary
                .as_deref()
                .and_then(|m| {
                    m.split("; ")
                        .find_map(|p| p.strip_suffix(" suppressed")?.trim().parse::<u64>().ok())
                })
                .unwrap_or(0);
            let _ = write!(
                out,
                "<h3>{} <span class=\"muted\">{} reported, {} suppressed</span></h3>",
                esc(&s.name),
                s.findings.len(),
                suppressed
            );
            if s.findings.is_empty() {
                continue;
            }
            out.push_str("<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Severity</th><th scope=\"col\">Rule</th><th scope=\"col\">Where</th><th scope=\"col\">Message</th><th scope=\"col\">Suppressed</th></tr></thead><tbody>");
            for x in &s.findings {
                let place = match (x["path"].as_str(), x["line"].as_i64()) {
                    (Some(p), Some(l)) => format!("{p}:{l}"),
                    (Some(p), None) => p.to_string(),
                    _ => String::new(),
                };
                let sev = x["severity"].as_str().unwrap_or("info");
                let _ = write!(
                    out,
                    "<tr><td><span class=\"sev sev-{sev}\">{sev}</span></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>no</td></tr>",
                    esc(x["rule"].as_str().unwrap_or("")),
                    esc(&place),
                    esc(x["message"].as_str().unwrap_or("")),
                    sev = esc(sev),
                );
            }
            out.push_str("</tbody></table></div>");
        }
        out.push_str("</section>");
    }

    // Gates.
    let mut gates = String::new();
    for a in &f.approvals {
        let _ = write!(
            gates,
            "<tr><td>{}</td><td>approval for {}</td><td>{}</td><td>{}{}</td></tr>",
            esc(&a.stage),
            esc(&a.environment),
            html::status(&a.decision),
            a.decided_by
                .as_deref()
                .map(|b| format!("by {}: ", esc(b)))
                .unwrap_or_default(),
            esc(a.reason.as_deref().unwrap_or(if a.decision == "pending" {
                "waiting for a person"
            } else {
                ""
            })),
        );
    }
    for s in stages {
        if let Some(a) = &s.analysis {
            let verdict = a["verdict"].as_str().unwrap_or("?");
            let failed = a["gate_failed"].as_bool().unwrap_or(false);
            let _ = write!(
                gates,
                "<tr><td>{}</td><td>analysis</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                html::status(if failed { "failed" } else { verdict }),
                esc(s.summary.as_deref().unwrap_or("")),
            );
        } else if s.failure.as_deref() == Some("gate") || s.tests.is_some() {
            let failed = s.failure.as_deref() == Some("gate");
            let _ = write!(
                gates,
                "<tr><td>{}</td><td>test gate</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                html::status(if failed { "failed" } else { "pass" }),
                esc(s.error.as_deref().or(s.summary.as_deref()).unwrap_or("")),
            );
        }
    }
    if !gates.is_empty() {
        let _ = write!(
            out,
            "<section><h2>Gate decisions</h2><table><thead><tr><th scope=\"col\">Stage</th><th scope=\"col\">Gate</th><th scope=\"col\">Decision</th><th scope=\"col\">Reason</th></tr></thead><tbody>{gates}</tbody></table></section>"
        );
    }

    // Errors.
    let failed: Vec<&StageRecord> = stages.iter().filter(|s| s.status == "failed").collect();
    if !failed.is_empty() {
        out.push_str("<section><h2>What failed</h2><ul class=\"failures\">");
        for s in failed {
            let _ = write!(
                out,
                "<li><strong>{}</strong> ({}): <pre>{}</pre></li>",
                esc(&s.name),
                esc(s.failure.as_deref().unwrap_or("failed")),
                esc(s.error.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</ul></section>");
    }

    // Metering.
    out.push_str("<section><h2>Metering</h2><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Stage</th><th scope=\"col\">Time</th><th scope=\"col\">Attempts</th><th scope=\"col\">Fuel</th><th scope=\"col\">Peak memory</th></tr></thead><tbody>");
    for s in stages {
        let u = f.usage.get(&s.name);
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.name),
            s.duration_ms.map(html::duration).unwrap_or_default(),
            s.attempts,
            u.and_then(|u| u["fuel"].as_u64())
                .map(html::count)
                .unwrap_or_else(|| "—".into()),
            u.and_then(|u| u["peak_memory_bytes"].as_u64())
                .map(html::bytes)
                .unwrap_or_else(|| "—".into()),
        );
    }
    out.push_str("</tbody></table></div><p class=\"help\">Fuel is counted only for tenants with a <code>fuel</code> limit; deploy stages run on the target, not in the sandbox.</p></section>");
    out
}
