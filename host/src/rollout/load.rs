//! The built-in load generator (Flagger's load tester is the model): a
//! steady rate of GET requests at a service's router while its rollout
//! runs, so every analysis window has traffic to judge. It counts what it
//! sent and how each request ended: every request ends in exactly one of
//! ok (below 400), 4xx, 5xx or no answer (refused, timed out, or the
//! connection failed otherwise). [`LoadGen::finish`] stops sending and
//! waits for the requests in flight, so the counts add up to what was sent.
//! It stops when dropped.

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
    /// Answered with a status below 400.
    pub ok: AtomicU64,
    /// Answered 4xx.
    pub client_errors: AtomicU64,
    /// Answered 5xx.
    pub errors: AtomicU64,
    /// No answer: the connection was refused.
    pub refused: AtomicU64,
    /// No answer within the request timeout.
    pub timed_out: AtomicU64,
    /// No answer: the connection failed otherwise (reset, closed early).
    pub broken: AtomicU64,
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
                    let bucket = match &answer {
                        Ok(Ok(s)) if s.is_server_error() => &c.errors,
                        Ok(Ok(s)) if s.is_client_error() => &c.client_errors,
                        Ok(Ok(_)) => &c.ok,
                        Ok(Err(e)) if refused(e) => &c.refused,
                        Ok(Err(_)) => &c.broken,
                        Err(_) => &c.timed_out,
                    };
                    bucket.fetch_add(1, Ordering::Relaxed);
                    c.in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(Self { counts, task })
    }

    /// Stop sending, wait for the requests in flight (each ends within
    /// the request timeout), and say what was sent and how it ended.
    pub async fn finish(self) -> String {
        self.task.abort();
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(1);
        while self.counts.in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.counts.summary()
    }

    /// What the generator did so far.
    pub fn counts(&self) -> &LoadCounts {
        &self.counts
    }
}

impl LoadCounts {
    /// One line: what was sent and how it ended. Requests still in flight
    /// are counted as such, so the parts always add up to what was sent.
    pub fn summary(&self) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let no_answer = n(&self.refused) + n(&self.timed_out) + n(&self.broken);
        let mut line = format!(
            "load: {} requests sent, {} ok, {} 4xx, {} 5xx, {no_answer} without answer",
            n(&self.sent),
            n(&self.ok),
            n(&self.client_errors),
            n(&self.errors),
        );
        let reasons: Vec<String> = [
            (n(&self.refused), "refused"),
            (n(&self.timed_out), "timed out"),
            (n(&self.broken), "connection failed"),
        ]
        .iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, why)| format!("{k} {why}"))
        .collect();
        if !reasons.is_empty() {
            line.push_str(&format!(" ({})", reasons.join(", ")));
        }
        match n(&self.in_flight) {
            0 => {}
            k => line.push_str(&format!(", {k} still in flight")),
        }
        match n(&self.skipped) {
            0 => {}
            k => line.push_str(&format!(
                "; {k} ticks skipped (over {MAX_IN_FLIGHT} in flight), not sent"
            )),
        }
        line
    }

    /// Whether every request sent is in exactly one bucket.
    pub fn add_up(&self) -> bool {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        n(&self.sent)
            == n(&self.ok)
                + n(&self.client_errors)
                + n(&self.errors)
                + n(&self.refused)
                + n(&self.timed_out)
                + n(&self.broken)
                + n(&self.in_flight)
    }
}

/// Whether the connection was refused (nothing listens).
fn refused(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = s.source();
    }
    false
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server whose answers cycle: 200, 404, 500, and a connection
    /// closed without an answer.
    async fn server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((mut conn, _)) = listener.accept().await {
                n += 1;
                let kind = n % 4;
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let status = match kind {
                        1 => "200 OK",
                        2 => "404 Not Found",
                        3 => "500 Internal Server Error",
                        _ => return, // dropped: no answer
                    };
                    let reply =
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn every_request_ends_in_exactly_one_bucket() {
        let address = server().await;
        let load = LoadGen::start(&address, "/", 200).expect("start");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let counts = load.counts.clone();
        let line = load.finish().await;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert!(n(&counts.sent) >= 20, "{line}");
        assert!(counts.add_up(), "{line}");
        assert_eq!(n(&counts.in_flight), 0, "finish waits for every request: {line}");
        for (bucket, name) in [
            (&counts.ok, "ok"),
            (&counts.client_errors, "4xx"),
            (&counts.errors, "5xx"),
            (&counts.broken, "no answer"),
        ] {
            assert!(n(bucket) > 0, "no request ended {name}: {line}");
        }
        assert!(line.contains(" 4xx, "), "{line}");
        assert!(line.contains("connection failed"), "{line}");
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let load = LoadGen::start(&format!("127.0.0.1:{port}"), "/", 50).expect("start");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = load.counts.clone();
        let line = load.finish().await;
        assert!(counts.refused.load(Ordering::Relaxed) > 0, "{line}");
        assert!(counts.add_up(), "{line}");
    }
}
