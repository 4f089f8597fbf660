//! The Store a stage's plugin is called in: its sandbox state built from
//! what the run shares ([`RunInfo`]), the attempt's request and grants,
//! and where the plugin reads from and how its host calls are kept
//! ([`Setup`]); with the limits and deadline of [`crate::guest_call::new_store`].

use std::path::PathBuf;
use std::time::Instant;

use crate::artifacts::ArtifactStore;
use crate::attempt::{AttemptRequest, AttemptResult};
use crate::bindings::types;
use crate::capabilities::process::Sandbox;
use crate::capabilities::tape::Tape;
use crate::engine::{StageLimits, WeirEngine};
use crate::events::{EventSink, FailureKind};
use crate::guest_call::new_store;
use crate::plugins::LoadedPlugin;
use crate::sandbox::{StageState, StateSpec};
use wasmtime::Store;

/// What every attempt of a run shares.
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The tenant.
    pub tenant: String,
    /// The workspace on the host.
    pub workspace: PathBuf,
    /// Limits per Store.
    pub limits: StageLimits,
    /// The tenant's secret source (`secrets.open`).
    pub secrets: crate::config::tenants::SecretSource,
    /// Where artifacts are kept.
    pub artifacts: ArtifactStore,
    /// The run history, for the stage cache and replay records; `None`
    /// runs without either.
    pub history: Option<crate::store::History>,
    /// Set when the run is cancelled: its Stores end.
    pub stopping: crate::capabilities::Stopping,
    /// The deployment target and metrics providers (per-plugin fields
    /// are filled in per attempt).
    pub target: crate::capabilities::TargetSpec,
}

/// Where one attempt's plugin reads from and how its host calls are
/// kept: a run uses the stage's grants and a recording tape; `weir
/// replay` uses copies of the recorded files and a replaying tape.
pub struct Setup {
    /// `allow.read` directories (preopened only for `files` plugins).
    pub read_dirs: Vec<PathBuf>,
    /// Directories preopened as given (replay's copies).
    pub mapped_dirs: Vec<(PathBuf, String)>,
    /// The host-import tape.
    pub tape: Tape,
    /// The release a deploy stage rolls out: its `runtime` calls may touch
    /// only that service and start only that release.
    pub runtime_scope: Option<crate::capabilities::runtime::RuntimeScope>,
}

/// A Store for one call of `plugin` in `request`'s stage, and the context
/// the call receives; an error when the sandbox cannot be prepared.
#[allow(clippy::too_many_arguments)]
pub fn prepare_store(
    engine: &WeirEngine,
    plugin: &LoadedPlugin,
    info: &RunInfo,
    sink: EventSink,
    request: &AttemptRequest,
    sandbox: Sandbox,
    may_run_programs: bool,
    setup: &Setup,
) -> Result<(Store<StageState>, types::Context), Box<AttemptResult>> {
    // `allow.read` directories reach the plugin itself only when its
    // manifest asks for `files`; otherwise they are for its programs.
    let read_dirs: &[std::path::PathBuf] = if plugin.info.declares(types::Capability::Files) {
        &setup.read_dirs
    } else {
        &[]
    };
    // A plugin that may not run programs here (a strategy) is called as
    // if its manifest did not ask for them.
    let declared: Vec<types::Capability> = plugin
        .info
        .manifest
        .capabilities
        .iter()
        .copied()
        .filter(|c| may_run_programs || *c != types::Capability::Process)
        .collect();
    let target = crate::capabilities::TargetSpec {
        runtime_scope: setup.runtime_scope.clone(),
        ..info.target.clone()
    };
    let state = StageState::new(StateSpec {
        stage: &request.stage_name,
        tenant: &info.tenant,
        plugin: &plugin.info.name,
        declared: &declared,
        grants: &request.grants,
        workspace: Some(&info.workspace),
        read_dirs,
        env: &request.env,
        secret_env: &request.secret_env,
        limits: info.limits,
        sink,
        deadline: Instant::now() + request.timeout,
        sandbox,
        secret_source: &info.secrets,
        tape: setup.tape.clone(),
        mapped_dirs: &setup.mapped_dirs,
        target: &target,
        stopping: info.stopping.clone(),
    })
    .map_err(|e| {
        AttemptResult::failed(
            FailureKind::Host,
            format!("cannot prepare the sandbox: {e}"),
            None,
        )
    })?;
    let store = new_store(engine, state, request.timeout, info.limits);
    let ctx = types::Context {
        run_id: info.run_id.clone(),
        pipeline: info.pipeline.clone(),
        stage: request.stage_name.clone(),
        tenant: info.tenant.clone(),
        environment: request.environment.clone(),
        attempt: request.attempt,
        config: request.config.clone(),
        inputs: request
            .inputs
            .iter()
            .map(|(stage, outputs)| types::Upstream {
                stage: stage.clone(),
                outputs: outputs.clone(),
            })
            .collect(),
        workspace: crate::capabilities::wasi::GUEST_WORKSPACE.to_string(),
    };
    Ok((store, ctx))
}
