//! Bounds on what a plugin returns. A result is untrusted input like any
//! other: outputs flow into later stages, the history and every report, so
//! their number, names and sizes are limited here, by name, before any of
//! them is kept.

/// What a stage returned, as plain data (the host converts its WIT
/// record into this view).
#[derive(Debug, Clone, Copy)]
pub struct StageResult<'a> {
    /// `(name, value)` outputs.
    pub outputs: &'a [(String, String)],
    /// `(name, path)` artifacts.
    pub artifacts: &'a [(&'a str, &'a str)],
    /// The summary line.
    pub summary: Option<&'a str>,
}

/// Most outputs one stage may return (limit `outputs`).
pub const MAX_OUTPUTS: usize = 256;
/// Most bytes of one output's value (limit `output-value`).
pub const MAX_OUTPUT_VALUE: usize = 1 << 20;
/// Most bytes of all a stage's outputs, summary and artifact names
/// together (limit `result-bytes`).
pub const MAX_RESULT_BYTES: usize = 4 << 20;
/// Most artifacts one stage may keep (limit `artifacts`).
pub const MAX_ARTIFACTS: usize = 1000;
/// Most bytes of a failure's message or details kept; the rest is cut.
pub const MAX_FAILURE_TEXT: usize = 64 << 10;

/// Why `out` is refused, if it is.
pub fn check_stage_output(out: StageResult<'_>) -> Result<(), String> {
    if out.outputs.len() > MAX_OUTPUTS {
        return Err(format!(
            "result limit hit: the plugin returned {} outputs; the limit is {MAX_OUTPUTS} (limit `outputs`)",
            out.outputs.len()
        ));
    }
    if out.artifacts.len() > MAX_ARTIFACTS {
        return Err(format!(
            "result limit hit: the plugin returned {} artifacts; the limit is {MAX_ARTIFACTS} (limit `artifacts`)",
            out.artifacts.len()
        ));
    }
    let mut total = out.summary.map_or(0, str::len);
    for (name, value) in out.outputs {
        if !valid_name(name) {
            return Err(format!(
                "malformed result: output name {name:?} is not a name (1 to 128 letters, digits, `-`, `_` or `.`)"
            ));
        }
        if value.len() > MAX_OUTPUT_VALUE {
            return Err(format!(
                "result limit hit: output `{name}` is {} bytes; the limit is {MAX_OUTPUT_VALUE} (limit `output-value`); keep large data in a file and return it as an artifact",
                value.len()
            ));
        }
        total += name.len() + value.len();
    }
    total += out
        .artifacts
        .iter()
        .map(|(n, p)| n.len() + p.len())
        .sum::<usize>();
    if total > MAX_RESULT_BYTES {
        return Err(format!(
            "result limit hit: the plugin returned {total} bytes of outputs; the limit is {MAX_RESULT_BYTES} (limit `result-bytes`)"
        ));
    }
    Ok(())
}

/// `text` cut to [`MAX_FAILURE_TEXT`] bytes, at a character boundary.
pub fn cut_failure_text(mut text: String) -> String {
    if text.len() > MAX_FAILURE_TEXT {
        let mut end = MAX_FAILURE_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" … (cut at 64 KiB)");
    }
    text
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(outputs: Vec<(String, String)>) -> Result<(), String> {
        check_stage_output(StageResult {
            outputs: &outputs,
            artifacts: &[],
            summary: None,
        })
    }

    #[test]
    fn names_counts_and_sizes_are_bounded() {
        assert!(check(vec![("sha256".into(), "ab".into())]).is_ok());
        let e = check(vec![("a\nb".into(), String::new())]).unwrap_err();
        assert!(e.starts_with("malformed result: output name \"a\\nb\""), "{e}");
        let many = (0..300).map(|i| (format!("o{i}"), String::new())).collect();
        assert!(check(many).unwrap_err().contains("(limit `outputs`)"));
        let big = vec![("x".into(), "y".repeat(MAX_OUTPUT_VALUE + 1))];
        assert!(check(big).unwrap_err().contains("(limit `output-value`)"));
        let total = (0..5)
            .map(|i| (format!("o{i}"), "y".repeat(MAX_OUTPUT_VALUE)))
            .collect();
        assert!(check(total).unwrap_err().contains("(limit `result-bytes`)"));
        assert_eq!(
            cut_failure_text("é".repeat(40_000)).len(),
            65_536 + " … (cut at 64 KiB)".len()
        );
    }
}
