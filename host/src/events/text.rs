//! Text fit for a terminal: one line, printable, cut to a width.

/// Cut `s` to `width` characters, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    let s = printable(&s).into_owned();
    if s.chars().count() <= width {
        s
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// `s` with control characters (other than tab) and the invisible Unicode
/// characters that reorder or break text (bidi overrides, line and
/// paragraph separators) shown as escapes, so text from a plugin cannot
/// drive a terminal, forge lines or disguise itself.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) && (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
