//! `weir runs report RUN`: a deployment report, as JSON (for machines and
//! archives) and Markdown (for a pull request, a release page, a chat).
//!
//! Everything in it is read back from the run history: the commit the run
//! built, each stage with its duration, tests and findings, the approvals,
//! each rollout step with its metrics and verdict, and a rollback with its
//! reason. Nothing is recomputed.

use serde_json::{Value, json};

use crate::store::coordination::ApprovalRecord;
use crate::store::queries::RunDetail;

/// What the report is made of.
#[derive(Debug)]
pub struct ReportInput<'a> {
    /// The run and its stages.
    pub detail: &'a RunDetail,
    /// How it was started (`weir run` options: branch, environment,
    /// commit, tags).
    pub options: Value,
    /// Failed and errored test cases, per stage.
    pub failed_tests: Vec<(String, Vec<Value>)>,
    /// Approvals asked and given.
    pub approvals: &'a [ApprovalRecord],
    /// Webhook deliveries.
    pub deliveries: Vec<Value>,
}

/// The report as JSON.
pub fn json(input: &ReportInput<'_>) -> Value {
    let d = input.detail;
    let stages: Vec<Value> = d
        .stages
        .iter()
        .map(|s| {
            let failed = input
                .failed_tests
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, c)| c.clone())
                .unwrap_or_default();
            let rollback = s
                .rollout
                .iter()
                .find(|r| r["phase"] == "rolled_back")
                .map(|r| json!({ "reason": r["message"], "recovery_ms": r["recovery_ms"] }));
            json!({
                "name": s.name,
                "status": s.status,
                "failure": s.failure,
                "plugin": s.plugin,
                "duration_ms": s.duration_ms,
                "summary": s.summary,
                "error": s.error,
                "reused": s.reused,
                "tests": s.tests,
                "failed_tests": failed,
                "analysis": s.analysis,
                "findings": s.findings,
                "artifacts": s.artifacts,
                "rollout": s.rollout,
                "rollback": rollback,
            })
        })
        .collect();
    json!({
        "report_version": 1,
        "run": d.run.id,
        "pipeline": d.run.pipeline,
        "pipeline_file": d.pipeline_file,
        "tenant": d.run.tenant,
        "status": d.run.status,
        "started_ms": d.run.started_ms,
        "duration_ms": d.run.duration_ms,
        "commit": input.options.get("commit"),
        "branch": input.options.get("branch"),
        "tags": input.options.get("tags"),
        "environment": input.options.get("environment"),
        "stages": stages,
        "approvals": input.approvals,
        "notifications": input.deliveries,
    })
}

/// A rollout step's traffic split, `v1 80%, v2 20%`; `None` when it did
/// not change.
pub fn traffic_split(step: &Value) -> Option<String> {
    step["weights"]
        .as_object()
        .map(|w| {
            w.iter()
                .map(|(v, n)| format!("{v} {n}%"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|w| !w.is_empty())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => markdown_text(s),
        other => markdown_text(&other.to_string()),
    }
}

/// `s` as Markdown that shows it and nothing else: one line, control
/// characters shown as `\x1b`-style text, and every character Markdown or
/// HTML would read (emphasis, code, links, images, headings, table cells,
/// tags, entities, backslashes) escaped. Plugins write most of what a
/// report shows; none of it may become a link, a tag or a column.
pub fn markdown_text(s: &str) -> String {
    let one_line = s.replace(['\r', '\n'], " ");
    let visible = crate::events::printable(&one_line);
    let mut out = String::with_capacity(visible.len() + 8);
    for c in visible.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

fn ms(v: &Value) -> String {
    v.as_u64()
        .map(crate::report::style::duration)
        .unwrap_or_else(|| "—".into())
}

/// The report as Markdown, from its JSON.
pub fn markdown(report: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "# Deployment report: {} — run {}\n",
        cell(&report["pipeline"]),
        cell(&report["run"])
    ));
    line(format!(
        "**Status:** {} · **took** {} · **tenant** {}  ",
        cell(&report["status"]),
        ms(&report["duration_ms"]),
        cell(&report["tenant"])
    ));
    line(format!(
        "**Commit:** {} · **branch** {} · **tags** {} · **environment** {}\n",
        markdown_text(report["commit"].as_str().unwrap_or("unknown")),
        cell(&report["branch"]),
        report["tags"]
            .as_array()
            .filter(|t| !t.is_empty())
            .map(|t| t.iter().map(cell).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "—".into()),
        cell(&report["environment"])
    ));
    line("## Stages\n".into());
    line("| stage | status | took | summary |".into());
    line("|---|---|---|---|".into());
    let stages = report["stages"].as_array().cloned().unwrap_or_default();
    for s in &stages {
        let status = match (&s["failure"], s["reused"]["from"].as_str()) {
            (Value::String(f), _) => format!("failed ({f})"),
            (_, Some(from)) => format!("{} ({from})", cell(&s["status"])),
            _ => cell(&s["status"]),
        };
        let note = if s["error"].is_string() {
            &s["error"]
        } else {
            &s["summary"]
        };
        line(format!(
            "| {} | {status} | {} | {} |",
            cell(&s["name"]),
            ms(&s["duration_ms"]),
            cell(note)
        ));
    }
    for s in stages.iter().filter(|s| s["tests"].is_object()) {
        let t = &s["tests"];
        line(format!(
            "\n## Tests: {}\n\n{} passed, {} failed, {} skipped, {} errored",
            cell(&s["name"]),
            t["passed"],
            t["failed"],
            t["skipped"],
            t["errored"]
        ));
        for c in s["failed_tests"].as_array().into_iter().flatten() {
            line(format!(
                "- ✗ `{}::{}` — {}",
                cell(&c["suite"]),
                cell(&c["name"]),
                cell(&c["message"])
            ));
        }
    }
    for s in stages.iter().filter(|s| s["analysis"].is_object()) {
        let a = &s["analysis"];
        let findings = s["findings"].as_array().cloned().unwrap_or_default();
        line(format!(
            "\n## Findings: {}\n\nverdict **{}**, score {}, {} finding(s)",
            cell(&s["name"]),
            cell(&a["verdict"]),
            a["score"],
            findings.len()
        ));
        if !findings.is_empty() {
            line("\n| severity | rule | where | message |\n|---|---|---|---|".into());
            for f in findings.iter().take(50) {
                let place = match (f["path"].as_str(), f["line"].as_i64()) {
                    (Some(p), Some(l)) => format!("{p}:{l}"),
                    (Some(p), None) => p.to_string(),
                    _ => "—".into(),
                };
                line(format!(
                    "| {} | {} | {} | {} |",
                    cell(&f["severity"]),
                    cell(&f["rule"]),
                    markdown_text(&place),
                    cell(&f["message"])
                ));
            }
            if findings.len() > 50 {
                line(format!("\n… and {} more in report.json", findings.len() - 50));
            }
        }
    }
    if let Some(approvals) = report["approvals"].as_array().filter(|a| !a.is_empty()) {
        line("\n## Approvals\n".into());
        line("| stage | environment | decision | by | reason |\n|---|---|---|---|---|".into());
        for a in approvals {
            line(format!(
                "| {} | {} | {} | {} | {} |",
                cell(&a["stage"]),
                cell(&a["environment"]),
                cell(&a["decision"]),
                cell(&a["decided_by"]),
                cell(&a["reason"])
            ));
        }
    }
    for s in stages
        .iter()
        .filter(|s| s["rollout"].as_array().is_some_and(|r| !r.is_empty()))
    {
        line(format!("\n## Rollout: {}\n", cell(&s["name"])));
        line("| step | phase | traffic | verdict | what happened |\n|---|---|---|---|---|".into());
        for r in s["rollout"].as_array().into_iter().flatten() {
            let split = traffic_split(r).unwrap_or_else(|| "—".into());
            line(format!(
                "| {} | {} | {} | {} | {} |",
                r["step"],
                cell(&r["phase"]),
                split,
                cell(&r["verdict"]),
                cell(&r["message"])
            ));
        }
        if let Some(rb) = s["rollback"].as_object() {
            line(format!(
                "\n**Rolled back:** {} (all traffic on the stable release after {})",
                cell(&rb["reason"]),
                ms(&rb["recovery_ms"])
            ));
        }
    }
    if let Some(d) = report["notifications"].as_array().filter(|d| !d.is_empty()) {
        line("\n## Notifications\n".into());
        for n in d {
            line(format!(
                "- {} → {}: {} after {} attempt(s) ({})",
                cell(&n["event"]),
                cell(&n["url"]),
                if n["delivered"] == true {
                    "delivered"
                } else {
                    "not delivered"
                },
                n["attempts"],
                cell(&n["last"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::markdown_text;

    #[test]
    fn what_a_plugin_wrote_cannot_become_markdown_html_or_a_column() {
        let shown =
            markdown_text("a | b \\ <script>alert(1)</script> [x](javascript:y) **z**\n# h \x1b[31mred");
        assert_eq!(
            shown,
            "a \\| b \\\\ &lt;script&gt;alert\\(1\\)&lt;/script&gt; \\[x\\]\\(javascript:y\\) \\*\\*z\\*\\* \\# h \\\\x1b\\[31mred"
        );
        assert!(!shown.contains('\x1b') && !shown.contains('\n') && !shown.contains('<'));
    }
}
