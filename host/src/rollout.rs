//! The rollout controller: a deploy stage's loop. It asks the strategy
//! plugin for the next action, carries it out through the deployer plugin,
//! runs the checks (analyzers) when asked, and records every step as a
//! `rollout` event.
//!
//! Rollback is the host's promise, not a plugin's. When the strategy
//! traps, times out, fails or answers nonsense, when a check traps or
//! judges `fail` or `inconclusive` (no data is never a pass), when the
//! deployer fails, or when the stage runs out of time, the controller
//! rolls back: it asks the deployer to roll back and then, whatever the
//! deployer did, tells the local target to put the service back on its
//! stable release, and checks that all traffic is there.
//!
//! A promotion needs a passing analysis of the traffic split it promotes
//! from: if the stage has checks and none ran since traffic last moved,
//! the controller runs them first.

mod controller;
mod drive;
pub mod load;
mod release;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmtime::Store;

use crate::bindings::types::{self, Action, Verdict};
use crate::capabilities::process::Sandbox;
use crate::engine::WeirEngine;
use crate::events::{Event, EventSink, FailureKind, FindingRecord, RolloutPhase, now_ms};
use crate::guest_call::{self, CallFailure};
use crate::plan::{Load, PlannedUse};
use crate::plugins::{KindPre, LoadedPlugin};
use crate::run::{AttemptRequest, AttemptResult};
use crate::sandbox::StageState;
use crate::stage_store::{RunInfo, Setup, prepare_store};
use crate::target::client::{TargetClient, ensure_up};

use controller::Controller;
use drive::{drive, roll_back};
use release::{lock_service, outputs, release_of};

/// Most actions one rollout may take.
pub const MAX_STEPS: u32 = 1000;
/// How long the deployer's rollback may take before the host takes over.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// A deploy stage's strategy and checks, loaded.
pub struct RolloutPlugins {
    /// The strategy and how it is used.
    pub strategy: (Arc<LoadedPlugin>, PlannedUse),
    /// Each check and how it is used.
    pub checks: Vec<(Arc<LoadedPlugin>, PlannedUse)>,
    /// Load during the rollout.
    pub load: Option<Load>,
}

/// One deploy stage's attempt.
pub struct Rollout {
    /// The engine.
    pub engine: WeirEngine,
    /// The stage's deployer.
    pub deployer: Arc<LoadedPlugin>,
    /// The run.
    pub info: Arc<RunInfo>,
    /// Where events go.
    pub sink: EventSink,
    /// The attempt.
    pub request: AttemptRequest,
    /// Bubblewrap or not, for programs.
    pub sandbox: Sandbox,
    /// Read directories and the tape.
    pub setup: Setup,
    /// The stage's strategy and checks.
    pub plugins: Option<Arc<RolloutPlugins>>,
}

/// Run one deploy stage's rollout.
pub async fn run(r: Rollout) -> AttemptResult {
    let Some(plugins) = r.plugins.clone() else {
        return AttemptResult::failed(
            FailureKind::Host,
            format!(
                "stage `{}` uses a deployer but has no `strategy`; add strategy = {{ uses = \"canary\" }}",
                r.request.stage_name
            ),
            None,
        );
    };
    let release = match release_of(&r.request.config, &r.info.run_id) {
        Ok(rel) => rel,
        Err(e) => {
            return AttemptResult::failed(
                FailureKind::Plugin,
                format!("stage `{}`: {e}", r.request.stage_name),
                None,
            );
        }
    };
    let Some(dir) = r.info.target.dir.clone() else {
        return AttemptResult::failed(FailureKind::Host, "no deployment target is offered here", None);
    };
    let target = match ensure_up(&dir, None).await {
        Ok((t, _)) => t.for_tenant(&r.info.tenant),
        Err(e) => return AttemptResult::failed(FailureKind::Host, e.to_string(), None),
    };
    // Another tenant's service is refused before its lock is taken, so a
    // tenant cannot hold up the owner's deploys by trying to deploy there.
    if let Err(crate::target::client::ClientError::Refused { kind, message }) =
        target.service(&release.service).await
        && kind == "denied"
    {
        return AttemptResult::failed(FailureKind::Host, message, None);
    }
    // One rollout per service at a time, across weir processes: the lock
    // is released when this run ends, however it ends.
    let _lock = match lock_service(&dir, &release.service, &r.info.run_id) {
        Ok(l) => l,
        Err(e) => return AttemptResult::failed(FailureKind::Host, e.to_string(), None),
    };
    let deadline = Instant::now() + r.request.timeout;
    let mut r = r;
    r.setup.runtime_scope = Some(crate::capabilities::runtime::RuntimeScope {
        service: release.service.clone(),
        version: release.version.clone(),
        artifact: release.artifact.clone(),
        image: release.image,
    });
    let mut c = Controller {
        r,
        plugins,
        release,
        target,
        deadline,
        findings: Vec::new(),
        analyses: 0,
        step: 0,
        load: None,
    };
    let before = c.target.service(&c.release.service).await.ok();
    let stable = before.as_ref().and_then(|s| s.stable.clone());
    if stable.as_deref() == Some(c.release.version.as_str()) {
        return AttemptResult {
            outputs: outputs(&c.release, before.as_ref().map(|s| s.address.clone())),
            summary: Some(format!(
                "{} {} is already the stable release; nothing to do",
                c.release.service, c.release.version
            )),
            ..AttemptResult::default()
        };
    }
    // A run resumed after its controller died: say what the target did
    // with the rollout it left.
    let lost: Vec<String> = before
        .iter()
        .flat_map(|s| s.releases.iter())
        .filter(|r| r.run.as_deref() == Some(c.r.info.run_id.as_str()))
        .filter_map(|r| {
            r.reason
                .as_deref()
                .filter(|why| why.starts_with("controller lost"))
                .map(|why| {
                    format!(
                        "{} {} was rolled back by the target before this attempt: {why}",
                        c.release.service, r.version
                    )
                })
        })
        .collect();
    for message in lost {
        c.r.sink.emit(crate::events::Event::StageLog {
            stage: c.r.request.stage_name.clone(),
            level: crate::events::Level::Warn,
            message,
            fields: Default::default(),
        });
    }
    c.emit(
        RolloutPhase::Started,
        format!(
            "{} {} → {} with strategy `{}`",
            c.release.service,
            stable.as_deref().unwrap_or("(nothing)"),
            c.release.version,
            c.plugins.strategy.0.info.name
        ),
        before
            .as_ref()
            .map(|s| s.weights.iter().cloned().collect())
            .unwrap_or_default(),
        None,
    );
    // If this future is dropped mid-rollout (the run cancelled), the
    // guard still puts the service back on its stable release.
    let mut guard = RestoreOnDrop {
        target: Some(c.target.clone()),
        service: c.release.service.clone(),
    };
    // The rollout holds a lease on its service that it renews: if this
    // process dies (kill -9, a lost machine), the lease lapses and the
    // target itself puts the stable release back.
    let renewals = Renewals(tokio::spawn({
        let (target, service, run) = (
            c.target.clone(),
            c.release.service.clone(),
            c.r.info.run_id.clone(),
        );
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(
                crate::target::api::LEASE_RENEW_MS,
            ));
            loop {
                tick.tick().await;
                match target
                    .lease(&service, &run, crate::target::api::LEASE_TTL_MS)
                    .await
                {
                    Ok(()) => {}
                    // The target took the service back: nothing to hold.
                    Err(crate::target::client::ClientError::Refused { kind, message })
                        if kind == "lease-lost" =>
                    {
                        tracing::warn!(%service, "{message}");
                        break;
                    }
                    Err(e) => tracing::warn!(%service, "cannot renew the rollout's lease: {e}"),
                }
            }
        }
    }));
    let outcome = drive(&mut c, stable.as_deref()).await;
    let load = match c.load.take() {
        Some(l) => Some(l.finish().await),
        None => None,
    };
    let result = match outcome {
        Ok(summary) => {
            let address = c.target.service(&c.release.service).await.ok().map(|s| s.address);
            AttemptResult {
                outputs: outputs(&c.release, address),
                summary: Some(match load {
                    Some(l) => format!("{summary}; {l}"),
                    None => summary,
                }),
                findings: std::mem::take(&mut c.findings),
                ..AttemptResult::default()
            }
        }
        Err(a) => {
            let mut result = roll_back(&mut c, stable.as_deref(), a).await;
            if let (Some(l), Some(f)) = (load, result.failure.as_mut()) {
                f.message = format!("{}; {l}", f.message);
            }
            result.findings = std::mem::take(&mut c.findings);
            result
        }
    };
    drop(renewals);
    if let Err(e) = c.target.release_lease(&c.release.service, &c.r.info.run_id).await {
        tracing::warn!(service = %c.release.service, "cannot give the rollout's lease back: {e}");
    }
    guard.target = None;
    result
}

/// The task renewing a rollout's lease, stopped however the rollout ends.
struct Renewals(tokio::task::JoinHandle<()>);

impl Drop for Renewals {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Restores the stable release if dropped while armed: a cancelled run's
/// rollout must not leave a candidate taking traffic. The restore runs on
/// its own thread (a drop cannot await) and is waited for, up to the
/// target's restore timeout.
struct RestoreOnDrop {
    target: Option<TargetClient>,
    service: String,
}

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else { return };
        let service = std::mem::take(&mut self.service);
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                let done = rt.block_on(target.restore(&service, "the run was cancelled during the rollout"));
                if let Err(e) = done {
                    tracing::error!("restoring `{service}` after a cancelled rollout failed: {e}");
                }
            }
        });
        let _ = worker.join();
    }
}

#[cfg(test)]
mod tests;
