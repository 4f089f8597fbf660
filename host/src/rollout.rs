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

pub mod load;

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

/// The release a deploy stage's `with` describes.
#[derive(Debug, Clone, PartialEq)]
struct ReleaseSpec {
    service: String,
    version: String,
    artifact: String,
    replicas: u32,
    env: Vec<(String, String)>,
}

fn release_of(config: &str, run_id: &str) -> Result<ReleaseSpec, String> {
    let v: Value =
        serde_json::from_str(config).map_err(|e| format!("the stage's `with` is not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let service = text("service").ok_or("a deploy stage's `with` needs `service = \"NAME\"`")?;
    let artifact = text("artifact")
        .ok_or("a deploy stage's `with` needs `artifact`, the program to run (e.g. \"${{ stages.build.outputs.artifact }}\")")?;
    // The run id is unique; its tail is short enough for a label.
    let version = text("version").unwrap_or_else(|| run_id.rsplit('-').next().unwrap_or(run_id).to_string());
    for (what, name) in [("service", &service), ("version", &version)] {
        crate::target::daemon::check_name(what, name)?;
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

fn describe(action: &Action) -> String {
    match action {
        Action::DeployCandidate => "deploy the candidate".into(),
        Action::SetWeight(w) => format!("send {w}% of traffic to the candidate"),
        Action::Wait(ms) => format!(
            "wait {}",
            crate::config::duration::format_duration(Duration::from_millis(*ms))
        ),
        Action::Analyze => "analyze".into(),
        Action::Scale(to) => format!(
            "scale to {} candidate and {} stable instances",
            to.candidate, to.stable
        ),
        Action::Promote => "promote".into(),
        Action::Rollback(why) => format!("roll back: {why}"),
    }
}

/// `1500ms`, or `10s`/`2m` when whole.
fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        crate::config::duration::format_duration(Duration::from_millis(ms))
    } else {
        format!("{ms}ms")
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Why the rollout stopped short, and since when the service has been
/// at risk (for the time to recovery).
struct Abort {
    reason: String,
    since: Instant,
}

fn abort(reason: impl Into<String>) -> Abort {
    Abort {
        reason: reason.into(),
        since: Instant::now(),
    }
}

struct Controller {
    r: Rollout,
    plugins: Arc<RolloutPlugins>,
    release: ReleaseSpec,
    target: TargetClient,
    deadline: Instant,
    findings: Vec<FindingRecord>,
    analyses: u32,
    step: u32,
    load: Option<load::LoadGen>,
}

impl Controller {
    fn emit(
        &self,
        phase: RolloutPhase,
        message: String,
        weights: BTreeMap<String, u32>,
        verdict: Option<String>,
    ) {
        self.r.sink.emit(Event::Rollout {
            stage: self.r.request.stage_name.clone(),
            service: self.release.service.clone(),
            version: self.release.version.clone(),
            step: self.step,
            phase,
            message,
            weights,
            verdict,
            recovery_ms: None,
        });
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A request for a strategy or check call: the stage's, with that
    /// plugin's config and timeout.
    fn request_for(&self, with: Value, timeout: Duration, grants: bool) -> AttemptRequest {
        AttemptRequest {
            config: with.to_string(),
            timeout: timeout.min(self.remaining()),
            // Checks read metrics; only the deployer drives the target,
            // and neither checks nor strategies run programs (so `process`
            // is not linked for them).
            grants: if grants {
                crate::plan::Grants {
                    runtime: false,
                    exec: Vec::new(),
                    ..self.r.request.grants.clone()
                }
            } else {
                crate::plan::Grants::default()
            },
            ..self.r.request.clone()
        }
    }

    /// A fresh Store for one strategy or check call (they run no
    /// programs).
    fn store_for(
        &self,
        plugin: &LoadedPlugin,
        request: &AttemptRequest,
    ) -> Result<(Store<StageState>, types::Context), String> {
        prepare_store(
            &self.r.engine,
            plugin,
            &self.r.info,
            self.r.sink.clone(),
            request,
            Sandbox::OptedOut,
            false,
            &self.r.setup,
        )
        .map_err(|f| failure_text(&f))
    }

    async fn ask_strategy(&self, state: &types::RolloutState) -> Result<Action, String> {
        let (plugin, used) = &self.plugins.strategy;
        let request = self.request_for(used.with.clone(), used.timeout, false);
        let KindPre::Strategy(pre) = plugin.pre_for(&request.grants)? else {
            return Err(format!("plugin `{}` is not a strategy", plugin.info.name));
        };
        let (mut store, ctx) = self.store_for(plugin, &request)?;
        let who = format!("strategy `{}`", plugin.info.name);
        guest_call::call(&mut store, request.timeout, &self.r.info.limits, async |store| {
            let b = pre.instantiate_async(&mut *store).await?;
            b.weir_plugin_strategy().call_next(&mut *store, &ctx, state).await
        })
        .await
        .map_err(|f| match f {
            CallFailure::Plugin { message, .. } => format!("{who} failed: {message}"),
            other => format!("{who}: {}", self.failure(other, plugin, &request)),
        })
    }

    /// A strategy's or check's call that did not return, as the attempt's
    /// failure would say it.
    fn failure(&self, f: CallFailure, plugin: &LoadedPlugin, request: &AttemptRequest) -> String {
        failure_text(&f.attempt(&plugin.info.name, &request.stage_name))
    }

    /// Run every check on the window since traffic last moved; the worst
    /// verdict wins and a trap or failure counts as `fail`.
    async fn analyze(
        &mut self,
        state: &types::RolloutState,
        since_ms: u64,
        stable: Option<&str>,
    ) -> types::Analysis {
        let until_ms = now_ms();
        let mut verdict = Verdict::Pass;
        let mut findings = Vec::new();
        let mut summaries = Vec::new();
        if self.plugins.checks.is_empty() {
            summaries.push("no checks configured".to_string());
        }
        let plugins = self.plugins.clone();
        for (plugin, used) in &plugins.checks {
            let mut with = used.with.clone();
            if let Value::Object(m) = &mut with {
                m.insert(
                    "rollout".into(),
                    serde_json::json!({
                        "service": self.release.service,
                        "stable": stable,
                        "candidate": self.release.version,
                        "candidate-weight": state.candidate_weight,
                        "start-ms": since_ms,
                        "end-ms": until_ms,
                    }),
                );
            }
            let request = self.request_for(with, used.timeout, true);
            let who = format!("check `{}`", plugin.info.name);
            let outcome = match plugin.pre_for(&request.grants) {
                Err(e) => Err(e),
                Ok(KindPre::Analyzer(pre)) => match self.store_for(plugin, &request) {
                    Err(e) => Err(e),
                    Ok((mut store, ctx)) => {
                        guest_call::call(&mut store, request.timeout, &self.r.info.limits, async |store| {
                            let b = pre.instantiate_async(&mut *store).await?;
                            b.weir_plugin_analyzer().call_analyze(&mut *store, &ctx).await
                        })
                        .await
                        .map_err(|f| match f {
                            CallFailure::Plugin { message, .. } => format!("failed: {message}"),
                            other => self.failure(other, plugin, &request),
                        })
                    }
                },
                _ => Err(format!("plugin `{}` is not an analyzer", plugin.info.name)),
            };
            match outcome {
                Ok(a) => {
                    verdict = worst(verdict, a.verdict);
                    summaries.push(format!(
                        "{who}: {}{}",
                        verdict_name(a.verdict),
                        a.summary.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
                    ));
                    findings.extend(a.findings);
                }
                Err(e) => {
                    verdict = Verdict::Fail;
                    summaries.push(format!("{who}: {e}"));
                }
            }
        }
        self.analyses += 1;
        let analysis = types::Analysis {
            findings,
            score: None,
            verdict,
            summary: Some(summaries.join("; ")),
        };
        let converted = crate::verdicts::analysis_result(analysis.clone(), &crate::plan::Gate::default());
        self.findings.extend(converted.findings);
        self.emit(
            RolloutPhase::Analysis,
            analysis.summary.clone().unwrap_or_default(),
            BTreeMap::new(),
            Some(verdict_name(verdict).to_string()),
        );
        analysis
    }

    async fn start_load(&mut self) {
        if self.load.is_some() {
            return;
        }
        let Some(l) = self.plugins.load.clone() else {
            return;
        };
        let address = match self.target.service(&self.release.service).await {
            Ok(s) => s.address,
            Err(e) => {
                tracing::warn!("no load: {e}");
                return;
            }
        };
        match load::LoadGen::start(&address, &l.path, l.rate) {
            Ok(g) => self.load = Some(g),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

fn failure_text(r: &AttemptResult) -> String {
    r.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default()
}

/// The worse of two verdicts: fail, then inconclusive, then warn, then
/// pass.
fn worst(a: Verdict, b: Verdict) -> Verdict {
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Warn => 1,
        Verdict::Inconclusive => 2,
        Verdict::Fail => 3,
    };
    if rank(b) > rank(a) { b } else { a }
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
        Ok((t, _)) => t,
        Err(e) => return AttemptResult::failed(FailureKind::Host, e.to_string(), None),
    };
    // One rollout per service at a time, across weir processes: the lock
    // is released when this run ends, however it ends.
    let _lock = match lock_service(&dir, &release.service, &r.info.run_id) {
        Ok(l) => l,
        Err(e) => return AttemptResult::failed(FailureKind::Host, e, None),
    };
    let deadline = Instant::now() + r.request.timeout;
    let mut r = r;
    r.setup.runtime_scope = Some(crate::capabilities::runtime::RuntimeScope {
        service: release.service.clone(),
        version: release.version.clone(),
        artifact: release.artifact.clone(),
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
    let outcome = drive(&mut c, stable.as_deref()).await;
    let load = c.load.take().map(|l| l.summary());
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
    guard.target = None;
    result
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

/// Take `service`'s rollout lock in the target directory, or say which
/// run holds it.
fn lock_service(dir: &std::path::Path, service: &str, run: &str) -> Result<std::fs::File, String> {
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

fn outputs(release: &ReleaseSpec, address: Option<String>) -> Vec<(String, String)> {
    let mut out = vec![
        ("service".to_string(), release.service.clone()),
        ("version".to_string(), release.version.clone()),
    ];
    if let Some(a) = address {
        out.push(("url".to_string(), format!("http://{a}")));
    }
    out
}

/// The loop: ask, check, act, until promote or an abort.
async fn drive(c: &mut Controller, stable: Option<&str>) -> Result<String, Abort> {
    let started = Instant::now();
    let (mut dstore, dctx) = prepare_store(
        &c.r.engine,
        &c.r.deployer,
        &c.r.info,
        c.r.sink.clone(),
        &c.r.request,
        c.r.sandbox.clone(),
        c.r.deployer.info.declares(types::Capability::Process),
        &c.r.setup,
    )
    .map_err(|f| abort(failure_text(&f)))?;
    let KindPre::Deployer(pre) = c.r.deployer.pre_for(&c.r.request.grants).map_err(abort)? else {
        return Err(abort("the stage's plugin is not a deployer"));
    };
    let deployer = pre.instantiate_async(&mut dstore).await.map_err(|e| {
        abort(format!(
            "deployer `{}` could not start: {e}",
            c.r.deployer.info.name
        ))
    })?;
    let release = types::Release {
        service: c.release.service.clone(),
        version: c.release.version.clone(),
        artifact: c.release.artifact.clone(),
        replicas: c.release.replicas,
        env: c.release.env.clone(),
    };
    let mut state = types::RolloutState {
        service: c.release.service.clone(),
        stable: stable.map(str::to_string),
        candidate: c.release.version.clone(),
        step: 0,
        candidate_weight: 0,
        elapsed_ms: 0,
        candidate_deployed: false,
        replicas: c.release.replicas,
        last_analysis: None,
    };
    let mut moved_ms = now_ms();
    let mut analysed_since_move = false;
    let mut path: Vec<u32> = Vec::new();
    let who = format!("deployer `{}`", c.r.deployer.info.name);
    macro_rules! deployer_call {
        ($call:expr) => {{
            let remaining = c.remaining();
            match tokio::time::timeout(remaining, $call).await {
                Ok(Ok(Ok(status))) => Ok::<types::DeploymentStatus, Abort>(status),
                Ok(Ok(Err(f))) => Err(abort(format!("{who} failed: {}", f.message))),
                Ok(Err(trap)) => Err(abort(
                    match guest_call::classify(
                        dstore.data(),
                        Some(&trap),
                        &c.r.info.limits,
                        c.r.request.timeout,
                    ) {
                        CallFailure::Trap { code, .. } => format!("{who} crashed: {code}"),
                        CallFailure::Time(_) => format!(
                            "stage `{}` ran out of time during the rollout",
                            c.r.request.stage_name
                        ),
                        other => format!("{who}: {other}"),
                    },
                )),
                Err(_) => Err(abort(format!(
                    "stage `{}` ran out of time during the rollout",
                    c.r.request.stage_name
                ))),
            }
        }};
    }
    loop {
        if c.step >= MAX_STEPS {
            return Err(abort(format!("the strategy took more than {MAX_STEPS} steps")));
        }
        if c.remaining().is_zero() {
            return Err(abort(format!(
                "stage `{}` ran out of time ({}) before the rollout finished",
                c.r.request.stage_name,
                crate::config::duration::format_duration(c.r.request.timeout)
            )));
        }
        state.step = c.step;
        state.elapsed_ms = started.elapsed().as_millis() as u64;
        let action = c.ask_strategy(&state).await.map_err(abort)?;
        c.step += 1;
        // Nonsense is refused here, before anything is done.
        match &action {
            Action::SetWeight(w) if *w > 100 => {
                return Err(abort(format!(
                    "the strategy asked for a weight of {w}%, over 100"
                )));
            }
            Action::SetWeight(_) | Action::Promote if !state.candidate_deployed => {
                return Err(abort(format!(
                    "the strategy asked to {} before deploying the candidate",
                    describe(&action)
                )));
            }
            Action::SetWeight(w) if *w < 100 && stable.is_none() => {
                return Err(abort(format!(
                    "the strategy asked for a {w}% split, but `{}` has no stable version to split with",
                    c.release.service
                )));
            }
            Action::Wait(ms) if Duration::from_millis(*ms) > c.remaining() => {
                return Err(abort(format!(
                    "the strategy asked to wait {}, longer than the stage has left",
                    millis(*ms)
                )));
            }
            _ => {}
        }
        let mut weights = BTreeMap::new();
        match &action {
            Action::DeployCandidate => {
                let status = deployer_call!(deployer.weir_plugin_deployer().call_deploy(
                    &mut dstore,
                    &dctx,
                    &release
                ))?;
                state.candidate_deployed = true;
                weights = status.weights.into_iter().collect();
                // Load from here when something already serves; else
                // from the candidate's first share of traffic.
                if stable.is_some() {
                    c.start_load().await;
                }
            }
            Action::SetWeight(w) => {
                let mut split = vec![(c.release.version.clone(), *w)];
                if let Some(s) = stable
                    && *w < 100
                {
                    split.push((s.to_string(), 100 - *w));
                }
                deployer_call!(deployer.weir_plugin_deployer().call_set_traffic(
                    &mut dstore,
                    &dctx,
                    &c.release.service,
                    &split
                ))?;
                weights = split.into_iter().collect();
                c.start_load().await;
                state.candidate_weight = *w;
                moved_ms = now_ms();
                analysed_since_move = false;
                path.push(*w);
            }
            Action::Wait(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
            }
            Action::Scale(to) => {
                if to.candidate > c.release.replicas || to.stable > c.release.replicas {
                    return Err(abort(format!(
                        "the strategy asked for {} candidate and {} stable instances; the release runs {}",
                        to.candidate, to.stable, c.release.replicas
                    )));
                }
                let status = deployer_call!(deployer.weir_plugin_deployer().call_scale(
                    &mut dstore,
                    &dctx,
                    &c.release.service,
                    &c.release.version,
                    to.candidate
                ))?;
                let ready = status
                    .ready
                    .iter()
                    .find(|(v, _)| *v == c.release.version)
                    .map_or(0, |(_, n)| *n)
                    .min(to.candidate);
                let keep = if stable.is_some() { to.stable } else { 0 };
                // Traffic follows the instances that will serve.
                if let Some(w) = (100 * ready + (ready + keep) / 2).checked_div(ready + keep) {
                    let mut split = vec![(c.release.version.clone(), w)];
                    if let Some(s) = stable
                        && w < 100
                    {
                        split.push((s.to_string(), 100 - w));
                    }
                    deployer_call!(deployer.weir_plugin_deployer().call_set_traffic(
                        &mut dstore,
                        &dctx,
                        &c.release.service,
                        &split
                    ))?;
                    weights = split.into_iter().collect();
                    if w != state.candidate_weight {
                        moved_ms = now_ms();
                        analysed_since_move = false;
                        path.push(w);
                    }
                    state.candidate_weight = w;
                    c.start_load().await;
                }
                if let Some(s) = stable {
                    deployer_call!(deployer.weir_plugin_deployer().call_scale(
                        &mut dstore,
                        &dctx,
                        &c.release.service,
                        s,
                        to.stable
                    ))?;
                }
                state.candidate_deployed = ready > 0;
            }
            Action::Analyze => {}
            Action::Promote => {}
            Action::Rollback(why) => {
                return Err(abort(format!("the strategy rolled back: {why}")));
            }
        }
        c.emit(RolloutPhase::Action, describe(&action), weights, None);
        let judge = matches!(action, Action::Analyze)
            || (matches!(action, Action::Promote) && !c.plugins.checks.is_empty() && !analysed_since_move);
        if judge {
            let analysis = c.analyze(&state, moved_ms, stable).await;
            analysed_since_move = true;
            let verdict = analysis.verdict;
            let summary = analysis.summary.clone().unwrap_or_default();
            state.last_analysis = Some(analysis);
            if matches!(verdict, Verdict::Fail | Verdict::Inconclusive) {
                return Err(abort(format!(
                    "the analysis at {}% was {}: {summary}",
                    state.candidate_weight,
                    verdict_name(verdict)
                )));
            }
        }
        if matches!(action, Action::Promote) {
            deployer_call!(deployer.weir_plugin_deployer().call_promote(
                &mut dstore,
                &dctx,
                &c.release.service,
                &c.release.version
            ))?;
            c.target
                .promote(&c.release.service, &c.release.version)
                .await
                .map_err(|e| abort(format!("the target could not record the promotion: {e}")))?;
            c.emit(
                RolloutPhase::Promoted,
                format!("{} {} is stable", c.release.service, c.release.version),
                [(c.release.version.clone(), 100)].into_iter().collect(),
                None,
            );
            let steps = path
                .iter()
                .map(|w| format!("{w}%"))
                .collect::<Vec<_>>()
                .join(" → ");
            return Ok(format!(
                "promoted {} {} ({}; {} analys{} passed) in {}",
                c.release.service,
                c.release.version,
                if steps.is_empty() {
                    "no traffic steps".to_string()
                } else {
                    steps
                },
                c.analyses,
                if c.analyses == 1 { "is" } else { "es" },
                crate::config::duration::format_duration(Duration::from_millis(
                    started.elapsed().as_millis() as u64
                ))
            ));
        }
    }
}

/// Undo the rollout: the deployer's rollback, then the host's.
async fn roll_back(c: &mut Controller, stable: Option<&str>, a: Abort) -> AttemptResult {
    let candidate = c.release.version.clone();
    let service = c.release.service.clone();
    // The deployer first, in a fresh Store (the rollout's may have
    // trapped); whatever it does, the host then restores the stable
    // release itself.
    let mut deployer_note = String::new();
    if let Ok(KindPre::Deployer(pre)) = c.r.deployer.pre_for(&c.r.request.grants) {
        let mut request = c.r.request.clone();
        request.timeout = ROLLBACK_TIMEOUT;
        if let Ok((mut store, ctx)) = prepare_store(
            &c.r.engine,
            &c.r.deployer,
            &c.r.info,
            c.r.sink.clone(),
            &request,
            c.r.sandbox.clone(),
            c.r.deployer.info.declares(types::Capability::Process),
            &c.r.setup,
        ) {
            let rolled_back =
                guest_call::call(&mut store, ROLLBACK_TIMEOUT, &c.r.info.limits, async |store| {
                    let b = pre.instantiate_async(&mut *store).await?;
                    b.weir_plugin_deployer()
                        .call_rollback(&mut *store, &ctx, &service, &candidate)
                        .await
                })
                .await;
            deployer_note = match rolled_back {
                Ok(_) => String::new(),
                Err(CallFailure::Plugin { message, .. }) => {
                    format!(" (the deployer's rollback failed: {message})")
                }
                Err(CallFailure::Trap { code, .. }) => format!(" (the deployer's rollback crashed: {code})"),
                Err(CallFailure::Time(_)) => " (the deployer's rollback timed out)".into(),
                Err(other) => format!(" (the deployer's rollback was stopped: {other})"),
            };
        }
    }
    let restored = c.target.restore(&service, &a.reason).await;
    let recovery_ms = a.since.elapsed().as_millis() as u64;
    let (weights, verified) = match &restored {
        Ok(s) => {
            let w: BTreeMap<String, u32> = s.weights.iter().cloned().collect();
            let ok = match stable {
                Some(v) => w.get(v) == Some(&100) && w.len() == 1 && s.ready(v) > 0,
                None => w.is_empty(),
            };
            (w, ok)
        }
        Err(_) => (BTreeMap::new(), false),
    };
    c.r.sink.emit(Event::Rollout {
        stage: c.r.request.stage_name.clone(),
        service: service.clone(),
        version: candidate.clone(),
        step: c.step,
        phase: RolloutPhase::RolledBack,
        message: a.reason.clone(),
        weights,
        verdict: None,
        recovery_ms: Some(recovery_ms),
    });
    let where_now = match (&restored, stable, verified) {
        (Err(e), _, _) => format!("the target could not restore the stable release: {e}"),
        (Ok(_), Some(v), true) => format!("all traffic is back on {v} after {recovery_ms} ms"),
        (Ok(_), None, true) => "nothing was stable before, so nothing serves now".to_string(),
        (Ok(s), _, false) => format!(
            "the target did not end on the stable release (traffic: {:?})",
            s.weights
        ),
    };
    AttemptResult::failed(
        FailureKind::RolledBack,
        format!(
            "rolled back {service} {candidate}: {}; {where_now}{deployer_note}",
            a.reason
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_comes_from_the_stage_config_with_checked_names() {
        let r = release_of(
            r#"{"service":"web","artifact":"bin/web","replicas":3,"env":{"MODE":"x"}}"#,
            "20261122-abc123",
        )
        .expect("release");
        assert_eq!(r.version, "abc123");
        assert_eq!(r.replicas, 3);
        assert_eq!(r.env, vec![("MODE".to_string(), "x".to_string())]);
        for bad in [
            r#"{"artifact":"a"}"#,
            r#"{"service":"web"}"#,
            r#"{"service":"../x","artifact":"a"}"#,
            r#"{"service":"web","artifact":"a","replicas":0}"#,
            r#"{"service":"web","artifact":"a","version":"a b"}"#,
        ] {
            assert!(release_of(bad, "r").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_worst_verdict_wins_and_no_data_is_never_a_pass() {
        assert!(matches!(
            worst(Verdict::Pass, Verdict::Inconclusive),
            Verdict::Inconclusive
        ));
        assert!(matches!(
            worst(Verdict::Fail, Verdict::Inconclusive),
            Verdict::Fail
        ));
        assert!(matches!(worst(Verdict::Warn, Verdict::Pass), Verdict::Warn));
    }
}
