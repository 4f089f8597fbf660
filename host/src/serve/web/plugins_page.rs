//! The plugins a tenant can use and what its policy lets it grant them;
//! for operators, the tenants with their quotas and use.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use weir_pipeline::config::tenants::{Tenant, Tenants};
use weir_pipeline::grants::RULES;

use super::Viewer;
use super::html::{self, Section, esc};
use crate::serve::App;

type Shared = State<Arc<App>>;

/// A built-in plugin as the page lists it.
#[derive(Debug, Clone)]
pub struct PluginRow {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// stage, analyzer, test-runner, strategy or deployer.
    pub kind: &'static str,
    /// The component's SHA-256.
    pub sha256: String,
    /// The WIT package it implements.
    pub wit: &'static str,
    /// The capabilities it asks for.
    pub capabilities: Vec<&'static str>,
    /// What it does.
    pub description: String,
}

async fn load_plugins() -> Result<Vec<PluginRow>, String> {
    let loader = crate::session::prepare::loader().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for name in crate::plugins::builtin::names() {
        let p = loader
            .load(&crate::plan::PluginRef::Builtin(name.to_string()))
            .await
            .map_err(|e| format!("built-in plugin `{name}`: {e}"))?;
        let i = &p.info;
        rows.push(PluginRow {
            name: i.manifest.name.clone(),
            version: i.manifest.version.clone(),
            kind: crate::plugins::kind_name(i.kind),
            sha256: i.sha256.clone(),
            wit: i.contract.package(),
            capabilities: i
                .manifest
                .capabilities
                .iter()
                .map(crate::plugins::capability_name)
                .collect(),
            description: i.manifest.description.clone(),
        });
    }
    Ok(rows)
}

fn tenants(app: &App) -> Result<Tenants, Box<Response>> {
    Tenants::load(app.config.tenants.as_deref()).map_err(|e| {
        Box::new(html::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The tenants file cannot be read",
            &e.to_string(),
        ))
    })
}

/// What a tenant's policy lets its pipelines grant, grant by grant.
fn policy(t: &Tenant) -> String {
    let Some(allow) = &t.allow else {
        return "<p>No tenants file: its pipelines may grant anything.</p>".into();
    };
    let mut out = String::from("<dl class=\"grants\">");
    for rule in RULES {
        if rule.allows.is_none() {
            continue;
        }
        let items = (rule.items)(allow);
        let shown = if items.is_empty() {
            "<span class=\"muted\">nothing</span>".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("<code>{}</code>", esc(i)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(out, "<div><dt>{}</dt><dd>{shown}</dd></div>", esc(rule.key));
    }
    out.push_str("</dl>");
    out
}

/// The plugins page.
pub async fn page(State(app): Shared, Extension(viewer): Extension<Viewer>) -> Response {
    let rows = match app.plugins.get_or_try_init(load_plugins).await {
        Ok(r) => r,
        Err(e) => {
            return html::refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The plugins cannot be read",
                &e,
            );
        }
    };
    let mut body = String::from(
        "<h1>Plugins</h1><p>Built into this weir; a pipeline names one with <code>uses</code>. \
        A plugin gets a capability only when its stage's <code>allow</code> grants it and the tenant's policy allows that.</p>",
    );
    body.push_str("<div class=\"table-wrap\"><table class=\"plugins\"><thead><tr><th scope=\"col\">Plugin</th><th scope=\"col\">Kind</th>\
        <th scope=\"col\">WIT</th><th scope=\"col\">Asks for</th><th scope=\"col\">Digest</th><th scope=\"col\">What it does</th></tr></thead><tbody>");
    for r in rows {
        let caps = if r.capabilities.is_empty() {
            "nothing".to_string()
        } else {
            r.capabilities.join(", ")
        };
        let _ = write!(
            body,
            "<tr><td><strong>{}</strong> {}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code title=\"sha256:{sha}\">{short}…</code></td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.version),
            r.kind,
            r.wit,
            esc(&caps),
            esc(&r.description),
            sha = esc(&r.sha256),
            short = esc(&r.sha256[..r.sha256.len().min(12)]),
        );
    }
    body.push_str("</tbody></table></div>");
    match tenants(&app) {
        Err(r) => return *r,
        Ok(all) => {
            for t in all.all() {
                if !viewer.caller.sees(t.name.as_str()) {
                    continue;
                }
                let _ = write!(
                    body,
                    "<section><h2>What tenant <code>{}</code> may grant</h2>{}</section>",
                    esc(t.name.as_str()),
                    policy(t)
                );
            }
        }
    }
    html::page("Plugins", Section::Plugins, Some(&viewer), &body)
}

/// Operators: every tenant, its quotas, and what it uses now.
pub async fn tenants_page(State(app): Shared, Extension(viewer): Extension<Viewer>) -> Response {
    if viewer.caller.tenant.is_some() {
        return html::refusal(StatusCode::NOT_FOUND, "Not found", "This page is for operators.");
    }
    let all = match tenants(&app) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let running = app.running_per_tenant();
    let f = crate::store::queries::RunFilter {
        status: Some("queued".into()),
        limit: Some(10_000),
        ..Default::default()
    };
    let queued = match app.db.call(move |s| s.list_runs(&f)).await {
        Ok(q) => q,
        Err(e) => return super::failed(e.into()),
    };
    let usage = app
        .metrics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .tenants
        .clone();
    let mut body = String::from(
        "<div data-live=\"all\"><div id=\"tenants\" data-live-part><h1>Tenants</h1><div class=\"table-wrap\"><table><thead><tr>\
         <th scope=\"col\">Tenant</th><th scope=\"col\">Running</th><th scope=\"col\">Queued</th><th scope=\"col\">Max runs</th>\
         <th scope=\"col\">Max stages</th><th scope=\"col\">Memory per plugin</th><th scope=\"col\">Fuel per call</th><th scope=\"col\">Longest timeout</th>\
         <th scope=\"col\">Stages run</th><th scope=\"col\">Fuel used</th><th scope=\"col\">Peak memory</th><th scope=\"col\">Stage time</th></tr></thead><tbody>",
    );
    for t in all.all() {
        let name = t.name.as_str();
        let u = usage.get(name).cloned().unwrap_or_default();
        let q = queued.iter().filter(|r| r.tenant == name).count();
        let limit = |v: Option<u32>| v.map_or("no limit".to_string(), |n| n.to_string());
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{q}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            running.get(name).copied().unwrap_or(0),
            limit(t.max_runs),
            limit(t.max_stages),
            html::bytes(t.limits.stage.memory_bytes as u64),
            t.limits.stage.fuel.map_or("not metered".to_string(), html::count),
            html::duration(t.limits.max_timeout.as_millis() as i64),
            u.stages,
            html::count(u.fuel),
            html::bytes(u.peak_memory),
            html::duration((u.stage_seconds * 1000.0) as i64),
        );
    }
    body.push_str(
        "</tbody></table></div><p class=\"help\">Use is counted since this server started.</p></div></div>",
    );
    html::page("Tenants", Section::Tenants, Some(&viewer), &body)
}
