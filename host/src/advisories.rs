//! The RustSec advisory database weir keeps for the `scan` stage: where it
//! lives, fetching or updating it (`weir advisories fetch`), and handing it
//! to scan stages that name none.
//!
//! It lives in weir's data directory (`$WEIR_DATA_DIR`, else
//! `$XDG_DATA_HOME/weir`, else `~/.local/share/weir`), as
//! `advisory-db/`, a shallow git clone. A `scan` stage without
//! `advisory-db` reads it (granted read-only to that stage alone); one that
//! names its own database keeps it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::plan::{Plan, PluginRef};

/// Where `weir advisories fetch` clones from by default.
pub const DEFAULT_SOURCE: &str = "https://github.com/rustsec/advisory-db.git";
/// Overrides weir's data directory.
pub const DATA_DIR_ENV: &str = "WEIR_DATA_DIR";

/// weir's data directory, if one can be named.
pub fn data_dir() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = from_env(DATA_DIR_ENV)
        .or_else(|| from_env("XDG_DATA_HOME").map(|d| d.join("weir")))
        .or_else(|| from_env("HOME").map(|d| d.join(".local/share/weir")))?;
    Some(std::path::absolute(&dir).unwrap_or(dir))
}

/// Where the database is kept.
pub fn database_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("advisory-db"))
}

/// The kept database, when there is one.
pub fn installed() -> Option<PathBuf> {
    database_dir().filter(|d| d.join("crates").is_dir())
}

/// Why the database could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No directory to keep it in.
    #[error("weir has no data directory: set {DATA_DIR_ENV}=DIR (or HOME)")]
    NoDataDir,
    /// git is not installed.
    #[error("cannot run git: {0} (install git: apt-get install git)")]
    NoGit(std::io::Error),
    /// git failed.
    #[error("git {what} failed: {stderr}")]
    Git {
        /// What was attempted.
        what: String,
        /// git's own words.
        stderr: String,
    },
    /// What was fetched is not a RustSec database.
    #[error("{from} is not a RustSec advisory database: it has no `crates/` directory")]
    NotADatabase {
        /// The source.
        from: String,
    },
    /// The directory could not be prepared.
    #[error("cannot prepare {}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a fetch left in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The database's directory.
    pub dir: PathBuf,
    /// Its commit.
    pub commit: String,
    /// The commit's date (YYYY-MM-DD).
    pub date: String,
    /// How many advisories it holds.
    pub advisories: usize,
    /// Whether it replaced an earlier copy (else it is new).
    pub updated: bool,
}

fn git(dir: Option<&Path>, args: &[&str], what: &str) -> Result<String, FetchError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .output()
        .map_err(FetchError::NoGit)?;
    if !out.status.success() {
        return Err(FetchError::Git {
            what: what.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A source git can shallow-clone: a local folder becomes a `file://` URL
/// (git ignores `--depth` for plain paths).
fn source_url(from: &str) -> String {
    let path = Path::new(from);
    if !from.contains("://") && path.is_dir() {
        let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        return format!("file://{}", abs.display());
    }
    from.to_string()
}

/// Clone `from` into `dir`, or update the clone already there, to the
/// source's newest commit.
pub fn fetch(from: &str, dir: &Path) -> Result<Fetched, FetchError> {
    let url = source_url(from);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::Io { path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let updated = dir.join(".git").is_dir();
    if updated {
        git(
            Some(dir),
            &["fetch", "--quiet", "--depth", "1", &url, "HEAD"],
            &format!("fetch from {from}"),
        )?;
        let fetched = dir.join(".git/FETCH_HEAD");
        if !git(Some(dir), &["ls-tree", "--name-only", "FETCH_HEAD"], "ls-tree")?
            .lines()
            .any(|l| l == "crates")
        {
            let _ = std::fs::remove_file(fetched);
            return Err(FetchError::NotADatabase {
                from: from.to_string(),
            });
        }
        git(Some(dir), &["reset", "--quiet", "--hard", "FETCH_HEAD"], "reset")?;
    } else {
        // Cloned beside, then moved in: an interrupted clone leaves no
        // half database where scan would read it.
        let tmp = parent.join(format!(".advisory-db.{}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let tmp_arg = tmp.to_string_lossy().to_string();
        if let Err(e) = git(
            None,
            &["clone", "--quiet", "--depth", "1", &url, &tmp_arg],
            &format!("clone of {from}"),
        ) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if !tmp.join("crates").is_dir() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(FetchError::NotADatabase {
                from: from.to_string(),
            });
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
    }
    let commit = git(Some(dir), &["rev-parse", "HEAD"], "rev-parse")?;
    let date = git(Some(dir), &["log", "-1", "--format=%cs"], "log")?;
    Ok(Fetched {
        dir: dir.to_path_buf(),
        commit,
        date,
        advisories: count(&dir.join("crates")),
        updated,
    })
}

/// Advisories (`crates/NAME/RUSTSEC-….md`) under `crates`.
fn count(crates: &Path) -> usize {
    let Ok(names) = std::fs::read_dir(crates) else {
        return 0;
    };
    names
        .flatten()
        .filter_map(|krate| std::fs::read_dir(krate.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".md"))
        .count()
}

/// Give every built-in `scan` stage that names no `advisory-db` (and
/// checks dependencies) the kept database, `db`, read-only.
pub fn default_for_scan(plan: &mut Plan, db: &Path) {
    for stage in &mut plan.stages {
        if !matches!(&stage.plugin, PluginRef::Builtin(name) if name == "scan") {
            continue;
        }
        if stage.with.is_null() {
            stage.with = serde_json::Value::Object(Default::default());
        }
        let Some(with) = stage.with.as_object_mut() else {
            continue;
        };
        let checks_deps = match with.get("checks").and_then(|c| c.as_array()) {
            None => true,
            Some(checks) => checks.iter().any(|c| c == "dependencies"),
        };
        if with.contains_key("advisory-db") || !checks_deps {
            continue;
        }
        with.insert("advisory-db".into(), db.to_string_lossy().to_string().into());
        if !stage.grants.read.iter().any(|r| r == db) {
            stage.grants.read.push(db.to_path_buf());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_is_cloned_as_a_file_url() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = source_url(&dir.path().to_string_lossy());
        assert!(url.starts_with("file:///"), "{url}");
        assert_eq!(source_url(DEFAULT_SOURCE), DEFAULT_SOURCE);
    }
}
