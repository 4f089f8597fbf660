//! Finding workspace files by pattern: `*` matches within one path
//! segment, `**` any number of segments, `?` one character.

pub use crate::pattern::matches;

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
