//! Path patterns, shared by the SDK (workspace files) and the host (branch
//! names in `when`): `*` matches within one `/`-separated segment, `**`
//! any number of segments, `?` one character; as GitHub Actions' filters.
//!
//! This file has no dependencies so that both crates can compile it: the
//! host includes it with `#[path]` rather than depend on the SDK (which
//! pulls in wit-bindgen).

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| match_segments(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => match_one(p, s) && match_segments(rest, srest),
            None => false,
        },
    }
}

fn match_one(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("dist/*", "dist/app"));
        assert!(!matches("dist/*", "dist/sub/app"));
        assert!(matches("dist/**", "dist/sub/app"));
        assert!(matches("**/*.pem", "keys/a/b.pem"));
        assert!(matches("**/*.pem", "b.pem"));
        assert!(matches("./VERSION", "VERSION"));
        assert!(matches("release/*", "release/1.0"));
        assert!(!matches("feature/*", "feature/a/b"));
        assert!(matches("feature/**", "feature/a/b"));
    }
}
