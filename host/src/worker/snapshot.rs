//! A run's workspace as its last finished stage left it, kept in
//! JetStream's object store (`weir-workspaces`, one object per run), so
//! the worker that takes the run up after another died starts from it.

use std::path::Path;

use crate::fleet::Fleet;

/// Keep `workspace` as run `run`'s, through the file `scratch`.
pub async fn keep(fleet: &Fleet, run: &str, workspace: &Path, scratch: &Path) -> Result<u64, String> {
    let (from, to) = (workspace.to_path_buf(), scratch.to_path_buf());
    tokio::task::spawn_blocking(move || pack(&from, &to))
        .await
        .map_err(|e| format!("packing the workspace failed: {e}"))??;
    let mut file = tokio::fs::File::open(scratch)
        .await
        .map_err(|e| format!("cannot read {}: {e}", scratch.display()))?;
    let kept = fleet
        .workspaces
        .put(run, &mut file)
        .await
        .map_err(|e| format!("cannot keep the workspace in NATS: {e}"))?;
    let _ = tokio::fs::remove_file(scratch).await;
    Ok(kept.size as u64)
}

fn pack(workspace: &Path, to: &Path) -> Result<(), String> {
    let file = std::fs::File::create(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    // Links stay links: a stage's symlink is the stage's, not what it
    // points to.
    tar.follow_symlinks(false);
    tar.append_dir_all(".", workspace)
        .and_then(|()| tar.into_inner().map(drop))
        .map_err(|e| format!("cannot pack the workspace {}: {e}", workspace.display()))
}

/// Bring run `run`'s kept workspace into `workspace` (made fresh);
/// false when none was kept (no stage had finished).
pub async fn restore(fleet: &Fleet, run: &str, workspace: &Path, scratch: &Path) -> Result<bool, String> {
    let mut object = match fleet.workspaces.get(run).await {
        Ok(o) => o,
        Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
            return Ok(false);
        }
        Err(e) => return Err(format!("cannot read the kept workspace from NATS: {e}")),
    };
    let mut file = tokio::fs::File::create(scratch)
        .await
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    tokio::io::copy(&mut object, &mut file)
        .await
        .map_err(|e| format!("cannot read the kept workspace from NATS: {e}"))?;
    drop(file);
    let (from, to) = (scratch.to_path_buf(), workspace.to_path_buf());
    tokio::task::spawn_blocking(move || unpack(&from, &to))
        .await
        .map_err(|e| format!("unpacking the workspace failed: {e}"))??;
    let _ = tokio::fs::remove_file(scratch).await;
    Ok(true)
}

fn unpack(from: &Path, workspace: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(workspace);
    std::fs::create_dir_all(workspace).map_err(|e| format!("cannot create {}: {e}", workspace.display()))?;
    let file = std::fs::File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // `unpack` keeps every entry inside `workspace` (no `..`, no writing
    // through a link out of it).
    archive.unpack(workspace).map_err(|e| {
        format!(
            "cannot unpack the kept workspace into {}: {e}",
            workspace.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_comes_back_as_it_was_kept() {
        let dir = std::env::temp_dir().join(format!("weir-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ws = dir.join("ws");
        std::fs::create_dir_all(ws.join("target/debug")).unwrap();
        std::fs::write(ws.join("target/debug/app"), b"binary").unwrap();
        std::fs::write(ws.join("README"), b"hello").unwrap();
        std::os::unix::fs::symlink("README", ws.join("link")).unwrap();
        pack(&ws, &dir.join("ws.tar")).unwrap();
        let back = dir.join("back");
        std::fs::create_dir_all(&back).unwrap();
        std::fs::write(back.join("stale"), b"from before").unwrap();
        unpack(&dir.join("ws.tar"), &back).unwrap();
        assert_eq!(std::fs::read(back.join("target/debug/app")).unwrap(), b"binary");
        assert_eq!(
            std::fs::read_link(back.join("link")).unwrap(),
            Path::new("README")
        );
        assert!(
            !back.join("stale").exists(),
            "the workspace is the kept one, not a mix"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
