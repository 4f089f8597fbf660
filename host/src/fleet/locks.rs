//! Concurrency groups across workers: a run that holds groups (its own
//! `concurrency`, its stages', and the one deploy at a time to each
//! environment) takes each group's key in `weir-locks` before it starts,
//! in name order, and gives them back when it ends. Coarser than on one
//! machine (a group is held for the whole run, not only the stage that
//! names it), so never looser: two workers never deploy to one
//! environment at once.

use std::time::Duration;

use crate::fleet::Fleet;
use crate::fleet::names;
use crate::session::CancelToken;

/// Groups held by one run.
pub struct Held {
    keys: Vec<String>,
}

/// Take `groups` for `run`, waiting while another run holds one; `said`
/// is told (once per group) why the run waits. A key already holding
/// this run (taken before its worker died) is the run's own.
pub async fn take(
    fleet: &Fleet,
    tenant: &str,
    run: &str,
    groups: &[String],
    cancel: &CancelToken,
    mut said: impl AsyncFnMut(String),
) -> Result<Held, String> {
    let mut held = Held { keys: Vec::new() };
    let mut sorted = groups.to_vec();
    sorted.sort();
    for group in sorted {
        let key = names::lock_key(tenant, &group);
        let mut told = false;
        loop {
            match fleet.locks.create(&key, run.to_string().into()).await {
                Ok(_) => break,
                Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                    let holder = fleet
                        .locks
                        .get(&key)
                        .await
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).to_string());
                    match holder {
                        Some(h) if h == run => break,
                        // Given back between the two calls.
                        None => continue,
                        Some(h) => {
                            if !told {
                                said(format!(
                                    "waiting for concurrency group `{group}`, held by run {h}"
                                ))
                                .await;
                                told = true;
                            }
                        }
                    }
                }
                Err(e) => {
                    held.give_back(fleet).await;
                    return Err(format!("cannot take concurrency group `{group}` in NATS: {e}"));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = cancel.cancelled() => {
                    held.give_back(fleet).await;
                    return Err("cancelled while it waited for a concurrency group".into());
                }
            }
        }
        held.keys.push(key);
    }
    Ok(held)
}

impl Held {
    /// Give every group back.
    pub async fn give_back(&mut self, fleet: &Fleet) {
        for key in self.keys.drain(..) {
            if let Err(e) = fleet.locks.purge(&key).await {
                tracing::warn!(%key, "cannot give a concurrency group back (the server does when the run ends): {e}");
            }
        }
    }
}

/// Give back every group `run` of `tenant` still holds (its worker died,
/// or gave up on it): the server does this when a run ends.
pub async fn give_back_all(fleet: &Fleet, tenant: &str, run: &str) {
    use futures_util::StreamExt as _;
    let Ok(mut keys) = fleet.locks.keys().await else {
        return;
    };
    let prefix = format!("{tenant}.");
    while let Some(Ok(key)) = keys.next().await {
        if !key.starts_with(&prefix) {
            continue;
        }
        if let Ok(Some(v)) = fleet.locks.get(&key).await
            && v.as_ref() == run.as_bytes()
        {
            let _ = fleet.locks.purge(&key).await;
        }
    }
}
