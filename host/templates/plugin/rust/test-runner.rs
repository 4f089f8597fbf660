//! __NAME__: a weir test runner. Each file under `expected/` is a golden
//! file: the test passes when the file of the same name under `actual/`
//! has the same contents (what a build or a generator wrote there).

use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, TestCase, TestReport, TestRunner, TestStatus};

/// The stage's `with = { ... }` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The directory of golden files, relative to the workspace.
    #[serde(default = "default_expected")]
    expected: String,
    /// The directory the compared files are in.
    #[serde(default = "default_actual")]
    actual: String,
}

fn default_expected() -> String {
    "tests/expected".into()
}

fn default_actual() -> String {
    "tests/actual".into()
}

/// Why `actual` differs from `expected`, if it does.
fn difference(expected: &str, actual: Option<&str>) -> Option<String> {
    let actual = match actual {
        None => return Some("missing".into()),
        Some(a) => a,
    };
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .or_else(|| (expected.lines().count() != actual.lines().count()).then(|| expected.lines().count().min(actual.lines().count())));
    first.map(|i| format!("differs from line {}", i + 1))
}

struct Plugin_;

impl Plugin for Plugin_ {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(TestRunner)
    }
}

impl TestRunner for Plugin_ {
    fn run_tests(ctx: Context) -> Result<TestReport, Failure> {
        let config: Config = ctx.config()?;
        let pattern = format!("{}/**/*", config.expected.trim_end_matches('/'));
        let golden = weir_sdk::glob::find_files(&[pattern])
            .map_err(|e| Failure::new(format!("cannot list {}: {e}", config.expected)))?;
        if golden.is_empty() {
            return Err(Failure::new(format!("there are no golden files under {}", config.expected)));
        }
        let mut cases = Vec::new();
        for expected_path in golden {
            let name = expected_path[config.expected.trim_end_matches('/').len() + 1..].to_string();
            let actual_path = format!("{}/{name}", config.actual.trim_end_matches('/'));
            let expected = std::fs::read_to_string(&expected_path)
                .map_err(|e| Failure::new(format!("cannot read {expected_path}: {e}")))?;
            let actual = std::fs::read_to_string(&actual_path).ok();
            let why = difference(&expected, actual.as_deref());
            cases.push(TestCase {
                suite: "golden".into(),
                name,
                status: if why.is_none() { TestStatus::Passed } else { TestStatus::Failed },
                duration_ms: 0,
                message: why.map(|w| format!("{actual_path} {w} of {expected_path}")),
                file: Some(expected_path),
            });
        }
        Ok(TestReport::from_cases(cases))
    }
}

weir_sdk::export_test_runner!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_first_line() {
        assert_eq!(difference("a\nb\n", Some("a\nb\n")), None);
        assert_eq!(difference("a\nb\n", Some("a\nc\n")).as_deref(), Some("differs from line 2"));
        assert_eq!(difference("a\nb\n", Some("a\n")).as_deref(), Some("differs from line 2"));
        assert_eq!(difference("a\n", None).as_deref(), Some("missing"));
    }
}
