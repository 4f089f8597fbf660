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

/// Why a stage's result is refused: a limit, by name, or a malformed name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// More than [`MAX_OUTPUTS`] outputs.
    #[error(
        "result limit hit: the plugin returned {0} outputs; the limit is {MAX_OUTPUTS} (limit `outputs`)"
    )]
    Outputs(usize),
    /// More than [`MAX_ARTIFACTS`] artifacts.
    #[error(
        "result limit hit: the plugin returned {0} artifacts; the limit is {MAX_ARTIFACTS} (limit `artifacts`)"
    )]
    Artifacts(usize),
    /// An output name outside the grammar.
    #[error("malformed result: output name {0:?} is not a name (1 to 128 letters, digits, `-`, `_` or `.`)")]
    OutputName(String),
    /// One output beyond [`MAX_OUTPUT_VALUE`].
    #[error(
        "result limit hit: output `{name}` is {bytes} bytes; the limit is {MAX_OUTPUT_VALUE} (limit `output-value`); keep large data in a file and return it as an artifact"
    )]
    OutputValue {
        /// The output.
        name: String,
        /// Its size.
        bytes: usize,
    },
    /// Everything together beyond [`MAX_RESULT_BYTES`].
    #[error(
        "result limit hit: the plugin returned {0} bytes of outputs; the limit is {MAX_RESULT_BYTES} (limit `result-bytes`)"
    )]
    ResultBytes(usize),
}

impl ResultError {
    /// The limit's name, as `[limits]` and the docs spell it; `None` for a
    /// malformed result.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            ResultError::Outputs(_) => Some("outputs"),
            ResultError::Artifacts(_) => Some("artifacts"),
            ResultError::OutputName(_) => None,
            ResultError::OutputValue { .. } => Some("output-value"),
            ResultError::ResultBytes(_) => Some("result-bytes"),
        }
    }
}

/// Why `out` is refused, if it is.
pub fn check_stage_output(out: StageResult<'_>) -> Result<(), ResultError> {
    if out.outputs.len() > MAX_OUTPUTS {
        return Err(ResultError::Outputs(out.outputs.len()));
    }
    if out.artifacts.len() > MAX_ARTIFACTS {
        return Err(ResultError::Artifacts(out.artifacts.len()));
    }
    let mut total = out.summary.map_or(0, str::len);
    for (name, value) in out.outputs {
        if !valid_name(name) {
            return Err(ResultError::OutputName(name.clone()));
        }
        if value.len() > MAX_OUTPUT_VALUE {
            return Err(ResultError::OutputValue {
                name: name.clone(),
                bytes: value.len(),
            });
        }
        total += name.len() + value.len();
    }
    total += out
        .artifacts
        .iter()
        .map(|(n, p)| n.len() + p.len())
        .sum::<usize>();
    if total > MAX_RESULT_BYTES {
        return Err(ResultError::ResultBytes(total));
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
        .map_err(|e| e.to_string())
    }

    #[test]
    fn each_refusal_names_its_limit() {
        assert_eq!(ResultError::Outputs(300).limit(), Some("outputs"));
        assert_eq!(ResultError::ResultBytes(1).limit(), Some("result-bytes"));
        assert_eq!(ResultError::OutputName("a b".into()).limit(), None);
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
