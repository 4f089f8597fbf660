//! The end-of-run summary: one line per stage, then what failed and why.

use super::model::{RunView, ViewState};
use super::style::{self, Style};
use crate::events::{RunStatus, StageStatus};

/// Findings listed per stage; the rest are counted.
const MAX_FINDINGS: usize = 20;

/// Print the summary of a finished run.
pub fn print(view: &RunView, style: &Style, width: usize, status: RunStatus, duration_ms: u64) {
    let mut out = String::from("\n");
    let painted = match status {
        RunStatus::Succeeded => style.ok("succeeded"),
        RunStatus::Failed => style.bad("failed"),
        RunStatus::Cancelled => style.warn("cancelled"),
    };
    out.push_str(&format!(
        "{} `{}` {} in {}\n",
        style.bold("Run"),
        view.pipeline,
        painted,
        style::duration(duration_ms)
    ));
    for s in &view.stages {
        let line = match &s.state {
            ViewState::Done {
                status,
                failure,
                duration_ms,
                attempts,
                note,
                ..
            } => {
                let sym = style::symbol(*status);
                let sym = match status {
                    StageStatus::Succeeded => style.ok(sym),
                    StageStatus::Failed => style.bad(sym),
                    _ => style.warn(sym),
                };
                let word = match status {
                    StageStatus::Succeeded
                        if matches!(s.reused, Some(crate::events::Reused::Cache { .. })) =>
                    {
                        "cached"
                    }
                    StageStatus::Succeeded if s.reused.is_some() => "reused",
                    StageStatus::Succeeded => "succeeded",
                    StageStatus::Failed => failure.map(style::failure_name).unwrap_or("failed"),
                    StageStatus::Skipped => "skipped",
                    StageStatus::Cancelled => "cancelled",
                };
                let time = if matches!(status, StageStatus::Skipped | StageStatus::Cancelled) {
                    String::new()
                } else {
                    style::duration(*duration_ms)
                };
                let retries = if *attempts > 1 {
                    format!("{attempts} attempts; ")
                } else {
                    String::new()
                };
                let note = format!("{retries}{}", note.as_deref().unwrap_or(""));
                let note = note.trim_end_matches("; ");
                format!(
                    "  {sym} {:<width$}  {word:<12} {time:>7}  {}",
                    s.name,
                    style.dim(&style::fit(note, 80))
                )
            }
            _ => format!("  {} {:<width$}  not run", style.dim("·"), s.name),
        };
        out.push_str(&line);
        out.push('\n');
        // Programs that ran outside bubblewrap are worth a line of their own.
        if let Some(sandbox) = s.sandbox.as_deref().filter(|s| *s != "bubblewrap") {
            out.push_str(&format!("      {}\n", style.warn(&format!("sandbox {sandbox}"))));
        }
    }
    if view.explain_cache {
        explain_cache(view, style, width, &mut out);
    }
    let failed: Vec<_> = view
        .stages
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                ViewState::Done {
                    status: StageStatus::Failed,
                    ..
                }
            )
        })
        .collect();
    if !failed.is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("What failed")));
        for s in failed {
            if let ViewState::Done {
                note,
                details,
                failure,
                ..
            } = &s.state
            {
                out.push_str(&format!(
                    "  {} {} {}: {}\n",
                    style.bad("✗"),
                    style.bold(&s.name),
                    failure.map(style::failure_name).unwrap_or("failed"),
                    style::fit(note.as_deref().unwrap_or(""), 400)
                ));
                // An analyzer's verdict is explained by its findings, listed
                // below; repeating them here would only add noise.
                let judged = s.analysis.is_some() && *failure == Some(crate::events::FailureKind::Gate);
                if judged {
                    continue;
                }
                if let Some(d) = details {
                    for line in d.lines().take(12) {
                        out.push_str(&format!("      {}\n", style.dim(&style::fit(line, 160))));
                    }
                }
                if !s.tail.is_empty() {
                    out.push_str(&format!("    {}\n", style.dim("last log lines:")));
                    for line in &s.tail {
                        out.push_str(&format!("      {}\n", style.dim(&style::fit(line, 120))));
                    }
                }
            }
        }
    }
    let analyzed: Vec<_> = view
        .stages
        .iter()
        .filter_map(|s| s.analysis.as_ref().map(|a| (s, a)))
        .filter(|(s, a)| !s.findings.is_empty() || a.verdict != "pass")
        .collect();
    if !analyzed.is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("Findings")));
        for (s, a) in analyzed {
            let verdict = match a.verdict.as_str() {
                "pass" => style.ok("pass"),
                "warn" => style.warn("warn"),
                v => style.bad(v),
            };
            out.push_str(&format!(
                "  {}  verdict {verdict}, score {}, {}\n",
                style.bold(&s.name),
                a.score,
                a.counts.describe()
            ));
            for f in crate::findings::worst_first(&s.findings)
                .into_iter()
                .take(MAX_FINDINGS)
            {
                let severity = match f.severity.as_str() {
                    "high" | "critical" => style.bad(&format!("{:<8}", f.severity)),
                    "medium" => style.warn(&format!("{:<8}", f.severity)),
                    _ => style.dim(&format!("{:<8}", f.severity)),
                };
                out.push_str(&format!(
                    "    {severity} {}  {}  {}\n",
                    style::fit(&crate::findings::place(f), 60),
                    style.dim(&style::fit(&f.rule, 40)),
                    style::fit(&f.message, 160)
                ));
            }
            if s.findings.len() > MAX_FINDINGS {
                out.push_str(&format!(
                    "    … and {} more (in {} and `weir run --json`)\n",
                    s.findings.len() - MAX_FINDINGS,
                    view.sarif.as_deref().unwrap_or("reports/scan.sarif")
                ));
            }
        }
    }
    if let Some(ws) = &view.workspace {
        out.push_str(&format!(
            "\n{}  {}\n",
            style.dim("workspace"),
            style::short_path(ws)
        ));
    }
    if let Some(junit) = &view.junit {
        out.push_str(&format!("{}      {junit}\n", style.dim("junit")));
    }
    if let Some(sarif) = &view.sarif {
        out.push_str(&format!("{}      {sarif}\n", style.dim("sarif")));
    }
    if let Some(path) = view.provenance.as_ref().filter(|p| p.is_file()) {
        let signed = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<crate::report::provenance::dsse::Envelope>(t.trim()).ok())
            .and_then(|e| e.signatures.first().map(|s| s.keyid.clone()));
        let how = match signed {
            Some(id) => format!("signed by {}", id.get(..16).unwrap_or(&id)),
            None => "unsigned: `weir keys generate` makes a signing key".to_string(),
        };
        out.push_str(&format!(
            "{} {}  {}\n",
            style.dim("provenance"),
            style::short_path(&path.display().to_string()),
            style.dim(&how)
        ));
    }
    // A reader gone away (`| head`) is not an error of the run's.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
}

/// `--explain-cache`: each stage's cache status, key, parts and reasons.
fn explain_cache(view: &RunView, style: &Style, width: usize, out: &mut String) {
    out.push_str(&format!("\n{}\n", style.bold("Stage cache")));
    for s in &view.stages {
        let Some(c) = &s.cache else {
            out.push_str(&format!(
                "  {:<width$}  {}\n",
                s.name,
                style.dim("not checked (the stage did not run)")
            ));
            continue;
        };
        let status = match c.status {
            crate::events::CacheStatus::Hit => style.ok("hit"),
            crate::events::CacheStatus::Miss => style.warn("miss"),
            crate::events::CacheStatus::Off => style.dim("off"),
        };
        let key = c.key.as_deref().map(|k| format!("  key {k}")).unwrap_or_default();
        out.push_str(&format!("  {:<width$}  {status}{key}\n", s.name));
        // The parts, a few to a line; the files last, as they are longest.
        let mut line = String::new();
        let files = c.parts.get("files");
        for (k, v) in c.parts.iter().filter(|(k, _)| *k != "files") {
            if line.len() > 70 {
                out.push_str(&format!("  {:<width$}    {}\n", "", style.dim(line.trim_end())));
                line.clear();
            }
            line.push_str(&format!("{k} {}  ", &v[..v.len().min(8)]));
        }
        if !line.is_empty() {
            out.push_str(&format!("  {:<width$}    {}\n", "", style.dim(line.trim_end())));
        }
        if let Some(f) = files {
            out.push_str(&format!(
                "  {:<width$}    {}\n",
                "",
                style.dim(&format!("files {f}"))
            ));
        }
        for r in &c.reasons {
            out.push_str(&format!("  {:<width$}    {}\n", "", style::fit(r, 160)));
        }
    }
}
