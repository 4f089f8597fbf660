//! `reports/junit.xml` and `reports/junit-gitlab.xml`: every test-runner
//! stage of a run, merged, one `testsuite` per stage.
//!
//! - `junit.xml` validates against `junit-10.xsd`, the schema Jenkins'
//!   xunit plugin checks reports with: counts on `testsuites` are `tests`,
//!   `failures` and `errors` (`skipped` only on `testsuite`, where the schema
//!   has it), and no `file` on `testcase`.
//! - `junit-gitlab.xml` is the same document with `testcase@file`, which
//!   GitLab reads to link a failure to its file. The schema forbids that
//!   attribute, so it lives in a file of its own.
//!
//! `classname` splits into package and class at its last dot, as Jenkins
//! does: a Rust case `tests::parses` of `unittests src/lib.rs` becomes
//! class `lib.tests`, name `parses`; a case whose name is not a Rust path
//! keeps its suite as class (`com.example.FooTest`). `failure@message` is
//! the assertion's text (the first line after libtest's `panicked at`);
//! the element's body is the whole output. File paths are relative to the
//! repository (see [`SourceRoot`]).

use std::fmt::Write as _;
use std::path::Path;

use super::source::SourceRoot;
use crate::events::{Event, TestCaseRecord};

/// Which consumer a document is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Valid against junit-10.xsd (Jenkins, and every schema-checking reader).
    Schema,
    /// GitLab's reading, with `testcase@file`.
    GitLab,
}

/// Test cases seen so far, per stage, in the order stages finished.
#[derive(Debug, Default)]
pub struct JunitCollector {
    pipeline: String,
    root: SourceRoot,
    suites: Vec<(String, u64, Vec<TestCaseRecord>)>,
}

impl JunitCollector {
    /// Take note of `event`.
    pub fn observe(&mut self, event: &Event) {
        self.root.observe(event);
        match event {
            Event::RunStarted { pipeline, .. } => self.pipeline = pipeline.clone(),
            Event::StageFinished {
                stage,
                cases,
                duration_ms,
                tests: Some(_),
                ..
            } => self.suites.push((stage.clone(), *duration_ms, cases.clone())),
            _ => {}
        }
    }

    /// The XML document, shaped for `flavour`.
    pub fn to_xml(&self, flavour: Flavour) -> String {
        let count = |cases: &[TestCaseRecord], s: &str| cases.iter().filter(|c| c.status == s).count();
        let all: Vec<&TestCaseRecord> = self.suites.iter().flat_map(|(_, _, c)| c).collect();
        let total_ms: u64 = self.suites.iter().map(|(_, ms, _)| ms).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{}\">",
            escape(&self.pipeline),
            all.len(),
            all.iter().filter(|c| c.status == "failed").count(),
            all.iter().filter(|c| c.status == "errored").count(),
            seconds(total_ms)
        );
        for (stage, ms, cases) in &self.suites {
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
                escape(stage),
                cases.len(),
                count(cases, "failed"),
                count(cases, "errored"),
                count(cases, "skipped"),
                seconds(*ms)
            );
            for c in cases {
                let (class, name) = class_and_name(&c.suite, &c.name);
                let file = match (flavour, &c.file) {
                    (Flavour::GitLab, Some(f)) => self
                        .root
                        .relative(f)
                        .map(|f| format!(" file=\"{}\"", escape(&f)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let _ = write!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{}\"{file} time=\"{}\"",
                    escape(&class),
                    escape(&name),
                    seconds(c.duration_ms)
                );
                let output = c.message.as_deref().unwrap_or("");
                match c.status.as_str() {
                    "failed" | "errored" => {
                        let tag = if c.status == "failed" { "failure" } else { "error" };
                        let _ = writeln!(
                            out,
                            ">\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>",
                            escape(&assertion_of(output)),
                            escape(output)
                        );
                    }
                    "skipped" => {
                        let _ = writeln!(out, ">\n      <skipped/>\n    </testcase>");
                    }
                    _ => {
                        let _ = writeln!(out, "/>");
                    }
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// Write both documents into `dir`: `junit.xml` and `junit-gitlab.xml`
    /// (each to a temporary file, then renamed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (file, flavour) in [
            (super::JUNIT_FILE, Flavour::Schema),
            (super::JUNIT_GITLAB_FILE, Flavour::GitLab),
        ] {
            let path = dir.join(file);
            let tmp = path.with_extension("xml.tmp");
            std::fs::write(&tmp, self.to_xml(flavour))?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }
}

/// `classname` and `name` for a case: a Rust path name moves its module
/// path into the class, after the suite's binary (`unittests src/lib.rs` →
/// `lib`), so Jenkins' split at the last dot gives package and class.
fn class_and_name(suite: &str, name: &str) -> (String, String) {
    let Some((module, test)) = name.rsplit_once("::") else {
        return (suite.to_string(), name.to_string());
    };
    if module.is_empty() || test.is_empty() || name.contains(char::is_whitespace) {
        return (suite.to_string(), name.to_string());
    }
    let binary = suite
        .rsplit(['/', ' '])
        .next()
        .unwrap_or(suite)
        .trim_end_matches(".rs");
    let binary: String = binary
        .chars()
        .map(|c| if c == '.' || c.is_whitespace() { '_' } else { c })
        .collect();
    let module = module.replace("::", ".");
    let class = if binary.is_empty() {
        module
    } else {
        format!("{binary}.{module}")
    };
    (class, test.to_string())
}

/// What a failure says, in one line: the assertion after libtest's
/// `thread '…' panicked at FILE:LINE:COL:` line, else the first line that
/// says anything.
fn assertion_of(output: &str) -> String {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if first.starts_with("thread '") && first.contains(" panicked at ") {
        // Since Rust 1.73 the message follows on the next line; before,
        // after the location on the same line.
        let same_line = first
            .split_once(" panicked at '")
            .and_then(|(_, rest)| rest.rsplit_once("', "))
            .map(|(m, _)| m);
        if let Some(m) = same_line.filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        if let Some(next) = lines.next() {
            return next.to_string();
        }
    }
    first.to_string()
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Escape for XML text and attributes; characters XML 1.0 cannot hold are
/// replaced.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, status: &str, message: Option<&str>) -> TestCaseRecord {
        TestCaseRecord {
            suite: "unittests src/lib.rs".into(),
            name: name.into(),
            status: status.into(),
            duration_ms: 1500,
            message: message.map(String::from),
            file: Some("src/lib.rs".into()),
        }
    }

    #[test]
    fn writes_the_schema_shape_and_the_gitlab_shape() {
        let mut j = JunitCollector {
            pipeline: "web".into(),
            ..JunitCollector::default()
        };
        j.suites.push((
            "test".into(),
            2000,
            vec![
                case("tests::ok", "passed", None),
                case(
                    "tests::bad",
                    "failed",
                    Some("thread 'tests::bad' panicked at src/lib.rs:3:5:\nexpected 1 < 2\nnote: run with RUST_BACKTRACE=1"),
                ),
                case("later", "skipped", None),
            ],
        ));
        let xml = j.to_xml(Flavour::Schema);
        assert!(
            xml.contains("<testsuites name=\"web\" tests=\"3\" failures=\"1\" errors=\"0\" time=\"2.000\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"lib.tests\" name=\"ok\" time=\"1.500\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"unittests src/lib.rs\" name=\"later\" time=\"1.500\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"expected 1 &lt; 2\">thread &apos;tests::bad&apos; panicked at src/lib.rs:3:5:\nexpected 1 &lt; 2\n"),
            "{xml}"
        );
        assert!(xml.contains("<skipped/>"), "{xml}");
        assert!(!xml.contains("file="), "{xml}");
        let gitlab = j.to_xml(Flavour::GitLab);
        assert!(
            gitlab.contains(
                "<testcase classname=\"lib.tests\" name=\"ok\" file=\"src/lib.rs\" time=\"1.500\"/>"
            ),
            "{gitlab}"
        );
    }

    #[test]
    fn classnames_split_into_package_and_class() {
        assert_eq!(
            class_and_name("unittests src/lib.rs", "parse::tests::empty"),
            ("lib.parse.tests".into(), "empty".into())
        );
        assert_eq!(
            class_and_name("tests/api.rs", "rejects_bad_input"),
            ("tests/api.rs".into(), "rejects_bad_input".into())
        );
        assert_eq!(
            class_and_name("tests/api.rs", "auth::rejects"),
            ("api.auth".into(), "rejects".into())
        );
        assert_eq!(
            class_and_name("com.example.FooTest", "works"),
            ("com.example.FooTest".into(), "works".into())
        );
        assert_eq!(
            class_and_name("doc-tests itoa", "src/lib.rs - add (line 3)"),
            ("doc-tests itoa".into(), "src/lib.rs - add (line 3)".into())
        );
    }

    #[test]
    fn the_message_is_the_assertion() {
        assert_eq!(
            assertion_of("thread 'a' panicked at src/a.rs:1:2:\nassertion `left == right` failed\n  left: 1"),
            "assertion `left == right` failed"
        );
        assert_eq!(
            assertion_of("thread 'a' panicked at 'boom', src/a.rs:1:2"),
            "boom"
        );
        assert_eq!(
            assertion_of("\nAssertionError: 1 != 2\nmore"),
            "AssertionError: 1 != 2"
        );
    }
}
