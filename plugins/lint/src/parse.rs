//! Turning each linter's machine output into findings.
//!
//! Severity mapping (a stage's `severity` table overrides it per rule):
//!
//! | linter | output | severity |
//! |---|---|---|
//! | clippy / rustc | level `error` (deny lints, compile errors) | high |
//! | clippy / rustc | level `warning` | medium |
//! | clippy / rustc | other levels (`note`, `help`) | info |
//! | ruff | `E9`, `F63`, `F7`, `F82` (syntax errors, undefined names), `S` (security) | high |
//! | ruff | other `F` (pyflakes), `B` (bugbear), `PLE` (pylint errors) | medium |
//! | ruff | everything else (style) | low |
//! | eslint | severity 2 (`error`), or a fatal parse error | high |
//! | eslint | severity 1 (`warn`) | medium |

use std::collections::BTreeSet;

use serde_json::Value;
use weir_sdk::{Finding, Severity};

/// A finding before its path is made relative to the workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// The lint name.
    pub rule: String,
    /// Mapped severity.
    pub severity: Severity,
    /// The linter's message.
    pub message: String,
    /// The file as the linter printed it.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
}

/// `cargo clippy --message-format=json-diagnostic-short` output: one JSON
/// object per line; diagnostics are the `compiler-message` ones. The same
/// diagnostic reported for several targets (lib and tests) is kept once.
pub fn clippy(stdout: &str) -> Vec<Raw> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-message" {
            continue;
        }
        let m = &v["message"];
        let level = m["level"].as_str().unwrap_or("");
        let text = m["message"].as_str().unwrap_or("").to_string();
        // "aborting due to 2 previous errors" and the warning counts
        // summarise what was already reported.
        if level == "failure-note" || (m["code"].is_null() && m["spans"].as_array().is_none_or(Vec::is_empty))
        {
            continue;
        }
        let rule = m["code"]["code"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("rustc::{level}"));
        let severity = match level {
            "error" | "error: internal compiler error" => Severity::High,
            "warning" => Severity::Medium,
            _ => Severity::Info,
        };
        let primary = m["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["is_primary"] == true));
        let file = primary.and_then(|s| s["file_name"].as_str()).map(String::from);
        let line_no = primary.and_then(|s| s["line_start"].as_u64()).map(|n| n as u32);
        let column = primary.and_then(|s| s["column_start"].as_u64()).map(|n| n as u32);
        if !seen.insert((rule.clone(), file.clone(), line_no, column, text.clone())) {
            continue;
        }
        out.push(Raw {
            rule,
            severity,
            message: text,
            file,
            line: line_no,
            column,
        });
    }
    out
}

/// The elements of a JSON array, as many as are complete: a linter's
/// output cut at the host's limit still yields every element before the
/// cut. `Err` only when the text does not start a JSON array at all.
pub fn array_elements(text: &str) -> Result<Vec<Value>, String> {
    let body = text
        .trim_start()
        .strip_prefix('[')
        .ok_or("the output is not a JSON array")?;
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if rest.is_empty() || rest.starts_with(']') {
            break;
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => {
                out.push(v);
                rest = &rest[values.byte_offset()..];
            }
            // Cut mid-element: keep what came before.
            _ => break,
        }
    }
    Ok(out)
}

/// `ruff check --output-format=json` output: an array of violations.
pub fn ruff(stdout: &str) -> Result<Vec<Raw>, String> {
    let all = array_elements(stdout).map_err(|e| format!("ruff's output is not valid JSON: {e}"))?;
    Ok(all
        .iter()
        .map(|v| {
            let code = v["code"].as_str().unwrap_or("syntax-error").to_string();
            Raw {
                severity: ruff_severity(&code),
                rule: code,
                message: v["message"].as_str().unwrap_or("").to_string(),
                file: v["filename"].as_str().map(String::from),
                line: v["location"]["row"].as_u64().map(|n| n as u32),
                column: v["location"]["column"].as_u64().map(|n| n as u32),
            }
        })
        .collect())
}

fn ruff_severity(code: &str) -> Severity {
    let high = ["E9", "F63", "F7", "F82", "S"];
    if code == "syntax-error" || high.iter().any(|p| code.starts_with(p)) {
        Severity::High
    } else if code.starts_with('F') || code.starts_with('B') || code.starts_with("PLE") {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// `eslint --format json` output: an array of files with their messages.
pub fn eslint(stdout: &str) -> Result<Vec<Raw>, String> {
    let files = array_elements(stdout).map_err(|e| format!("eslint's output is not valid JSON: {e}"))?;
    let mut out = Vec::new();
    for f in &files {
        let file = f["filePath"].as_str().map(String::from);
        for m in f["messages"].as_array().into_iter().flatten() {
            let fatal = m["fatal"] == true;
            let rule = match m["ruleId"].as_str() {
                Some(r) => r.to_string(),
                None if fatal => "eslint::parse-error".into(),
                None => "eslint".into(),
            };
            out.push(Raw {
                rule,
                severity: if fatal || m["severity"] == 2 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                message: m["message"].as_str().unwrap_or("").to_string(),
                file: file.clone(),
                line: m["line"].as_u64().map(|n| n as u32),
                column: m["column"].as_u64().map(|n| n as u32),
            });
        }
    }
    Ok(out)
}

/// A finding from `raw`, its file made relative to the workspace by
/// `place` (which returns `None` for files outside it).
pub fn finding(raw: Raw, linter: &str, place: impl Fn(&str) -> Option<String>) -> Finding {
    let mut f = Finding::new(raw.rule, raw.severity, raw.message).field("linter", linter);
    if let Some(path) = raw.file.as_deref().and_then(place) {
        f = match raw.line {
            Some(line) => f.at(path, line, raw.column),
            None => f.in_file(path),
        };
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clippy_messages_become_findings_once() {
        let msg = r#"{"reason":"compiler-message","message":{"level":"warning","message":"this `if` has identical blocks","code":{"code":"clippy::if_same_then_else"},"spans":[{"file_name":"src/main.rs","line_start":4,"column_start":5,"is_primary":true}]}}"#;
        let err = r#"{"reason":"compiler-message","message":{"level":"error","message":"cannot find value `x`","code":{"code":"E0425"},"spans":[{"file_name":"src/lib.rs","line_start":2,"column_start":9,"is_primary":true}]}}"#;
        let summary = r#"{"reason":"compiler-message","message":{"level":"warning","message":"1 warning emitted","code":null,"spans":[]}}"#;
        let out = format!("{msg}\n{msg}\n{err}\n{summary}\n{{\"reason\":\"compiler-artifact\"}}\nnot json\n");
        let found = clippy(&out);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].rule, "clippy::if_same_then_else");
        assert_eq!(found[0].severity, Severity::Medium);
        assert_eq!((found[0].line, found[0].column), (Some(4), Some(5)));
        assert_eq!(found[1].severity, Severity::High);
    }

    #[test]
    fn ruff_and_eslint() {
        let r = ruff(r#"[{"code":"F401","message":"`os` imported but unused","filename":"/w/app.py","location":{"row":1,"column":8}},{"code":"S105","message":"Possible hardcoded password","filename":"/w/app.py","location":{"row":3,"column":12}},{"code":"E501","message":"Line too long","filename":"/w/app.py","location":{"row":9,"column":89}}]"#).unwrap();
        let sev: Vec<Severity> = r.iter().map(|f| f.severity).collect();
        assert_eq!(sev, [Severity::Medium, Severity::High, Severity::Low]);
        let e = eslint(r#"[{"filePath":"/w/index.js","messages":[{"ruleId":"no-unused-vars","severity":2,"message":"'a' is assigned a value but never used.","line":1,"column":7},{"ruleId":"eqeqeq","severity":1,"message":"Expected '==='","line":2,"column":7},{"ruleId":null,"fatal":true,"severity":2,"message":"Parsing error","line":5,"column":1}]}]"#).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].severity, Severity::Medium);
        assert_eq!(e[2].rule, "eslint::parse-error");
        assert!(ruff("not json").is_err());
        // Cut at the output limit: the complete elements are kept.
        let cut =
            r#"[{"code":"F401","message":"m","filename":"a.py","location":{"row":1,"column":1}},{"code":"F8"#;
        assert_eq!(ruff(cut).unwrap().len(), 1);
        assert_eq!(array_elements("[]").unwrap().len(), 0);
    }
}
