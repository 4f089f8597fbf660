//! `reports/scan.sarif`: every analyzer stage of a run as one SARIF 2.1.0
//! `run` (tool, rules, results with locations and levels), the format
//! GitHub code scanning and other code-scanning tools read. A run with no
//! analyzer still has one `run`: weir, with no results (GitHub rejects an
//! empty `runs`).
//!
//! Locations inside the checked-out repository are relative to its root,
//! under `uriBaseId` `%SRCROOT%`, so an alert points at the file in the
//! repository; anything else in the workspace is under `WORKSPACE`. Each
//! result's `partialFingerprints["weir/v1"]` is a hash of its rule, file,
//! the text of its line (not the line's number) and which occurrence of
//! that text it is, so an alert keeps its identity when lines are added
//! above it. Rules carry `fullDescription`, `help` and, for advisories,
//! `helpUri`.
//!
//! Severity maps to SARIF `level` as critical/high → `error`, medium →
//! `warning`, low/info → `note`; the exact severity is kept in each
//! result's `properties.severity`, and `properties.security-severity` (the
//! number GitHub ranks alerts by) is 9.5, 8.0, 5.5, 2.0 or 0.0.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::source::SourceRoot;

use crate::events::{AnalysisRecord, Event, FindingRecord};
use crate::findings::Severity;

/// Where a relative path in a result resolves: the run's workspace.
const WORKSPACE_BASE: &str = "WORKSPACE";
/// Where a path in the checked-out repository resolves: its root.
const SRCROOT_BASE: &str = "%SRCROOT%";
/// The key of weir's fingerprint in `partialFingerprints`.
const FINGERPRINT_KEY: &str = "weir/v1";
/// Files larger than this are not read for fingerprints (the line's text
/// is then left out of the hash).
const MAX_FINGERPRINT_FILE: u64 = 16 << 20;

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
    root: SourceRoot,
    plugins: BTreeMap<String, String>,
    runs: Vec<AnalyzerRun>,
}

impl SarifCollector {
    /// Take note of `event` of run `run_id`.
    pub fn observe(&mut self, run_id: &str, event: &Event) {
        self.root.observe(event);
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
        let mut lines = LineCache::default();
        let mut runs: Vec<Value> = self.runs.iter().map(|r| self.run(r, &mut lines)).collect();
        if runs.is_empty() {
            runs.push(self.empty_run());
        }
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": runs,
        })
    }

    /// The run of a pipeline that had no analyzer: weir itself, nothing
    /// found.
    fn empty_run(&self) -> Value {
        let mut run = json!({
            "tool": { "driver": {
                "name": "weir",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": [],
            } },
            "invocations": [{ "executionSuccessful": true }],
            "results": [],
        });
        if !self.pipeline.is_empty() {
            run["automationDetails"] = json!({ "id": format!("{}/{}", self.pipeline, self.run_id) });
        }
        if let Some(bases) = self.base_ids() {
            run["originalUriBaseIds"] = bases;
        }
        run
    }

    /// `originalUriBaseIds`: where `WORKSPACE` and `%SRCROOT%` are on this
    /// machine.
    fn base_ids(&self) -> Option<Value> {
        let ws = self.workspace.as_ref()?;
        let dir = |rel: Option<&str>| {
            let mut base = format!("file://{}", uri(ws));
            if !base.ends_with('/') {
                base.push('/');
            }
            if let Some(rel) = rel {
                base.push_str(&uri(rel));
                base.push('/');
            }
            json!({ "uri": base })
        };
        Some(json!({ WORKSPACE_BASE: dir(None), SRCROOT_BASE: dir(self.root.dir()) }))
    }

    /// Where a finding's path points: `(base, uri)`.
    fn location(&self, path: &str) -> (&'static str, String) {
        match self.root.relative(path) {
            Some(rel) if !rel.is_empty() => (SRCROOT_BASE, uri(&rel)),
            _ => (WORKSPACE_BASE, uri(&super::source::normalize(path))),
        }
    }

    /// The fingerprint of each finding of `r`, in order.
    fn fingerprints(&self, r: &AnalyzerRun, lines: &mut LineCache) -> Vec<String> {
        let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
        r.findings
            .iter()
            .map(|f| {
                let mut h = Sha256::new();
                h.update(f.rule.as_bytes());
                h.update([0]);
                let text = match (&f.path, f.line.filter(|l| *l > 0)) {
                    (Some(path), Some(line)) => {
                        h.update(self.location(path).1.as_bytes());
                        self.workspace
                            .as_deref()
                            .and_then(|ws| lines.line(Path::new(ws), path, line))
                    }
                    (Some(path), None) => {
                        h.update(self.location(path).1.as_bytes());
                        None
                    }
                    (None, _) => None,
                };
                h.update([0]);
                // The line's text; without one (no line, or the file is
                // gone), the message says what was found.
                h.update(text.as_deref().unwrap_or(f.message.as_str()).trim().as_bytes());
                let key: [u8; 32] = h.finalize().into();
                let n = seen.entry(key).or_insert(0);
                *n += 1;
                format!("{}:{n}", hex::encode(&key[..16]))
            })
            .collect()
    }

    fn run(&self, r: &AnalyzerRun, lines: &mut LineCache) -> Value {
        // One rule per distinct id, described by its first finding.
        let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rules: Vec<Value> = Vec::new();
        for f in &r.findings {
            if rule_index.contains_key(f.rule.as_str()) {
                continue;
            }
            rule_index.insert(&f.rule, rules.len());
            let severity = severity_of(f);
            let mut rule = json!({
                "id": f.rule,
                "name": f.rule,
                // An advisory's title describes the rule; otherwise the
                // first finding's first sentence does.
                "shortDescription": { "text": f.fields.get("title").cloned().unwrap_or_else(|| first_sentence(&f.message)) },
                "fullDescription": { "text": full_description(f) },
                "help": { "text": help(f) },
                "defaultConfiguration": { "level": level(severity) },
                "properties": {
                    "security-severity": security_severity(severity),
                    "tags": [r.plugin.as_str()],
                },
            });
            if let Some(url) = f
                .fields
                .get("url")
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            {
                rule["helpUri"] = json!(url);
            }
            rules.push(rule);
        }
        let fingerprints = self.fingerprints(r, lines);
        let results: Vec<Value> = r
            .findings
            .iter()
            .zip(fingerprints)
            .map(|(f, fingerprint)| {
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
                    "partialFingerprints": { FINGERPRINT_KEY: fingerprint },
                });
                if let Some(path) = &f.path {
                    let (base, uri) = self.location(path);
                    let mut physical = json!({
                        "artifactLocation": { "uri": uri, "uriBaseId": base },
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
        if let Some(bases) = self.base_ids() {
            run["originalUriBaseIds"] = bases;
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

/// What the rule is about: an advisory's title and message, else the
/// first finding's message.
fn full_description(f: &FindingRecord) -> String {
    let message = if f.message.is_empty() {
        f.rule.as_str()
    } else {
        f.message.as_str()
    };
    match f.fields.get("title") {
        Some(title) if !message.contains(title.as_str()) => format!("{title}. {message}"),
        _ => message.to_string(),
    }
}

/// How to act on the rule: the finding's own advice (its message), the
/// patched versions and the advisory's page when there are.
fn help(f: &FindingRecord) -> String {
    let mut text = if f.message.is_empty() {
        f.rule.clone()
    } else {
        f.message.clone()
    };
    if let Some(patched) = f.fields.get("patched").filter(|p| !p.is_empty()) {
        text.push_str(&format!("\n\nPatched versions: {patched}."));
    }
    if let Some(url) = f.fields.get("url") {
        text.push_str(&format!("\n\nMore: {url}"));
    }
    text
}

/// Lines of the workspace's files, read once each.
#[derive(Default)]
struct LineCache {
    files: HashMap<String, Option<Vec<String>>>,
}

impl LineCache {
    /// Line `line` (1-based) of `path` in `workspace`, if it can be read.
    fn line(&mut self, workspace: &Path, path: &str, line: u32) -> Option<String> {
        let lines = self.files.entry(path.to_string()).or_insert_with(|| {
            // Only files inside the workspace (a plugin may have left a
            // link to elsewhere), and not huge ones.
            let root = workspace.canonicalize().ok()?;
            let full = workspace.join(path).canonicalize().ok()?;
            if !full.starts_with(&root) {
                return None;
            }
            let meta = std::fs::metadata(&full).ok()?;
            if !meta.is_file() || meta.len() > MAX_FINGERPRINT_FILE {
                return None;
            }
            let bytes = std::fs::read(&full).ok()?;
            Some(
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(String::from)
                    .collect(),
            )
        });
        lines.as_ref()?.get(line as usize - 1).cloned()
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
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        let prints: Vec<&str> = run["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["partialFingerprints"]["weir/v1"].as_str().expect("fingerprint"))
            .collect();
        assert_eq!(prints.len(), 3);
        assert_ne!(prints[0], prints[1], "two files, two identities");
        assert!(
            prints.iter().all(|p| p.ends_with(":1") && p.len() == 34),
            "{prints:?}"
        );
        let rule = &run["tool"]["driver"]["rules"][0];
        assert_eq!(rule["fullDescription"]["text"], "aws-access-key found. Fix it.");
        assert_eq!(rule["help"]["text"], "aws-access-key found. Fix it.");
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
            run["originalUriBaseIds"]["%SRCROOT%"]["uri"], "file:///tmp/a%20b/",
            "no checkout: the workspace is the repository"
        );
        assert_eq!(
            run["tool"]["driver"]["rules"][0]["shortDescription"]["text"],
            "aws-access-key found."
        );
    }

    #[test]
    fn a_run_without_analyzers_has_one_empty_run() {
        let log = SarifCollector::default().to_json();
        let runs = log["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["tool"]["driver"]["name"], "weir");
        assert_eq!(runs[0]["results"], json!([]));
    }
}
