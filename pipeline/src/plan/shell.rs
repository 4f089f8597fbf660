//! Expressions in shell text reach the shell as data, never as code.
//!
//! `run = "echo ${{ stages.a.outputs.msg }}"` must not run what `msg` says
//! (a commit message, a branch name: text anyone opening a pull request
//! writes). Pasting the value into the text would let `$(…)`, backticks
//! and `;` in it become commands, and quoting it at substitution time
//! depends on where it sits (`'…'` inside double quotes prints the quotes).
//! So weir never puts a value in shell text: each expression becomes a
//! reference to an environment variable (`WEIR_EXPR_1`, …) holding the
//! value, quoted for where it stands:
//!
//! | where the expression is | it becomes |
//! |---|---|
//! | unquoted (`echo ${{ … }}`) | `"${WEIR_EXPR_1}"` (one word, no globbing) |
//! | in double quotes (`"v=${{ … }}"`) | `${WEIR_EXPR_1}` |
//! | in single quotes (`'${{ … }}'`) | `'"${WEIR_EXPR_1}"'` (the quote closed and reopened) |
//! | in a heredoc with a bare delimiter (`<<EOF`) | `${WEIR_EXPR_1}` |
//! | in a heredoc with a quoted delimiter (`<<'EOF'`) | refused: that shell text expands nothing |
//!
//! The shell expands a variable's value once and never parses it again, so
//! the value arrives byte for byte as data. (A NUL byte cannot be in a
//! program's arguments or environment at all; such a value is refused.)

use super::expr::{self, OutputRef, Piece};

/// The variables that carry expressions' values: `WEIR_EXPR_1`, …
pub const VAR_PREFIX: &str = "WEIR_EXPR_";

/// Where in shell text an expression stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Outside quotes.
    Bare,
    /// Inside `"…"`.
    Double,
    /// Inside `'…'`.
    Single,
    /// Inside `$'…'`.
    AnsiC,
    /// In a heredoc whose delimiter is bare: expanded like `"…"`.
    Heredoc,
    /// In a heredoc whose delimiter is quoted: nothing is expanded.
    QuotedHeredoc,
    /// Inside `$((…))` or `((…))`: the value would be evaluated as
    /// arithmetic (bash runs `$(…)` in an array subscript there).
    Arithmetic,
}

/// The context of each `${{` in `text`, in order.
pub fn contexts(text: &str) -> Vec<Context> {
    #[derive(Clone, Copy, PartialEq)]
    enum Frame {
        Bare,
        Double,
        // A `$(` inside double quotes, with its open parentheses.
        Sub(usize),
        Backtick,
        // `$((…))` or `((…))`, with its open parentheses.
        Arith(usize),
    }
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut stack = vec![Frame::Bare];
    // Heredocs whose bodies start at the next newline: (delimiter, quoted).
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"${{") {
            let ctx = match stack.last() {
                Some(Frame::Double) => Context::Double,
                Some(Frame::Arith(_)) => Context::Arithmetic,
                _ => Context::Bare,
            };
            out.push(ctx);
            // Past the expression (its text is replaced whole).
            i = text[i..].find("}}").map_or(b.len(), |e| i + e + 2);
            continue;
        }
        let top = *stack.last().unwrap_or(&Frame::Bare);
        let c = b[i];
        // `$((` anywhere but in single quotes, `((` outside quotes: arithmetic.
        if top != Frame::Double && b[i..].starts_with(b"((") || b[i..].starts_with(b"$((") {
            stack.push(Frame::Arith(2));
            i += if c == b'$' { 3 } else { 2 };
            continue;
        }
        match top {
            Frame::Arith(n) => match c {
                b'(' => {
                    stack.pop();
                    stack.push(Frame::Arith(n + 1));
                }
                b')' => {
                    stack.pop();
                    if n > 1 {
                        stack.push(Frame::Arith(n - 1));
                    }
                }
                _ => {}
            },
            Frame::Double => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if b.get(i + 1) == Some(&b'(') => {
                    stack.push(Frame::Sub(1));
                    i += 1;
                }
                b'`' => stack.push(Frame::Backtick),
                _ => {}
            },
            Frame::Bare | Frame::Sub(_) | Frame::Backtick => match c {
                b'\\' => i += 1,
                b'\'' | b'$' if c == b'\'' || b.get(i + 1) == Some(&b'\'') => {
                    // `'…'` (nothing is special inside) or `$'…'` (backslash
                    // escapes).
                    let ansi = c == b'$';
                    i += if ansi { 2 } else { 1 };
                    while i < b.len() && b[i] != b'\'' {
                        if b[i..].starts_with(b"${{") {
                            out.push(if ansi { Context::AnsiC } else { Context::Single });
                            i = text[i..].find("}}").map_or(b.len(), |e| i + e + 2);
                            continue;
                        }
                        if ansi && b[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'"' => stack.push(Frame::Double),
                b'`' if top == Frame::Backtick => {
                    stack.pop();
                }
                b'`' => stack.push(Frame::Backtick),
                b'(' => {
                    if let Frame::Sub(n) = top {
                        stack.pop();
                        stack.push(Frame::Sub(n + 1));
                    }
                }
                b')' => {
                    if let Frame::Sub(n) = top {
                        stack.pop();
                        if n > 1 {
                            stack.push(Frame::Sub(n - 1));
                        }
                    }
                }
                b'<' if b[i..].starts_with(b"<<<") => {
                    // A here-string: a word follows, not a heredoc.
                    i += 3;
                    continue;
                }
                b'<' if b.get(i + 1) == Some(&b'<') => {
                    // `<<WORD`, `<<-WORD`, `<< 'WORD'`, `<<"WORD"`.
                    let mut j = i + 2;
                    if b.get(j) == Some(&b'-') {
                        j += 1;
                    }
                    while b.get(j).is_some_and(|c| *c == b' ' || *c == b'\t') {
                        j += 1;
                    }
                    let mut word = String::new();
                    let mut quoted = false;
                    while let Some(&c) = b.get(j) {
                        match c {
                            b'\'' | b'"' => {
                                quoted = true;
                                let close = c;
                                j += 1;
                                while let Some(&d) = b.get(j) {
                                    if d == close {
                                        break;
                                    }
                                    word.push(d as char);
                                    j += 1;
                                }
                            }
                            b'\\' => {
                                quoted = true;
                            }
                            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
                            _ => word.push(c as char),
                        }
                        j += 1;
                    }
                    if !word.is_empty() {
                        pending.push((word, quoted));
                    }
                    i = j;
                    continue;
                }
                b'#' if i == 0 || b[i - 1].is_ascii_whitespace() || b[i - 1] == b';' => {
                    // A comment, to the end of the line.
                    while i < b.len() && b[i] != b'\n' {
                        if b[i..].starts_with(b"${{") {
                            out.push(Context::Bare);
                            i = text[i..].find("}}").map_or(b.len(), |e| i + e + 2);
                            continue;
                        }
                        i += 1;
                    }
                    continue;
                }
                b'\n' if !pending.is_empty() => {
                    // The heredocs' bodies, one after the other.
                    i += 1;
                    for (word, quoted) in std::mem::take(&mut pending) {
                        while i < b.len() {
                            let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
                            let line = &text[i..end];
                            if line.trim_start_matches('\t') == word {
                                i = (end + 1).min(b.len());
                                break;
                            }
                            let mut k = 0;
                            while let Some(at) = line[k..].find("${{") {
                                out.push(if quoted {
                                    Context::QuotedHeredoc
                                } else {
                                    Context::Heredoc
                                });
                                k += at + 3;
                            }
                            i = (end + 1).min(b.len());
                        }
                    }
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    out
}

/// Why shell text cannot carry its expressions as data.
pub fn problem(text: &str) -> Option<String> {
    let found = contexts(text);
    let refs = expr::refs(text).len();
    if found.len() != refs {
        return Some(format!(
            "weir cannot tell where each of its {refs} expression(s) stands in this shell text (it found {}): an expression right after a backslash (`\\${{{{`) is one the shell would not see; remove the backslash or the expression",
            found.len()
        ));
    }
    if found.contains(&Context::QuotedHeredoc) {
        return Some("an expression inside a heredoc with a quoted delimiter (<<'EOF') is never expanded by the shell, so weir cannot hand it over as data; use a bare delimiter (<<EOF)".to_string());
    }
    if found.contains(&Context::Arithmetic) {
        return Some("an expression inside arithmetic ($((…)) or ((…))) would be evaluated, not read as data; put it in a variable first: n=${{ … }}, then $((n + 1))".to_string());
    }
    None
}

/// A value no program can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A reference has no value.
    Missing(OutputRef),
    /// The value holds a NUL byte.
    Nul(OutputRef),
    /// Where an expression stands cannot be told ([`problem`] says so
    /// when the pipeline is checked).
    Unplaced(String),
}

/// `text` with each expression replaced by a quoted reference to a
/// variable (named from `first`, counting up), and those variables with
/// the values `lookup` gives.
pub fn render(
    text: &str,
    first: usize,
    lookup: impl Fn(&OutputRef) -> Option<String>,
) -> Result<(String, Vec<(String, String)>), RenderError> {
    let pieces = expr::parse(text).map_err(|_| {
        RenderError::Missing(OutputRef {
            stage: String::new(),
            output: String::new(),
        })
    })?;
    if let Some(why) = problem(text) {
        return Err(RenderError::Unplaced(why));
    }
    let mut contexts = contexts(text).into_iter();
    let mut out = String::with_capacity(text.len());
    let mut vars = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r, _) => {
                let value = lookup(&r).ok_or_else(|| RenderError::Missing(r.clone()))?;
                if value.contains('\0') {
                    return Err(RenderError::Nul(r));
                }
                let name = format!("{VAR_PREFIX}{}", first + vars.len());
                match contexts.next().unwrap_or(Context::Bare) {
                    Context::Bare => out.push_str(&format!("\"${{{name}}}\"")),
                    Context::Double | Context::Heredoc => out.push_str(&format!("${{{name}}}")),
                    Context::Single => out.push_str(&format!("'\"${{{name}}}\"'")),
                    Context::AnsiC => out.push_str(&format!("'\"${{{name}}}\"$'")),
                    // Refused above.
                    Context::QuotedHeredoc | Context::Arithmetic => {
                        return Err(RenderError::Unplaced(problem(text).unwrap_or_default()));
                    }
                }
                vars.push((name, value));
            }
        }
    }
    Ok((out, vars))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Context::*;

    #[test]
    fn knows_where_each_expression_stands() {
        let e = "${{ stages.a.outputs.b }}";
        let cases: Vec<(String, Vec<Context>)> = vec![
            (format!("echo {e}"), vec![Bare]),
            (format!("echo \"v={e}\" '{e}' {e}"), vec![Double, Single, Bare]),
            (format!("echo \"$(printf %s {e})\""), vec![Bare]),
            (format!("echo \"`printf %s {e}`\""), vec![Bare]),
            (format!("echo $'x{e}'"), vec![AnsiC]),
            (format!("echo \\\"{e}"), vec![Bare]),
            (format!("echo '\"' {e}"), vec![Bare]),
            (format!("cat <<EOF\nv={e}\nEOF\necho {e}"), vec![Heredoc, Bare]),
            (format!("cat <<-'EOF' > f\n\tv={e}\n\tEOF\n"), vec![QuotedHeredoc]),
            (format!("cat << \"END\"\n{e}\nEND"), vec![QuotedHeredoc]),
            (format!("echo hi # {e}"), vec![Bare]),
            (format!("n=$((1<<4))\nfind . -name {e}"), vec![Bare]),
            (format!("read x <<< \"$y\"\necho {e}"), vec![Bare]),
            (format!("echo $(( {e} + 1 ))"), vec![Arithmetic]),
            (format!("echo \"$(( ({e}) ))\" {e}"), vec![Arithmetic, Bare]),
        ];
        for (text, want) in cases {
            assert_eq!(contexts(&text), want, "{text}");
        }
        assert!(problem(&format!("cat <<'EOF'\n{e}\nEOF")).is_some());
        assert!(problem(&format!("cat <<EOF\n{e}\nEOF")).is_none());
        assert!(problem(&format!("echo $(( {e} ))")).is_some());
        assert!(
            problem(&format!("echo \"\\{e}\" '{e}'")).is_some(),
            "a backslash hides one"
        );
    }

    #[test]
    fn values_become_quoted_variables() {
        let value = |_: &OutputRef| Some("$(id) `id` ; id".to_string());
        let (text, vars) = render(
            "echo ${{ stages.a.outputs.w }} \"${{stages.a.outputs.w}}\" 'x${{ stages.a.outputs.w }}'",
            1,
            value,
        )
        .expect("render");
        assert_eq!(
            text,
            "echo \"${WEIR_EXPR_1}\" \"${WEIR_EXPR_2}\" 'x'\"${WEIR_EXPR_3}\"''"
        );
        assert_eq!(vars.len(), 3);
        assert!(vars.iter().all(|(_, v)| v == "$(id) `id` ; id"));
        let nul = render("echo ${{ stages.a.outputs.w }}", 1, |_| Some("a\0b".into()));
        assert!(matches!(nul, Err(RenderError::Nul(_))));
    }
}
