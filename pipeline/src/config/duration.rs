//! Durations as people write them: `90s`, `10m`, `1h30m`, `250ms`.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("a duration cannot be empty")]
    Empty,
    /// A unit with no number before it.
    #[error("`{text}` is not a duration: expected a number at `{at}`")]
    NoNumber {
        /// The text.
        text: String,
        /// Where a number was expected.
        at: String,
    },
    /// A number beyond `u64`.
    #[error("`{text}` is not a duration: the number is too large")]
    TooLarge {
        /// The text.
        text: String,
    },
    /// A number with no unit.
    #[error("`{text}` has no unit: write `{number}s` for seconds")]
    NoUnit {
        /// The text.
        text: String,
        /// The number.
        number: u64,
    },
    /// A unit other than `ms`, `s`, `m`, `h`.
    #[error("`{text}` has an unknown unit `{unit}`")]
    UnknownUnit {
        /// The text.
        text: String,
        /// The unit.
        unit: String,
    },
    /// It adds up to nothing.
    #[error("`{text}` is zero; a timeout must be longer than that")]
    Zero {
        /// The text.
        text: String,
    },
}

/// Parse `text`; the error says what is wrong and shows the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let text = text.to_string();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NoNumber {
                text,
                at: rest.to_string(),
            });
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge { text: text.clone() })?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(DurationError::NoUnit { text, number }),
            other => {
                return Err(DurationError::UnknownUnit {
                    text,
                    unit: other.to_string(),
                });
            }
        };
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err(DurationError::Zero { text });
    }
    Ok(total)
}

/// `1m30s`, `250ms`, `2h`: the inverse of [`parse_duration`], for display.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn explains_mistakes() {
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("write `10s`")
        );
        assert!(
            parse_duration("10 minutes")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("m")
                .unwrap_err()
                .to_string()
                .contains("expected a number")
        );
        assert!(parse_duration("0s").unwrap_err().to_string().contains("zero"));
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
