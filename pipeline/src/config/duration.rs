//! Durations as people write them: `90s`, `10m`, `1h30m`, `250ms`.

use std::time::Duration;

/// Parse `text`; the error says what is wrong and shows the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("a duration cannot be empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(format!("`{text}` has no unit: write `{number}s` for seconds")),
            other => return Err(format!("`{text}` has an unknown unit `{other}`")),
        };
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err(format!("`{text}` is zero; a timeout must be longer than that"));
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
        assert!(parse_duration("10").unwrap_err().contains("write `10s`"));
        assert!(parse_duration("10 minutes").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").unwrap_err().contains("expected a number"));
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
