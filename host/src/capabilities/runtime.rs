//! The `runtime` import: a deployer plugin drives the local target
//! through it. Both keys are checked on every call (the manifest declares
//! `runtime`, the stage has `allow = { runtime = true }`); the program to
//! start must be a file inside the workspace (no `..`, no symlink out).
//! The target is started on the first call when none runs.

use std::path::{Component, Path, PathBuf};

use crate::bindings::host::weir::plugin::runtime;
use crate::bindings::host::weir::plugin::types::HostError;
use crate::target::api::{InstanceInfo, StartRequest};
use crate::target::client::{ClientError, TargetClient, ensure_up};

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
    /// The target's directory; `None` where no target is offered
    /// (`weir replay`).
    pub target_dir: Option<PathBuf>,
    /// The client, once the target answered.
    pub client: Option<TargetClient>,
}

/// A target client error as a host error.
pub fn host_error(e: ClientError) -> HostError {
    match e {
        ClientError::Refused { kind, message } if kind == "invalid" || kind == "not-found" => {
            HostError::Invalid(message)
        }
        other => HostError::Failed(other.to_string()),
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
        self.client = Some(client.clone());
        Ok(client)
    }

    fn artifact(&self, rel: &str) -> Result<PathBuf, HostError> {
        let path = Path::new(rel);
        if rel.is_empty()
            || path.is_absolute()
            || path.components().any(|c| matches!(c, Component::ParentDir))
        {
            return Err(HostError::Invalid(format!(
                "the artifact `{rel}` must be a relative path inside the workspace, without `..`"
            )));
        }
        let workspace = self
            .workspace
            .canonicalize()
            .map_err(|e| HostError::Failed(format!("the workspace cannot be read: {e}")))?;
        let full = workspace
            .join(path)
            .canonicalize()
            .map_err(|e| HostError::Invalid(format!("the artifact `{rel}` cannot be used: {e}")))?;
        if !full.starts_with(&workspace) {
            return Err(HostError::Invalid(format!(
                "the artifact `{rel}` resolves outside the workspace (through a symlink)"
            )));
        }
        if !full.is_file() {
            return Err(HostError::Invalid(format!("the artifact `{rel}` is not a file")));
        }
        Ok(full)
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
        let program = self.artifact(&spec.artifact)?;
        let request = StartRequest {
            service: spec.service,
            version: spec.version,
            program,
            args: spec.args,
            env: spec.env,
            readiness_path: spec.readiness_path,
            port: 0,
            run: Some(self.run_id.clone()),
        };
        client.start(&request).await.map(instance).map_err(host_error)
    }

    async fn stop(&mut self, id: String) -> Result<(), HostError> {
        let client = self.client("stop").await?;
        client.stop(&id).await.map_err(host_error)
    }

    async fn set_weights(&mut self, service: String, weights: Vec<(String, u32)>) -> Result<(), HostError> {
        let client = self.client("set-weights").await?;
        client
            .set_weights(&service, weights)
            .await
            .map(|_| ())
            .map_err(host_error)
    }

    async fn instances(&mut self, service: String) -> Result<Vec<runtime::Instance>, HostError> {
        let client = self.client("instances").await?;
        match client.service(&service).await {
            Ok(s) => Ok(s.instances.into_iter().map(instance).collect()),
            Err(ClientError::Refused { kind, .. }) if kind == "not-found" => Ok(Vec::new()),
            Err(e) => Err(host_error(e)),
        }
    }
}
