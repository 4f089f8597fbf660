//! The loop itself: ask, check, act, until promote or an abort; and the
//! rollback that follows an abort.

use super::controller::{Abort, Controller, abort, describe, failure_text, millis, verdict_name};
use super::*;

/// The loop: ask, check, act, until promote or an abort.
pub(super) async fn drive(c: &mut Controller, stable: Option<&str>) -> Result<String, Abort> {
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
    let KindPre::Deployer(pre) =
        c.r.deployer
            .pre_for(&c.r.request.grants)
            .map_err(|e| abort(e.to_string()))?
    else {
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
pub(super) async fn roll_back(c: &mut Controller, stable: Option<&str>, a: Abort) -> AttemptResult {
    let candidate = c.release.version.clone();
    let service = c.release.service.clone();
    // Traffic first: the host moves it all back to the stable version
    // while that version still has ready instances, before anything is
    // stopped, so the time to recovery is the router's switch and not the
    // candidate's shutdown (a container's can take seconds).
    let mut recovered_ms = None;
    if let Some(v) = stable
        && c.target.service(&service).await.is_ok_and(|s| s.ready(v) > 0)
        && c.target
            .set_weights(&service, vec![(v.to_string(), 100)])
            .await
            .is_ok()
    {
        recovered_ms = Some(a.since.elapsed().as_millis() as u64);
    }
    // The deployer next, in a fresh Store (the rollout's may have
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
    let restored_ms = a.since.elapsed().as_millis() as u64;
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
    // The early switch counts only if the restore confirmed where it left
    // the traffic.
    let recovery_ms = recovered_ms.filter(|_| verified).unwrap_or(restored_ms);
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
        traffic: BTreeMap::new(),
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
