//! Conveniences on the generated types.

use serde::de::DeserializeOwned;

use crate::{
    Action, Analysis, Artifact, Context, Failure, Finding, RolloutState, Severity, StageOutput, TestCase,
    TestReport, TestStatus, Verdict,
};

impl Context {
    /// The stage's `with` table as `T`. The failure names the stage and
    /// what did not match, so a user can fix their `pipeline.toml`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_str(&self.config).map_err(|e| {
            Failure::new(format!(
                "the `with` table of stage `{}` is not valid for this plugin: {e}",
                self.stage
            ))
        })
    }

    /// Output `name` of upstream stage `stage`, if that stage produced it.
    pub fn input(&self, stage: &str, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|u| u.stage == stage)?
            .outputs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: None,
            retryable: false,
        }
    }

    /// A failure worth retrying (a flaky network, a busy lock).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::new(message)
        }
    }

    /// Attach longer detail, such as a command's output.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }
}

impl StageOutput {
    /// No outputs yet.
    pub fn new() -> Self {
        Self {
            outputs: Vec::new(),
            artifacts: Vec::new(),
            summary: None,
        }
    }

    /// Add output `name` for downstream stages.
    pub fn output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.push((name.into(), value.into()));
        self
    }

    /// Keep the file at `path` (relative to the workspace) as an artifact.
    pub fn artifact(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        self.artifacts.push(Artifact {
            name: name.into(),
            path: path.into(),
        });
        self
    }

    /// Set the line shown in the run summary.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }
}

impl Default for StageOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl Finding {
    /// A finding of `rule` with no location yet; add one with [`Finding::at`].
    ///
    /// ```
    /// use weir_sdk::{Finding, Severity};
    /// let f = Finding::new("todo", Severity::Low, "a TODO is left in the code")
    ///     .at("src/main.rs", 12, Some(5))
    ///     .field("marker", "TODO");
    /// assert_eq!(f.line, Some(12));
    /// ```
    pub fn new(rule: impl Into<String>, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            severity,
            message: message.into(),
            path: None,
            line: None,
            column: None,
            fields: Vec::new(),
        }
    }

    /// Place the finding in `path` (relative to the workspace) at a 1-based
    /// line and, when known, column.
    pub fn at(mut self, path: impl Into<String>, line: u32, column: Option<u32>) -> Self {
        self.path = Some(path.into());
        self.line = Some(line);
        self.column = column;
        self
    }

    /// Place the finding in a whole file.
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Add a structured field (never a secret).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }
}

impl Analysis {
    /// An analysis of `findings` whose verdict is `fail` when any finding is
    /// at least `fail_at`, `warn` when there are findings, else `pass`.
    pub fn from_findings(findings: Vec<Finding>, fail_at: Severity) -> Self {
        let verdict = if findings.iter().any(|f| f.severity as u8 >= fail_at as u8) {
            Verdict::Fail
        } else if findings.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Warn
        };
        Self {
            summary: Some(format!("{} finding(s)", findings.len())),
            findings,
            score: None,
            verdict,
        }
    }
}

impl TestReport {
    /// A report of `cases` with a summary such as `12 passed, 1 failed`.
    pub fn from_cases(cases: Vec<TestCase>) -> Self {
        let count = |s: TestStatus| cases.iter().filter(|c| c.status == s).count();
        let summary = format!(
            "{} passed, {} failed, {} skipped, {} errored",
            count(TestStatus::Passed),
            count(TestStatus::Failed),
            count(TestStatus::Skipped),
            count(TestStatus::Errored)
        );
        Self {
            cases,
            summary: Some(summary),
        }
    }
}

/// Milliseconds in a duration written as pipeline.toml writes them:
/// `250ms`, `10s`, `2m`, `1h`. The failure quotes the text and says what
/// is wrong, for a strategy's `with` settings.
///
/// ```
/// assert_eq!(weir_sdk::duration_ms("1500ms").unwrap(), 1500);
/// assert_eq!(weir_sdk::duration_ms("2m").unwrap(), 120_000);
/// assert!(weir_sdk::duration_ms("soon").is_err());
/// ```
pub fn duration_ms(text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| Failure::new(format!("`{text}` is not a duration like \"10s\" or \"250ms\"")))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(Failure::new(format!("`{text}` needs a unit: ms, s, m or h"))),
    };
    n.checked_mul(scale)
        .ok_or_else(|| Failure::new(format!("`{text}` is too long")))
}

impl RolloutState {
    /// The rollback a strategy answers when the latest analysis did not
    /// pass (`fail` or `inconclusive`): no data is never a pass. `None`
    /// when there was no analysis yet or it passed.
    pub fn failed_analysis(&self) -> Option<Action> {
        let a = self.last_analysis.as_ref()?;
        matches!(a.verdict, Verdict::Fail | Verdict::Inconclusive).then(|| {
            Action::Rollback(
                a.summary
                    .clone()
                    .unwrap_or_else(|| "the analysis did not pass".into()),
            )
        })
    }
}
