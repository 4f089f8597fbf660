//! What the local target remembers across restarts, in
//! `.weir/target/state.json`: each service's router port, its traffic
//! split, and its releases (which version is stable, which is a candidate,
//! and how to start each again). Written whole to a temporary file and
//! renamed over the old one, so a crash leaves the old state or the new,
//! never half of either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseState {
    /// Being rolled out; not trusted yet.
    Candidate,
    /// Serving; what a rollback returns to.
    Stable,
    /// Was stable; replaced by a newer promotion.
    Superseded,
    /// Abandoned by a rollback (or by a restart mid-rollout).
    RolledBack,
}

impl ReleaseState {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Candidate => "candidate",
            ReleaseState::Stable => "stable",
            ReleaseState::Superseded => "superseded",
            ReleaseState::RolledBack => "rolled-back",
        }
    }
}

/// How to start one instance of a release again: the program is the
/// target's own copy, so pruning the run that built it loses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// The target's copy of the build artifact.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (besides `PORT`).
    pub env: Vec<(String, String)>,
    /// The readiness path.
    pub readiness_path: String,
    /// A container release: its image (by digest) and limits; `program`
    /// and `args` are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<super::podman::ContainerLaunch>,
}

/// One version of a service the target was asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The version.
    pub version: String,
    /// Where it stands.
    pub state: ReleaseState,
    /// The run that deployed it, when a run did.
    pub run: Option<String>,
    /// When it was first deployed, ms since the epoch.
    pub deployed_ms: u64,
    /// When its state last changed, ms since the epoch.
    pub changed_ms: u64,
    /// Why it was rolled back, when it was.
    pub reason: Option<String>,
    /// How many instances it ran at most.
    pub replicas: u32,
    /// How to start it again.
    pub launch: Launch,
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The tenant whose run started it first; only its runs may touch it
    /// (`None` in a state written before tenants were kept: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The router's port on 127.0.0.1, kept across restarts.
    pub port: u16,
    /// The traffic split, version to weight.
    pub weights: BTreeMap<String, u32>,
    /// Every release, oldest first.
    pub releases: Vec<Release>,
}

impl ServiceState {
    /// The tenant it belongs to.
    pub fn owner(&self) -> &str {
        self.tenant.as_deref().unwrap_or(DEFAULT_OWNER)
    }

    /// The stable release, if any.
    pub fn stable(&self) -> Option<&Release> {
        self.releases
            .iter()
            .rev()
            .find(|r| r.state == ReleaseState::Stable)
    }

    /// The newest release of `version`.
    pub fn release_mut(&mut self, version: &str) -> Option<&mut Release> {
        self.releases.iter_mut().rev().find(|r| r.version == version)
    }
}

/// The tenant of a service started without one (the operator, or a state
/// from before tenants were kept).
pub const DEFAULT_OWNER: &str = "default";

/// Whether a call of `tenant` (`None`: the operator) may touch `service`
/// as `state` knows it; why not, if not.
pub fn may_touch(state: &TargetState, service: &str, tenant: Option<&str>) -> Result<(), String> {
    let (Some(tenant), Some(s)) = (tenant, state.services.get(service)) else {
        return Ok(());
    };
    if s.owner() == tenant {
        return Ok(());
    }
    Err(format!(
        "service `{service}` on this target belongs to tenant `{}`; tenant `{tenant}` may not deploy over, read, promote or roll back it (service names are shared by every tenant of a host: name yours another way)",
        s.owner()
    ))
}

/// Everything the target remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// The `/metrics` port on 127.0.0.1, kept across restarts.
    pub metrics_port: u16,
    /// Services by name.
    pub services: BTreeMap<String, ServiceState>,
}

/// Most releases remembered per service; the oldest non-stable ones go
/// first.
pub const MAX_RELEASES: usize = 100;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid state.
    #[error(
        "{path} is not valid target state ({source}); move it aside to start the target with no services"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl TargetState {
    /// The state in `file`, or an empty one when there is none.
    pub fn load(file: &Path) -> Result<Self, StateError> {
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: file.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Io {
                path: file.display().to_string(),
                source,
            }),
        }
    }

    /// Write the state to `file` atomically (temporary file, fsync,
    /// rename).
    pub fn save(&self, file: &Path) -> Result<(), StateError> {
        use std::io::Write;
        let io = |source| StateError::Io {
            path: file.display().to_string(),
            source,
        };
        let tmp = file.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, file).map_err(io)?;
        // The rename itself is durable once the directory is synced.
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Forget the oldest releases of each service beyond
    /// [`MAX_RELEASES`], never the stable one or a candidate.
    pub fn trim(&mut self) {
        for s in self.services.values_mut() {
            while s.releases.len() > MAX_RELEASES {
                let Some(i) = s
                    .releases
                    .iter()
                    .position(|r| !matches!(r.state, ReleaseState::Stable | ReleaseState::Candidate))
                else {
                    break;
                };
                s.releases.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, state: ReleaseState) -> Release {
        Release {
            version: version.into(),
            state,
            run: None,
            deployed_ms: 1,
            changed_ms: 1,
            reason: None,
            replicas: 1,
            launch: Launch {
                program: "/bin/true".into(),
                args: vec![],
                env: vec![],
                readiness_path: "/".into(),
                container: None,
            },
        }
    }

    #[test]
    fn saves_and_loads_atomically_and_trims_old_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("state.json");
        assert_eq!(TargetState::load(&file).expect("empty"), TargetState::default());
        let mut state = TargetState::default();
        let web = state.services.entry("web".into()).or_default();
        web.port = 8080;
        web.releases.push(release("v1", ReleaseState::Stable));
        for i in 0..MAX_RELEASES + 5 {
            web.releases
                .push(release(&format!("old{i}"), ReleaseState::RolledBack));
        }
        web.releases.push(release("v2", ReleaseState::Candidate));
        state.trim();
        let web = &state.services["web"];
        assert_eq!(web.releases.len(), MAX_RELEASES);
        assert_eq!(web.stable().map(|r| r.version.as_str()), Some("v1"));
        assert!(web.releases.iter().any(|r| r.version == "v2"));
        state.save(&file).expect("save");
        assert!(!file.with_extension("json.tmp").exists());
        assert_eq!(TargetState::load(&file).expect("load"), state);
        std::fs::write(&file, "{").expect("write");
        let err = TargetState::load(&file).expect_err("corrupt");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn a_service_is_its_tenant_s_alone() {
        let mut state = TargetState::default();
        assert!(
            may_touch(&state, "web", Some("acme")).is_ok(),
            "a new service is anyone's to start"
        );
        state.services.insert(
            "web".into(),
            ServiceState {
                tenant: Some("acme".into()),
                ..ServiceState::default()
            },
        );
        state.services.insert("old".into(), ServiceState::default());
        assert!(may_touch(&state, "web", Some("acme")).is_ok());
        let refused = may_touch(&state, "web", Some("globex")).expect_err("another tenant's");
        assert!(refused.contains("belongs to tenant `acme`"), "{refused}");
        assert!(may_touch(&state, "web", None).is_ok(), "the operator may");
        assert!(
            may_touch(&state, "old", Some("default")).is_ok(),
            "an old state's services are default's"
        );
        assert!(may_touch(&state, "old", Some("acme")).is_err());
    }
}
