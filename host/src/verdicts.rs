//! What an analyzer's or a test runner's report means for its stage:
//! findings and test cases counted, cut to size, and judged by the
//! stage's gate into a verdict, outputs and a pass or a failure. Stages
//! and canary checks both judge reports here.

use crate::attempt::AttemptResult;
use crate::bindings::types::{self, TestStatus, Verdict};
use crate::events::{FailureKind, FindingRecord, TestCaseRecord, TestCounts};
use crate::plan::Gate;

/// Most findings kept from one analyzer; the rest are counted as dropped
/// (limit `findings`).
pub const MAX_FINDINGS: usize = 10_000;
/// Most bytes of one finding's message kept.
const MAX_FINDING_MESSAGE: usize = 4096;

/// An analyzer's report as the stage's result, judged by `gate`.
pub fn analysis_result(a: types::Analysis, gate: &Gate) -> AttemptResult {
    let dropped = a.findings.len().saturating_sub(MAX_FINDINGS) as u32;
    // Counted over every finding, before any is dropped: a flood of low
    // findings must not push a critical one out of the gate's sight.
    let mut counts = crate::findings::SeverityCounts::default();
    for f in &a.findings {
        counts.add(severity_of(f.severity));
    }
    let mut all = a.findings;
    if all.len() > MAX_FINDINGS {
        // Keep the worst ones (stable: the plugin's order among equals).
        all.sort_by_key(|f| std::cmp::Reverse(severity_of(f.severity)));
        all.truncate(MAX_FINDINGS);
    }
    let findings: Vec<FindingRecord> = all
        .into_iter()
        .map(|f| FindingRecord {
            rule: f.rule,
            severity: severity_of(f.severity).name().into(),
            message: cut(f.message, MAX_FINDING_MESSAGE),
            path: f.path,
            line: f.line,
            column: f.column,
            fields: f.fields.into_iter().collect(),
        })
        .collect();
    let plugin_verdict = match a.verdict {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    };
    let score = counts.score();
    let gate_failed = gate.findings.map(|g| g.check(&counts)).unwrap_or_default();
    let verdict = match (gate.findings, a.verdict) {
        (_, Verdict::Inconclusive) => "inconclusive",
        (None, _) => plugin_verdict,
        (Some(_), _) if !gate_failed.is_empty() => "fail",
        (Some(_), _) if findings.is_empty() => "pass",
        (Some(_), _) => "warn",
    };
    let mut outputs = vec![
        ("verdict".to_string(), verdict.to_string()),
        ("findings".to_string(), counts.total().to_string()),
        ("score".to_string(), format!("{score}")),
    ];
    for s in crate::findings::Severity::WORST_FIRST {
        outputs.push((format!("findings-{}", s.name()), counts.get(s).to_string()));
    }
    if let Some(score) = a.score {
        outputs.push(("plugin-score".into(), format!("{score}")));
    }
    let failure = match verdict {
        "fail" | "inconclusive" => {
            let why = if !gate_failed.is_empty() {
                format!("gate failed: {}", gate_failed.join("; "))
            } else if verdict == "inconclusive" {
                "verdict `inconclusive`: the analyzer had nothing to judge".to_string()
            } else {
                format!("verdict `fail` with {}", counts.describe())
            };
            let top: Vec<String> = crate::findings::worst_first(&findings)
                .into_iter()
                .take(5)
                .map(|f| {
                    format!(
                        "{} {} {}: {}",
                        f.severity,
                        crate::findings::place(f),
                        f.rule,
                        f.message.lines().next().unwrap_or("")
                    )
                })
                .collect();
            Some(crate::attempt::AttemptFailure {
                kind: FailureKind::Gate,
                message: why,
                details: (!top.is_empty()).then(|| top.join("\n")),
                retryable: FailureKind::Gate.retryable(),
            })
        }
        _ => None,
    };
    let mut summary = a.summary;
    if dropped > 0 {
        summary = Some(format!(
            "{}{dropped} finding(s) dropped (limit `findings`: {MAX_FINDINGS})",
            summary.map(|s| format!("{s}; ")).unwrap_or_default()
        ));
    }
    AttemptResult {
        failure,
        outputs,
        summary,
        analysis: Some(crate::events::AnalysisRecord {
            verdict: verdict.into(),
            plugin_verdict: plugin_verdict.into(),
            score,
            plugin_score: a.score,
            counts,
            gate_failed,
            dropped,
        }),
        findings,
        ..AttemptResult::default()
    }
}

/// `s` cut to at most `max` bytes at a character boundary, marked when cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A test runner's report as the stage's result, judged by `gate`.
pub fn test_result(t: types::TestReport, gate: &Gate) -> AttemptResult {
    let cases: Vec<TestCaseRecord> = t
        .cases
        .iter()
        .map(|c| TestCaseRecord {
            suite: c.suite.clone(),
            name: c.name.clone(),
            status: match c.status {
                TestStatus::Passed => "passed",
                TestStatus::Failed => "failed",
                TestStatus::Skipped => "skipped",
                TestStatus::Errored => "errored",
            }
            .into(),
            duration_ms: c.duration_ms,
            message: c.message.clone(),
            file: c.file.clone(),
        })
        .collect();
    let mut counts = TestCounts::default();
    for case in &t.cases {
        match case.status {
            TestStatus::Passed => counts.passed += 1,
            TestStatus::Failed => counts.failed += 1,
            TestStatus::Skipped => counts.skipped += 1,
            TestStatus::Errored => counts.errored += 1,
        }
    }
    let failure = check_gate(gate, &counts, &cases).map(|message| crate::attempt::AttemptFailure {
        kind: FailureKind::Gate,
        retryable: FailureKind::Gate.retryable(),
        message,
        details: {
            let failing: Vec<String> = cases
                .iter()
                .filter(|c| c.status == "failed" || c.status == "errored")
                .map(|c| {
                    format!(
                        "{}::{}{}",
                        c.suite,
                        c.name,
                        c.message
                            .as_ref()
                            .map(|m| format!(": {}", m.lines().next().unwrap_or("")))
                            .unwrap_or_default()
                    )
                })
                .collect();
            (!failing.is_empty()).then(|| failing.join("\n"))
        },
    });
    AttemptResult {
        failure,
        outputs: vec![
            ("passed".into(), counts.passed.to_string()),
            ("failed".into(), counts.failed.to_string()),
            ("skipped".into(), counts.skipped.to_string()),
            ("errored".into(), counts.errored.to_string()),
        ],
        artifacts: Vec::new(),
        summary: t.summary,
        findings: Vec::new(),
        analysis: None,
        tests: Some(counts),
        sandbox: None,
        cases,
        usage: None,
    }
}

/// `Some(why)` when the counts fail `gate`; the message names the failing
/// tests.
fn check_gate(gate: &Gate, counts: &TestCounts, cases: &[TestCaseRecord]) -> Option<String> {
    let bad = counts.failed + counts.errored;
    let ran = counts.passed + bad;
    let mut broken = Vec::new();
    if let Some(max) = gate.max_failures
        && bad > max
    {
        broken.push(format!("{bad} failed (at most {max} allowed)"));
    }
    if let Some(min) = gate.min_pass_rate {
        if ran == 0 {
            broken.push("no test case ran, so there is no pass rate".to_string());
        } else {
            let rate = f64::from(counts.passed) / f64::from(ran);
            if rate < min {
                broken.push(format!(
                    "pass rate {:.1}% is below the minimum {:.1}%",
                    rate * 100.0,
                    min * 100.0
                ));
            }
        }
    }
    if !gate.allow_skipped && counts.skipped > 0 {
        broken.push(format!("{} skipped (allow-skipped = false)", counts.skipped));
    }
    if broken.is_empty() {
        return None;
    }
    let failing: Vec<String> = cases
        .iter()
        .filter(|c| {
            c.status == "failed" || c.status == "errored" || (!gate.allow_skipped && c.status == "skipped")
        })
        .map(|c| format!("{}::{}", c.suite, c.name))
        .collect();
    let names = match failing.len() {
        0 => String::new(),
        n if n <= 10 => format!("; failing: {}", failing.join(", ")),
        n => format!("; failing: {} and {} more", failing[..10].join(", "), n - 10),
    };
    Some(format!("test gate failed: {}{names}", broken.join(", ")))
}

fn severity_of(s: types::Severity) -> crate::findings::Severity {
    use crate::findings::Severity as S;
    match s {
        types::Severity::Info => S::Info,
        types::Severity::Low => S::Low,
        types::Severity::Medium => S::Medium,
        types::Severity::High => S::High,
        types::Severity::Critical => S::Critical,
    }
}
