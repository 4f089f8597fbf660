//! The controller's state through one rollout, and how it calls the
//! strategy and the checks.

use super::release::ReleaseSpec;
use super::*;

pub(super) fn describe(action: &Action) -> String {
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
pub(super) fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        crate::config::duration::format_duration(Duration::from_millis(ms))
    } else {
        format!("{ms}ms")
    }
}

pub(super) fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Why the rollout stopped short, and since when the service has been
/// at risk (for the time to recovery).
pub(super) struct Abort {
    pub(super) reason: String,
    pub(super) since: Instant,
}

pub(super) fn abort(reason: impl Into<String>) -> Abort {
    Abort {
        reason: reason.into(),
        since: Instant::now(),
    }
}

pub(super) struct Controller {
    pub(super) r: Rollout,
    pub(super) plugins: Arc<RolloutPlugins>,
    pub(super) release: ReleaseSpec,
    pub(super) target: TargetClient,
    pub(super) deadline: Instant,
    pub(super) findings: Vec<FindingRecord>,
    pub(super) analyses: u32,
    pub(super) step: u32,
    pub(super) load: Option<load::LoadGen>,
}

impl Controller {
    pub(super) fn emit(
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
            traffic: BTreeMap::new(),
        });
    }

    /// What each version answered between `since_ms` and `until_ms`, from
    /// the target's router: what a dashboard charts beside the verdict.
    async fn traffic(&self, since_ms: u64, until_ms: u64) -> BTreeMap<String, crate::events::Traffic> {
        let samples = match self
            .target
            .samples(&self.release.service, since_ms, until_ms)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("no traffic figures for the analysis: {e}");
                return BTreeMap::new();
            }
        };
        samples
            .versions
            .into_iter()
            .map(|(version, requests)| {
                let mut seconds: Vec<f64> = requests
                    .iter()
                    .map(|r| r.seconds)
                    .filter(|s| s.is_finite())
                    .collect();
                seconds.sort_by(f64::total_cmp);
                let p99_ms = (!seconds.is_empty()).then(|| {
                    let rank = ((0.99 * seconds.len() as f64).ceil() as usize).clamp(1, seconds.len());
                    seconds[rank - 1] * 1000.0
                });
                let traffic = crate::events::Traffic {
                    requests: requests.len() as u64,
                    errors: requests.iter().filter(|r| r.status >= 500).count() as u64,
                    p99_ms,
                };
                (version, traffic)
            })
            .collect()
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A request for a strategy or check call: the stage's, with that
    /// plugin's config and timeout.
    pub(super) fn request_for(&self, with: Value, timeout: Duration, grants: bool) -> AttemptRequest {
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
    pub(super) fn store_for(
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

    pub(super) async fn ask_strategy(&self, state: &types::RolloutState) -> Result<Action, String> {
        let (plugin, used) = &self.plugins.strategy;
        let request = self.request_for(used.with.clone(), used.timeout, false);
        let KindPre::Strategy(pre) = plugin.pre_for(&request.grants).map_err(|e| e.to_string())? else {
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
    pub(super) fn failure(&self, f: CallFailure, plugin: &LoadedPlugin, request: &AttemptRequest) -> String {
        failure_text(&f.attempt(&plugin.info.name, &request.stage_name))
    }

    /// Run every check on the window since traffic last moved; the worst
    /// verdict wins and a trap or failure counts as `fail`.
    pub(super) async fn analyze(
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
                Err(e) => Err(e.to_string()),
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
        let traffic = self.traffic(since_ms, until_ms).await;
        self.r.sink.emit(Event::Rollout {
            stage: self.r.request.stage_name.clone(),
            service: self.release.service.clone(),
            version: self.release.version.clone(),
            step: self.step,
            phase: RolloutPhase::Analysis,
            message: analysis.summary.clone().unwrap_or_default(),
            weights: BTreeMap::new(),
            verdict: Some(verdict_name(verdict).to_string()),
            recovery_ms: None,
            traffic,
        });
        analysis
    }

    pub(super) async fn start_load(&mut self) {
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

pub(super) fn failure_text(r: &AttemptResult) -> String {
    r.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default()
}

/// The worse of two verdicts: fail, then inconclusive, then warn, then
/// pass.
pub(super) fn worst(a: Verdict, b: Verdict) -> Verdict {
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Warn => 1,
        Verdict::Inconclusive => 2,
        Verdict::Fail => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}
