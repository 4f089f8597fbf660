//! Path patterns: stage inputs (`inputs = [...]`), branch and tag
//! filters. The grammar is the SDK's, compiled here from the same file.

/// The pattern grammar (globset's), shared with the SDK.
#[path = "../../sdk/src/pattern.rs"]
pub mod pattern;

use std::path::{Component, Path};

/// Whether `glob` is a usable input pattern: relative, inside the
/// workspace, and a pattern (`!` first excludes).
pub fn check_glob(glob: &str) -> Result<(), String> {
    let path = Path::new(glob.trim_start_matches('!'));
    if glob.trim().is_empty() {
        return Err("is empty".into());
    }
    if path.is_absolute() {
        return Err("is absolute; inputs are paths inside the workspace".into());
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("leaves the workspace (`..`)".into());
    }
    pattern::compile(glob.trim_start_matches('!')).map_err(|e| e.reason)?;
    Ok(())
}
