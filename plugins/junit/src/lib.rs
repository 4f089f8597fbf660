//! `junit`: run any test command, then read the JUnit XML it wrote.
//!
//! ```toml
//! [stages.test]
//! uses = "junit"
//! with = { command = "pytest --junitxml=reports/pytest.xml", reports = ["reports/*.xml"] }
//! allow = { exec = ["sh"] }
//! gate = { max-failures = 0 }
//! ```
//!
//! The command runs through `sh -c` (grant `sh`); its exit code alone does
//! not decide anything (test tools exit non-zero when tests fail) — the
//! cases in the reports do, through the stage's `gate`. No report at all
//! fails the stage. Reads the shapes pytest, jest (jest-junit), Maven
//! Surefire and go-junit-report write: `testsuites` or a bare `testsuite`,
//! nested suites, `testcase@classname` (else the enclosing suite) as the
//! suite, `@time` in seconds, and `failure`, `error` and `skipped`
//! children with their message and text.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Deserialize;
use weir_sdk::process::Command;
use weir_sdk::{
    Capability, Context, Failure, Manifest, Plugin, TestCase, TestReport, TestRunner, TestStatus,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    command: Option<String>,
    reports: Vec<String>,
    #[serde(default)]
    dir: Option<String>,
}

struct Junit;

impl Plugin for Junit {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(TestRunner, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","required":["reports"],"additionalProperties":false,"properties":{"command":{"type":"string","x-weir-shell":true},"reports":{"type":"array","items":{"type":"string"}},"dir":{"type":"string"}}}"#
                .into(),
        );
        m
    }
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.0 == name).and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

/// Every test case in one JUnit document.
pub fn parse(xml: &str, file: &str) -> Result<Vec<TestCase>, String> {
    let mut reader = Reader::from_str(xml);
    let mut suites: Vec<String> = Vec::new();
    let mut cases = Vec::new();
    let mut current: Option<TestCase> = None;
    // Inside <failure>/<error>/<skipped>: their text, pieced together.
    let mut in_outcome = false;
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "{file} is not valid XML at byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        match event {
            Event::Start(e) if e.name().0 == "testsuite" => {
                suites.push(attr(&e, "name").unwrap_or_default());
            }
            Event::End(e) if e.name().0 == "testsuite" => {
                suites.pop();
            }
            Event::Start(e) if e.name().0 == "testcase" => current = Some(case(&e, &suites)),
            Event::Empty(e) if e.name().0 == "testcase" => cases.push(case(&e, &suites)),
            Event::End(e) if e.name().0 == "testcase" => {
                if let Some(c) = current.take() {
                    cases.push(c);
                }
            }
            Event::Start(ref e) | Event::Empty(ref e)
                if matches!(e.name().0, "failure" | "error" | "skipped") =>
            {
                // Only an opened element has text (and an end) to wait for.
                let opened = matches!(event, Event::Start(_));
                if let Some(c) = current.as_mut() {
                    c.status = match e.name().0 {
                        "failure" => TestStatus::Failed,
                        "error" => TestStatus::Errored,
                        _ => TestStatus::Skipped,
                    };
                    c.message = attr(e, "message").filter(|m| !m.is_empty());
                    in_outcome = opened;
                    text.clear();
                }
            }
            Event::End(e) if matches!(e.name().0, "failure" | "error" | "skipped") => {
                in_outcome = false;
                append(&mut current, &text);
                text.clear();
            }
            Event::GeneralRef(r) if in_outcome => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => quick_xml::escape::resolve_predefined_entity(&r.xml10_content()).map(String::from),
                };
                text.push_str(&resolved.unwrap_or_else(|| format!("&{};", r.xml10_content())));
            }
            Event::Text(t) if in_outcome => text.push_str(&t.xml10_content()),
            Event::CData(t) if in_outcome => text.push_str(&t.xml10_content()),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(cases)
}

/// A case from its `<testcase>` element: the suite is its classname, else
/// the enclosing suite's name.
fn case(e: &BytesStart<'_>, suites: &[String]) -> TestCase {
    let suite = attr(e, "classname")
        .filter(|c| !c.is_empty())
        .or_else(|| suites.last().cloned())
        .unwrap_or_default();
    let seconds: f64 = attr(e, "time")
        .and_then(|t| t.replace(',', "").parse().ok())
        .unwrap_or(0.0);
    TestCase {
        suite,
        name: attr(e, "name").unwrap_or_default(),
        status: TestStatus::Passed,
        duration_ms: (seconds * 1000.0).round() as u64,
        message: None,
        file: attr(e, "file"),
    }
}

fn append(current: &mut Option<TestCase>, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    if let Some(c) = current.as_mut() {
        c.message = Some(match c.message.take() {
            Some(m) if !m.is_empty() && !text.starts_with(&m) => format!("{m}\n{text}"),
            _ => text.to_string(),
        });
    }
}

impl TestRunner for Junit {
    fn run_tests(ctx: Context) -> Result<TestReport, Failure> {
        let c: Config = ctx.config()?;
        let mut exit_note = String::new();
        if let Some(command) = &c.command {
            let mut cmd = Command::new("sh").args(["-c", command.as_str()]);
            if let Some(dir) = &c.dir {
                cmd = cmd.cwd(dir.clone());
            }
            let exit = weir_sdk::process::run(&cmd)?;
            if exit.timed_out {
                return Err(Failure::retryable(format!("`{command}` timed out")));
            }
            exit_note = format!(
                " (`{command}` exited with {})",
                exit.code.map_or("a signal".into(), |c| format!("code {c}"))
            );
        }
        let patterns: Vec<String> = c
            .reports
            .iter()
            .map(|p| match &c.dir {
                Some(d) => format!("{}/{p}", d.trim_end_matches('/')),
                None => p.clone(),
            })
            .collect();
        let files = weir_sdk::glob::find_files(&patterns)
            .map_err(|e| Failure::new(format!("cannot list the workspace: {e}")))?;
        if files.is_empty() {
            return Err(Failure::new(format!(
                "no JUnit report matches {:?}{exit_note}",
                c.reports
            )));
        }
        let mut cases = Vec::new();
        for file in &files {
            let xml = std::fs::read_to_string(file)
                .map_err(|e| Failure::new(format!("cannot read `{file}`: {e}")))?;
            let mut found = parse(&xml, file).map_err(Failure::new)?;
            weir_sdk::log::info(&format!("{file}: {} test case(s)", found.len()));
            cases.append(&mut found);
        }
        Ok(TestReport::from_cases(cases))
    }
}

weir_sdk::export_test_runner!(Junit);

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(cases: &[TestCase]) -> Vec<(String, String, TestStatus, u64)> {
        cases
            .iter()
            .map(|c| (c.suite.clone(), c.name.clone(), c.status, c.duration_ms))
            .collect()
    }

    #[test]
    fn pytest() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.05"><testcase classname="tests.test_api" name="test_ok" time="0.001" /><testcase classname="tests.test_api" name="test_bad" time="0.002"><failure message="assert 1 == 2">def test_bad():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase><testcase classname="tests.test_api" name="test_later" time="0.000"><skipped type="pytest.skip" message="not today">skip reason</skipped></testcase></testsuite></testsuites>"#;
        let cases = parse(xml, "p.xml").unwrap();
        assert_eq!(
            summary(&cases),
            vec![
                ("tests.test_api".into(), "test_ok".into(), TestStatus::Passed, 1),
                ("tests.test_api".into(), "test_bad".into(), TestStatus::Failed, 2),
                (
                    "tests.test_api".into(),
                    "test_later".into(),
                    TestStatus::Skipped,
                    0
                ),
            ]
        );
        assert!(
            cases[1]
                .message
                .as_deref()
                .unwrap()
                .starts_with("assert 1 == 2\ndef test_bad():\n>       assert")
        );
    }

    #[test]
    fn surefire_and_go_junit_report() {
        let surefire = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.FooTest" time="0.012" tests="2" errors="1" skipped="0" failures="0">
  <properties><property name="java.version" value="17"/></properties>
  <testcase name="works" classname="com.example.FooTest" time="0.003"/>
  <testcase name="explodes" classname="com.example.FooTest" time="0.009">
    <error message="boom" type="java.lang.IllegalStateException"><![CDATA[java.lang.IllegalStateException: boom
	at com.example.FooTest.explodes(FooTest.java:12)]]></error>
  </testcase>
</testsuite>"#;
        let cases = parse(surefire, "s.xml").unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].status, TestStatus::Errored);
        assert!(cases[1].message.as_deref().unwrap().contains("FooTest.java:12"));

        let go = r#"<testsuites><testsuite tests="2" failures="1" time="0.010" name="example.com/pkg"><properties><property name="go.version" value="go1.22"></property></properties><testcase classname="pkg" name="TestA" time="0.000"></testcase><testcase classname="" name="TestB" time="0.010"><failure message="Failed" type="">pkg_test.go:9: want 1, got 2</failure></testcase></testsuite></testsuites>"#;
        let cases = parse(go, "g.xml").unwrap();
        assert_eq!(
            summary(&cases),
            vec![
                ("pkg".into(), "TestA".into(), TestStatus::Passed, 0),
                ("example.com/pkg".into(), "TestB".into(), TestStatus::Failed, 10),
            ]
        );
        assert_eq!(
            cases[1].message.as_deref(),
            Some("Failed\npkg_test.go:9: want 1, got 2")
        );
    }

    #[test]
    fn jest_and_broken_xml() {
        let jest = r#"<testsuites name="jest tests" tests="1" failures="0" time="1.2"><testsuite name="sum" tests="1"><testcase classname="sum adds 1 + 2 to equal 3" name="sum adds 1 + 2 to equal 3" time="0.004"></testcase></testsuite></testsuites>"#;
        assert_eq!(parse(jest, "j.xml").unwrap().len(), 1);
        assert!(
            parse("<testsuite><testcase name=\"x\"></testsuite>", "bad.xml")
                .unwrap_err()
                .starts_with("bad.xml is not valid XML")
        );
    }
}
