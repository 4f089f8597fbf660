//! Path patterns: stage inputs (`inputs = [...]`), branch and tag
//! filters. The grammar is the SDK's, compiled here from the same file.

/// The pattern grammar (globset's), shared with the SDK.
#[path = "../../sdk/src/pattern.rs"]
pub mod pattern;

use std::path::{Component, Path};

/// Why an input pattern is refused; each reads after the pattern
/// ("`/etc` is absolute; ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Blank.
    #[error("is empty")]
    Empty,
    /// `/etc/...`.
    #[error("is absolute; inputs are paths inside the workspace")]
    Absolute,
    /// `../x`.
    #[error("leaves the workspace (`..`)")]
    Outside,
    /// Not a pattern.
    #[error("{0}")]
    Pattern(String),
}

/// Whether `glob` is a usable input pattern: relative, inside the
/// workspace, and a pattern (`!` first excludes).
pub fn check_glob(glob: &str) -> Result<(), GlobError> {
    let path = Path::new(glob.trim_start_matches('!'));
    if glob.trim().is_empty() {
        return Err(GlobError::Empty);
    }
    if path.is_absolute() {
        return Err(GlobError::Absolute);
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(GlobError::Outside);
    }
    pattern::compile(glob.trim_start_matches('!')).map_err(|e| GlobError::Pattern(e.reason))?;
    Ok(())
}
