//! The built-in load generator (Flagger's load tester is the model): a
//! steady rate of GET requests at a service's router while its rollout
//! runs, so every analysis window has traffic to judge. It counts what it
//! sent and how it ended; it stops when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Most requests in flight at once; beyond it a tick is skipped (and
/// counted), so a hung service cannot make the generator pile up
/// connections.
const MAX_IN_FLIGHT: u64 = 512;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the generator did so far.
#[derive(Debug, Default)]
pub struct LoadCounts {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Answered with a status below 500.
    pub ok: AtomicU64,
    /// Answered 5xx.
    pub errors: AtomicU64,
    /// No answer: connection refused or reset, or timed out.
    pub failed: AtomicU64,
    /// Ticks skipped because too many requests were in flight.
    pub skipped: AtomicU64,
    in_flight: AtomicU64,
}

/// A running load generator.
pub struct LoadGen {
    counts: Arc<LoadCounts>,
    task: tokio::task::JoinHandle<()>,
}

/// The load's address and path do not make a URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("load target {url}: {error}")]
pub struct BadTarget {
    /// What they made.
    pub url: String,
    /// Why it is not a URL.
    pub error: String,
}

impl LoadGen {
    /// Send `rate` GETs per second to `http://ADDRESS{path}`.
    pub fn start(address: &str, path: &str, rate: u32) -> Result<Self, BadTarget> {
        let url = format!("http://{address}{path}");
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| BadTarget {
            url: url.clone(),
            error: e.to_string(),
        })?;
        let counts = Arc::new(LoadCounts::default());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if c.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    c.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                c.in_flight.fetch_add(1, Ordering::Relaxed);
                c.sent.fetch_add(1, Ordering::Relaxed);
                let (client, uri, c) = (client.clone(), uri.clone(), c.clone());
                tokio::spawn(async move {
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                        let r = client.get(uri).await?;
                        let status = r.status();
                        // Read the body so the connection is reused.
                        let _ = r.into_body().collect().await;
                        Ok::<_, hyper_util::client::legacy::Error>(status)
                    })
                    .await;
                    match answer {
                        Ok(Ok(s)) if s.is_server_error() => c.errors.fetch_add(1, Ordering::Relaxed),
                        Ok(Ok(_)) => c.ok.fetch_add(1, Ordering::Relaxed),
                        _ => c.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    c.in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(Self { counts, task })
    }

    /// One line: what was sent and how it ended.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "load: {} requests sent, {} ok, {} 5xx, {} without answer{}",
            n(&c.sent),
            n(&c.ok),
            n(&c.errors),
            n(&c.failed),
            match n(&c.skipped) {
                0 => String::new(),
                k => format!(", {k} skipped (over {MAX_IN_FLIGHT} in flight)"),
            }
        )
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.task.abort();
    }
}
