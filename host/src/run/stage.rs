//! One stage's task: admission, `${{ }}` substitution, the stage cache,
//! attempts and retries, and its `stage_finished` event.

use std::sync::Arc;
use std::time::Instant;

use super::{Admission, Executor, StageEnd};
use crate::attempt::{AttemptRequest, AttemptResult};
use crate::events::{Event, EventSink, FailureKind, Reused, StageStatus};
use crate::plan::{expr, shell};

/// One stage, all its attempts.
/// What every stage task of a run shares.
pub(super) struct StageRun {
    pub(super) executor: Arc<dyn Executor>,
    pub(super) sink: EventSink,
    /// The run's environment, for stages that name none.
    pub(super) run_environment: Option<String>,
    pub(super) admission: Option<Arc<dyn Admission>>,
    /// Set when the run is cancelled.
    pub(super) stopping: Arc<std::sync::atomic::AtomicBool>,
}

pub(super) async fn run_stage(
    stage: crate::plan::PlannedStage,
    index: usize,
    inputs: Vec<(String, Vec<(String, String)>)>,
    run: StageRun,
) -> StageEnd {
    let StageRun {
        executor,
        sink,
        run_environment,
        admission,
        stopping,
    } = run;
    // Waiting for approval or a group is not the stage's time.
    let _permit = match &admission {
        Some(a) => match a.admit(&stage).await {
            Ok(p) => Some(p),
            Err(result) => {
                finish(
                    &sink,
                    &stage.name,
                    &executor.plugin_label(index),
                    0,
                    Instant::now(),
                    &result,
                );
                return (StageStatus::Failed, Vec::new());
            }
        },
        None => None,
    };
    let started = Instant::now();
    let lookup = |r: &expr::OutputRef| {
        inputs
            .iter()
            .find(|(s, _)| *s == r.stage)
            .and_then(|(_, outs)| outs.iter().find(|(k, _)| *k == r.output))
            .map(|(_, v)| v.clone())
    };
    let missing = |r: expr::OutputRef| {
        let mut available: Vec<&str> = inputs
            .iter()
            .find(|(s, _)| *s == r.stage)
            .map(|(_, outs)| outs.iter().map(|(k, _)| k.as_str()).collect())
            .unwrap_or_default();
        available.sort_unstable();
        AttemptResult::failed(
            FailureKind::Host,
            format!(
                "`${{{{ stages.{}.outputs.{} }}}}` has no value: stage `{}` produced no output `{}` (its outputs: {})",
                r.stage,
                r.output,
                r.stage,
                r.output,
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            None,
        )
    };
    let substituted = expr::substitute_json(&stage.with, &lookup)
        .map_err(shell::RenderError::Missing)
        .and_then(|mut config| {
            let mut env = stage
                .env
                .iter()
                .map(|(k, v)| Ok((k.clone(), expr::substitute(v, lookup)?)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(shell::RenderError::Missing)?;
            // Shell text gets its values as variables, never as text.
            for key in &stage.shell {
                let Some(text) = stage.with.get(key).and_then(|v| v.as_str()) else {
                    continue;
                };
                let (rendered, vars) = shell::render(text, env_count(&env) + 1, lookup)?;
                config[key.as_str()] = serde_json::Value::String(rendered);
                env.extend(vars);
            }
            Ok((config, env))
        });
    let (config, env) = match substituted {
        Ok(ok) => ok,
        Err(e) => {
            let result = match e {
                shell::RenderError::Missing(r) => missing(r),
                shell::RenderError::Unplaced(why) => AttemptResult::failed(FailureKind::Host, why, None),
                shell::RenderError::Nul(r) => AttemptResult::failed(
                    FailureKind::Host,
                    format!(
                        "`${{{{ stages.{}.outputs.{} }}}}` holds a NUL byte, which no program can be given (in its arguments or environment); stage `{}` should not output one",
                        r.stage, r.output, r.stage
                    ),
                    None,
                ),
            };
            finish(
                &sink,
                &stage.name,
                &executor.plugin_label(index),
                0,
                started,
                &result,
            );
            return (StageStatus::Failed, Vec::new());
        }
    };

    let first = AttemptRequest {
        stage: index,
        stage_name: stage.name.to_string(),
        attempt: 1,
        config: config.to_string(),
        env,
        secret_env: stage.secret_env.clone(),
        inputs,
        timeout: stage.timeout,
        environment: stage.environment.clone().or_else(|| run_environment.clone()),
        grants: stage.grants.clone(),
        sandbox: stage.sandbox,
        gate: stage.gate,
        cache: stage.cache.clone(),
    };
    let check = executor.check_cache(&first).await;
    if let Some(event) = check.event {
        sink.emit(event);
    }
    if let Some((result, from)) = check.hit {
        finish_as(
            &sink,
            &stage.name,
            &executor.plugin_label(index),
            0,
            started,
            &result,
            Some(from),
        );
        return (StageStatus::Succeeded, result.outputs);
    }

    let max_attempts = stage.retries + 1;
    let mut attempt = 1;
    let mut used: Option<crate::events::Usage> = None;
    loop {
        sink.emit(Event::StageStarted {
            stage: stage.name.to_string(),
            attempt,
            plugin: executor.plugin_label(index),
        });
        let request = AttemptRequest {
            attempt,
            ..first.clone()
        };
        let mut result = executor.execute(request).await;
        if let Some(u) = result.usage {
            used.get_or_insert_default().add(u);
        }
        result.usage = used;
        // Ended because the run is being cancelled: the scheduler reports
        // it cancelled; its result is neither retried, cached nor shown.
        if stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return (StageStatus::Cancelled, Vec::new());
        }
        if let Some(f) = &result.failure
            && attempt < max_attempts
            && f.retryable
        {
            sink.emit(Event::StageRetrying {
                stage: stage.name.to_string(),
                attempt,
                error: f.message.clone(),
            });
            attempt += 1;
            continue;
        }
        if let Some(f) = &mut result.failure
            && attempt < max_attempts
        {
            f.message = format!(
                "{} (not retried: {})",
                f.message,
                match f.kind {
                    FailureKind::Plugin => "the plugin said another attempt would not help",
                    FailureKind::Limit => "a limit is hit the same way every time",
                    _ => "another attempt would end the same way",
                }
            );
        }
        let succeeded = result.failure.is_none();
        if succeeded && let Some(key) = check.key {
            executor.fill_cache(&first, key, &result).await;
        }
        finish(
            &sink,
            &stage.name,
            &executor.plugin_label(index),
            attempt,
            started,
            &result,
        );
        return if succeeded {
            (StageStatus::Succeeded, result.outputs)
        } else {
            (StageStatus::Failed, Vec::new())
        };
    }
}

pub(super) fn finish(
    sink: &EventSink,
    stage: &str,
    plugin: &str,
    attempts: u32,
    started: Instant,
    result: &AttemptResult,
) {
    finish_as(sink, stage, plugin, attempts, started, result, None);
}

pub(super) fn finish_as(
    sink: &EventSink,
    stage: &str,
    plugin: &str,
    attempts: u32,
    started: Instant,
    result: &AttemptResult,
    reused: Option<Reused>,
) {
    sink.emit(Event::StageFinished {
        stage: stage.to_string(),
        plugin: Some(plugin.to_string()),
        status: if result.failure.is_none() {
            StageStatus::Succeeded
        } else {
            StageStatus::Failed
        },
        failure: result.failure.as_ref().map(|f| f.kind),
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
        outputs: result.outputs.iter().cloned().collect(),
        artifacts: result.artifacts.clone(),
        summary: result.summary.clone(),
        error: result.failure.as_ref().map(|f| f.message.clone()),
        details: result.failure.as_ref().and_then(|f| f.details.clone()),
        findings: result.findings.clone(),
        analysis: result.analysis.clone().map(Box::new),
        tests: result.tests,
        sandbox: result.sandbox.clone(),
        cases: result.cases.clone(),
        usage: result.usage,
        reused: reused.map(Box::new),
    });
}

/// How many expression variables `env` holds already.
fn env_count(env: &[(String, String)]) -> usize {
    env.iter()
        .filter(|(k, _)| k.starts_with(shell::VAR_PREFIX))
        .count()
}
