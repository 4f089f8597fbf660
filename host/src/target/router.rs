//! The weighted HTTP reverse proxy in front of one service: it splits
//! traffic between the service's versions by weight (smooth weighted
//! round-robin, as nginx does, so a 90/10 split is 9 of every 10 requests,
//! not 90% on average), sends a version's share round-robin to its ready
//! instances, and measures every request ([`super::metrics`]).
//!
//! An instance takes traffic only once it is marked ready (its readiness
//! check passed). Removing an instance stops new requests to it at once
//! and waits for its requests in flight to finish (drain).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::metrics::{Observation, ServiceMetrics};

/// A response body.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that belong to one hop, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One instance behind the router.
#[derive(Debug)]
struct Instance {
    id: String,
    version: String,
    addr: SocketAddr,
    ready: bool,
    removed: bool,
    inflight: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Table {
    instances: Vec<Instance>,
    /// Version → weight (any scale; 0 sends it nothing).
    weights: BTreeMap<String, u32>,
    /// Smooth weighted round-robin state per version.
    current: BTreeMap<String, i64>,
    /// Round-robin position per version.
    next: BTreeMap<String, usize>,
}

impl Table {
    fn ready_of(&self, version: &str) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(move |i| i.version == version && i.ready && !i.removed)
    }

    /// The instance for the next request: a version by smooth weighted
    /// round-robin among versions with weight and a ready instance, then
    /// that version's instances in turn.
    fn pick(&mut self) -> Option<(String, SocketAddr, Arc<AtomicUsize>)> {
        let eligible: Vec<(String, i64)> = self
            .weights
            .iter()
            .filter(|(v, w)| **w > 0 && self.ready_of(v).next().is_some())
            .map(|(v, w)| (v.clone(), i64::from(*w)))
            .collect();
        let total: i64 = eligible.iter().map(|(_, w)| w).sum();
        let mut best: Option<(String, i64)> = None;
        for (v, w) in &eligible {
            let c = self.current.entry(v.clone()).or_insert(0);
            *c += w;
            if best.as_ref().is_none_or(|(_, b)| *c > *b) {
                best = Some((v.clone(), *c));
            }
        }
        let (version, _) = best?;
        if let Some(c) = self.current.get_mut(&version) {
            *c -= total;
        }
        let ready: Vec<(SocketAddr, Arc<AtomicUsize>)> = self
            .ready_of(&version)
            .map(|i| (i.addr, i.inflight.clone()))
            .collect();
        let n = self.next.entry(version.clone()).or_insert(0);
        let (addr, inflight) = ready[*n % ready.len()].clone();
        *n = n.wrapping_add(1);
        Some((version, addr, inflight))
    }
}

/// The router of one service.
pub struct Router {
    service: String,
    table: Mutex<Table>,
    metrics: Arc<ServiceMetrics>,
    client: Client<HttpConnector, Incoming>,
}

impl Router {
    /// A router for `service` with no instances.
    pub fn new(service: &str) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        Arc::new(Self {
            service: service.to_string(),
            table: Mutex::new(Table::default()),
            metrics: Arc::new(ServiceMetrics::default()),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Its measurements.
    pub fn metrics(&self) -> &Arc<ServiceMetrics> {
        &self.metrics
    }

    /// Add an instance of `version` at `addr`; it takes no traffic until
    /// [`Router::set_ready`].
    pub fn add(&self, id: &str, version: &str, addr: SocketAddr) {
        self.table().instances.push(Instance {
            id: id.to_string(),
            version: version.to_string(),
            addr,
            ready: false,
            removed: false,
            inflight: Arc::new(AtomicUsize::new(0)),
        });
    }

    /// Mark instance `id` ready (or not) for traffic.
    pub fn set_ready(&self, id: &str, ready: bool) {
        if let Some(i) = self.table().instances.iter_mut().find(|i| i.id == id) {
            i.ready = ready;
        }
    }

    /// Whether instance `id` takes traffic.
    pub fn is_ready(&self, id: &str) -> bool {
        self.table()
            .instances
            .iter()
            .any(|i| i.id == id && i.ready && !i.removed)
    }

    /// Split traffic between versions: (version, weight) pairs.
    pub fn set_weights(&self, weights: &[(String, u32)]) {
        let mut t = self.table();
        t.weights = weights.iter().cloned().collect();
        t.current.clear();
    }

    /// The current split.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        self.table().weights.clone()
    }

    /// Stop sending instance `id` requests, wait (up to `grace`) for those
    /// in flight, then forget it. Returns how many were still in flight
    /// when the grace ran out (0 when it drained).
    pub async fn remove(&self, id: &str, grace: Duration) -> usize {
        let inflight = {
            let mut t = self.table();
            let Some(i) = t.instances.iter_mut().find(|i| i.id == id) else {
                return 0;
            };
            i.removed = true;
            i.inflight.clone()
        };
        let deadline = Instant::now() + grace;
        while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.table().instances.retain(|i| i.id != id);
        inflight.load(Ordering::SeqCst)
    }

    /// Answer one request: forward it to the picked instance.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let Some((version, addr, inflight)) = self.table().pick() else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("weir: service `{}` has no ready instance\n", self.service),
            );
        };
        inflight.fetch_add(1, Ordering::SeqCst);
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("http://{addr}{path}");
        let result = match uri.parse() {
            Ok(uri) => {
                parts.uri = uri;
                for h in HOP_BY_HOP {
                    parts.headers.remove(*h);
                }
                self.client
                    .request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("bad request target: {e}")),
        };
        inflight.fetch_sub(1, Ordering::SeqCst);
        let (response, upstream_error) = match result {
            Ok(r) => (r.map(|b| b.boxed()), false),
            Err(e) => (
                plain(
                    StatusCode::BAD_GATEWAY,
                    format!("weir: instance of `{}` {version} failed: {e}\n", self.service),
                ),
                true,
            ),
        };
        self.metrics.observe(
            &version,
            Observation {
                at_ms: crate::events::now_ms(),
                status: response.status().as_u16(),
                seconds: started.elapsed().as_secs_f64(),
                upstream_error,
            },
        );
        response
    }

    /// Serve the router on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        serve_with(listener, move |req| {
            let router = self.clone();
            async move { router.handle(req).await }
        })
        .await;
    }
}

/// A response with a text body.
pub fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Accept HTTP/1.1 connections on `listener`, answering each request with
/// `handler`, until the task is dropped.
pub async fn serve_with<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, handler.clone()));
    }
}

/// Answer the HTTP/1.1 requests of one connection with `handler`.
pub async fn serve_connection<S, F, Fut>(stream: S, handler: F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend answering `version` (or 500 on `/fail`, or after a delay
    /// on `/slow`).
    async fn backend(version: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, move |req: Request<Incoming>| async move {
            match req.uri().path() {
                "/fail" => plain(StatusCode::INTERNAL_SERVER_ERROR, version.to_string()),
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    plain(StatusCode::OK, version.to_string())
                }
                _ => plain(StatusCode::OK, version.to_string()),
            }
        }));
        addr
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let client: Client<HttpConnector, http_body_util::Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let r = client
            .get(format!("http://{addr}{path}").parse().unwrap())
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn front(router: &Arc<Router>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(router.clone().serve(listener));
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn splits_by_weight_only_to_ready_instances_and_measures() {
        let router = Router::new("web");
        let front = front(&router).await;
        assert_eq!(get(front, "/").await.0, 503, "no instance yet");

        router.add("a1", "v1", backend("v1").await);
        router.add("b1", "v2", backend("v2").await);
        router.add("b2", "v2", backend("v2").await);
        router.set_weights(&[("v1".into(), 90), ("v2".into(), 10)]);
        router.set_ready("a1", true);
        // v2 has no ready instance: everything goes to v1.
        for _ in 0..5 {
            assert_eq!(get(front, "/").await.1, "v1");
        }
        router.set_ready("b1", true);
        router.set_ready("b2", true);
        let mut seen = BTreeMap::new();
        for _ in 0..100 {
            *seen.entry(get(front, "/").await.1).or_insert(0) += 1;
        }
        assert_eq!(seen["v1"], 90, "{seen:?}");
        assert_eq!(seen["v2"], 10, "{seen:?}");
        assert_eq!(get(front, "/fail").await.0, 500);

        let stats = router.metrics().snapshot();
        assert_eq!(stats["v1"].requests() + stats["v2"].requests(), 106);
        assert_eq!(stats["v2"].requests(), 10);
        assert_eq!(stats.values().map(|s| s.by_class[4]).sum::<u64>(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removing_an_instance_drains_it_and_a_dead_one_is_a_502() {
        let router = Router::new("web");
        let front = front(&router).await;
        router.add("a1", "v1", backend("v1").await);
        router.set_weights(&[("v1".into(), 100)]);
        router.set_ready("a1", true);
        // A slow request is in flight when the instance is removed: it
        // finishes, and the removal waits for it.
        let slow = tokio::spawn(get(front, "/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = router.remove("a1", Duration::from_secs(5)).await;
        assert_eq!(left, 0, "drained");
        assert_eq!(slow.await.unwrap(), (200, "v1".to_string()));
        assert_eq!(get(front, "/").await.0, 503);

        // An instance that is not listening: the client gets a 502 and the
        // version's upstream errors count it.
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        router.add("dead", "v2", gone);
        router.set_weights(&[("v2".into(), 100)]);
        router.set_ready("dead", true);
        assert_eq!(get(front, "/").await.0, 502);
        assert_eq!(router.metrics().snapshot()["v2"].upstream_errors, 1);
    }
}
