//! `container`: the deployer that runs a release as podman containers.
//! The release is an OCI image pinned by digest (the `oci-image` stage's
//! `image` output); each instance is one container, started through the
//! `runtime` import's `start-container`, which pulls the image by digest,
//! publishes the container's port on a loopback port of the target's and
//! takes it into the service's router once `GET readiness-path` answers
//! 2xx. Traffic, promotion and rollback are the router's, exactly as for
//! the `deploy` deployer, so every strategy and check works unchanged.
//! Every call can be repeated: deploying a version that already runs
//! starts only the containers it lacks.

use serde::Deserialize;
use weir_sdk::runtime::{self, ContainerSpec, Instance};
use weir_sdk::target::{self, failure};
use weir_sdk::{Capability, Context, Deployer, DeploymentStatus, Failure, Manifest, Plugin, Release};

struct Container;

/// The settings the host does not read itself (it reads `service`,
/// `image`, `version`, `replicas` and `env` to build the release).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    #[serde(default)]
    image: Option<String>,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_readiness")]
    readiness_path: String,
    #[serde(default)]
    env: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    memory: Option<serde_json::Value>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    pids: Option<u32>,
    #[serde(default)]
    tls_verify: Option<bool>,
}

fn default_port() -> u16 {
    8080
}

fn default_readiness() -> String {
    "/".into()
}

/// `memory` as bytes: a number of bytes, or text with a unit
/// (`"256MiB"`, `"512m"`, `"1G"`).
fn bytes(v: &serde_json::Value) -> Result<u64, Failure> {
    let bad = || {
        Failure::new(format!(
            "`memory = {v}` is not a size: write bytes (268435456) or a number with a unit (\"256MiB\", \"1GiB\")"
        ))
    };
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    let text = v.as_str().ok_or_else(bad)?.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// Whether an image's registry is this machine (reached over plain HTTP
/// unless `tls-verify` says otherwise).
fn loopback_registry(image: &str) -> bool {
    let host = image.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

impl Config {
    fn spec(
        &self,
        service: &str,
        version: &str,
        image: &str,
        env: Vec<(String, String)>,
    ) -> Result<ContainerSpec, Failure> {
        let cpu_millis = match self.cpus {
            None => None,
            Some(c) if c > 0.0 && c <= 1024.0 => Some((c * 1000.0).round() as u32),
            Some(c) => {
                return Err(Failure::new(format!(
                    "`cpus = {c}` must be above 0 and at most 1024"
                )));
            }
        };
        Ok(ContainerSpec {
            service: service.into(),
            version: version.into(),
            image: image.into(),
            env,
            port: self.port,
            readiness_path: self.readiness_path.clone(),
            memory_bytes: self.memory.as_ref().map(bytes).transpose()?,
            cpu_millis,
            pids: self.pids,
            tls_verify: self.tls_verify.unwrap_or(!loopback_registry(image)),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect()
    }
}

/// Start containers of `spec` until `want` are ready.
fn start_up_to(spec: &ContainerSpec, want: u32) -> Result<(), Failure> {
    let running = target::instances(&spec.service)?
        .iter()
        .filter(|i| i.version == spec.version && i.ready)
        .count() as u32;
    for n in running..want {
        weir_sdk::log::progress(
            u64::from(n),
            Some(u64::from(want)),
            &format!(
                "starting a container of {} {} from {}",
                spec.service, spec.version, spec.image
            ),
        );
        let i = runtime::start_container(spec)
            .map_err(|e| failure(&format!("starting {} {}", spec.service, spec.version), e))?;
        weir_sdk::log::info(&format!("{} is ready on port {}", i.id, i.port));
    }
    Ok(())
}

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["service", "image"],
  "properties": {
    "service": {"type": "string", "description": "The service's name: letters, digits, `.`, `_`, `-`"},
    "image": {"type": "string", "pattern": "@sha256:[0-9a-f]{64}$", "description": "The image, pinned by digest: REGISTRY/REPOSITORY@sha256:HEX (the oci-image stage's `image` output)"},
    "version": {"type": "string", "description": "The version's label (default: the run id's tail); e.g. a commit's short sha"},
    "replicas": {"type": "integer", "minimum": 1, "maximum": 64, "description": "How many containers of the version to run"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "The port the container listens on inside (default 8080)"},
    "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "Environment for the containers, besides the image's"},
    "readiness-path": {"type": "string", "pattern": "^/", "description": "The path that answers 2xx once a container is ready (default /)"},
    "memory": {"type": ["integer", "string"], "description": "Most memory per container: bytes, or \"256MiB\" (default 512MiB)"},
    "cpus": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024, "description": "Most CPU per container, in cores (default: no limit)"},
    "pids": {"type": "integer", "minimum": 1, "description": "Most processes per container (default 256)"},
    "tls-verify": {"type": "boolean", "description": "Check the registry's TLS certificate (default: yes, but for a registry on 127.0.0.1 or localhost)"},
    "target": {"enum": ["podman"], "description": "The deployment target: podman on the local target's machine"}
  }
}"#;

impl Plugin for Container {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Deployer, [Capability::Runtime]);
        m.config_schema = Some(SCHEMA.into());
        m
    }
}

impl Deployer for Container {
    fn deploy(ctx: Context, r: Release) -> Result<DeploymentStatus, Failure> {
        let config: Config = ctx.config()?;
        // The host put the release's image in `artifact`.
        start_up_to(
            &config.spec(&r.service, &r.version, &r.artifact, r.env.clone())?,
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
            // Only the release this stage deploys can be started.
            let config: Config = ctx.config()?;
            let ours = serde_json::from_str::<serde_json::Value>(&ctx.config)
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(|v| v == version))
                .unwrap_or(true);
            let Some(image) = config.image.clone().filter(|_| ours) else {
                return Err(Failure::new(format!(
                    "cannot start more containers of {service} {version}: this stage deploys another release, and only its image may be started"
                )));
            };
            start_up_to(&config.spec(&service, &version, &image, config.env())?, replicas)?;
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

weir_sdk::export_deployer!(Container);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bytes_or_a_number_with_a_unit() {
        assert_eq!(bytes(&serde_json::json!(1024)).ok(), Some(1024));
        assert_eq!(bytes(&serde_json::json!("64MiB")).ok(), Some(64 << 20));
        assert_eq!(bytes(&serde_json::json!("512m")).ok(), Some(512 << 20));
        assert_eq!(bytes(&serde_json::json!("1G")).ok(), Some(1 << 30));
        for bad in ["lots", "12 parsecs", "-1m", ""] {
            assert!(bytes(&serde_json::json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_registry_on_this_machine_is_reached_without_tls() {
        assert!(loopback_registry("127.0.0.1:5000/web@sha256:00"));
        assert!(loopback_registry("localhost/web@sha256:00"));
        assert!(!loopback_registry("ghcr.io/acme/web@sha256:00"));
        assert!(!loopback_registry("127.0.0.1.example.com/web@sha256:00"));
    }
}
