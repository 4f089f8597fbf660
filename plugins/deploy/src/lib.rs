//! `deploy`: the deployer for weir's local target. It starts a release's
//! instances through the `runtime` import (each gets a port in `PORT` and
//! takes traffic only once `GET readiness-path` answers 2xx), sets the
//! traffic split the rollout controller asks for, and on promote or
//! rollback drains and stops the versions that no longer serve. Every call
//! can be repeated: deploying a version that already runs starts only the
//! instances it lacks.

use serde::Deserialize;
use weir_sdk::runtime::{self, Instance, InstanceSpec};
use weir_sdk::target::{self, failure};
use weir_sdk::{Capability, Context, Deployer, DeploymentStatus, Failure, Manifest, Plugin, Release};

struct Deploy;

/// The settings the host does not read itself (it reads `service`,
/// `artifact`, `version`, `replicas` and `env` to build the release).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    #[serde(default = "default_readiness")]
    readiness_path: String,
    #[serde(default)]
    args: Vec<String>,
    /// Read back for `scale`, which is told only a version.
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    env: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    fn spec(&self, service: &str, version: &str, artifact: &str, env: Vec<(String, String)>) -> InstanceSpec {
        InstanceSpec {
            service: service.into(),
            version: version.into(),
            artifact: artifact.into(),
            args: self.args.clone(),
            env,
            readiness_path: self.readiness_path.clone(),
        }
    }
}

/// Start instances of `spec` until `want` are ready.
fn start_up_to(spec: &InstanceSpec, want: u32) -> Result<(), Failure> {
    let running = target::instances(&spec.service)?
        .iter()
        .filter(|i| i.version == spec.version && i.ready)
        .count() as u32;
    for n in running..want {
        weir_sdk::log::progress(
            u64::from(n),
            Some(u64::from(want)),
            &format!("starting {} {}", spec.service, spec.version),
        );
        let i = runtime::start(spec)
            .map_err(|e| failure(&format!("starting {} {}", spec.service, spec.version), e))?;
        weir_sdk::log::info(&format!("{} is ready on port {}", i.id, i.port));
    }
    Ok(())
}

fn default_readiness() -> String {
    "/".into()
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["service", "artifact"],
  "properties": {
    "service": {"type": "string", "description": "The service's name: letters, digits, `.`, `_`, `-`"},
    "artifact": {"type": "string", "description": "The program to run, relative to the workspace (a build artifact)"},
    "version": {"type": "string", "description": "The version's label (default: the run id's tail); e.g. a commit's short sha"},
    "replicas": {"type": "integer", "minimum": 1, "maximum": 64, "description": "How many instances of the version to run"},
    "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "Environment for the instances (they get PORT besides)"},
    "args": {"type": "array", "items": {"type": "string"}, "description": "Arguments for the program"},
    "readiness-path": {"type": "string", "pattern": "^/", "description": "The path that answers 2xx once an instance is ready (default /)"},
    "target": {"enum": ["local"], "description": "The deployment target: the local one"}
  }
}"#;

impl Plugin for Deploy {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Deployer, [Capability::Runtime]);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Deployer for Deploy {
    fn deploy(ctx: Context, r: Release) -> Result<DeploymentStatus, Failure> {
        let config: Config = ctx.config()?;
        start_up_to(
            &config.spec(&r.service, &r.version, &r.artifact, r.env.clone()),
            r.replicas,
        )?;
        target::status(&r.service, Vec::new())
    }

    fn scale(
        ctx: Context,
        service: String,
        version: String,
        replicas: u32,
    ) -> Result<DeploymentStatus, Failure> {
        let mine: Vec<Instance> = target::instances(&service)?
            .into_iter()
            .filter(|i| i.version == version)
            .collect();
        if (mine.len() as u32) < replicas {
            // Only the release this stage deploys can be started: its
            // artifact is in the workspace.
            let config: Config = ctx.config()?;
            let artifact = config.artifact.clone().filter(|_| {
                serde_json::from_str::<serde_json::Value>(&ctx.config)
                    .ok()
                    .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(|v| v == version))
                    .unwrap_or(true)
            });
            let Some(artifact) = artifact else {
                return Err(Failure::new(format!(
                    "cannot start more instances of {service} {version}: this stage deploys another release, and only its artifact is here"
                )));
            };
            let env = config
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect();
            start_up_to(&config.spec(&service, &version, &artifact, env), replicas)?;
        }
        target::drain_past(&mine, replicas)?;
        target::status(&service, Vec::new())
    }

    fn set_traffic(
        _ctx: Context,
        service: String,
        weights: Vec<(String, u32)>,
    ) -> Result<DeploymentStatus, Failure> {
        target::set_traffic(&service, weights)
    }

    fn promote(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
        target::promote(&service, &version)
    }

    fn rollback(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
        target::roll_back(&service, &version)
    }

    fn status(_ctx: Context, service: String) -> Result<DeploymentStatus, Failure> {
        target::status(&service, Vec::new())
    }
}

weir_sdk::export_deployer!(Deploy);
