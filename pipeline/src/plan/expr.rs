//! `${{ stages.X.outputs.Y }}` references in stage settings.
//!
//! The plan checks every reference once (the stage exists and runs before
//! this one); the scheduler substitutes values when the stage starts.

/// One reference to an upstream stage's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The upstream stage.
    pub stage: String,
    /// The output's name.
    pub output: String,
}

/// A part of a string: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// `${{ stages.X.outputs.Y }}`, with the full expression text.
    Ref(OutputRef, &'a str),
}

/// Split `s` into text and references, or say what is malformed.
pub fn parse(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err(format!("`{}` is not closed: add `}}}}`", &rest[start..]));
        };
        let whole = &rest[start..start + 3 + end + 2];
        let inner = after[..end].trim();
        let parts: Vec<&str> = inner.split('.').collect();
        match parts.as_slice() {
            ["stages", stage, "outputs", output] if !stage.is_empty() && !output.is_empty() => {
                pieces.push(Piece::Ref(
                    OutputRef {
                        stage: (*stage).to_string(),
                        output: (*output).to_string(),
                    },
                    whole,
                ));
            }
            _ => {
                return Err(format!(
                    "`{whole}` is not an expression weir knows: write `${{{{ stages.STAGE.outputs.NAME }}}}`"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Every reference in `s` (which must already be known to parse).
pub fn refs(s: &str) -> Vec<OutputRef> {
    parse(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r, _) => Some(r),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Replace every reference in `s` with `lookup`'s answer; the error names
/// the first reference that has no value.
pub fn substitute(s: &str, lookup: impl Fn(&OutputRef) -> Option<String>) -> Result<String, OutputRef> {
    let pieces = parse(s).map_err(|_| OutputRef {
        stage: String::new(),
        output: String::new(),
    })?;
    let mut out = String::with_capacity(s.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r, _) => match lookup(&r) {
                Some(v) => out.push_str(&v),
                None => return Err(r),
            },
        }
    }
    Ok(out)
}

/// Apply [`substitute`] to every string inside a JSON value.
pub fn substitute_json(
    value: &serde_json::Value,
    lookup: &impl Fn(&OutputRef) -> Option<String>,
) -> Result<serde_json::Value, OutputRef> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => Value::String(substitute(s, lookup)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute_json(v, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute_json(v, lookup)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_between_text() {
        let p = parse("v=${{ stages.build.outputs.version }}!").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            refs("${{stages.a.outputs.b}}"),
            vec![OutputRef {
                stage: "a".into(),
                output: "b".into()
            }]
        );
    }

    #[test]
    fn rejects_unknown_expressions() {
        assert!(
            parse("${{ env.HOME }}")
                .unwrap_err()
                .contains("not an expression")
        );
        assert!(
            parse("${{ stages.a.outputs.b")
                .unwrap_err()
                .contains("not closed")
        );
    }

    #[test]
    fn substitutes_or_names_the_missing_output() {
        let got = substitute("x-${{ stages.a.outputs.b }}", |_| Some("1".into()));
        assert_eq!(got.unwrap(), "x-1");
        let missing = substitute("${{ stages.a.outputs.c }}", |_| None).unwrap_err();
        assert_eq!(missing.output, "c");
    }
}
