//! __NAME__: a weir deployer. It runs releases on weir's local target
//! through the `runtime` import: each instance is the release's artifact,
//! started with `PORT` set and ready once `readiness-path` answers 200.

use weir_sdk::runtime::{self, InstanceSpec};
use weir_sdk::{Capability, Context, Deployer, DeploymentStatus, Failure, Manifest, Plugin, Release};

/// The deploy stage's `with = { ... }` keys this deployer reads, besides
/// the release's own.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Config {
    /// The path that answers 200 once an instance is ready.
    readiness_path: Option<String>,
}

fn host(e: weir_sdk::HostError) -> Failure {
    Failure::new(format!("{e:?}"))
}

/// Ready instances per version, in the order versions first appear.
fn ready_by_version(instances: &[(String, bool)]) -> Vec<(String, u32)> {
    let mut ready: Vec<(String, u32)> = Vec::new();
    for (version, _) in instances.iter().filter(|(_, is_ready)| *is_ready) {
        match ready.iter_mut().find(|(v, _)| v == version) {
            Some((_, n)) => *n += 1,
            None => ready.push((version.clone(), 1)),
        }
    }
    ready
}

fn status(service: &str) -> Result<DeploymentStatus, Failure> {
    let instances: Vec<(String, bool)> = runtime::instances(service)
        .map_err(host)?
        .into_iter()
        .map(|i| (i.version, i.ready))
        .collect();
    Ok(DeploymentStatus {
        service: service.into(),
        weights: Vec::new(),
        ready: ready_by_version(&instances),
    })
}

fn start(ctx: &Context, service: &str, version: &str, artifact: &str, env: &[(String, String)]) -> Result<(), Failure> {
    let config: Config = ctx.config()?;
    let spec = InstanceSpec {
        service: service.into(),
        version: version.into(),
        artifact: artifact.into(),
        args: Vec::new(),
        env: env.to_vec(),
        readiness_path: config.readiness_path.unwrap_or_else(|| "/healthz".into()),
    };
    runtime::start(&spec).map_err(host)?;
    Ok(())
}

struct Plugin_;

impl Plugin for Plugin_ {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Deployer, [Capability::Runtime])
    }
}

impl Deployer for Plugin_ {
    fn deploy(ctx: Context, r: Release) -> Result<DeploymentStatus, Failure> {
        let running = runtime::instances(&r.service)
            .map_err(host)?
            .into_iter()
            .filter(|i| i.version == r.version)
            .count() as u32;
        // Safe to call again: only the missing instances start.
        for _ in running..r.replicas {
            start(&ctx, &r.service, &r.version, &r.artifact, &r.env)?;
        }
        status(&r.service)
    }
    fn set_traffic(_ctx: Context, service: String, weights: Vec<(String, u32)>) -> Result<DeploymentStatus, Failure> {
        runtime::set_weights(&service, &weights).map_err(host)?;
        status(&service)
    }
    fn scale(_ctx: Context, service: String, version: String, replicas: u32) -> Result<DeploymentStatus, Failure> {
        let mine: Vec<_> = runtime::instances(&service)
            .map_err(host)?
            .into_iter()
            .filter(|i| i.version == version)
            .collect();
        if (mine.len() as u32) < replicas {
            return Err(Failure::new(format!(
                "{service} {version} runs {} instance(s); this deployer scales down only",
                mine.len()
            )));
        }
        for i in mine.iter().skip(replicas as usize) {
            runtime::stop(&i.id).map_err(host)?;
        }
        status(&service)
    }
    fn promote(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
        runtime::set_weights(&service, &[(version.clone(), 100)]).map_err(host)?;
        for i in runtime::instances(&service).map_err(host)?.into_iter().filter(|i| i.version != version) {
            runtime::stop(&i.id).map_err(host)?;
        }
        status(&service)
    }
    fn rollback(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
        for i in runtime::instances(&service).map_err(host)?.into_iter().filter(|i| i.version == version) {
            runtime::stop(&i.id).map_err(host)?;
        }
        status(&service)
    }
    fn status(_ctx: Context, service: String) -> Result<DeploymentStatus, Failure> {
        status(&service)
    }
}

weir_sdk::export_deployer!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_instances_count() {
        let instances = [("v1".to_string(), true), ("v2".to_string(), false), ("v1".to_string(), true)];
        assert_eq!(ready_by_version(&instances), vec![("v1".to_string(), 2)]);
    }
}
