//! The `runtime` import: a deployer plugin drives the local target
//! through it. Both keys are checked on every call (the manifest declares
//! `runtime`, the stage has `allow = { runtime = true }`). In a deploy
//! stage the calls are bounded by the release the stage rolls out: they
//! may touch only its service, and start only its version from its
//! artifact. The host itself reads the artifact beneath the workspace
//! (every directory and the file opened with `O_NOFOLLOW`) into the
//! target's directory, so a symlink planted or swapped in by a plugin is
//! never followed. A container release (`start-container`) names an image
//! pinned by digest instead, and may start only the image its stage rolls
//! out. The target is started on the first call when none runs.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::bindings::host::weir::plugin::runtime;
use crate::bindings::host::weir::plugin::types::HostError;
use crate::target::api::{InstanceInfo, StartRequest};
use crate::target::client::{ClientError, TargetClient, ensure_up};

/// The release a deploy stage rolls out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeScope {
    /// The service.
    pub service: String,
    /// The candidate version.
    pub version: String,
    /// Its artifact, relative to the workspace; or its image.
    pub artifact: String,
    /// Whether the release is an image (started only by
    /// `start-container`) rather than a program (only by `start`).
    pub image: bool,
}

/// Largest artifact the target takes.
pub const MAX_ARTIFACT_BYTES: u64 = 2 << 30;

/// Per-Store state of the `runtime` import.
#[derive(Debug)]
pub struct RuntimeCtx {
    /// The stage.
    pub stage: String,
    /// The plugin.
    pub plugin: String,
    /// Whether its manifest declares `runtime`.
    pub declared: bool,
    /// Whether the stage grants it.
    pub granted: bool,
    /// The workspace on the host.
    pub workspace: PathBuf,
    /// The run.
    pub run_id: String,
    /// Its tenant: the target lets it touch only that tenant's services.
    pub tenant: String,
    /// The target's directory; `None` where no target is offered
    /// (`weir replay`).
    pub target_dir: Option<PathBuf>,
    /// The client, once the target answered.
    pub client: Option<TargetClient>,
    /// In a deploy stage, the release that bounds every call.
    pub scope: Option<RuntimeScope>,
    /// `allow.network`: the registries a container's image may come from.
    pub network: Vec<String>,
}

/// A target client error as a host error.
pub fn host_error(e: ClientError) -> HostError {
    match e {
        ClientError::Refused { kind, message } if kind == "invalid" || kind == "not-found" => {
            HostError::Invalid(message)
        }
        ClientError::Refused { kind, message } if kind == "denied" => HostError::Denied(message),
        other => HostError::Failed(other.to_string()),
    }
}

impl super::Gated for RuntimeCtx {
    const GATE: super::Gate = super::Gate {
        interface: "weir:plugin/runtime",
        capability: crate::bindings::types::Capability::Runtime,
        declared_as: "runtime",
        grant_hint: "allow = { runtime = true }",
    };

    fn granted(grants: &crate::plan::Grants) -> bool {
        grants.runtime
    }

    fn new(facts: &super::Facts<'_>) -> Self {
        Self {
            stage: facts.stage.to_string(),
            plugin: facts.plugin.to_string(),
            declared: facts.declares(Self::GATE.capability),
            granted: facts.grants.runtime,
            workspace: facts.workspace.to_path_buf(),
            run_id: facts.target.run_id.clone(),
            tenant: facts.tenant.to_string(),
            target_dir: facts.target.dir.clone(),
            client: None,
            scope: facts.target.runtime_scope.clone(),
            network: facts.grants.network.clone(),
        }
    }

    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static,
    {
        runtime::add_to_linker::<_, wasmtime::component::HasSelf<Self>>(linker, get)
    }
}

impl RuntimeCtx {
    async fn client(&mut self, call: &str) -> Result<TargetClient, HostError> {
        if !self.declared {
            return Err(HostError::Denied(format!(
                "runtime:{call} refused: plugin `{}` does not declare the `runtime` capability in its manifest",
                self.plugin
            )));
        }
        if !self.granted {
            return Err(HostError::Denied(format!(
                "runtime:{call} is not granted to stage `{}`; grant it with allow = {{ runtime = true }}",
                self.stage
            )));
        }
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let Some(dir) = &self.target_dir else {
            return Err(HostError::Unavailable(format!(
                "runtime:{call}: no deployment target is offered here (a replay never deploys)"
            )));
        };
        let (client, _) = ensure_up(dir, None).await.map_err(host_error)?;
        let client = client.for_tenant(&self.tenant);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// A call about `service` must be about the stage's own service.
    fn in_scope(&self, call: &str, service: &str) -> Result<(), HostError> {
        match &self.scope {
            Some(s) if s.service != service => Err(HostError::Denied(format!(
                "runtime:{call} on service `{service}` refused: stage `{}` deploys `{}` and may touch only that service",
                self.stage, s.service
            ))),
            _ => Ok(()),
        }
    }

    /// Copy the artifact `rel` from the workspace into the target's
    /// `incoming/` directory under `dir`, without following a symlink
    /// anywhere on its path; the copy's file name there (what a start
    /// request names).
    fn take_artifact(&self, rel: &str, dir: &Path) -> Result<String, HostError> {
        let path = Path::new(rel);
        if rel.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(HostError::Invalid(format!(
                "the artifact `{rel}` must be a relative path inside the workspace, without `..`"
            )));
        }
        let bad = |e: std::io::Error| {
            HostError::Invalid(format!(
                "the artifact `{rel}` cannot be read beneath the workspace ({e}); it must be a regular file reached without symlinks"
            ))
        };
        let mut at = crate::beneath::open_root(&self.workspace).map_err(bad)?;
        let names: Vec<&std::ffi::OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((file, dirs)) = names.split_last() else {
            return Err(HostError::Invalid(format!("the artifact `{rel}` names no file")));
        };
        for d in dirs {
            at = crate::beneath::open_dir(&at, d).map_err(bad)?;
        }
        let mut source = crate::beneath::open_file(&at, file).map_err(bad)?;
        let size = source.metadata().map_err(bad)?.len();
        if size > MAX_ARTIFACT_BYTES {
            return Err(HostError::Limit(format!(
                "the artifact `{rel}` is {size} bytes; the limit is {MAX_ARTIFACT_BYTES}"
            )));
        }
        let incoming = dir.join(crate::target::daemon::INCOMING);
        std::fs::create_dir_all(&incoming)
            .map_err(|e| HostError::Failed(format!("cannot create {}: {e}", incoming.display())))?;
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            crate::events::now_ms(),
            file.to_string_lossy()
        );
        let copy = incoming.join(&name);
        let mut out = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&copy)
            .map_err(|e| HostError::Failed(format!("cannot write {}: {e}", copy.display())))?;
        std::io::copy(&mut (&mut source).take(MAX_ARTIFACT_BYTES), &mut out)
            .map_err(|e| HostError::Failed(format!("cannot copy the artifact `{rel}`: {e}")))?;
        Ok(name)
    }
}

fn instance(i: InstanceInfo) -> runtime::Instance {
    runtime::Instance {
        id: i.id,
        service: i.service,
        version: i.version,
        port: i.port,
        ready: i.ready,
    }
}

impl runtime::Host for RuntimeCtx {
    async fn start(&mut self, spec: runtime::InstanceSpec) -> Result<runtime::Instance, HostError> {
        let client = self.client("start").await?;
        // An instance starts only from the release a deploy stage rolls
        // out, which weir copied into the target itself.
        if self.scope.is_none() {
            return Err(HostError::Denied(format!(
                "runtime:start of {} {} refused: stage `{}` is not a deploy stage; instances start only from the release a stage with a `strategy` rolls out",
                spec.service, spec.version, self.stage
            )));
        }
        self.in_scope("start", &spec.service)?;
        if let Some(s) = &self.scope
            && s.image
        {
            return Err(HostError::Denied(format!(
                "runtime:start of {} {} refused: stage `{}` rolls out the image `{}`, which only runtime:start-container runs",
                spec.service, spec.version, self.stage, s.artifact
            )));
        }
        if let Some(s) = &self.scope
            && (s.version != spec.version || s.artifact != spec.artifact)
        {
            return Err(HostError::Denied(format!(
                "runtime:start of {} {} from `{}` refused: stage `{}` rolls out {} {} from `{}` and may start only that release",
                spec.service, spec.version, spec.artifact, self.stage, s.service, s.version, s.artifact
            )));
        }
        let release = self.take_artifact(&spec.artifact, client.dir())?;
        let request = StartRequest {
            service: spec.service,
            version: spec.version,
            release,
            args: spec.args,
            env: spec.env,
            readiness_path: spec.readiness_path,
            port: 0,
            run: Some(self.run_id.clone()),
            container: None,
        };
        let started = client.start(&request).await.map(instance).map_err(host_error);
        let _ = std::fs::remove_file(
            client
                .dir()
                .join(crate::target::daemon::INCOMING)
                .join(&request.release),
        );
        started
    }

    async fn start_container(
        &mut self,
        spec: runtime::ContainerSpec,
    ) -> Result<runtime::Instance, HostError> {
        let client = self.client("start-container").await?;
        // As `start`: only the release a deploy stage rolls out, and for a
        // container release that is its image, pinned by digest.
        let Some(scope) = &self.scope else {
            return Err(HostError::Denied(format!(
                "runtime:start-container of {} {} refused: stage `{}` is not a deploy stage; containers start only from the release a stage with a `strategy` rolls out",
                spec.service, spec.version, self.stage
            )));
        };
        self.in_scope("start-container", &spec.service)?;
        if !scope.image {
            return Err(HostError::Denied(format!(
                "runtime:start-container of {} {} refused: stage `{}` rolls out the program `{}` (`artifact`), which only runtime:start runs; name an `image` instead",
                spec.service, spec.version, self.stage, scope.artifact
            )));
        }
        if scope.version != spec.version || scope.artifact != spec.image {
            return Err(HostError::Denied(format!(
                "runtime:start-container of {} {} from `{}` refused: stage `{}` rolls out {} {} from `{}` and may start only that release",
                spec.service,
                spec.version,
                spec.image,
                self.stage,
                scope.service,
                scope.version,
                scope.artifact
            )));
        }
        // The target pulls the image with its own access to registries:
        // only from one the stage is granted, as for any host it reaches.
        let registry = crate::target::podman::registry_of(&spec.image).map_err(HostError::Invalid)?;
        if !self
            .network
            .iter()
            .any(|g| crate::plan::tenancy::host_allowed(g, registry))
        {
            return Err(HostError::Denied(format!(
                "runtime:start-container of {} refused: the registry {registry} is not granted to stage `{}`; grant it with allow = {{ network = [\"{registry}\"] }} (within the tenant's policy)",
                spec.image, self.stage
            )));
        }
        let launch = crate::target::podman::ContainerLaunch {
            image: spec.image,
            port: spec.port,
            memory_bytes: spec.memory_bytes,
            cpu_millis: spec.cpu_millis,
            pids: spec.pids,
            tls_verify: spec.tls_verify,
        };
        crate::target::podman::check(&launch).map_err(HostError::Invalid)?;
        let request = StartRequest {
            service: spec.service,
            version: spec.version,
            release: String::new(),
            args: Vec::new(),
            env: spec.env,
            readiness_path: spec.readiness_path,
            port: 0,
            run: Some(self.run_id.clone()),
            container: Some(launch),
        };
        client.start(&request).await.map(instance).map_err(host_error)
    }

    async fn stop(&mut self, id: String) -> Result<(), HostError> {
        let client = self.client("stop").await?;
        if let Some(s) = &self.scope {
            let ours = match client.service(&s.service).await {
                Ok(svc) => svc.instances.iter().any(|i| i.id == id),
                Err(_) => false,
            };
            if !ours {
                return Err(HostError::Denied(format!(
                    "runtime:stop of `{id}` refused: it is not an instance of `{}`, the service stage `{}` deploys",
                    s.service, self.stage
                )));
            }
        }
        client.stop(&id).await.map_err(host_error)
    }

    async fn set_weights(&mut self, service: String, weights: Vec<(String, u32)>) -> Result<(), HostError> {
        let client = self.client("set-weights").await?;
        self.in_scope("set-weights", &service)?;
        client
            .set_weights(&service, weights)
            .await
            .map(|_| ())
            .map_err(host_error)
    }

    async fn instances(&mut self, service: String) -> Result<Vec<runtime::Instance>, HostError> {
        let client = self.client("instances").await?;
        self.in_scope("instances", &service)?;
        match client.service(&service).await {
            Ok(s) => Ok(s.instances.into_iter().map(instance).collect()),
            Err(ClientError::Refused { kind, .. }) if kind == "not-found" => Ok(Vec::new()),
            Err(e) => Err(host_error(e)),
        }
    }
}
