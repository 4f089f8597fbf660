//! Judging an analyzer's findings: severities, counts, the score and the
//! stage's `gate` (`fail-on`, `max-findings`, `min-score`).
//!
//! The score is `max(0, 100 − 10·critical − 5·high − 2·medium)`; low and
//! info findings do not lower it. Without a gate, the plugin's own verdict
//! decides; with one, the gate does (an `inconclusive` verdict still fails,
//! because there was nothing to judge).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad a finding is, lowest first (the WIT `severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Minor.
    Low,
    /// Should be fixed.
    Medium,
    /// Must be fixed before release.
    High,
    /// Must be fixed now.
    Critical,
}

impl Severity {
    /// Every severity, worst first.
    pub const WORST_FIRST: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// The name used in `pipeline.toml`, events and reports.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::WORST_FIRST.into_iter().find(|v| v.name() == s)
    }
}

/// Findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SeverityCounts {
    /// Critical findings.
    pub critical: u32,
    /// High findings.
    pub high: u32,
    /// Medium findings.
    pub medium: u32,
    /// Low findings.
    pub low: u32,
    /// Info findings.
    pub info: u32,
}

impl SeverityCounts {
    /// Count `findings` by severity (an unknown name counts as info).
    pub fn of(findings: &[FindingRecord]) -> Self {
        let mut c = Self::default();
        for f in findings {
            c.add(Severity::parse(&f.severity).unwrap_or(Severity::Info));
        }
        c
    }

    /// Count one more finding of severity `s`.
    pub fn add(&mut self, s: Severity) {
        let n = self.get_mut(s);
        *n = n.saturating_add(1);
    }

    fn get_mut(&mut self, s: Severity) -> &mut u32 {
        match s {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Info => &mut self.info,
        }
    }

    /// How many findings are `s`.
    pub fn get(&self, s: Severity) -> u32 {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }

    /// How many findings are `s` or worse.
    pub fn at_least(&self, s: Severity) -> u32 {
        Severity::WORST_FIRST
            .into_iter()
            .filter(|v| *v >= s)
            .map(|v| self.get(v))
            .sum()
    }

    /// All findings.
    pub fn total(&self) -> u32 {
        self.at_least(Severity::Info)
    }

    /// `max(0, 100 − 10·critical − 5·high − 2·medium)`.
    pub fn score(&self) -> f64 {
        let lost = 10 * u64::from(self.critical) + 5 * u64::from(self.high) + 2 * u64::from(self.medium);
        100u64.saturating_sub(lost) as f64
    }

    /// `1 critical, 2 high, 0 medium, 0 low, 3 info`, leaving out zeros
    /// (`no findings` when all are zero).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Severity::WORST_FIRST
            .into_iter()
            .filter(|s| self.get(*s) > 0)
            .map(|s| format!("{} {}", self.get(s), s.name()))
            .collect();
        if parts.is_empty() {
            "no findings".into()
        } else {
            parts.join(", ")
        }
    }
}

/// An analyzer stage's gate, from `gate = { ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FindingsGate {
    /// Fail when any finding is this severe or worse.
    pub fail_on: Option<Severity>,
    /// Fail when there are more findings than this.
    pub max_findings: Option<u32>,
    /// Fail when the score is below this (0 to 100).
    pub min_score: Option<f64>,
}

impl FindingsGate {
    /// Why `counts` fail the gate, one reason per broken bound; empty when
    /// they pass.
    pub fn check(&self, counts: &SeverityCounts) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(s) = self.fail_on {
            let n = counts.at_least(s);
            if n > 0 {
                why.push(format!(
                    "{n} finding(s) at or above {} (fail-on = \"{}\")",
                    s.name(),
                    s.name()
                ));
            }
        }
        if let Some(max) = self.max_findings
            && counts.total() > max
        {
            why.push(format!(
                "{} findings, more than max-findings = {max}",
                counts.total()
            ));
        }
        if let Some(min) = self.min_score {
            let score = counts.score();
            if score < min {
                why.push(format!("score {score} is below min-score = {min}"));
            }
        }
        why
    }
}

/// `findings` worst first, keeping the plugin's order among equals.
pub fn worst_first(findings: &[FindingRecord]) -> Vec<&FindingRecord> {
    let mut v: Vec<&FindingRecord> = findings.iter().collect();
    v.sort_by_key(|f| std::cmp::Reverse(Severity::parse(&f.severity).unwrap_or(Severity::Info)));
    v
}

/// `path:line:column`, `path:line`, `path` or `-`.
pub fn place(f: &FindingRecord) -> String {
    match (&f.path, f.line, f.column) {
        (Some(p), Some(l), Some(c)) => format!("{p}:{l}:{c}"),
        (Some(p), Some(l), None) => format!("{p}:{l}"),
        (Some(p), None, _) => p.clone(),
        (None, ..) => String::from("-"),
    }
}

/// One finding, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindingRecord {
    /// The rule.
    pub rule: String,
    /// `info` … `critical`.
    pub severity: String,
    /// What and how to fix.
    pub message: String,
    /// File, line, column when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// Structured detail (advisory ids, package versions); never a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(critical: u32, high: u32, medium: u32, low: u32) -> SeverityCounts {
        SeverityCounts {
            critical,
            high,
            medium,
            low,
            info: 0,
        }
    }

    #[test]
    fn score_follows_the_formula_and_stops_at_zero() {
        assert_eq!(counts(0, 0, 0, 7).score(), 100.0);
        assert_eq!(counts(1, 1, 1, 0).score(), 83.0);
        assert_eq!(counts(11, 0, 0, 0).score(), 0.0);
        assert_eq!(counts(u32::MAX, u32::MAX, 0, 0).score(), 0.0);
    }

    #[test]
    fn gate_names_every_broken_bound() {
        let gate = FindingsGate {
            fail_on: Some(Severity::High),
            max_findings: Some(2),
            min_score: Some(90.0),
        };
        assert!(gate.check(&counts(0, 0, 1, 1)).is_empty());
        let why = gate.check(&counts(1, 0, 1, 1));
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("1 finding(s) at or above high"));
        assert!(why[1].contains("3 findings, more than max-findings = 2"));
        assert!(why[2].contains("score 88 is below min-score = 90"));
    }

    #[test]
    fn counts_describe_leaves_out_zeros() {
        assert_eq!(counts(0, 2, 0, 1).describe(), "2 high, 1 low");
        assert_eq!(counts(0, 0, 0, 0).describe(), "no findings");
    }
}
