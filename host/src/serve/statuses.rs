//! Commit statuses back to the forge as a run goes: `pending` when it
//! starts, then `success`, `failure` or `error`, each linking to the run.
//! GitHub and Gitea take `POST {api}/repos/{owner}/{repo}/statuses/{sha}`
//! (GitHub's shape); GitLab `POST {api}/projects/{path}/statuses/{sha}`.
//! The token comes from the variable `status-token-env` names. A status
//! that cannot be posted is logged; it never fails the run.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use weir_pipeline::config::server::{Forge, Repository, ServerConfig};

use crate::events::{Event, EventRecord, RunStatus};

/// How long posting one status may take.
const POST_TIMEOUT: Duration = Duration::from_secs(15);

/// One status to post.
#[derive(Debug, Clone)]
struct Update {
    state: &'static str,
    description: String,
}

/// Posts a run's statuses, in order, off the run's path.
pub struct Reporter {
    tx: tokio::sync::mpsc::UnboundedSender<Update>,
}

impl Reporter {
    /// A reporter for run `run` of `repo` at `commit`, when the repository
    /// has a status token; `None` otherwise.
    pub fn new(config: &ServerConfig, repo: &Repository, run: &str, commit: &str) -> Option<Self> {
        let token = repo
            .status_token_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|t| !t.is_empty())?;
        let api = repo.api_url.clone().or_else(|| match repo.forge {
            Forge::Github => Some("https://api.github.com".into()),
            Forge::Gitlab => Some("https://gitlab.com/api/v4".into()),
            Forge::Gitea => None,
        })?;
        let target = config
            .public_url
            .as_ref()
            .map(|u| format!("{u}/api/v1/runs/{run}"));
        let target = Arc::new(Target {
            forge: repo.forge,
            url: match repo.forge {
                Forge::Github | Forge::Gitea => format!("{api}/repos/{}/statuses/{commit}", repo.name),
                Forge::Gitlab => format!(
                    "{api}/projects/{}/statuses/{commit}",
                    percent_encoding::utf8_percent_encode(&repo.name, percent_encoding::NON_ALPHANUMERIC)
                ),
            },
            token,
            link: target,
            run: run.to_string(),
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Update>();
        tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                if let Err(e) = target.post(&update).await {
                    tracing::warn!(run = %target.run, url = %target.url, "commit status `{}` not posted: {e}", update.state);
                }
            }
        });
        Some(Self { tx })
    }

    /// Post what `record` changes of the run's status.
    pub fn offer(&mut self, record: &EventRecord) {
        let update = match &record.event {
            Event::RunStarted { .. } => Update {
                state: "pending",
                description: "running".into(),
            },
            Event::RunFinished {
                status, duration_ms, ..
            } => {
                let secs = duration_ms / 1000;
                match status {
                    RunStatus::Succeeded => Update {
                        state: "success",
                        description: format!("succeeded in {secs}s"),
                    },
                    RunStatus::Failed => Update {
                        state: "failure",
                        description: format!("failed after {secs}s"),
                    },
                    RunStatus::Cancelled => Update {
                        state: "error",
                        description: "cancelled".into(),
                    },
                }
            }
            _ => return,
        };
        let _ = self.tx.send(update);
    }
}

struct Target {
    forge: Forge,
    url: String,
    token: String,
    link: Option<String>,
    run: String,
}

impl Target {
    async fn post(&self, update: &Update) -> Result<(), String> {
        let context = "weir";
        let (body, auth) = match self.forge {
            Forge::Github | Forge::Gitea => (
                serde_json::json!({
                    "state": update.state,
                    "target_url": self.link,
                    "description": update.description,
                    "context": context,
                }),
                ("authorization", format!("Bearer {}", self.token)),
            ),
            Forge::Gitlab => (
                serde_json::json!({
                    "state": match update.state { "pending" => "running", "failure" => "failed", "error" => "canceled", s => s },
                    "target_url": self.link,
                    "description": update.description,
                    "name": context,
                }),
                ("private-token", self.token.clone()),
            ),
        };
        let uri: http::Uri = self.url.parse().map_err(|e| format!("bad URL: {e}"))?;
        // The origin form (`/repos/…`), as a request to the server itself.
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .header("accept", "application/vnd.github+json")
            .header("user-agent", concat!("weir/", env!("CARGO_PKG_VERSION")))
            .header(auth.0, auth.1)
            .header("host", uri.authority().map(|a| a.as_str()).unwrap_or_default())
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let status = tokio::time::timeout(POST_TIMEOUT, send(uri, request))
            .await
            .map_err(|_| format!("no answer within {}s", POST_TIMEOUT.as_secs()))??;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the forge answered {status}"))
        }
    }
}

async fn send(uri: http::Uri, request: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String> {
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let response = if tls {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    };
    let status = response.status();
    // Read the answer through, so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    Ok(status)
}
