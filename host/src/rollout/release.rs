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
    pub(super) replicas: u32,
    pub(super) env: Vec<(String, String)>,
}

pub(super) fn release_of(config: &str, run_id: &str) -> Result<ReleaseSpec, String> {
    let v: Value =
        serde_json::from_str(config).map_err(|e| format!("the stage's `with` is not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let service = text("service").ok_or("a deploy stage's `with` needs `service = \"NAME\"`")?;
    let artifact = text("artifact")
        .ok_or("a deploy stage's `with` needs `artifact`, the program to run (e.g. \"${{ stages.build.outputs.artifact }}\")")?;
    // The run id is unique; its tail is short enough for a label.
    let version = text("version").unwrap_or_else(|| run_id.rsplit('-').next().unwrap_or(run_id).to_string());
    for (what, name) in [("service", &service), ("version", &version)] {
        crate::target::daemon::check_name(what, name).map_err(|e| e.to_string())?;
    }
    let replicas = match v.get("replicas") {
        None => 1,
        Some(r) => r
            .as_u64()
            .filter(|n| (1..=64).contains(n))
            .ok_or("`replicas` must be a whole number from 1 to 64")? as u32,
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
        replicas,
        env,
    })
}

/// Take `service`'s rollout lock in the target directory, or say which
/// run holds it.
pub(super) fn lock_service(dir: &std::path::Path, service: &str, run: &str) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(|e| format!("cannot create {}: {e}", locks.display()))?;
    let path = locks.join(format!("{service}.lock"));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(format!(
            "run {} is rolling out `{service}` now; one rollout per service at a time, so run this stage again when it ends",
            holder.trim()
        ));
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
