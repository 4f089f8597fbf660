//! Suppressing findings a team has looked at.
//!
//! - The ignore file (`.weir-scan-ignore` at the workspace root by
//!   default): one entry per line, `#` starts a comment. `PATTERN` drops
//!   every finding in files matching the glob; `RULE PATTERN` drops only
//!   that rule's (an advisory id such as `RUSTSEC-2021-0003` is a rule).
//! - Inline markers, in a comment on the finding's line: `weir:ignore`
//!   drops every finding on the line, `weir:ignore RULE[,RULE…]` only those
//!   rules; `weir:ignore-next-line` (with the same optional rules) on the
//!   line before. detect-secrets' `pragma: allowlist secret` is honoured on
//!   the line too, so an existing allowlist keeps working.

use weir_sdk::glob::matches;

/// The ignore file's default name.
pub const DEFAULT_IGNORE_FILE: &str = ".weir-scan-ignore";

/// The inline marker.
const MARKER: &str = "weir:ignore";
/// detect-secrets' inline allowlist marker.
const DETECT_SECRETS_PRAGMA: &str = "pragma: allowlist secret";

/// One entry of the ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    rule: Option<String>,
    pattern: String,
}

/// The parsed ignore file.
#[derive(Debug, Default)]
pub struct IgnoreFile {
    entries: Vec<Entry>,
}

impl IgnoreFile {
    /// Parse the file's text; a line with more than two fields is an error
    /// naming the line.
    pub fn parse(text: &str, name: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [pattern] => entries.push(Entry {
                    rule: None,
                    pattern: pattern.to_string(),
                }),
                [rule, pattern] => entries.push(Entry {
                    rule: Some(rule.to_string()),
                    pattern: pattern.to_string(),
                }),
                _ => {
                    return Err(format!(
                        "{name}:{}: the entry has {} fields; write `PATTERN` or `RULE PATTERN`",
                        i + 1,
                        fields.len()
                    ));
                }
            }
        }
        Ok(Self { entries })
    }

    /// Whether every finding in `path` is dropped (the file need not be
    /// read at all).
    pub fn drops_file(&self, path: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.rule.is_none() && matches(&e.pattern, path))
    }

    /// Whether findings of `rule` in `path` are dropped.
    pub fn drops(&self, rule: &str, path: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.rule.as_deref().is_none_or(|r| r == rule) && matches(&e.pattern, path))
    }
}

/// Whether the inline markers on `line` (or `previous`, for
/// `weir:ignore-next-line`) drop a finding of `rule`.
pub fn inline_drops(line: &str, previous: Option<&str>, rule: &str) -> bool {
    if line.contains(DETECT_SECRETS_PRAGMA) {
        return true;
    }
    if marker_covers(line, MARKER, rule) {
        return true;
    }
    previous.is_some_and(|p| marker_covers(p, "weir:ignore-next-line", rule))
}

/// Whether `line` carries `marker` (not followed by `-`, so `weir:ignore`
/// does not match `weir:ignore-next-line`) naming `rule` or no rule.
fn marker_covers(line: &str, marker: &str, rule: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        if !after.starts_with('-') {
            let list = after.trim_start();
            let named: Vec<&str> = if after.starts_with([' ', '\t']) {
                list.split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|r| looks_like_rule(r))
                    .collect()
            } else {
                Vec::new()
            };
            if named.is_empty() || named.contains(&rule) {
                return true;
            }
        }
        rest = after;
    }
    false
}

/// Rule ids are lowercase words with dashes, or advisory ids.
fn looks_like_rule(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_file_entries() {
        let f = IgnoreFile::parse(
            "# fixtures\ntests/fixtures/**\nRUSTSEC-2021-0003 Cargo.lock  # accepted\n",
            ".weir-scan-ignore",
        )
        .unwrap();
        assert!(f.drops_file("tests/fixtures/keys.pem"));
        assert!(!f.drops_file("Cargo.lock"));
        assert!(f.drops("RUSTSEC-2021-0003", "Cargo.lock"));
        assert!(!f.drops("RUSTSEC-2020-0001", "Cargo.lock"));
        let e = IgnoreFile::parse("a b c\n", ".weir-scan-ignore").unwrap_err();
        assert!(e.contains(".weir-scan-ignore:1"), "{e}");
    }

    #[test]
    fn inline_markers() {
        assert!(inline_drops(r#"key = "x" # weir:ignore"#, None, "generic-secret"));
        assert!(inline_drops(
            r#"key = "x" // weir:ignore generic-secret"#,
            None,
            "generic-secret"
        ));
        assert!(!inline_drops(
            r#"key = "x" // weir:ignore aws-access-key"#,
            None,
            "generic-secret"
        ));
        assert!(inline_drops(
            r#"key = "x" // weir:ignore aws-access-key,generic-secret"#,
            None,
            "generic-secret"
        ));
        assert!(inline_drops(
            "-----BEGIN",
            Some("# weir:ignore-next-line"),
            "private-key"
        ));
        assert!(!inline_drops("-----BEGIN", Some("# weir:ignore"), "private-key"));
        assert!(!inline_drops("x # weir:ignore-next-line", None, "private-key"));
        assert!(inline_drops(
            r#"s = "x"  # pragma: allowlist secret"#,
            None,
            "any"
        ));
    }
}
