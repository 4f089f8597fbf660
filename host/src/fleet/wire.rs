//! The messages on the streams, as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::events::EventRecord;
use crate::store::recorder::NewRun;

/// Everything a worker needs to run a queued run (no secrets: those are
/// asked for one at a time, see [`SecretAsk`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMessage {
    /// The run, recorded `queued` on the server.
    pub run: String,
    /// Its tenant.
    pub tenant: String,
    /// The labels it needs, once its pipeline has been read (`None`: not
    /// yet; the first worker to check it out reads `runs-on`).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// The configured repository's key.
    pub repository: String,
    /// Where to fetch it from.
    pub clone_url: String,
    /// The pipeline file inside it.
    pub pipeline: PathBuf,
    /// The commit to build.
    pub commit: String,
    /// The branch, when it builds one.
    #[serde(default)]
    pub branch: Option<String>,
    /// A ref to fetch when the commit cannot be fetched by id.
    #[serde(default)]
    pub fetch: Option<String>,
    /// The environment to deploy to.
    #[serde(default)]
    pub environment: Option<String>,
    /// Code from outside the tenant: no secrets, no deploys.
    #[serde(default)]
    pub untrusted: bool,
    /// The server's tenants file (policies and limits; secrets stay on
    /// the server), and the path it was read from, for messages.
    #[serde(default)]
    pub tenants: Option<(PathBuf, String)>,
    /// Variables no stage may inherit.
    #[serde(default)]
    pub withheld_env: Vec<String>,
    /// After this many deliveries, the run ends `failed`.
    pub max_deliveries: u32,
}

/// What a worker sends the server about a run, on
/// [`super::names::events_subject`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Envelope {
    /// The run starts on `worker`, from the beginning.
    Opened {
        /// The worker.
        worker: String,
        /// Which delivery of the job it is running.
        #[serde(default = "first")]
        delivery: u32,
        /// The run as the store first records it.
        run: NewRun,
    },
    /// The run is taken up on `worker` after another stopped; `rerun` are
    /// the stages that run again.
    Continued {
        /// The worker.
        worker: String,
        /// Which delivery of the job it is running.
        #[serde(default = "first")]
        delivery: u32,
        /// The run.
        run: String,
        /// Stages run again.
        rerun: Vec<String>,
    },
    /// Events, in order.
    Events {
        /// The worker.
        worker: String,
        /// Which delivery of the job it is running.
        #[serde(default = "first")]
        delivery: u32,
        /// The events.
        records: Vec<EventRecord>,
        /// When the last event ends a stage that succeeded: whether the
        /// workspace was kept after it (`weir-workspaces`). A worker
        /// taking the run up reuses only stages whose files it can have.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace_kept: Option<bool>,
    },
    /// The run needs labels the worker that read its pipeline lacks; it
    /// waits for a worker that has them.
    Routed {
        /// The worker.
        worker: String,
        /// The run.
        run: String,
        /// The labels.
        labels: Vec<String>,
    },
    /// Something the history should say about the run.
    Reason {
        /// The run.
        run: String,
        /// What.
        reason: String,
    },
    /// The run ended without its session ending it (it could not start,
    /// was cancelled before it began, or was delivered too often).
    Ended {
        /// The worker.
        worker: String,
        /// Which delivery of the job it was given.
        #[serde(default = "first")]
        delivery: u32,
        /// The run.
        run: String,
        /// `failed` or `cancelled`.
        status: String,
        /// Why.
        reason: String,
    },
}

fn first() -> u32 {
    1
}

/// A worker asks for one secret of the run it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretAsk {
    /// The worker.
    pub worker: String,
    /// The secret's name.
    pub name: String,
}

/// The server's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretAnswer {
    /// The value, when the run's tenant has the secret and grants it.
    pub value: Option<String>,
    /// Why not, when not.
    #[serde(default)]
    pub refused: Option<String>,
}

/// A worker's heartbeat, in [`super::names::WORKERS_BUCKET`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerBeat {
    /// Its id (host name and process).
    pub id: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// The tenants it takes runs of (empty: every tenant).
    pub tenants: Vec<String>,
    /// weir's version.
    pub version: String,
    /// Most runs at once.
    pub concurrency: usize,
    /// The runs it is running.
    pub running: Vec<String>,
    /// Runs it finished since it started.
    pub finished: u64,
    /// `running`, `draining` or `stopped`.
    pub state: String,
    /// When it sent this, ms since the epoch.
    pub time_ms: u64,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
}

/// An approval decided on the server, in [`super::names::DECISIONS_BUCKET`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// Approved, or rejected.
    pub approve: bool,
    /// Who decided.
    pub who: String,
    /// The reason given.
    #[serde(default)]
    pub reason: Option<String>,
}
