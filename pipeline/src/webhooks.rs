//! `[notify]`: the webhooks a pipeline configures and the events they
//! may subscribe to. The host delivers them (weir's `notify` module).

use serde::Serialize;

use crate::config::model::NotifySpec;
use crate::config::{ConfigError, SourceFile, did_you_mean};

/// What a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// The run ended with every stage fine.
    RunSucceeded,
    /// The run ended with a failed stage.
    RunFailed,
    /// The run was cancelled.
    RunCancelled,
    /// A stage failed.
    StageFailed,
    /// A stage waits for a person's approval.
    ApprovalRequested,
    /// An approval was given, refused or timed out.
    ApprovalDecided,
    /// A rollout made its candidate the stable release.
    DeployPromoted,
    /// A rollout was abandoned and the stable release restored.
    DeployRolledBack,
}

impl NotifyEvent {
    /// Every event, in the order the docs list them.
    pub const ALL: [NotifyEvent; 8] = [
        Self::RunSucceeded,
        Self::RunFailed,
        Self::RunCancelled,
        Self::StageFailed,
        Self::ApprovalRequested,
        Self::ApprovalDecided,
        Self::DeployPromoted,
        Self::DeployRolledBack,
    ];

    /// Subscribed to when `events` is not written.
    pub const DEFAULT: [NotifyEvent; 3] = [Self::RunFailed, Self::DeployPromoted, Self::DeployRolledBack];

    /// Its name in `pipeline.toml` and in the payload.
    pub fn name(self) -> &'static str {
        match self {
            Self::RunSucceeded => "run-succeeded",
            Self::RunFailed => "run-failed",
            Self::RunCancelled => "run-cancelled",
            Self::StageFailed => "stage-failed",
            Self::ApprovalRequested => "approval-requested",
            Self::ApprovalDecided => "approval-decided",
            Self::DeployPromoted => "deploy-promoted",
            Self::DeployRolledBack => "deploy-rolled-back",
        }
    }
}

/// One webhook, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// What it wants.
    pub events: Vec<NotifyEvent>,
    /// The secret that signs bodies, by name.
    pub secret: Option<String>,
}

/// Check `[notify]`.
pub fn plan_webhooks(source: &SourceFile, spec: &NotifySpec, errors: &mut Vec<ConfigError>) -> Vec<Webhook> {
    let mut out = Vec::new();
    for hook in &spec.webhooks {
        let h = hook.get_ref();
        let url = h.url.get_ref().trim().to_string();
        if url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
            .is_none()
        {
            errors.push(
                source
                    .error(h.url.span(), format!("`{url}` is not an http:// URL"))
                    .help("write the receiver's URL, e.g. url = \"http://127.0.0.1:9000/weir\" (https is not supported yet; terminate TLS in a local relay)"),
            );
        }
        let mut events = Vec::new();
        for e in &h.events {
            match NotifyEvent::ALL.iter().find(|k| k.name() == e.get_ref()) {
                Some(k) => events.push(*k),
                None => {
                    let names: Vec<&str> = NotifyEvent::ALL.iter().map(|k| k.name()).collect();
                    let err = source.error(
                        e.span(),
                        format!("`{}` is not an event weir notifies", e.get_ref()),
                    );
                    errors.push(match did_you_mean(e.get_ref(), names.iter().copied()) {
                        Some(near) => err.help(format!("did you mean `{near}`?")),
                        None => err.help(format!("the events are {}", names.join(", "))),
                    });
                }
            }
        }
        if h.events.is_empty() {
            events = NotifyEvent::DEFAULT.to_vec();
        }
        out.push(Webhook {
            url,
            events,
            secret: h.secret.as_ref().map(|s| s.get_ref().clone()),
        });
    }
    out
}
