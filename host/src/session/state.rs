//! Where weir keeps its state: the run history, approvals, artifacts,
//! reports and the deployment target's socket. A session and every
//! command that reads the history find them here.

use std::path::{Path, PathBuf};

/// Where run state lives when `WEIR_STATE_DIR` does not say: `.weir` in
/// the working directory.
pub const STATE_DIR: &str = ".weir";

/// The variable that moves the state directory.
pub const STATE_DIR_ENV: &str = "WEIR_STATE_DIR";

/// The state directory a long-lived process chose for itself
/// ([`choose_state_dir`]), over `$WEIR_STATE_DIR`.
static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Keep this process's state in `dir` (`weir serve`'s `data-dir`), before
/// anything reads [`state_dir`]. The first choice stands; it returns the
/// directory in use.
pub fn choose_state_dir(dir: &Path) -> PathBuf {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    CHOSEN.get_or_init(|| dir).clone()
}

/// Where weir keeps its state (run history, approvals, artifacts, the
/// deployment target and its control socket): `$WEIR_STATE_DIR`, else
/// `.weir` in the working directory. Absolute. It must never be inside a
/// run's workspace ([`state_outside`]).
pub fn state_dir() -> PathBuf {
    if let Some(dir) = CHOSEN.get() {
        return dir.clone();
    }
    let dir = std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}

/// weir's state directory is inside a run's workspace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "weir keeps its state in {}, which is inside the workspace {}: a stage could rewrite the run history and approvals, and reach the deployment target's control socket; keep the state elsewhere with {STATE_DIR_ENV}=DIR (outside the workspace), or use a workspace that does not contain it",
    state.display(),
    workspace.display()
)]
pub struct StateInside {
    /// The state directory.
    pub state: PathBuf,
    /// The workspace.
    pub workspace: PathBuf,
}

/// Refuse `workspace` when weir's state directory is inside it: a stage
/// could then rewrite the history and approvals (approving its own
/// protected deploy), forge cache rows, and reach the deployment target's
/// control socket.
pub fn state_outside(workspace: &Path) -> Result<(), StateInside> {
    let state = state_dir();
    // Made first, so what is compared is where it really is (a symlink on
    // the way resolved); the run records there anyway.
    let _ = std::fs::create_dir_all(&state);
    let state = state.canonicalize().unwrap_or(state);
    let workspace = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    if state.starts_with(&workspace) {
        return Err(StateInside { state, workspace });
    }
    Ok(())
}

/// `.weir/runs/RUN` (in the state directory), absolute: the run's
/// workspace (unless given), reports and artifacts live here.
pub fn run_dir(run_id: &str) -> PathBuf {
    state_dir().join("runs").join(run_id)
}

/// `.weir/target` (in the state directory), absolute: it names a Unix
/// socket the target process binds, whatever its working directory.
pub fn target_dir() -> PathBuf {
    state_dir().join("target")
}
