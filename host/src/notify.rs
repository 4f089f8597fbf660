//! `[notify]`: tell webhooks what a run did.
//!
//! The [`Notifier`] reads the same event stream as the history and the
//! reporter. Each event a webhook subscribed to becomes one JSON POST, sent
//! from a task of its own so the run never waits on it, signed with
//! HMAC-SHA256 when the webhook names a secret, and retried with backoff
//! on connection errors, timeouts, 429 and 5xx answers. When the run ends,
//! weir waits for the deliveries still under way (each is bounded), and
//! every delivery's outcome is kept in the run history.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::Sha256;
use tokio::task::JoinSet;

use crate::events::{Event, EventRecord, RolloutPhase, RunStatus, StageStatus};

/// The header carrying the body's signature: `sha256=HEX`.
pub const SIGNATURE_HEADER: &str = "x-weir-signature-256";

/// Attempts per delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 5;

/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait before the first retry; it doubles after each.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub use weir_pipeline::webhooks::{NotifyEvent, Webhook, plan_webhooks};

/// Which webhook event `event` is, if any.
pub fn notify_event_of(event: &Event) -> Option<NotifyEvent> {
    Some(match event {
        Event::RunFinished { status, .. } => match status {
            RunStatus::Succeeded => NotifyEvent::RunSucceeded,
            RunStatus::Failed => NotifyEvent::RunFailed,
            RunStatus::Cancelled => NotifyEvent::RunCancelled,
        },
        Event::StageFinished {
            status: StageStatus::Failed,
            ..
        } => NotifyEvent::StageFailed,
        Event::StageWaiting {
            approval: Some(_), ..
        } => NotifyEvent::ApprovalRequested,
        Event::ApprovalDecided { .. } => NotifyEvent::ApprovalDecided,
        Event::Rollout {
            phase: RolloutPhase::Promoted,
            ..
        } => NotifyEvent::DeployPromoted,
        Event::Rollout {
            phase: RolloutPhase::RolledBack,
            ..
        } => NotifyEvent::DeployRolledBack,
        _ => return None,
    })
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Mac, SimpleHmac};
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = SimpleHmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// How one delivery ended.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// `RUN-SEQ`: the same in every attempt, for receivers to de-duplicate.
    pub id: String,
    /// The event's name.
    pub event: &'static str,
    /// The webhook.
    pub url: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the receiver took it (a 2xx answer).
    pub delivered: bool,
    /// The last answer or error.
    pub last: String,
}

/// What a payload says about the run besides the event.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// The run's id.
    pub run: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The tenant.
    pub tenant: String,
    /// The run's environment.
    pub environment: Option<String>,
}

/// Sends a run's notifications.
pub struct Notifier {
    hooks: Vec<(Webhook, Option<Vec<u8>>)>,
    context: RunContext,
    client: Client<HttpConnector, Full<Bytes>>,
    sending: JoinSet<Delivery>,
    seq: u64,
}

impl Notifier {
    /// For `hooks`, with their secrets looked up by `secret` (planning
    /// made sure they exist).
    pub fn new(hooks: &[Webhook], secret: &dyn Fn(&str) -> Option<String>, context: RunContext) -> Self {
        Self {
            hooks: hooks
                .iter()
                .map(|h| {
                    (
                        h.clone(),
                        h.secret.as_deref().and_then(secret).map(String::into_bytes),
                    )
                })
                .collect(),
            context,
            client: Client::builder(TokioExecutor::new()).build_http(),
            sending: JoinSet::new(),
            seq: 0,
        }
    }

    /// Whether there is anyone to tell.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Start delivering `record` to every webhook that wants it.
    pub fn offer(&mut self, record: &EventRecord) {
        let Some(kind) = notify_event_of(&record.event) else {
            return;
        };
        self.seq += 1;
        let id = format!("{}-{}", self.context.run, self.seq);
        let body = serde_json::json!({
            "delivery": id,
            "event": kind.name(),
            "run": self.context.run,
            "pipeline": self.context.pipeline,
            "tenant": self.context.tenant,
            "environment": self.context.environment,
            "time_ms": record.time_ms,
            "detail": record.event,
        })
        .to_string();
        for (hook, key) in &self.hooks {
            if !hook.events.contains(&kind) {
                continue;
            }
            let signature = key
                .as_ref()
                .map(|k| format!("sha256={}", hex::encode(hmac_sha256(k, body.as_bytes()))));
            self.sending.spawn(deliver(
                self.client.clone(),
                hook.url.clone(),
                id.clone(),
                kind.name(),
                Bytes::from(body.clone()),
                signature,
            ));
        }
    }

    /// Wait for every delivery under way (each ends within its attempts'
    /// bounds) and say how each went.
    pub async fn finish(mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(done) = self.sending.join_next().await {
            if let Ok(d) = done {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.url.cmp(&b.url)));
        out
    }
}

/// POST `body` until a 2xx, a permanent refusal or [`MAX_ATTEMPTS`].
async fn deliver(
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    id: String,
    event: &'static str,
    body: Bytes,
    signature: Option<String>,
) -> Delivery {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut request = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .header("user-agent", concat!("weir/", env!("CARGO_PKG_VERSION")))
            .header("x-weir-event", event)
            .header("x-weir-delivery", id.as_str());
        if let Some(s) = &signature {
            request = request.header(SIGNATURE_HEADER, s.as_str());
        }
        let (retry, last) = match request.body(Full::new(body.clone())) {
            Err(e) => (false, format!("the request could not be built: {e}")),
            Ok(request) => match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
                Ok(Ok(answer)) if answer.status().is_success() => {
                    return Delivery {
                        id,
                        event,
                        url,
                        attempts: attempt,
                        delivered: true,
                        last: answer.status().to_string(),
                    };
                }
                Ok(Ok(answer)) => {
                    let status = answer.status();
                    (
                        status.is_server_error() || status.as_u16() == 429,
                        format!("answered {status}"),
                    )
                }
                Ok(Err(e)) => (true, format!("could not be reached: {e}")),
                Err(_) => (
                    true,
                    format!("did not answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
                ),
            },
        };
        tracing::debug!("webhook {url}: {event} attempt {attempt}: {last}");
        if !retry || attempt == MAX_ATTEMPTS {
            return Delivery {
                id,
                event,
                url,
                attempts: attempt,
                delivered: false,
                last,
            };
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    unreachable!("the loop returns on its last attempt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn events_map_to_what_teams_subscribe_to() {
        let finished = |status| Event::RunFinished {
            status,
            duration_ms: 1,
            counts: Default::default(),
        };
        assert_eq!(
            notify_event_of(&finished(RunStatus::Failed)),
            Some(NotifyEvent::RunFailed)
        );
        assert_eq!(
            notify_event_of(&finished(RunStatus::Succeeded)),
            Some(NotifyEvent::RunSucceeded)
        );
        let log = Event::StageSkipped {
            stage: "a".into(),
            reason: "b".into(),
        };
        assert_eq!(notify_event_of(&log), None);
    }
}
