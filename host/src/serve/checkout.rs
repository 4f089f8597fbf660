//! The code a server run builds: the repository fetched at the run's
//! commit into a directory of its own. The server's own git does this,
//! outside any sandbox, as a forge's runner would: it runs no hook, no
//! filter (git-lfs) and no code of the repository, reads none of the
//! machine's or the user's git configuration, and leaves no remote (whose
//! URL may hold credentials) in the checkout, which stages may read.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long fetching a commit may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// How long asking a remote which commit a ref names may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a repository's code could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    /// git failed.
    #[error("git {what} failed: {why}")]
    Git {
        /// What it was doing.
        what: String,
        /// Its last words.
        why: String,
    },
    /// The ref names no branch, tag or commit of the repository.
    #[error("`{0}` is not a branch, tag or commit of the repository")]
    NoSuchRef(String),
}

/// Is `text` a full commit id?
pub fn is_commit(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn git(
    args: &[&str],
    dir: Option<&Path>,
    timeout: Duration,
    what: &str,
) -> Result<String, CheckoutError> {
    let mut command = tokio::process::Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "filter.lfs.smudge=",
            "-c",
            "filter.lfs.process=",
            "-c",
            "filter.lfs.required=false",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let failed = |why: String| CheckoutError::Git {
        what: what.to_string(),
        why,
    };
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| failed(format!("it took longer than {}s", timeout.as_secs())))?
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // git's own verdict (`fatal: …`) says most; else its last line.
        let last = stderr
            .lines()
            .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no output");
        return Err(failed(last.trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The commit `git_ref` (a branch, a tag or a commit id) names in the
/// repository at `url`.
pub async fn resolve(url: &str, git_ref: &str) -> Result<String, CheckoutError> {
    if is_commit(git_ref) {
        return Ok(git_ref.to_ascii_lowercase());
    }
    if git_ref.starts_with('-') || git_ref.is_empty() {
        return Err(CheckoutError::NoSuchRef(git_ref.to_string()));
    }
    let listed = git(
        &["ls-remote", "--", url, git_ref],
        None,
        RESOLVE_TIMEOUT,
        "ls-remote",
    )
    .await?;
    let refs: Vec<(&str, &str)> = listed.lines().filter_map(|l| l.split_once('\t')).collect();
    let wanted = [
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/tags/{git_ref}"),
        git_ref.to_string(),
    ];
    wanted
        .iter()
        .find_map(|w| {
            refs.iter()
                .find(|(_, name)| name == w)
                .map(|(sha, _)| sha.to_string())
        })
        .ok_or_else(|| CheckoutError::NoSuchRef(git_ref.to_string()))
}

/// Fetch `commit` of the repository at `url` into `dir` (made fresh) and
/// check it out, detached. `also` is a ref to fetch when the commit cannot
/// be fetched by its id (a pull request's head on a forge that does not
/// serve commits by id).
pub async fn checkout(url: &str, commit: &str, also: Option<&str>, dir: &Path) -> Result<(), CheckoutError> {
    if !is_commit(commit) {
        return Err(CheckoutError::NoSuchRef(commit.to_string()));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| CheckoutError::Git {
        what: "init".into(),
        why: format!("cannot create {}: {e}", dir.display()),
    })?;
    git(&["init", "-q"], Some(dir), RESOLVE_TIMEOUT, "init").await?;
    // Fetched by URL, with no remote: the URL (which may hold a token) is
    // written nowhere in the checkout.
    let by_id = git(
        &["fetch", "-q", "--depth", "1", "--", url, commit],
        Some(dir),
        FETCH_TIMEOUT,
        "fetch",
    )
    .await;
    if by_id.is_err() {
        let refspec = also.unwrap_or("+refs/heads/*:refs/remotes/origin/*");
        git(
            &["fetch", "-q", "--", url, refspec],
            Some(dir),
            FETCH_TIMEOUT,
            "fetch",
        )
        .await?;
    }
    git(
        &["checkout", "-q", "--detach", commit],
        Some(dir),
        RESOLVE_TIMEOUT,
        "checkout",
    )
    .await?;
    // FETCH_HEAD names the URL.
    let _ = std::fs::remove_file(dir.join(".git/FETCH_HEAD"));
    Ok(())
}

/// `file` inside the checkout `dir`, as a regular file that is there
/// (not a symlink out of it): the pipeline a server run reads.
pub fn inside(dir: &Path, file: &Path) -> Result<std::path::PathBuf, String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(file);
    let real = path
        .canonicalize()
        .map_err(|e| format!("{} is not in the repository at this commit ({e})", file.display()))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "{} leads out of the repository (a symlink?)",
            file.display()
        ));
    }
    if !real.is_file() {
        return Err(format!("{} is not a file", file.display()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn a_branch_resolves_to_its_commit_and_checks_out_detached() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        sh(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("pipeline.toml"), "one").unwrap();
        sh(&repo, &["add", "."]);
        sh(&repo, &["commit", "-q", "-m", "one"]);
        let first = sh(&repo, &["rev-parse", "HEAD"]);
        std::fs::write(repo.join("pipeline.toml"), "two").unwrap();
        sh(&repo, &["commit", "-q", "-am", "two"]);
        let url = repo.display().to_string();
        let main = resolve(&url, "main").await.unwrap();
        assert_eq!(main, sh(&repo, &["rev-parse", "HEAD"]));
        assert!(matches!(
            resolve(&url, "nope").await,
            Err(CheckoutError::NoSuchRef(_))
        ));
        assert!(matches!(
            resolve(&url, "--upload-pack=x").await,
            Err(CheckoutError::NoSuchRef(_))
        ));
        let out = tmp.path().join("out");
        checkout(&url, &first, None, &out).await.unwrap();
        assert_eq!(std::fs::read_to_string(out.join("pipeline.toml")).unwrap(), "one");
        assert_eq!(sh(&out, &["rev-parse", "HEAD"]), first);
        assert_eq!(sh(&out, &["remote"]), "", "no remote, with its URL, stays behind");
        assert!(!out.join(".git/FETCH_HEAD").exists());
    }

    #[test]
    fn a_pipeline_that_leads_out_of_the_checkout_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("co");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("pipeline.toml"), "x").unwrap();
        std::fs::write(tmp.path().join("secret.toml"), "x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.toml"), dir.join("evil.toml")).unwrap();
        assert!(inside(&dir, Path::new("pipeline.toml")).is_ok());
        assert!(
            inside(&dir, Path::new("evil.toml"))
                .unwrap_err()
                .contains("leads out")
        );
        assert!(
            inside(&dir, Path::new("../secret.toml"))
                .unwrap_err()
                .contains("leads out")
        );
        assert!(inside(&dir, Path::new("sub")).unwrap_err().contains("not a file"));
        assert!(inside(&dir, Path::new("nope.toml")).is_err());
    }
}
