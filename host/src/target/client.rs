//! The other end of the control API: what `weir run` (the `runtime` and
//! `metrics` imports, the rollout controller) and `weir target`,
//! `weir releases` and `weir rollback` use to talk to the target, and
//! [`ensure_up`], which starts the target when none runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::api::{
    ApiError, InstanceInfo, Promote, Restore, Samples, ServiceStatus, StartRequest, Status, Weights,
};
use super::daemon::{LOG, SOCKET};

/// Largest answer read from the target.
const MAX_ANSWER: usize = 64 << 20;
/// How long a call other than starting an instance may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long starting an instance may take: copying the program and its
/// readiness check (30 s in the target).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new target may take to answer.
const UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call to the target failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No target answers on the socket.
    #[error("no local target is running for {dir} (`weir target up` starts one): {why}")]
    NotRunning {
        /// The target directory.
        dir: String,
        /// The connection error.
        why: String,
    },
    /// The target refused or failed the call.
    #[error("{message}")]
    Refused {
        /// `invalid`, `not-found` or `failed`.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The call did not finish in time, or the answer was malformed.
    #[error("the local target {0}")]
    Broken(String),
}

/// A client for the target of one state directory.
#[derive(Debug, Clone)]
pub struct TargetClient {
    dir: PathBuf,
    /// The tenant the calls are made for ([`super::api::TENANT_HEADER`]);
    /// `None` for the operator.
    tenant: Option<String>,
}

impl TargetClient {
    /// The target of `dir` (`.weir/target`).
    pub fn new(dir: &Path) -> Self {
        Self {
            tenant: None,
            dir: dir.to_path_buf(),
        }
    }

    /// The target directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same client, calling for a run of `tenant`: it may touch only
    /// that tenant's services.
    pub fn for_tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let socket = self.dir.join(SOCKET);
        let not_running = |why: String| ClientError::NotRunning {
            dir: self.dir.display().to_string(),
            why,
        };
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| not_running(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| not_running(e.to_string()))?;
        tokio::spawn(conn);
        // The target's token, new with each target process: read per call.
        let token = std::fs::read_to_string(self.dir.join(super::api::TOKEN_FILE))
            .map_err(|e| not_running(format!("its token cannot be read: {e}")))?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "weir-target")
            .header(super::api::TOKEN_HEADER, token.trim());
        if let Some(t) = &self.tenant {
            request = request.header(super::api::TENANT_HEADER, t.as_str());
        }
        let request = request
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Broken(format!("request {path}: {e}")))?;
        let work = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ClientError::Broken(format!("did not answer {method} {path}: {e}")))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ClientError::Broken(format!("sent an unreadable answer to {path}: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, work).await.map_err(|_| {
            ClientError::Broken(format!(
                "did not answer {method} {path} within {} s",
                timeout.as_secs()
            ))
        })??;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Broken(format!("sent a malformed answer to {path}: {e}")))
        } else {
            let e: ApiError = serde_json::from_slice(&bytes).map_err(|_| {
                ClientError::Broken(format!(
                    "answered {status} to {path}: {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            Err(ClientError::Refused {
                kind: e.kind,
                message: e.message,
            })
        }
    }

    fn body(value: &impl serde::Serialize) -> Option<String> {
        serde_json::to_string(value).ok()
    }

    /// The whole target.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/v1/status", None, CALL_TIMEOUT).await
    }

    /// One service.
    pub async fn service(&self, service: &str) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/services/{service}"),
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// Start an instance; answers once it is ready (or failed).
    pub async fn start(&self, request: &StartRequest) -> Result<InstanceInfo, ClientError> {
        self.call(Method::POST, "/v1/instances", Self::body(request), START_TIMEOUT)
            .await
    }

    /// Drain and stop an instance.
    pub async fn stop(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/v1/instances/{id}"), None, CALL_TIMEOUT)
            .await
    }

    /// Set a service's traffic split.
    pub async fn set_weights(
        &self,
        service: &str,
        weights: Vec<(String, u32)>,
    ) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/services/{service}/weights"),
            Self::body(&Weights { weights }),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Mark `version` stable.
    pub async fn promote(&self, service: &str, version: &str) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{service}/promote"),
            Self::body(&Promote {
                version: version.to_string(),
            }),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Put `service` back on its stable release.
    pub async fn restore(&self, service: &str, reason: &str) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{service}/restore"),
            Self::body(&Restore {
                reason: reason.to_string(),
            }),
            START_TIMEOUT,
        )
        .await
    }

    /// Make the release before the stable one stable again.
    pub async fn rollback(&self, service: &str) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{service}/rollback"),
            None,
            START_TIMEOUT,
        )
        .await
    }

    /// The requests `service` answered between two instants.
    pub async fn samples(&self, service: &str, since_ms: u64, until_ms: u64) -> Result<Samples, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/services/{service}/samples?since_ms={since_ms}&until_ms={until_ms}"),
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// Take or renew `service`'s lease for rollout `run`.
    pub async fn lease(&self, service: &str, run: &str, ttl_ms: u64) -> Result<(), ClientError> {
        let body = super::api::Lease {
            run: run.to_string(),
            ttl_ms,
        };
        self.call(
            Method::PUT,
            &format!("/v1/services/{service}/lease"),
            Self::body(&body),
            // A renewal later than the lease itself is no renewal.
            Duration::from_millis(ttl_ms.saturating_sub(500).max(200)),
        )
        .await
    }

    /// Rollout `run` of `service` ended: give its lease back.
    pub async fn release_lease(&self, service: &str, run: &str) -> Result<(), ClientError> {
        let body = super::api::Lease {
            run: run.to_string(),
            ttl_ms: 0,
        };
        self.call(
            Method::DELETE,
            &format!("/v1/services/{service}/lease"),
            Self::body(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Stop the target (it drains and stops every instance first).
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call(Method::POST, "/v1/shutdown", None, CALL_TIMEOUT).await
    }
}

/// A client for the target of `dir`, starting the target (detached, so it
/// outlives this process) when none answers.
pub async fn ensure_up(dir: &Path, metrics_port: Option<u16>) -> Result<(TargetClient, bool), ClientError> {
    let client = TargetClient::new(dir);
    match client.status().await {
        Ok(_) => return Ok((client, false)),
        Err(ClientError::NotRunning { .. }) => {}
        Err(e) => return Err(e),
    }
    let broken = |why: String| ClientError::Broken(why);
    std::fs::create_dir_all(dir)
        .map_err(|e| broken(format!("directory {} cannot be created: {e}", dir.display())))?;
    let exe = std::env::current_exe().map_err(|e| broken(format!("cannot be started: {e}")))?;
    let log_path = dir.join(LOG);
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| broken(format!("cannot be started: {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| broken(format!("cannot be started: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("target")
        .arg("serve")
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if let Some(p) = metrics_port {
        command.arg("--metrics-port").arg(p.to_string());
    }
    // Its own process group: a Ctrl-C meant for `weir run` must not stop
    // the services it deployed.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| broken(format!("cannot be started: {e}")))?;
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        match client.status().await {
            Ok(_) => return Ok((client, true)),
            Err(ClientError::NotRunning { .. }) if Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another `weir` may have won the race to start it.
            if client.status().await.is_ok() {
                return Ok((client, false));
            }
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(broken(format!(
                "exited at start ({status}); its log {} ends:\n{tail}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
