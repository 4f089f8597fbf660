//! Watching over a running instance: restarted when it crashes, up to
//! its limit; the watch ends with the instance.

use super::*;

/// The ingress relay task, stopped with the instance.
pub(super) struct AbortOnDrop(pub(super) Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// One instance, as its watcher holds it.
pub(super) struct Watched {
    pub(super) process: Process,
    pub(super) spec: InstanceSpec,
    pub(super) port: u16,
    pub(super) id: String,
    /// The relay's way into the current process's namespace.
    pub(super) slot: Slot,
    pub(super) _relay: AbortOnDrop,
}

/// Keep one instance running: restart it when it exits on its own (out of
/// the router until it is ready again), stop it when told.
#[allow(clippy::too_many_arguments)]
pub(super) async fn watch_over(
    mut w: Watched,
    router: Arc<Router>,
    timing: Timing,
    isolation: Isolation,
    restarts: Arc<AtomicU32>,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let id = w.id.clone();
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                terminate(w.process, timing.stop_grace).await;
                break;
            }
            status = w.process.child().wait() => {
                router.set_ready(&id, false);
                *w.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::warn!(
                    "instance {id} exited ({}{}); restarting",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    w.process.limits_hit()
                );
                let n = restarts.fetch_add(1, Ordering::SeqCst) + 1;
                if n > timing.max_restarts {
                    tracing::error!("instance {id} crashed {n} times; given up");
                    terminate(w.process, Duration::ZERO).await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(n.min(20)))).await;
                match spawn(&w.spec, w.port, &isolation).await {
                    Ok(next) => {
                        let old = std::mem::replace(&mut w.process, next);
                        terminate(old, Duration::ZERO).await;
                        pid.store(w.process.pid(), Ordering::SeqCst);
                        *w.slot.lock().unwrap_or_else(|p| p.into_inner()) = w.process.factory();
                        if wait_ready(w.process.child(), w.port, &w.spec.readiness_path, timing.ready_within).await.is_ok() {
                            router.set_ready(&id, true);
                        }
                    }
                    Err(e) => {
                        tracing::error!("instance {id} cannot be restarted: {e}");
                        terminate(w.process, Duration::ZERO).await;
                        break;
                    }
                }
            }
        }
    }
    let _ = done.send(true);
}
