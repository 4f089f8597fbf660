//! The plan: what a pipeline means, checked, in the form the scheduler runs.
//!
//! [`build`] turns a parsed [`crate::config::PipelineFile`] into a [`Plan`]:
//! stage names resolved to indices, `needs` checked (unknown names, cycles
//! with their path), plugins resolved to a built-in or a file, durations
//! parsed, output references checked against what runs before. Every
//! problem is reported with its file, line and column, all at once.
//!
//! The plan knows nothing of wasmtime; [`crate::plugins`] loads what
//! [`PluginRef`] names.

mod build;
mod deploy;
pub mod environments;
pub mod expr;
mod gate;
mod graph;
pub mod shell;
mod stage;
pub mod tenancy;
mod text;
pub mod when;

pub use build::build;
pub use deploy::{CHECK_TIMEOUT, MAX_LOAD_RATE, STRATEGY_TIMEOUT};
pub use text::toml_to_json;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::duration::parse_duration;
use crate::config::model::StageSpec;
use crate::config::{ConfigError, InvalidConfig, LoadedPipeline, SourceFile};
pub use crate::findings::{FindingsGate, Severity};

pub use when::{RunFacts, Skip, When};

/// A stage's timeout when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The most retries a stage may ask for.
pub const MAX_RETRIES: u32 = 10;

/// A checked pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `[pipeline] name`.
    pub name: String,
    /// The file it came from.
    pub source: SourceFile,
    /// Stages in file order; [`PlannedStage::needs`] indexes into this.
    pub stages: Vec<PlannedStage>,
    /// `[providers.NAME]`: metrics providers, by name.
    pub providers: BTreeMap<String, crate::providers::Provider>,
    /// `[environments.NAME]`, by name.
    pub environments: BTreeMap<String, environments::Environment>,
    /// `[pipeline] environment`: the run's when `--env` is not given.
    pub default_environment: Option<String>,
    /// `[pipeline] concurrency`: held by the whole run.
    pub concurrency: Option<Concurrency>,
    /// `[notify]`'s webhooks.
    pub notify: Vec<crate::webhooks::Webhook>,
    /// `[pipeline] runs-on`: the labels a worker needs to take the run.
    pub runs_on: Vec<String>,
}

/// Whether `label` may be a worker label: lowercase letters, digits and
/// `-`, 1 to 32 of them, starting with a letter or digit.
pub fn valid_label(label: &str) -> bool {
    (1..=32).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
}

/// A concurrency group and what to do when it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    /// The group's name (per tenant).
    pub group: String,
    /// Cancel the holder instead of queueing behind it.
    pub cancel_in_progress: bool,
}

/// Where a stage's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginRef {
    /// Embedded in the `weir` binary.
    Builtin(String),
    /// A `[plugins.NAME]` component file.
    File {
        /// The `[plugins]` key.
        name: String,
        /// Absolute or relative to the working directory.
        path: PathBuf,
        /// The pinned digest, lowercase hex.
        sha256: Option<String>,
    },
}

impl PluginRef {
    /// The name the pipeline uses for it.
    pub fn name(&self) -> &str {
        match self {
            PluginRef::Builtin(n) | PluginRef::File { name: n, .. } => n,
        }
    }
}

pub use crate::grants::Grants;

/// `${{ pipeline.dir }}`: the pipeline file's directory, absolute. It is
/// replaced when the plan is built, before anything else reads the text.
pub const PIPELINE_DIR: &str = "${{ pipeline.dir }}";

/// A stage's quality gate. For test runners, without one, any failed or
/// errored case fails the stage. For analyzers, without one, the plugin's
/// verdict decides; with one, [`FindingsGate`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Least share of passed cases among those that ran, 0 to 1.
    pub min_pass_rate: Option<f64>,
    /// Most failed or errored cases.
    pub max_failures: Option<u32>,
    /// Whether skipped cases are fine.
    pub allow_skipped: bool,
    /// An analyzer's gate, when `fail-on`, `max-findings` or `min-score` is
    /// set.
    pub findings: Option<FindingsGate>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_pass_rate: None,
            max_failures: Some(0),
            allow_skipped: true,
            findings: None,
        }
    }
}

/// Which kind of stage a `gate` key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateFor {
    /// `min-pass-rate`, `max-failures`, `allow-skipped`.
    Tests,
    /// `fail-on`, `max-findings`, `min-score`.
    Findings,
}

/// One key written in a stage's `gate`, for checking it against the
/// plugin's kind once plugins are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateKey {
    /// The key as written, e.g. `fail-on`.
    pub name: &'static str,
    /// Which kind it applies to.
    pub applies_to: GateFor,
    /// Where it is written.
    pub span: Range<usize>,
}

pub use crate::sandbox::SandboxChoice;

/// What a stage says about the stage cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePolicy {
    /// `cache = true|false`; `None` leaves it to the plugin's capabilities.
    pub setting: Option<bool>,
    /// `inputs = [...]`: workspace globs; empty means the default set.
    pub inputs: Vec<String>,
}

/// The built-in plugin behind `run = "..."`.
pub const RUN_PLUGIN: &str = "run";

/// The shell `run = "..."` commands go through (implicitly granted).
pub const RUN_SHELL: &str = "sh";

/// One stage, checked.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// Its name.
    pub name: crate::names::StageName,
    /// Its plugin.
    pub plugin: PluginRef,
    /// Where `uses` is written, for errors found when loading the plugin.
    pub uses_span: Range<usize>,
    /// The `with` table as JSON, references not yet substituted.
    pub with: serde_json::Value,
    /// Where the `with` table is written, if it is.
    pub with_span: Option<Range<usize>>,
    /// Keys of `with` whose values are shell text (`command` of a `run`
    /// stage; what a plugin's schema marks `"x-weir-shell": true`): their
    /// expressions reach the shell as data ([`shell`]).
    pub shell: Vec<String>,
    /// Direct dependencies (indices into [`Plan::stages`]).
    pub needs: Vec<usize>,
    /// Every stage this one depends on, directly or not; their outputs are
    /// its inputs.
    pub upstream: BTreeSet<usize>,
    /// How long one attempt may run.
    pub timeout: Duration,
    /// How many times a failed attempt is retried.
    pub retries: u32,
    /// Conditions for running at all.
    pub when: When,
    /// Variables the plugin sees, references not yet substituted.
    pub env: Vec<(String, String)>,
    /// Names in `env` whose values are an environment's secrets: the
    /// plugin sees a placeholder for each, its programs the value.
    pub secret_env: Vec<String>,
    /// Where each variable of `env` is named (its key in `env` or
    /// `inherit-env`; the pipeline's `[pipeline] env` included).
    pub env_spans: Vec<(String, Range<usize>)>,
    /// The names of its `inherit-env`: variables copied from weir's own
    /// environment.
    pub inherited: Vec<String>,
    /// What the pipeline grants it.
    pub grants: Grants,
    /// Where `allow` is written, for errors about grants.
    pub allow_span: Option<Range<usize>>,
    /// Where the stage's `timeout` is written.
    pub timeout_span: Option<Range<usize>>,
    /// Bubblewrap or not, for its programs.
    pub sandbox: SandboxChoice,
    /// Where `sandbox` is written, if it is.
    pub sandbox_span: Option<Range<usize>>,
    /// Its quality gate (test-runner and analyzer stages).
    pub gate: Gate,
    /// Where `gate` is written, if it is.
    pub gate_span: Option<Range<usize>>,
    /// The keys written in `gate`.
    pub gate_keys: Vec<GateKey>,
    /// The environment it targets.
    pub environment: Option<String>,
    /// The stage cache's say.
    pub cache: CachePolicy,
    /// A deploy stage's strategy, checks and load.
    pub rollout: Option<RolloutPlan>,
    /// Concurrency groups it holds while it runs (its own, and a deploy
    /// stage's environment's).
    pub concurrency: Vec<Concurrency>,
}

/// A plugin a deploy stage uses besides its deployer.
#[derive(Debug, Clone)]
pub struct PlannedUse {
    /// The plugin.
    pub plugin: PluginRef,
    /// Where its `uses` is written.
    pub uses_span: Range<usize>,
    /// Its `with`, as JSON.
    pub with: serde_json::Value,
    /// How long one call may take.
    pub timeout: Duration,
}

/// Traffic sent to the service while a rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Requests per second.
    pub rate: u32,
    /// The path requested.
    pub path: String,
}

/// What a deploy stage adds to its deployer.
#[derive(Debug, Clone)]
pub struct RolloutPlan {
    /// Decides each step.
    pub strategy: PlannedUse,
    /// Analyzers run when the strategy asks.
    pub checks: Vec<PlannedUse>,
    /// Load during the rollout.
    pub load: Option<Load>,
}

impl Plan {
    /// Stage indices in an order where every stage comes after its needs.
    pub fn topological_order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.stages.len());
        let mut done = vec![false; self.stages.len()];
        while order.len() < self.stages.len() {
            let before = order.len();
            for (i, s) in self.stages.iter().enumerate() {
                if !done[i] && s.needs.iter().all(|n| done[*n]) {
                    done[i] = true;
                    order.push(i);
                }
            }
            if order.len() == before {
                break; // unreachable for a built plan: cycles are rejected
            }
        }
        order
    }

    /// Index of the stage called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Keep only the stage at `index` and the stages it depends on
    /// (`weir dev` runs one stage on its upstream's recorded results);
    /// indices are renumbered.
    pub fn focus_on(&mut self, index: usize) {
        let Some(stage) = self.stages.get(index) else {
            return;
        };
        let mut keep: BTreeSet<usize> = stage.upstream.clone();
        keep.insert(index);
        self.keep_only(&keep);
    }

    /// Leave out what code from outside the tenant (a pull request from a
    /// fork) must not run: stages that deploy or target an environment,
    /// stages given secrets (by an environment or `allow.secrets`), the
    /// runtime (which drives the deployment target), metrics providers
    /// (their credentials), secrets to publish, or any of weir's own
    /// variables (`inherit-env`); every stage that needs one of them; and
    /// the `[notify]` webhooks (they are signed with secrets). What is
    /// left keeps out of the stage cache, so it can neither read nor
    /// poison the results trusted runs reuse. Returns the names of the
    /// stages left out, in plan order.
    pub fn without_trusted_stages(&mut self) -> Vec<String> {
        let trusted = |s: &PlannedStage| {
            s.rollout.is_some()
                || s.environment.is_some()
                || !s.secret_env.is_empty()
                || !s.grants.secrets.is_empty()
                || s.grants.runtime
                || !s.grants.metrics.is_empty()
                || !s.grants.publish.is_empty()
                || !s.inherited.is_empty()
        };
        let dropped: BTreeSet<usize> = self
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| trusted(s))
            .map(|(i, _)| i)
            .collect();
        let keep: BTreeSet<usize> = (0..self.stages.len())
            .filter(|i| !dropped.contains(i) && self.stages[*i].upstream.is_disjoint(&dropped))
            .collect();
        let left_out = (0..self.stages.len())
            .filter(|i| !keep.contains(i))
            .map(|i| self.stages[i].name.to_string())
            .collect();
        self.keep_only(&keep);
        self.notify.clear();
        for s in &mut self.stages {
            s.cache.setting = Some(false);
        }
        left_out
    }

    /// Keep the stages in `keep` (each with everything it depends on),
    /// renumbering their indices.
    fn keep_only(&mut self, keep: &BTreeSet<usize>) {
        let renumbered: BTreeMap<usize, usize> =
            keep.iter().enumerate().map(|(new, old)| (*old, new)).collect();
        let stages = std::mem::take(&mut self.stages);
        self.stages = stages
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, mut s)| {
                s.needs = s
                    .needs
                    .iter()
                    .filter_map(|n| renumbered.get(n).copied())
                    .collect();
                s.upstream = s
                    .upstream
                    .iter()
                    .filter_map(|n| renumbered.get(n).copied())
                    .collect();
                s
            })
            .collect();
    }
}

#[cfg(test)]
mod tests;
