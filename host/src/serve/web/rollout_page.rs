//! A deploy's rollout: the traffic the candidate had over time, the
//! canary's and the stable release's error rate and p99 latency at each
//! analysis step, each step's verdict, and where it rolled back.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::Viewer;
use super::chart::{self, Chart, Series};
use super::html::{self, Section, esc, url_encode};
use crate::serve::App;

type Shared = State<Arc<App>>;

/// One analysis step's figures for a version: (requests, error rate in %,
/// p99 in ms).
fn figures(traffic: &Value, version: &str) -> Option<(u64, f64, Option<f64>)> {
    let t = traffic.get(version)?;
    let requests = t["requests"].as_u64()?;
    let errors = t["errors"].as_u64().unwrap_or(0);
    let rate = if requests > 0 {
        errors as f64 * 100.0 / requests as f64
    } else {
        0.0
    };
    Some((requests, rate, t["p99_ms"].as_f64()))
}

/// The version besides the candidate that had the most traffic.
fn stable_of(traffic: &Value, candidate: &str) -> Option<String> {
    traffic
        .as_object()?
        .iter()
        .filter(|(v, _)| *v != candidate)
        .max_by_key(|(_, t)| t["requests"].as_u64().unwrap_or(0))
        .map(|(v, _)| v.clone())
}

/// The rollout page of stage `stage` of run `id`.
pub async fn page(
    State(app): Shared,
    Extension(viewer): Extension<Viewer>,
    Path((id, stage)): Path<(String, String)>,
) -> Response {
    let run = match crate::serve::runs::visible(&app, &viewer.caller, &id).await {
        Ok(r) => r,
        Err(p) => return super::failed(p),
    };
    let lookup = id.clone();
    let bodies = match app.db.call(move |s| s.events_of_kind(&lookup, "rollout")).await {
        Ok(b) => b,
        Err(e) => return super::failed(e.into()),
    };
    let events: Vec<Value> = bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|v| v["stage"] == stage.as_str())
        .collect();
    if events.is_empty() {
        return super::failed(crate::serve::problem::Problem::not_found(format!(
            "stage `{stage}` of run `{id}` has no rollout (yet)"
        )));
    }
    let candidate = events[0]["version"].as_str().unwrap_or("").to_string();
    let service = events[0]["service"].as_str().unwrap_or("").to_string();
    let t0 = events[0]["time_ms"].as_i64().unwrap_or(0);
    let secs = |e: &Value| (e["time_ms"].as_i64().unwrap_or(t0) - t0) as f64 / 1000.0;

    let mut share = Vec::new();
    let mut markers = Vec::new();
    let mut canary_err = Vec::new();
    let mut stable_err = Vec::new();
    let mut canary_p99 = Vec::new();
    let mut stable_p99 = Vec::new();
    let mut stable_name = None;
    let mut analyses = 0u32;
    let mut rows = String::new();
    let mut outcome = "in progress".to_string();
    for e in &events {
        let phase = e["phase"].as_str().unwrap_or("");
        let weights = e["weights"].as_object();
        if matches!(phase, "started" | "action" | "rolled_back" | "promoted") {
            let w = match weights {
                Some(w) => w.get(&candidate).and_then(Value::as_f64).unwrap_or(0.0),
                None if phase == "started" => 0.0,
                None if phase == "promoted" => 100.0,
                None => share.last().map_or(0.0, |p: &(f64, f64)| p.1),
            };
            share.push((secs(e), w));
        }
        let mut cells = String::new();
        if phase == "analysis" {
            analyses += 1;
            let n = f64::from(analyses);
            let traffic = &e["traffic"];
            if stable_name.is_none() {
                stable_name = stable_of(traffic, &candidate);
            }
            if let Some((r, rate, p99)) = figures(traffic, &candidate) {
                canary_err.push((n, rate));
                if let Some(p) = p99 {
                    canary_p99.push((n, p));
                }
                let _ = write!(
                    cells,
                    "{r} req, {rate:.2}% err, p99 {}",
                    p99.map_or("—".into(), |p| format!("{p:.1} ms"))
                );
            }
            if let Some(s) = &stable_name
                && let Some((r, rate, p99)) = figures(traffic, s)
                && r > 0
            {
                stable_err.push((n, rate));
                if let Some(p) = p99 {
                    stable_p99.push((n, p));
                }
                let _ = write!(
                    cells,
                    "<br><span class=\"muted\">stable: {r} req, {rate:.2}% err, p99 {}</span>",
                    p99.map_or("—".into(), |p| format!("{p:.1} ms"))
                );
            }
        }
        match phase {
            "rolled_back" => {
                markers.push((secs(e), "rolled back".to_string()));
                outcome = format!(
                    "rolled back at step {}, {:.1} s in{}: {}",
                    e["step"].as_u64().unwrap_or(0),
                    secs(e),
                    e["recovery_ms"]
                        .as_u64()
                        .map(|r| format!(" (traffic back on stable in {r} ms)"))
                        .unwrap_or_default(),
                    e["message"].as_str().unwrap_or("")
                );
            }
            "promoted" => outcome = format!("promoted after {:.1} s", secs(e)),
            _ => {}
        }
        let split = weights
            .map(|w| {
                w.iter()
                    .map(|(v, p)| format!("{v} {p}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            rows,
            "<tr class=\"phase-{phase}\"><td class=\"num\">{step}</td><td class=\"num\">+{t:.1} s</td><td>{phase}</td><td>{split}</td><td>{verdict}</td><td>{cells}</td><td>{msg}</td></tr>",
            phase = esc(phase),
            step = e["step"].as_u64().unwrap_or(0),
            t = secs(e),
            split = esc(&split),
            verdict = e["verdict"].as_str().map(html::status).unwrap_or_default(),
            msg = esc(e["message"].as_str().unwrap_or("")),
        );
    }
    let stable_label = stable_name
        .clone()
        .map_or("stable".to_string(), |s| format!("stable {s}"));
    let canary_label = format!("canary {candidate}");
    let line = |name: &str, class: &'static str, points: Vec<(f64, f64)>| Series {
        name: name.to_string(),
        class,
        points,
        steps: false,
    };
    let charts = [
        chart::svg(&Chart {
            title: format!("Traffic to {candidate} over time"),
            x_label: "seconds since the rollout started".into(),
            y_label: "% of traffic".into(),
            series: vec![Series {
                name: canary_label.clone(),
                class: "canary",
                points: share,
                steps: true,
            }],
            markers,
            y_floor_max: 100.0,
            y_unit: "%",
        }),
        chart::svg(&Chart {
            title: "Error rate at each analysis step".into(),
            x_label: "analysis step".into(),
            y_label: "% errors".into(),
            series: vec![
                line(&canary_label, "canary", canary_err),
                line(&stable_label, "stable", stable_err),
            ],
            markers: vec![],
            y_floor_max: 1.0,
            y_unit: "%",
        }),
        chart::svg(&Chart {
            title: "p99 latency at each analysis step".into(),
            x_label: "analysis step".into(),
            y_label: "ms".into(),
            series: vec![
                line(&canary_label, "canary", canary_p99),
                line(&stable_label, "stable", stable_p99),
            ],
            markers: vec![],
            y_floor_max: 1.0,
            y_unit: " ms",
        }),
    ];
    let body = format!(
        "<div data-live-run=\"{rid}\" data-live-done=\"{done}\"><div id=\"rollout\" data-live-part>\
         <p><a href=\"/runs/{rid_url}\">← run {rid}</a></p>\
         <h1>Rollout of <code>{service}</code> {candidate}</h1>\
         <p class=\"outcome\">Stage <strong>{stage}</strong> · {analyses} analysis step{plural} · <span id=\"rollout-outcome\">{outcome}</span></p>\
         <div class=\"charts\">{charts}</div>\
         <h2>Steps</h2><div class=\"table-wrap\"><table class=\"steps\"><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">When</th><th scope=\"col\">Phase</th>\
         <th scope=\"col\">Traffic</th><th scope=\"col\">Verdict</th><th scope=\"col\">Measured</th><th scope=\"col\">What</th></tr></thead><tbody>{rows}</tbody></table></div>\
         </div></div>",
        rid = esc(&run.id),
        rid_url = url_encode(&run.id),
        done = !matches!(run.status.as_str(), "running" | "queued"),
        service = esc(&service),
        candidate = esc(&candidate),
        stage = esc(&stage),
        plural = if analyses == 1 { "" } else { "s" },
        outcome = esc(&outcome),
        charts = charts.join(""),
    );
    html::page(
        &format!("Rollout of {service}"),
        Section::Runs,
        Some(&viewer),
        &body,
    )
}
