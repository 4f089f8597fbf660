//! What a stage (or a whole run) waits for before it starts: a person's
//! approval to deploy to a protected environment, and its concurrency
//! groups. Both live in the run history, so they outlive the weir process:
//! an approval given while weir was down is found when the run resumes,
//! and a group held by a weir that crashed is freed by the next one to
//! look.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::{ApprovalRequest, Event, EventSink, FailureKind, now_ms};
use crate::plan::PlannedStage;
use crate::plan::environments::{Approval, Environment};
use crate::run::{Admission, AttemptResult, BoxFuture, Permit};
use crate::store::{Store, StoreError};

/// How often a wait looks at the history again.
pub const POLL: Duration = Duration::from_millis(300);

/// Admission backed by the run history.
#[derive(Clone)]
pub struct StoreAdmission {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Mutex<Store>>,
    run: String,
    tenant: String,
    environments: BTreeMap<String, Environment>,
    sink: EventSink,
    /// The tenant's `max-stages`: stages at once across its runs.
    max_stages: Option<u32>,
}

/// The group holding a tenant's running stages (`max-stages` places).
pub const TENANT_STAGES: &str = "tenant/stages";

/// The group holding a tenant's runs (`max-runs` places).
pub const TENANT_RUNS: &str = "tenant/runs";

impl std::fmt::Debug for StoreAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAdmission")
            .field("run", &self.inner.run)
            .field("tenant", &self.inner.tenant)
            .finish_non_exhaustive()
    }
}

/// A claim on a group, released when dropped.
pub struct ClaimGuard {
    store: Arc<Mutex<Store>>,
    id: i64,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store.release(self.id) {
            // The claim dies with this process anyway; say so and go on.
            tracing::warn!("could not release a concurrency claim: {e}");
        }
    }
}

impl StoreAdmission {
    /// For `run` of `tenant`, with the plan's environments and the
    /// tenant's `max-stages`.
    pub fn new(
        store: Arc<Mutex<Store>>,
        run: &str,
        tenant: &str,
        environments: BTreeMap<String, Environment>,
        sink: EventSink,
        max_stages: Option<u32>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                run: run.to_string(),
                tenant: tenant.to_string(),
                environments,
                sink,
                max_stages,
            }),
        }
    }

    fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let store = self.inner.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&store)
    }

    /// Claim `group` and wait until this claim is the oldest live one.
    /// `waiting` makes the event that says who holds it.
    pub async fn acquire(
        &self,
        group: &str,
        stage: Option<&str>,
        cancel_in_progress: bool,
        waiting: impl Fn(String) -> Event,
    ) -> Result<ClaimGuard, StoreError> {
        self.acquire_slot(group, 1, stage, cancel_in_progress, waiting)
            .await
    }

    /// Claim one of `capacity` places in `group` and wait until fewer than
    /// `capacity` live claims are older than this one.
    pub async fn acquire_slot(
        &self,
        group: &str,
        capacity: usize,
        stage: Option<&str>,
        cancel_in_progress: bool,
        waiting: impl Fn(String) -> Event,
    ) -> Result<ClaimGuard, StoreError> {
        let i = &self.inner;
        let id = self.with_store(|s| s.claim(&i.tenant, group, &i.run, stage, cancel_in_progress))?;
        let guard = ClaimGuard {
            store: i.store.clone(),
            id,
        };
        let mut told: Option<i64> = None;
        loop {
            let ahead = self.with_store(|s| s.ahead_of(&i.tenant, group, id))?;
            if ahead.len() < capacity.max(1) {
                return Ok(guard);
            }
            let h = &ahead[0];
            if told != Some(h.id) {
                told = Some(h.id);
                let by = match &h.stage {
                    Some(st) if h.run == i.run => format!("stage `{st}` of this run"),
                    Some(st) => format!("stage `{st}` of run {}", h.run),
                    None => format!("run {}", h.run),
                };
                let what = if capacity > 1 {
                    format!("waiting for one of the {capacity} places of `{group}`, held by {by} and others")
                } else {
                    format!("waiting for concurrency group `{group}`, held by {by}")
                };
                i.sink.emit(waiting(what));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn approval(
        &self,
        stage: &str,
        env: &Environment,
        approval: &Approval,
    ) -> Result<(), AttemptResult> {
        let i = &self.inner;
        let host = |e: StoreError| AttemptResult::failed(FailureKind::Host, e.to_string(), None);
        let timeout_ms = approval.timeout.as_millis().min(i64::MAX as u128) as i64;
        let mut record = self
            .with_store(|s| s.request_approval(&i.run, stage, &env.name, &approval.approvers, timeout_ms))
            .map_err(host)?;
        if record.decision == "pending" {
            let who = if approval.approvers.is_empty() {
                "anyone".to_string()
            } else {
                approval.approvers.join(", ")
            };
            let left = Duration::from_millis((record.deadline_ms - now_ms() as i64).max(0) as u64);
            i.sink.emit(Event::StageWaiting {
                stage: stage.to_string(),
                message: format!(
                    "waiting for approval to deploy to `{}` (may approve: {who}): `weir approve {}` or `weir reject {} --reason ...`; fails in {}",
                    env.name,
                    i.run,
                    i.run,
                    crate::config::duration::format_duration(Duration::from_secs(left.as_secs()))
                ),
                approval: Some(ApprovalRequest {
                    environment: env.name.to_string(),
                    approvers: approval.approvers.clone(),
                    deadline_ms: record.deadline_ms as u64,
                }),
                group: None,
            });
        }
        loop {
            if record.decision == "pending" && now_ms() as i64 >= record.deadline_ms {
                self.with_store(|s| s.expire_approval(&i.run, stage))
                    .map_err(host)?;
                record.decision = "timed_out".into();
            }
            match record.decision.as_str() {
                "pending" => {}
                decision => {
                    i.sink.emit(Event::ApprovalDecided {
                        stage: stage.to_string(),
                        environment: env.name.to_string(),
                        decision: decision.to_string(),
                        by: record.decided_by.clone(),
                        reason: record.reason.clone(),
                    });
                    return match decision {
                        "approved" => Ok(()),
                        "rejected" => Err(AttemptResult::failed(
                            FailureKind::Approval,
                            format!(
                                "the deploy to `{}` was rejected by {}{}",
                                env.name,
                                record.decided_by.as_deref().unwrap_or("someone"),
                                record
                                    .reason
                                    .as_ref()
                                    .map(|r| format!(": {r}"))
                                    .unwrap_or_default()
                            ),
                            None,
                        )),
                        _ => Err(AttemptResult::failed(
                            FailureKind::Approval,
                            format!(
                                "no one approved the deploy to `{}` within {} (its approval timeout)",
                                env.name,
                                crate::config::duration::format_duration(approval.timeout)
                            ),
                            Some(format!(
                                "`weir run --resume {}` asks again, with a new deadline",
                                i.run
                            )),
                        )),
                    };
                }
            }
            tokio::time::sleep(POLL).await;
            record = self
                .with_store(|s| s.approval(&i.run, stage))
                .map_err(host)?
                .unwrap_or(record);
        }
    }
}

impl Admission for StoreAdmission {
    fn admit(&self, stage: &PlannedStage) -> BoxFuture<Result<Permit, AttemptResult>> {
        let this = self.clone();
        let name = stage.name.to_string();
        let env = stage
            .environment
            .as_ref()
            .and_then(|e| self.inner.environments.get(e))
            .cloned();
        let groups = stage.concurrency.clone();
        Box::pin(async move {
            if let Some(env) = &env
                && let Some(approval) = &env.approval
            {
                this.approval(&name, env, approval).await?;
            }
            let mut held = Vec::with_capacity(groups.len());
            for c in groups {
                let stage = name.clone();
                let guard = this
                    .acquire(&c.group, Some(&name), c.cancel_in_progress, |message| {
                        Event::StageWaiting {
                            stage: stage.clone(),
                            message,
                            approval: None,
                            group: Some(c.group.clone()),
                        }
                    })
                    .await
                    .map_err(|e| AttemptResult::failed(FailureKind::Host, e.to_string(), None))?;
                held.push(guard);
            }
            if let Some(max) = this.inner.max_stages {
                let stage = name.clone();
                let tenant = this.inner.tenant.clone();
                let guard = this
                    .acquire_slot(TENANT_STAGES, max as usize, Some(&name), false, |message| Event::StageWaiting {
                        stage: stage.clone(),
                        message: format!("tenant `{tenant}` runs at most {max} stage(s) at once (limit `max-stages`): {message}"),
                        approval: None,
                        group: Some(TENANT_STAGES.to_string()),
                    })
                    .await
                    .map_err(|e| AttemptResult::failed(FailureKind::Host, e.to_string(), None))?;
                held.push(guard);
            }
            Ok(Box::new(held) as Permit)
        })
    }
}

/// Resolves when another run asks this one to give up its group
/// (`cancel-in-progress`), with that run and the group.
pub async fn cancelled_by_another(store: Arc<Mutex<Store>>, run: String) -> (String, String) {
    loop {
        tokio::time::sleep(POLL).await;
        let asked = {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            store.cancel_request(&run)
        };
        match asked {
            Ok(Some(who)) => return who,
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot check for cancel requests: {e}"),
        }
    }
}
