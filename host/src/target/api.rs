//! The local target's control API: JSON over HTTP/1.1 on a Unix socket
//! (`.weir/target/control.sock`, mode 0600, in a directory of mode 0700).
//! Three locks, each enough alone against a program run in a sandbox:
//! the state directory is never inside a workspace; the target answers
//! only peers (SO_PEERCRED) with its own uid in its own user and pid
//! namespaces, so nothing inside bubblewrap; and every call carries the
//! target's token ([`TOKEN_HEADER`]), read from `token` (mode 0600) in
//! the target directory. A start names a release file the client put in
//! the target's `incoming/` directory, never a path elsewhere.
//! These types are both ends' contract.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/status` | | [`Status`] |
//! | `POST /v1/instances` | [`StartRequest`] | [`InstanceInfo`] |
//! | `DELETE /v1/instances/ID` | | `{}` |
//! | `PUT /v1/services/S/weights` | [`Weights`] | [`ServiceStatus`] |
//! | `POST /v1/services/S/promote` | [`Promote`] | [`ServiceStatus`] |
//! | `POST /v1/services/S/restore` | [`Restore`] | [`ServiceStatus`] |
//! | `POST /v1/services/S/rollback` | | [`ServiceStatus`] |
//! | `PUT /v1/services/S/lease` | [`Lease`] | `{}` |
//! | `DELETE /v1/services/S/lease` | | `{}` |
//! | `GET /v1/services/S/samples?since_ms=&until_ms=` | | [`Samples`] |
//! | `POST /v1/shutdown` | | `{}` |
//!
//! Errors answer 4xx/5xx with [`ApiError`].

use serde::{Deserialize, Serialize};

use super::state::Release;

/// The header every control call carries the target's token in.
pub const TOKEN_HEADER: &str = "x-weir-target-token";

/// The header a run's calls carry its tenant in. A service belongs to the
/// tenant whose run started it first; a call naming another tenant may
/// not start, read, weigh, promote, restore or roll it back, and sees only
/// its own tenant's services in the status. Calls without it are the
/// operator's (`weir target status`, `weir releases`, `weir rollback`).
pub const TENANT_HEADER: &str = "x-weir-tenant";

/// The token's file in the target directory.
pub const TOKEN_FILE: &str = "token";

/// Start one instance of `service` at `version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// The program: the name of a file the client placed in the target's
    /// `incoming/` directory (a name, not a path); the target moves it
    /// into its releases before starting it.
    pub release: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (besides `PORT`).
    pub env: Vec<(String, String)>,
    /// The readiness path.
    pub readiness_path: String,
    /// The router port wanted for a new service (0: any free port).
    pub port: u16,
    /// The run asking.
    pub run: Option<String>,
    /// A container release instead of a program: `release` and `args`
    /// are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<super::podman::ContainerLaunch>,
}

/// A running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Its id.
    pub id: String,
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// Its own port on 127.0.0.1.
    pub port: u16,
    /// Whether it takes traffic.
    pub ready: bool,
    /// Restarts after crashes.
    pub restarts: u32,
}

/// A traffic split: (version, weight) pairs adding up to 100.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Weights {
    /// The split.
    pub weights: Vec<(String, u32)>,
}

/// Make `version` the stable release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Promote {
    /// The version.
    pub version: String,
}

/// Put a service back on its stable release: all traffic to it (its
/// instances started again if none run), every other instance stopped,
/// every candidate marked rolled back with `reason`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restore {
    /// Why, recorded with the abandoned candidates.
    pub reason: String,
}

/// A rollout's hold on its service: the controller renews it (every
/// [`LEASE_RENEW_MS`]); if it lapses, the controller is gone, and the
/// target itself puts the stable release back at 100% and stops the
/// candidate, recording "controller lost" in the release history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The run that holds it.
    pub run: String,
    /// How long it holds without a renewal, in ms (at most [`MAX_LEASE_MS`]).
    pub ttl_ms: u64,
}

/// How long a rollout's lease holds without a renewal.
pub const LEASE_TTL_MS: u64 = 2000;
/// How often the controller renews it.
pub const LEASE_RENEW_MS: u64 = 400;
/// The longest lease the target grants.
pub const MAX_LEASE_MS: u64 = 10_000;

/// One service as the target runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: String,
    /// The tenant it belongs to.
    #[serde(default)]
    pub tenant: String,
    /// The router's address, `127.0.0.1:PORT`.
    pub address: String,
    /// The traffic split.
    pub weights: Vec<(String, u32)>,
    /// The stable version.
    pub stable: Option<String>,
    /// Running instances.
    pub instances: Vec<InstanceInfo>,
    /// Release history, oldest first.
    pub releases: Vec<Release>,
}

impl ServiceStatus {
    /// Ready instances of `version`.
    pub fn ready(&self, version: &str) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.version == version && i.ready)
            .count() as u32
    }
}

/// The whole target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The target's process id.
    pub pid: u32,
    /// weir's version.
    pub weir: String,
    /// Where Prometheus scrapes, `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// The label its containers carry: `podman ps --filter label=THIS`.
    #[serde(default)]
    pub container_label: String,
    /// Every service.
    pub services: Vec<ServiceStatus>,
}

/// One request the router answered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was answered, ms since the epoch.
    pub at_ms: u64,
    /// Its status (502 when the instance failed).
    pub status: u16,
    /// Its latency in seconds.
    pub seconds: f64,
}

/// The requests of a window, by version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// (version, requests answered in the window, oldest first).
    pub versions: Vec<(String, Vec<Sample>)>,
    /// True when a version's bounded sample no longer reaches back to
    /// the window's start (more requests than it keeps).
    pub truncated: bool,
}

/// What went wrong, with what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// `invalid`, `not-found`, `failed`.
    pub kind: String,
    /// For people.
    pub message: String,
}
