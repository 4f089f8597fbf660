//! The release a deploy stage rolls out, as its `with` describes it; the
//! lock that keeps two runs from rolling out one service at once; and
//! the outputs a deploy stage leaves.

use super::*;

/// The release a deploy stage's `with` describes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReleaseSpec {
    pub(super) service: String,
    pub(super) version: String,
    pub(super) artifact: String,
    /// Whether `artifact` is an image (`with.image`), run as containers.
    pub(super) image: bool,
    pub(super) replicas: u32,
    pub(super) env: Vec<(String, String)>,
}

/// What is wrong with a deploy stage's `with`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// Not JSON (the host wrote it, so this is a bug or a tampered record).
    #[error("the stage's `with` is not JSON: {0}")]
    NotJson(String),
    /// No `service`.
    #[error("a deploy stage's `with` needs `service = \"NAME\"`")]
    NoService,
    /// No `artifact`.
    #[error(
        "a deploy stage's `with` needs `artifact`, the program to run (e.g. \"${{{{ stages.build.outputs.artifact }}}}\"), or for the container deployer `image` (e.g. \"${{{{ stages.image.outputs.image }}}}\")"
    )]
    NoArtifact,
    /// Both `artifact` and `image`.
    #[error(
        "a deploy stage's `with` names both `artifact` (a program) and `image`; a release is one or the other"
    )]
    Both,
    /// A service or version that cannot be a file name and a label.
    #[error(transparent)]
    Name(#[from] crate::target::daemon::BadName),
    /// `replicas` out of range.
    #[error("`replicas` must be a whole number from 1 to 64")]
    Replicas,
}

/// Why a rollout could not take its service's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be made or opened.
    #[error("cannot open {}: {error}", path.display())]
    Open {
        /// The directory or file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// Another run holds it.
    #[error(
        "run {holder} is rolling out `{service}` now; one rollout per service at a time, so run this stage again when it ends"
    )]
    Held {
        /// The service.
        service: String,
        /// The run that holds it.
        holder: String,
    },
}

pub(super) fn release_of(config: &str, run_id: &str) -> Result<ReleaseSpec, ReleaseError> {
    let v: Value = serde_json::from_str(config).map_err(|e| ReleaseError::NotJson(e.to_string()))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let service = text("service").ok_or(ReleaseError::NoService)?;
    // A container release names its image where a process release names
    // its program: either is what the release runs.
    let (artifact, image) = match (text("artifact"), text("image")) {
        (Some(_), Some(_)) => return Err(ReleaseError::Both),
        (Some(a), None) => (a, false),
        (None, Some(i)) => (i, true),
        (None, None) => return Err(ReleaseError::NoArtifact),
    };
    // The run id is unique; its tail is short enough for a label.
    let version = text("version").unwrap_or_else(|| run_id.rsplit('-').next().unwrap_or(run_id).to_string());
    for (what, name) in [("service", &service), ("version", &version)] {
        crate::target::daemon::check_name(what, name)?;
    }
    let replicas = match v.get("replicas") {
        None => 1,
        Some(r) => r
            .as_u64()
            .filter(|n| (1..=64).contains(n))
            .ok_or(ReleaseError::Replicas)? as u32,
    };
    let env = v
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ReleaseSpec {
        service,
        version,
        artifact,
        image,
        replicas,
        env,
    })
}

/// Take `service`'s rollout lock in the target directory, or say which
/// run holds it.
pub(super) fn lock_service(
    dir: &std::path::Path,
    service: &str,
    run: &str,
) -> Result<std::fs::File, LockError> {
    use std::io::{Read, Seek, Write};
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(|error| LockError::Open {
        path: locks.clone(),
        error,
    })?;
    let path = locks.join(format!("{service}.lock"));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| LockError::Open {
            path: path.clone(),
            error,
        })?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(LockError::Held {
            service: service.to_string(),
            holder: holder.trim().to_string(),
        });
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(run.as_bytes());
    Ok(file)
}

pub(super) fn outputs(release: &ReleaseSpec, address: Option<String>) -> Vec<(String, String)> {
    let mut out = vec![
        ("service".to_string(), release.service.clone()),
        ("version".to_string(), release.version.clone()),
    ];
    if let Some(a) = address {
        out.push(("url".to_string(), format!("http://{a}")));
    }
    out
}
