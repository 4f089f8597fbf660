//! `reports/junit.xml`: every test-runner stage of a run, merged, in the
//! JUnit shape GitLab and Jenkins read (one `testsuite` per stage,
//! `testcase@classname` the suite, `failure`/`error`/`skipped` children,
//! times in seconds).

use std::fmt::Write as _;
use std::path::Path;

use crate::events::{Event, TestCaseRecord};

/// Test cases seen so far, per stage, in the order stages finished.
#[derive(Debug, Default)]
pub struct JunitCollector {
    pipeline: String,
    suites: Vec<(String, u64, Vec<TestCaseRecord>)>,
}

impl JunitCollector {
    /// Take note of `event`.
    pub fn observe(&mut self, event: &Event) {
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

    /// The XML document.
    pub fn to_xml(&self) -> String {
        let count = |cases: &[TestCaseRecord], s: &str| cases.iter().filter(|c| c.status == s).count();
        let all: Vec<&TestCaseRecord> = self.suites.iter().flat_map(|(_, _, c)| c).collect();
        let total_ms: u64 = self.suites.iter().map(|(_, ms, _)| ms).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(&self.pipeline),
            all.len(),
            all.iter().filter(|c| c.status == "failed").count(),
            all.iter().filter(|c| c.status == "errored").count(),
            all.iter().filter(|c| c.status == "skipped").count(),
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
                let file = c
                    .file
                    .as_ref()
                    .map(|f| format!(" file=\"{}\"", escape(f)))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{}\"{file} time=\"{}\"",
                    escape(&c.suite),
                    escape(&c.name),
                    seconds(c.duration_ms)
                );
                let message = c.message.as_deref().unwrap_or("");
                let first = message.lines().next().unwrap_or("");
                match c.status.as_str() {
                    "failed" | "errored" => {
                        let tag = if c.status == "failed" { "failure" } else { "error" };
                        let _ = writeln!(
                            out,
                            ">\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>",
                            escape(first),
                            escape(message)
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

    /// Write the document to `path` (temporary file, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("xml.tmp");
        std::fs::write(&tmp, self.to_xml())?;
        std::fs::rename(&tmp, path)
    }
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
            suite: "lib::tests".into(),
            name: name.into(),
            status: status.into(),
            duration_ms: 1500,
            message: message.map(String::from),
            file: Some("src/lib.rs".into()),
        }
    }

    #[test]
    fn writes_the_gitlab_shape() {
        let mut j = JunitCollector {
            pipeline: "web".into(),
            ..JunitCollector::default()
        };
        j.suites.push((
            "test".into(),
            2000,
            vec![
                case("ok", "passed", None),
                case("bad", "failed", Some("expected 1 < 2\nat src/lib.rs:3")),
                case("later", "skipped", None),
            ],
        ));
        let xml = j.to_xml();
        assert!(xml.contains("<testsuites name=\"web\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"2.000\">"), "{xml}");
        assert!(
            xml.contains(
                "<testcase classname=\"lib::tests\" name=\"ok\" file=\"src/lib.rs\" time=\"1.500\"/>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<failure message=\"expected 1 &lt; 2\">expected 1 &lt; 2\nat src/lib.rs:3</failure>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<skipped/>"), "{xml}");
    }
}
