//! Workspace path patterns: `*` matches within one path segment, `**`
//! matches any number of segments, `?` one character.

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

/// Every file under the workspace (the current directory as a plugin sees
/// it) whose relative path matches one of `patterns`, sorted. `.git` and
/// `.weir` directories are skipped.
pub fn find_files(patterns: &[String]) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    walk(std::path::Path::new("."), "", patterns, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(
    dir: &std::path::Path,
    prefix: &str,
    patterns: &[String],
    found: &mut Vec<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" || name == ".weir" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &rel, patterns, found)?;
        } else if kind.is_file() && patterns.iter().any(|p| matches(p, &rel)) {
            found.push(rel);
        }
    }
    Ok(())
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
    }
}
