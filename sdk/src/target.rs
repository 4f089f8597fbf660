//! For deployer plugins that drive weir's target through the `runtime`
//! import: what the built-in `deploy` (processes) and `container`
//! (podman) deployers share once their instances are started. Traffic,
//! promotion and rollback are the router's whatever an instance is.

use crate::runtime::{self, Instance};
use crate::{DeploymentStatus, Failure, HostError};

/// A refused or failed host call as a failure that says what was being
/// done: `starting web v2: … (denied)`.
pub fn failure(what: &str, e: HostError) -> Failure {
    let (kind, message) = match e {
        HostError::Denied(m) => ("denied", m),
        HostError::Unavailable(m) => ("unavailable", m),
        HostError::Invalid(m) => ("invalid", m),
        HostError::Limit(m) => ("limit", m),
        HostError::Failed(m) => ("failed", m),
    };
    Failure::new(format!("{what}: {message} ({kind})"))
}

/// The instances of `service`.
pub fn instances(service: &str) -> Result<Vec<Instance>, Failure> {
    runtime::instances(service).map_err(|e| failure("listing instances", e))
}

/// What the target runs for `service`: ready instances per version, with
/// `weights` as the split just set (empty when none was).
pub fn status(service: &str, weights: Vec<(String, u32)>) -> Result<DeploymentStatus, Failure> {
    let mut ready: Vec<(String, u32)> = Vec::new();
    for i in instances(service)?.iter().filter(|i| i.ready) {
        match ready.iter_mut().find(|(v, _)| *v == i.version) {
            Some((_, n)) => *n += 1,
            None => ready.push((i.version.clone(), 1)),
        }
    }
    Ok(DeploymentStatus {
        service: service.into(),
        weights,
        ready,
    })
}

/// Set the traffic split of `service`.
pub fn set_traffic(service: &str, weights: Vec<(String, u32)>) -> Result<DeploymentStatus, Failure> {
    runtime::set_weights(service, &weights).map_err(|e| failure("setting the traffic split", e))?;
    status(service, weights)
}

/// Promote: traffic to `version` only, then drain and stop every other
/// version.
pub fn promote(service: &str, version: &str) -> Result<DeploymentStatus, Failure> {
    let weights = vec![(version.to_string(), 100)];
    runtime::set_weights(service, &weights).map_err(|e| failure("moving all traffic", e))?;
    for i in instances(service)?.into_iter().filter(|i| i.version != version) {
        crate::log::info(&format!("stopping {} ({} {})", i.id, i.service, i.version));
        runtime::stop(&i.id).map_err(|e| failure("stopping an instance", e))?;
    }
    status(service, weights)
}

/// Roll back `version`: traffic first to whatever else is ready (the
/// stable version), then its instances stopped. The host puts the service
/// on its stable release afterwards whatever this did.
pub fn roll_back(service: &str, version: &str) -> Result<DeploymentStatus, Failure> {
    let others: Vec<String> = instances(service)?
        .into_iter()
        .filter(|i| i.version != version && i.ready)
        .map(|i| i.version)
        .collect();
    if let Some(stable) = others.first() {
        runtime::set_weights(service, &[(stable.clone(), 100)])
            .map_err(|e| failure("moving traffic back", e))?;
    }
    for i in instances(service)?.into_iter().filter(|i| i.version == version) {
        runtime::stop(&i.id).map_err(|e| failure("stopping the candidate", e))?;
    }
    status(service, Vec::new())
}

/// Stop the instances of `version` past the first `replicas` (draining
/// each); the rest of a `scale`.
pub fn drain_past(instances_of_version: &[Instance], replicas: u32) -> Result<(), Failure> {
    for i in instances_of_version.iter().skip(replicas as usize) {
        crate::log::info(&format!("draining {} ({} {})", i.id, i.service, i.version));
        runtime::stop(&i.id).map_err(|e| failure("stopping an instance", e))?;
    }
    Ok(())
}
