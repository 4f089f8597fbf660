//! Finding workspace files by pattern: `*` matches within one path
//! segment, `**` any number of segments, `?` one character, `[a-z]` a
//! class, `{a,b}` either; `!pattern` in a list excludes (see
//! [`Patterns`]).

pub use crate::pattern::{PatternError, Patterns, compile, matches};

/// Every file under the workspace (the current directory as a plugin sees
/// it) whose relative path matches one of `patterns`, sorted. `.git` and
/// `.weir` directories are skipped, and so is what another stage removes
/// while the walk goes on (stages of a run share the workspace).
pub fn find_files(patterns: &[String]) -> std::io::Result<Vec<String>> {
    let patterns = Patterns::new(patterns)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut found = Vec::new();
    walk(std::path::Path::new("."), "", &patterns, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(
    dir: &std::path::Path,
    prefix: &str,
    patterns: &Patterns,
    found: &mut Vec<String>,
) -> std::io::Result<()> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if gone(&e) && !prefix.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" || name == ".weir" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            walk(&entry.path(), &rel, patterns, found)?;
        } else if kind.is_file() && patterns.matches(&rel) {
            found.push(rel);
        }
    }
    Ok(())
}
