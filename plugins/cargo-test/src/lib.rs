//! `cargo-test`: run a Rust project's tests and report each case.
//!
//! ```toml
//! [stages.test]
//! uses = "cargo-test"
//! with = { dir = "src", args = ["--workspace"] }
//! allow = { exec = ["cargo"] }
//! gate = { min-pass-rate = 1.0 }
//! ```
//!
//! Runs `cargo test --no-fail-fast` in `dir` and reads libtest's output:
//! one case per `test NAME ... ok|FAILED|ignored` line, its suite the test
//! binary (`unittests src/lib.rs`, `tests/api.rs`, `doc-tests`), the
//! failure message from the `---- NAME stdout ----` section.
//!
//! Stable libtest does not time single tests, so durations are 0 unless
//! `report-time = true`: that passes libtest's `--report-time`, which needs
//! `RUSTC_BOOTSTRAP=1` for the run. That variable also lets the compiler
//! accept unstable features, so it is off by default; turn it on only for
//! crates that build on stable anyway. The stage must list it:
//! `allow = { env = ["RUSTC_BOOTSTRAP"] }`.
//! A build failure (no test ran) is a failure of the stage, with the
//! compiler's last lines.

use serde::Deserialize;
use weir_sdk::process::Command;
use weir_sdk::{
    Capability, Context, Failure, Manifest, Plugin, TestCase, TestReport, TestRunner, TestStatus,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "here")]
    dir: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default, rename = "report-time")]
    report_time: bool,
}

fn here() -> String {
    ".".into()
}

struct CargoTest;

impl Plugin for CargoTest {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(TestRunner, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{"dir":{"type":"string"},"args":{"type":"array","items":{"type":"string"}},"report-time":{"type":"boolean"}}}"#
                .into(),
        );
        m
    }
}

/// The suites cargo announces on stderr, in order.
fn suites(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("Running ") {
                // `unittests src/lib.rs (target/debug/deps/x-123)` or
                // `tests/api.rs (target/debug/deps/api-123)`.
                Some(rest.split(" (").next().unwrap_or(rest).to_string())
            } else {
                l.strip_prefix("Doc-tests ")
                    .map(|name| format!("doc-tests {name}"))
            }
        })
        .collect()
}

/// Parse libtest's stdout into cases, naming suites from `suite_names`.
pub fn parse(stdout: &str, suite_names: &[String]) -> Vec<TestCase> {
    let mut cases: Vec<TestCase> = Vec::new();
    let mut block = 0usize;
    let mut suite = suite_names.first().cloned().unwrap_or_else(|| "tests".into());
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("running ") && line.ends_with(" tests") || line == "running 1 test" {
            suite = suite_names
                .get(block)
                .cloned()
                .unwrap_or_else(|| format!("tests #{}", block + 1));
            block += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest.rsplit_once(" ... ")
        {
            // `ok`, `FAILED`, `ignored, reason`, or with --report-time
            // `ok <0.003s>`.
            let word = result.split([',', ' ']).next().unwrap_or(result).trim();
            let status = match word {
                "ok" => TestStatus::Passed,
                "FAILED" => TestStatus::Failed,
                "ignored" => TestStatus::Skipped,
                _ => continue,
            };
            let duration_ms = result
                .split_once('<')
                .and_then(|(_, t)| t.strip_suffix("s>"))
                .and_then(|t| t.parse::<f64>().ok())
                .map_or(0, |secs| (secs * 1000.0).round() as u64);
            cases.push(TestCase {
                suite: suite.clone(),
                name: name.to_string(),
                status,
                duration_ms,
                message: None,
                file: None,
            });
            continue;
        }
        // `---- NAME stdout ----` up to the next section: the failure.
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            let mut message = Vec::new();
            while let Some(next) = lines.peek() {
                if next.starts_with("---- ") || next.trim() == "failures:" || next.starts_with("test result:")
                {
                    break;
                }
                message.push(lines.next().unwrap_or_default());
            }
            let text = message.join("\n").trim().to_string();
            if let Some(case) = cases
                .iter_mut()
                .rev()
                .find(|c| c.name == name && c.suite == suite)
            {
                case.message = Some(text.clone());
                // `panicked at src/lib.rs:10:5:` names the file.
                case.file = text
                    .lines()
                    .find_map(|l| l.split_once(" panicked at ").map(|(_, at)| at))
                    .and_then(|at| at.split(':').next())
                    .map(String::from);
            }
        }
    }
    cases
}

/// `file`, relative to the cargo project in `dir`, relative to the weir
/// workspace.
fn in_workspace(dir: &str, file: &str) -> String {
    if file.starts_with('/') {
        return file.to_string();
    }
    dir.split('/')
        .chain(file.split('/'))
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl TestRunner for CargoTest {
    fn run_tests(ctx: Context) -> Result<TestReport, Failure> {
        let c: Config = ctx.config()?;
        let mut args = vec![
            "test".to_string(),
            "--no-fail-fast".into(),
            "--color".into(),
            "never".into(),
        ];
        args.extend(c.args.iter().cloned());
        let mut env: Vec<(String, String)> = vec![
            ("CARGO_TERM_COLOR".into(), "never".into()),
            ("RUST_BACKTRACE".into(), "0".into()),
        ];
        if c.report_time {
            if !args.iter().any(|a| a == "--") {
                args.push("--".into());
            }
            args.extend(["-Z".into(), "unstable-options".into(), "--report-time".into()]);
            env.push(("RUSTC_BOOTSTRAP".into(), "1".into()));
        }
        let mut cmd = Command::new("cargo").args(args).cwd(c.dir.clone());
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let exit = weir_sdk::process::run(&cmd)?;
        let stdout = String::from_utf8_lossy(&exit.stdout);
        let stderr = String::from_utf8_lossy(&exit.stderr);
        let mut cases = parse(&stdout, &suites(&stderr));
        // libtest names files from the cargo workspace (`dir`); reports want
        // them from the weir workspace.
        for case in &mut cases {
            if let Some(file) = &case.file {
                case.file = Some(in_workspace(&c.dir, file));
            }
        }
        if exit.timed_out {
            return Err(Failure::retryable("cargo test timed out").with_details(tail(&stderr, 20)));
        }
        if cases.is_empty() && exit.code != Some(0) {
            return Err(Failure::retryable(
                "cargo test failed before any test ran (does the project build?)",
            )
            .with_details(tail(&stderr, 30)));
        }
        Ok(TestReport::from_cases(cases))
    }
}

weir_sdk::export_test_runner!(CargoTest);

#[cfg(test)]
mod tests {
    use super::*;

    const STDOUT: &str = "
running 3 tests
test tests::ok_one ... ok
test tests::bad ... FAILED
test tests::later ... ignored, not today

failures:

---- tests::bad stdout ----

thread 'tests::bad' panicked at src/main.rs:40:9:
assertion `left == right` failed
  left: 1
 right: 2
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    tests::bad

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s


running 1 test
test src/lib.rs - add (line 3) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.12s
";

    #[test]
    fn files_are_named_from_the_workspace() {
        assert_eq!(in_workspace("src", "src/main.rs"), "src/src/main.rs");
        assert_eq!(in_workspace(".", "src/main.rs"), "src/main.rs");
        assert_eq!(in_workspace("./a/", "b.rs"), "a/b.rs");
        assert_eq!(in_workspace("a", "/abs/b.rs"), "/abs/b.rs");
    }

    #[test]
    fn parses_cases_suites_and_failures() {
        let stderr = "   Compiling x v0.1.0\n     Running unittests src/main.rs (target/debug/deps/x-1a2b)\n   Doc-tests x\n";
        let cases = parse(STDOUT, &suites(stderr));
        let summary: Vec<(&str, &str, TestStatus)> = cases
            .iter()
            .map(|c| (c.suite.as_str(), c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("unittests src/main.rs", "tests::ok_one", TestStatus::Passed),
                ("unittests src/main.rs", "tests::bad", TestStatus::Failed),
                ("unittests src/main.rs", "tests::later", TestStatus::Skipped),
                ("doc-tests x", "src/lib.rs - add (line 3)", TestStatus::Passed),
            ]
        );
        let timed = parse("running 1 test\ntest a::b ... ok <0.250s>\n", &[]);
        assert_eq!((timed[0].status, timed[0].duration_ms), (TestStatus::Passed, 250));
        let bad = &cases[1];
        assert!(
            bad.message.as_deref().unwrap_or("").contains("left: 1"),
            "{:?}",
            bad.message
        );
        assert_eq!(bad.file.as_deref(), Some("src/main.rs"));
    }
}
