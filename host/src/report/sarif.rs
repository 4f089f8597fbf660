//! `reports/scan.sarif`: every analyzer stage of a run as one SARIF 2.1.0
//! `run` (tool, rules, results with locations and levels), the format
//! GitHub code scanning and other code-scanning tools read.
//!
//! Severity maps to SARIF `level` as critical/high → `error`, medium →
//! `warning`, low/info → `note`; the exact severity is kept in each
//! result's `properties.severity`, and `properties.security-severity` (the
//! number GitHub ranks alerts by) is 9.5, 8.0, 5.5, 2.0 or 0.0.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::events::{AnalysisRecord, Event, FindingRecord};
use crate::findings::Severity;

/// Where a relative path in a result resolves: the run's workspace.
const WORKSPACE_BASE: &str = "WORKSPACE";

/// What one analyzer stage reported.
#[derive(Debug)]
struct AnalyzerRun {
    stage: String,
    plugin: String,
    version: String,
    findings: Vec<FindingRecord>,
    analysis: AnalysisRecord,
}

/// Analyzer stages seen so far, in the order they finished.
#[derive(Debug, Default)]
pub struct SarifCollector {
    pipeline: String,
    run_id: String,
    workspace: Option<String>,
    plugins: BTreeMap<String, String>,
    runs: Vec<AnalyzerRun>,
}

impl SarifCollector {
    /// Take note of `event` of run `run_id`.
    pub fn observe(&mut self, run_id: &str, event: &Event) {
        match event {
            Event::RunStarted {
                pipeline, workspace, ..
            } => {
                self.pipeline = pipeline.clone();
                self.run_id = run_id.to_string();
                self.workspace = Some(workspace.clone());
            }
            Event::StageStarted { stage, plugin, .. } => {
                self.plugins.insert(stage.clone(), plugin.clone());
            }
            Event::StageFinished {
                stage,
                plugin,
                findings,
                analysis: Some(analysis),
                ..
            } => {
                let label = plugin
                    .clone()
                    .or_else(|| self.plugins.get(stage).cloned())
                    .unwrap_or_default();
                let (plugin, version) = label.split_once(' ').unwrap_or((label.as_str(), ""));
                self.runs.push(AnalyzerRun {
                    stage: stage.clone(),
                    plugin: plugin.to_string(),
                    version: version.to_string(),
                    findings: findings.clone(),
                    analysis: (**analysis).clone(),
                });
            }
            _ => {}
        }
    }

    /// The SARIF log.
    pub fn to_json(&self) -> Value {
        let runs: Vec<Value> = self.runs.iter().map(|r| self.run(r)).collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": runs,
        })
    }

    fn run(&self, r: &AnalyzerRun) -> Value {
        // One rule per distinct id, described by its first finding.
        let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rules: Vec<Value> = Vec::new();
        for f in &r.findings {
            if rule_index.contains_key(f.rule.as_str()) {
                continue;
            }
            rule_index.insert(&f.rule, rules.len());
            let severity = severity_of(f);
            rules.push(json!({
                "id": f.rule,
                "name": f.rule,
                // An advisory's title describes the rule; otherwise the
                // first finding's first sentence does.
                "shortDescription": { "text": f.fields.get("title").cloned().unwrap_or_else(|| first_sentence(&f.message)) },
                "defaultConfiguration": { "level": level(severity) },
                "properties": {
                    "security-severity": security_severity(severity),
                    "tags": [r.plugin.as_str()],
                },
            }));
        }
        let results: Vec<Value> = r
            .findings
            .iter()
            .map(|f| {
                let severity = severity_of(f);
                let mut properties = serde_json::Map::new();
                for (k, v) in &f.fields {
                    // `tags` is SARIF's own (an array); a plugin's field of
                    // that name would make the log invalid.
                    if k != "tags" {
                        properties.insert(k.clone(), Value::String(v.clone()));
                    }
                }
                // Last, so no field can stand in for the host's severity.
                properties.insert("severity".into(), Value::String(severity.name().into()));
                let mut result = json!({
                    "ruleId": f.rule,
                    "ruleIndex": rule_index.get(f.rule.as_str()).copied().unwrap_or(0),
                    "level": level(severity),
                    "message": { "text": if f.message.is_empty() { f.rule.as_str() } else { f.message.as_str() } },
                    "properties": properties,
                });
                if let Some(path) = &f.path {
                    let mut physical = json!({
                        "artifactLocation": { "uri": uri(path), "uriBaseId": WORKSPACE_BASE },
                    });
                    if let Some(line) = f.line.filter(|l| *l > 0) {
                        let mut region = json!({ "startLine": line });
                        if let Some(col) = f.column.filter(|c| *c > 0) {
                            region["startColumn"] = json!(col);
                        }
                        physical["region"] = region;
                    }
                    result["locations"] = json!([{ "physicalLocation": physical }]);
                }
                result
            })
            .collect();
        let mut driver = json!({
            "name": if r.plugin.is_empty() { r.stage.as_str() } else { r.plugin.as_str() },
            "rules": rules,
        });
        if !r.version.is_empty() {
            driver["version"] = json!(r.version);
        }
        let mut run = json!({
            "tool": { "driver": driver },
            // Columns count characters (what the built-in analyzers report).
            "columnKind": "unicodeCodePoints",
            "automationDetails": { "id": format!("{}/{}/{}", self.pipeline, r.stage, self.run_id) },
            // The analysis ran to the end whenever there is one to report;
            // a failing verdict is a result, not a failed execution.
            "invocations": [{ "executionSuccessful": true }],
            "results": results,
            "properties": {
                "stage": r.stage,
                "verdict": r.analysis.verdict,
                "score": r.analysis.score,
                "counts": r.analysis.counts,
            },
        });
        if let Some(ws) = &self.workspace {
            let mut base = format!("file://{}", uri(ws));
            if !base.ends_with('/') {
                base.push('/');
            }
            run["originalUriBaseIds"] = json!({ WORKSPACE_BASE: { "uri": base } });
        }
        run
    }

    /// Write the log to `path` (written whole, then renamed into place).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("sarif.tmp");
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn severity_of(f: &FindingRecord) -> Severity {
    Severity::parse(&f.severity).unwrap_or(Severity::Info)
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Info => "0.0",
    }
}

fn first_sentence(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    let end = line.find(". ").map(|i| i + 1).unwrap_or(line.len());
    let s = &line[..end];
    if s.chars().count() > 200 {
        s.chars().take(200).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

/// A path as a URI reference: unreserved characters and `/` stay, every
/// other byte is percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StageStatus;
    use crate::findings::SeverityCounts;

    fn finding(rule: &str, severity: &str, path: Option<&str>, line: Option<u32>) -> FindingRecord {
        FindingRecord {
            rule: rule.into(),
            severity: severity.into(),
            message: format!("{rule} found. Fix it."),
            path: path.map(String::from),
            line,
            column: line.map(|_| 0),
            fields: BTreeMap::from([
                ("package".to_string(), "smallvec".to_string()),
                ("severity".to_string(), "info".to_string()),
                ("tags".to_string(), "x".to_string()),
            ]),
        }
    }

    #[test]
    fn one_run_per_analyzer_with_rules_results_and_levels() {
        let mut c = SarifCollector::default();
        c.observe(
            "r1",
            &Event::RunStarted {
                version: crate::events::EVENTS_VERSION,
                pipeline: "p".into(),
                stages: vec![],
                workspace: "/tmp/a b".into(),
                tenant: "default".into(),
                resume: 0,
                needs: Default::default(),
            },
        );
        c.observe(
            "r1",
            &Event::StageStarted {
                stage: "scan".into(),
                attempt: 1,
                plugin: "scan 0.1.0".into(),
            },
        );
        let findings = vec![
            finding("aws-access-key", "critical", Some("conf/a b.env"), Some(3)),
            finding("aws-access-key", "critical", Some("x.env"), Some(1)),
            finding("todo", "low", None, None),
        ];
        c.observe(
            "r1",
            &Event::StageFinished {
                stage: "scan".into(),
                plugin: None,
                status: StageStatus::Failed,
                failure: None,
                attempts: 1,
                duration_ms: 1,
                outputs: BTreeMap::new(),
                artifacts: vec![],
                summary: None,
                error: None,
                details: None,
                analysis: Some(Box::new(AnalysisRecord {
                    verdict: "fail".into(),
                    plugin_verdict: "fail".into(),
                    score: 80.0,
                    plugin_score: None,
                    counts: SeverityCounts::of(&findings),
                    gate_failed: vec![],
                    dropped: 0,
                })),
                findings,
                tests: None,
                sandbox: None,
                cases: vec![],
                usage: None,
                reused: None,
            },
        );
        let log = c.to_json();
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "scan");
        assert_eq!(run["tool"]["driver"]["rules"].as_array().map(Vec::len), Some(2));
        assert_eq!(run["results"][1]["ruleIndex"], 0);
        assert_eq!(run["results"][0]["level"], "error");
        assert_eq!(run["results"][2]["level"], "note");
        let loc = &run["results"][0]["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "conf/a%20b.env");
        assert_eq!(loc["region"]["startLine"], 3);
        assert!(loc["region"].get("startColumn").is_none(), "column 0 is left out");
        assert!(run["results"][2].get("locations").is_none());
        assert_eq!(run["results"][0]["properties"]["package"], "smallvec");
        assert_eq!(
            run["results"][0]["properties"]["severity"], "critical",
            "a field cannot override it"
        );
        assert!(run["results"][0]["properties"].get("tags").is_none());
        assert_eq!(
            run["originalUriBaseIds"]["WORKSPACE"]["uri"],
            "file:///tmp/a%20b/"
        );
        assert_eq!(
            run["tool"]["driver"]["rules"][0]["shortDescription"]["text"],
            "aws-access-key found."
        );
    }
}
