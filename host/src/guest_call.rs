//! One way to call a guest: a Store with the stage's limits and deadline
//! ([`new_store`]), a call bounded by that deadline ([`call`]), and every
//! way it can end other than a result sorted into one [`CallFailure`].
//! Stages, analyzers, test runners, strategies, checks and deployers are
//! all called through here, so a limit is named the same way whichever
//! kind of plugin hits it. `stage_store` builds the Store a stage's
//! plugin is called in; `plugins` uses [`new_store`] for `describe()`.

use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use crate::attempt::AttemptResult;
use crate::bindings::types;
use crate::engine::{StageLimits, WeirEngine};
use crate::events::FailureKind;
use crate::sandbox::StageState;

/// Extra time given to host-side waits beyond the stage timeout before the
/// call is abandoned: epochs cannot interrupt host code (a guest asleep
/// in `wasi:clocks`), so a tokio timeout backs the epoch deadline up.
pub const HOST_GRACE: Duration = Duration::from_millis(500);

/// A Store for `state` with `limits` applied and a deadline `timeout` from
/// now. Past the deadline the guest traps at its next epoch check and
/// `state.timed_out` is set; before it, the guest yields every tick so other
/// stages on the same thread make progress.
pub fn new_store(
    engine: &WeirEngine,
    state: StageState,
    timeout: Duration,
    limits: StageLimits,
) -> Store<StageState> {
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(limits.hostcall_bytes);
    if engine.fuel() {
        // The tenant's CPU budget for this call; without one (another
        // tenant's setting turned metering on) fuel only measures.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
    }
    let deadline = Instant::now() + timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        if Instant::now() >= deadline {
            ctx.data_mut().timed_out = true;
            Err(wasmtime::Error::msg("the stage ran past its timeout"))
        } else if ctx.data().stopping.is_stopping() {
            Err(wasmtime::Error::msg("the run was cancelled"))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// How a guest call ended when it did not return a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallFailure {
    /// The guest trapped: a panic, `unreachable`, a stack overflow.
    #[error("crashed: {code} (its log shows any panic message)")]
    Trap {
        /// The trap, without wasm backtraces.
        code: String,
        /// Everything wasmtime said, backtrace included.
        detail: String,
    },
    /// It executed its whole CPU budget (limit `fuel`).
    #[error("{0}")]
    Fuel(String),
    /// It grew its memory past the limit (limit `memory`).
    #[error("{0}")]
    Memory(String),
    /// It ran past its deadline.
    #[error("ran longer than its timeout of {} and was stopped", crate::config::duration::format_duration(*.0))]
    Time(Duration),
    /// It passed the host more than it may in one call (limit
    /// `hostcall-bytes`), or returned more than a result may hold.
    #[error("{0}")]
    OutputSize(String),
    /// Another named limit: tables, random bytes, handles, descriptors.
    #[error("{0}")]
    Limit(String),
    /// The plugin returned a failure of its own.
    #[error("failed: {message}")]
    Plugin {
        /// Its message, cut to size.
        message: String,
        /// Its details, cut to size.
        details: Option<String>,
        /// Whether it says another attempt may help.
        retryable: bool,
    },
    /// The host could not make the call.
    #[error("{0}")]
    Host(String),
}

impl CallFailure {
    /// The plugin's own failure, with its texts cut to size.
    pub fn plugin(f: types::Failure) -> Self {
        CallFailure::Plugin {
            message: weir_pipeline::results::cut_failure_text(f.message),
            details: f.details.map(weir_pipeline::results::cut_failure_text),
            retryable: f.retryable,
        }
    }

    /// Whether this is a named limit (memory, fuel, output size, …).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CallFailure::Fuel(_)
                | CallFailure::Memory(_)
                | CallFailure::OutputSize(_)
                | CallFailure::Limit(_)
        )
    }

    /// This failure as the failed attempt of `stage`, whose plugin is
    /// `plugin`.
    pub fn attempt(self, plugin: &str, stage: &str) -> AttemptResult {
        match self {
            CallFailure::Time(_) => {
                AttemptResult::failed(FailureKind::Timeout, format!("stage `{stage}` {self}"), None)
            }
            CallFailure::Trap { ref detail, .. } => {
                let detail = detail.clone();
                AttemptResult::failed(
                    FailureKind::Trap,
                    format!("plugin `{plugin}` {self}"),
                    Some(detail),
                )
            }
            CallFailure::Plugin {
                message,
                details,
                retryable,
            } => AttemptResult::plugin_failed(message, details, retryable),
            CallFailure::Host(message) => AttemptResult::failed(FailureKind::Host, message, None),
            limit => AttemptResult::failed(
                FailureKind::Limit,
                format!("{limit}; stage `{stage}` was stopped"),
                None,
            ),
        }
    }
}

/// Call a guest in `store`: `f` instantiates and calls it. The call is
/// bounded by `timeout` (plus [`HOST_GRACE`] for host code the epoch
/// cannot interrupt), and however it ends other than with a result is
/// classified against `limits`.
pub async fn call<T>(
    store: &mut Store<StageState>,
    timeout: Duration,
    limits: &StageLimits,
    f: impl AsyncFnOnce(&mut Store<StageState>) -> wasmtime::Result<Result<T, types::Failure>>,
) -> Result<T, CallFailure> {
    let outcome = tokio::time::timeout(timeout + HOST_GRACE, f(store)).await;
    match outcome {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(failure))) => Err(CallFailure::plugin(failure)),
        Ok(Err(trap)) => Err(classify(store.data(), Some(&trap), limits, timeout)),
        Err(_) => Err(CallFailure::Time(timeout)),
    }
}

/// How a call that did not return ended: its deadline, a named limit or a
/// trap. `trap` is `None` when the host gave up waiting.
pub fn classify(
    state: &StageState,
    trap: Option<&wasmtime::Error>,
    limits: &StageLimits,
    timeout: Duration,
) -> CallFailure {
    let Some(trap) = trap else {
        return CallFailure::Time(timeout);
    };
    if state.timed_out {
        return CallFailure::Time(timeout);
    }
    match state.limiter.hit() {
        Some(hit @ crate::engine::limits::LimitHit::Memory { .. }) => {
            return CallFailure::Memory(hit.to_string());
        }
        Some(hit) => return CallFailure::Limit(hit.to_string()),
        None => {}
    }
    if let Some(hit) = wasmtime_limit(trap, limits, state.descriptors.handles()) {
        return hit;
    }
    let code = trap
        .downcast_ref::<wasmtime::Trap>()
        .map(|t| t.to_string().trim_start_matches("wasm trap: ").to_string())
        .unwrap_or_else(|| root_message(trap));
    CallFailure::Trap {
        code,
        detail: format!("{trap:?}"),
    }
}

/// A limit wasmtime itself enforces, named. wasmtime reports these with
/// private error types, so they are recognised by their (stable) messages.
fn wasmtime_limit(e: &wasmtime::Error, limits: &StageLimits, handles: usize) -> Option<CallFailure> {
    let text = format!("{e:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        Some(CallFailure::OutputSize(format!(
            "hostcall data limit hit: the plugin passed more than {} to the host in one call (limit `hostcall-bytes`)",
            crate::engine::limits::human_bytes(limits.hostcall_bytes)
        )))
    } else if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
        Some(CallFailure::Fuel(format!(
            "CPU limit hit: the plugin executed its whole budget of {} fuel (wasm instructions) (limit `fuel`)",
            limits.fuel.unwrap_or(u64::MAX)
        )))
    } else if text.contains("requested len") && text.contains("exceeds limit") {
        let asked = text
            .split("requested len ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or("more");
        Some(CallFailure::Limit(format!(
            "random-bytes limit hit: the plugin asked for {asked} random bytes in one call; the limit is {} (limit `random-bytes`)",
            limits.random_bytes
        )))
    } else if text.contains("resource table has no free keys") && handles < limits.resource_handles {
        Some(CallFailure::Limit(format!(
            "descriptor limit hit: the plugin held more than {handles} open handles, its share of weir's {} file descriptors beside the other stages running now (limit `descriptors`)",
            crate::engine::descriptors::Lease::pool_size()
        )))
    } else if text.contains("resource table has no free keys") {
        Some(CallFailure::Limit(format!(
            "resource limit hit: the plugin held more than {} open handles (limit `resource-handles`)",
            limits.resource_handles
        )))
    } else {
        None
    }
}

/// The innermost cause's message, without wasm backtraces.
pub fn root_message(e: &wasmtime::Error) -> String {
    e.chain()
        .last()
        .map(|c| c.to_string())
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_becomes_the_attempt_kind_users_see() {
        let kind = |f: CallFailure| f.attempt("p", "s").failure.map(|f| (f.kind, f.message));
        assert_eq!(
            kind(CallFailure::Memory("memory limit hit: … (limit `memory`)".into())),
            Some((
                FailureKind::Limit,
                "memory limit hit: … (limit `memory`); stage `s` was stopped".into()
            ))
        );
        assert_eq!(
            kind(CallFailure::Time(Duration::from_secs(5))),
            Some((
                FailureKind::Timeout,
                "stage `s` ran longer than its timeout of 5s and was stopped".into()
            ))
        );
        assert_eq!(
            kind(CallFailure::Trap {
                code: "unreachable".into(),
                detail: String::new()
            }),
            Some((
                FailureKind::Trap,
                "plugin `p` crashed: unreachable (its log shows any panic message)".into()
            ))
        );
        let plugin = CallFailure::Plugin {
            message: "busy".into(),
            details: None,
            retryable: true,
        }
        .attempt("p", "s");
        let f = plugin.failure.expect("failed");
        assert_eq!(
            (f.kind, f.message.as_str(), f.retryable),
            (FailureKind::Plugin, "busy", true)
        );
    }
}
