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

pub mod environments;
pub mod expr;
pub mod tenancy;
pub mod when;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::duration::parse_duration;
use crate::config::model::StageSpec;
use crate::config::{ConfigError, InvalidConfig, LoadedPipeline, SourceFile, did_you_mean};
pub use crate::findings::{FindingsGate, Severity};

pub use when::{RunFacts, When};

/// A stage's timeout when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The most retries a stage may ask for.
pub const MAX_RETRIES: u32 = 10;

/// A checked pipeline.
#[derive(Debug)]
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
    pub name: String,
    /// Its plugin.
    pub plugin: PluginRef,
    /// Where `uses` is written, for errors found when loading the plugin.
    pub uses_span: Range<usize>,
    /// The `with` table as JSON, references not yet substituted.
    pub with: serde_json::Value,
    /// Where the `with` table is written, if it is.
    pub with_span: Option<Range<usize>>,
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

/// Check `loaded` and build its plan. `builtins` are the names of the
/// plugins embedded in this host.
pub fn build(loaded: LoadedPipeline, builtins: &[&str]) -> Result<Plan, InvalidConfig> {
    let LoadedPipeline { source, file } = loaded;
    let mut errors = Vec::new();
    let names: Vec<String> = file.stages.keys().map(|k| k.get_ref().clone()).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let base_dir = source
        .path()
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();

    if file.stages.is_empty() {
        errors.push(
            source
                .error_whole("the pipeline has no stages")
                .help("add one: [stages.hello] then uses = \"noop\""),
        );
    }
    let name_span = file.pipeline.name.span();
    if file.pipeline.name.get_ref().trim().is_empty() {
        errors.push(source.error(name_span, "the pipeline's name is empty"));
    }

    // Plugins declared by path.
    let mut declared: BTreeMap<String, PluginRef> = BTreeMap::new();
    for (key, spec) in &file.plugins {
        let name = key.get_ref();
        if builtins.contains(&name.as_str()) {
            errors.push(
                source
                    .error(key.span(), format!("`{name}` is the name of a built-in plugin"))
                    .help("choose another name for this plugin so `uses` is never ambiguous"),
            );
            continue;
        }
        let spec = spec.get_ref();
        let rel = spec.path.get_ref();
        let path = base_dir.join(rel);
        if !path.is_file() {
            // cargo names the component after the crate with `-` turned
            // into `_`: `my-check` builds `my_check.wasm`.
            let twin = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| path.with_file_name(n.replace('-', "_")))
                .filter(|t| *t != path && t.is_file());
            let help = match twin {
                Some(t) => format!(
                    "did you mean `{}`? cargo writes crate `my-check` as `my_check.wasm`",
                    t.file_name().and_then(|n| n.to_str()).unwrap_or_default()
                ),
                None => "the path is relative to the pipeline file; build the plugin first (`cargo build --release --target wasm32-wasip2`)".into(),
            };
            errors.push(
                source
                    .error(
                        spec.path.span(),
                        format!("plugin file `{}` does not exist", path.display()),
                    )
                    .help(help),
            );
        }
        let sha256 = match &spec.sha256 {
            Some(s) => {
                let hex = s.get_ref().trim().to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    errors.push(
                        source
                            .error(s.span(), "`sha256` must be 64 hexadecimal characters")
                            .help("`weir plugins inspect PATH` prints a file's sha256"),
                    );
                }
                Some(hex)
            }
            None => None,
        };
        declared.insert(
            name.clone(),
            PluginRef::File {
                name: name.clone(),
                path,
                sha256,
            },
        );
    }

    let mut providers = BTreeMap::new();
    for (key, spec) in &file.providers {
        let name = key.get_ref();
        let url = spec
            .get_ref()
            .prometheus
            .get_ref()
            .trim()
            .trim_end_matches('/')
            .to_string();
        if name == "builtin" {
            errors.push(
                source
                    .error(key.span(), "`builtin` is the local target's own provider")
                    .help("choose another name, e.g. [providers.prometheus]"),
            );
        } else if !url.starts_with("http://") || url.len() <= "http://".len() {
            errors.push(
                source
                    .error(
                        spec.get_ref().prometheus.span(),
                        format!("`{url}` is not an http:// URL"),
                    )
                    .help("write the server's base URL, e.g. prometheus = \"http://127.0.0.1:9090\""),
            );
        }
        providers.insert(name.clone(), crate::providers::Provider::Prometheus(url));
    }
    for (key, spec) in &file.stages {
        let Some(allow) = &spec.get_ref().allow else {
            continue;
        };
        for m in &allow.get_ref().metrics {
            if m != "builtin" && !providers.contains_key(m) {
                let known = std::iter::once("builtin").chain(providers.keys().map(String::as_str));
                errors.push(
                    source
                        .error(allow.span(), format!("stage `{}` is granted metrics provider `{m}`, which is not configured", key.get_ref()))
                        .help(suggest(m, known).unwrap_or_else(|| format!("declare it: [providers.{m}] prometheus = \"http://127.0.0.1:9090\"; `builtin` is always there"))),
                );
            }
        }
    }

    let environments = environments::plan_environments(&source, &file.environments, &mut errors);
    if let Some(e) = &file.pipeline.environment {
        environments::check_reference(&source, &environments, e, &mut errors);
    }
    for spec in file.stages.values() {
        if let Some(e) = &spec.get_ref().environment {
            environments::check_reference(&source, &environments, e, &mut errors);
        }
    }
    let concurrency = concurrency_of(
        &source,
        file.pipeline.concurrency.as_ref(),
        file.pipeline.cancel_in_progress.as_ref(),
        &mut errors,
    );
    let notify = file
        .notify
        .as_ref()
        .map(|n| crate::webhooks::plan_webhooks(&source, n.get_ref(), &mut errors))
        .unwrap_or_default();

    let mut stages = Vec::with_capacity(names.len());
    for (key, spec) in &file.stages {
        let name = key.get_ref();
        if !valid_name(name) {
            errors.push(
                source
                    .error(key.span(), format!("`{name}` is not a valid stage name"))
                    .help("use letters, digits, `-` and `_`, starting with a letter or digit"),
            );
        }
        let stage = plan_stage(
            &source,
            name,
            spec.get_ref(),
            &file.pipeline.env,
            &index,
            &names,
            &declared,
            builtins,
            &mut errors,
            key.span(),
            &base_dir,
        );
        stages.push(stage);
    }

    if errors.is_empty()
        && let Some(cycle) = find_cycle(&stages)
    {
        {
            let path: Vec<&str> = cycle.iter().map(|i| names[*i].as_str()).collect();
            // Point at the `needs` entry that closes the cycle.
            let (from, to) = (cycle[cycle.len() - 2], cycle[cycle.len() - 1]);
            let span = file.stages[from]
                .get_ref()
                .needs
                .iter()
                .find(|n| n.get_ref() == &names[to])
                .map(|n| n.span())
                .unwrap_or_else(|| file.stages.get_index(from).map(|(k, _)| k.span()).unwrap_or(0..0));
            errors.push(
                source
                    .error(span, format!("the stages form a cycle: {}", path.join(" → ")))
                    .label("this need closes the cycle")
                    .help("remove one of these `needs` so the stages can run in order"),
            );
        }
    }

    if errors.is_empty() {
        fill_upstream(&mut stages);
        check_references(&source, &file.stages, &stages, &names, &mut errors);
    }

    if !errors.is_empty() {
        return Err(InvalidConfig {
            path: source.path().to_path_buf(),
            errors,
        });
    }
    Ok(Plan {
        name: file.pipeline.name.into_inner(),
        source,
        stages,
        providers,
        environments,
        default_environment: file.pipeline.environment.map(|e| e.into_inner()),
        concurrency,
        notify,
    })
}

/// `concurrency = "GROUP"` and `cancel-in-progress`, checked.
fn concurrency_of(
    source: &SourceFile,
    group: Option<&toml::Spanned<String>>,
    cancel: Option<&toml::Spanned<bool>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Concurrency> {
    match (group, cancel) {
        (Some(g), _) => {
            let name = g.get_ref().trim();
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                errors.push(
                    source
                        .error(g.span(), "a concurrency group needs a short, printable name")
                        .help("e.g. concurrency = \"deploy-web\""),
                );
            }
            Some(Concurrency {
                group: name.to_string(),
                cancel_in_progress: cancel.is_some_and(|c| *c.get_ref()),
            })
        }
        (None, Some(c)) => {
            errors.push(
                source
                    .error(c.span(), "`cancel-in-progress` without `concurrency`")
                    .help("name the group it applies to: concurrency = \"deploy-web\""),
            );
            None
        }
        (None, None) => None,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename these"
)]
fn plan_stage(
    source: &SourceFile,
    name: &str,
    spec: &StageSpec,
    pipeline_env: &indexmap::IndexMap<toml::Spanned<String>, toml::Spanned<String>>,
    index: &BTreeMap<&str, usize>,
    names: &[String],
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
    stage_span: Range<usize>,
    base_dir: &std::path::Path,
) -> PlannedStage {
    let (uses, uses_span) = match (&spec.uses, &spec.run) {
        (Some(u), None) => (u.get_ref().clone(), u.span()),
        (None, Some(r)) => (RUN_PLUGIN.to_string(), r.span()),
        (Some(u), Some(_)) => {
            errors.push(
                source
                    .error(u.span(), format!("stage `{name}` has both `uses` and `run`"))
                    .help(
                        "`run = \"COMMAND\"` is shorthand for the built-in `run` plugin; keep one of the two",
                    ),
            );
            (u.get_ref().clone(), u.span())
        }
        (None, None) => {
            errors.push(
                source
                    .error(
                        stage_span,
                        format!("stage `{name}` says neither what plugin it uses nor what to run"),
                    )
                    .help("add `uses = \"PLUGIN\"` (see `weir plugins list`) or `run = \"COMMAND\"`"),
            );
            (RUN_PLUGIN.to_string(), 0..0)
        }
    };
    let plugin = resolve_plugin(
        source,
        &format!("stage `{name}` uses"),
        &uses,
        uses_span.clone(),
        declared,
        builtins,
        errors,
    );

    let mut needs = Vec::new();
    for need in &spec.needs {
        let n = need.get_ref();
        if n == name {
            errors.push(
                source
                    .error(need.span(), format!("stage `{name}` needs itself"))
                    .help("remove it from `needs`"),
            );
        } else if let Some(i) = index.get(n.as_str()) {
            if !needs.contains(i) {
                needs.push(*i);
            }
        } else {
            let help = suggest(n, names.iter().map(String::as_str))
                .unwrap_or_else(|| format!("the stages are {}", quoted(names.iter().map(String::as_str))));
            errors.push(
                source
                    .error(
                        need.span(),
                        format!("stage `{name}` needs `{n}`, which is not a stage"),
                    )
                    .help(help),
            );
        }
    }

    let timeout = match &spec.timeout {
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) => d,
            Err(msg) => {
                errors.push(
                    source
                        .error(t.span(), msg)
                        .help("write a number and a unit: \"250ms\", \"90s\", \"10m\", \"1h30m\""),
                );
                DEFAULT_TIMEOUT
            }
        },
        None => DEFAULT_TIMEOUT,
    };

    let retries = match &spec.retries {
        Some(r) if *r.get_ref() > MAX_RETRIES => {
            errors.push(
                source
                    .error(
                        r.span(),
                        format!("{} retries is more than the {MAX_RETRIES} allowed", r.get_ref()),
                    )
                    .help("a stage that needs more retries than that has a bug worth fixing"),
            );
            MAX_RETRIES
        }
        Some(r) => *r.get_ref(),
        None => 0,
    };

    let mut inputs = Vec::new();
    for glob in &spec.inputs {
        match crate::globs::check_glob(glob.get_ref()) {
            Ok(()) => inputs.push(glob.get_ref().clone()),
            Err(why) => errors.push(
                source
                    .error(glob.span(), format!("input `{}` {why}", glob.get_ref()))
                    .help("inputs are workspace paths or globs: \"Cargo.lock\", \"src/**/*.rs\""),
            ),
        }
    }

    let pipeline_dir = base_dir.display().to_string();
    let mut with = match &spec.with {
        Some(t) => toml_to_json(&toml::Value::Table(t.get_ref().clone())),
        None => serde_json::Value::Object(Default::default()),
    };
    replace_in_json(&mut with, PIPELINE_DIR, &pipeline_dir);
    let mut grants: Grants = spec
        .allow
        .as_ref()
        .map(|a| {
            let mut allow = a.get_ref().clone();
            for r in &mut allow.read {
                *r = PathBuf::from(r.to_string_lossy().replace(PIPELINE_DIR, &pipeline_dir));
            }
            allow.resolve_read(base_dir);
            allow
        })
        .unwrap_or_default();
    if let Some(run) = &spec.run {
        if let serde_json::Value::Object(map) = &mut with {
            map.insert("command".into(), serde_json::Value::String(run.get_ref().clone()));
        }
        if !grants.exec.iter().any(|e| e == RUN_SHELL) {
            grants.exec.push(RUN_SHELL.into());
        }
    }
    let mut gate_keys = Vec::new();
    let gate = match &spec.gate {
        None => Gate::default(),
        Some(g) => {
            let g = g.get_ref();
            let mut key = |name: &'static str, applies_to: GateFor, span: Option<Range<usize>>| {
                if let Some(span) = span {
                    gate_keys.push(GateKey {
                        name,
                        applies_to,
                        span,
                    });
                }
            };
            key(
                "min-pass-rate",
                GateFor::Tests,
                g.min_pass_rate.as_ref().map(|v| v.span()),
            );
            key(
                "max-failures",
                GateFor::Tests,
                g.max_failures.as_ref().map(|v| v.span()),
            );
            key(
                "allow-skipped",
                GateFor::Tests,
                g.allow_skipped.as_ref().map(|v| v.span()),
            );
            key("fail-on", GateFor::Findings, g.fail_on.as_ref().map(|v| v.span()));
            key(
                "max-findings",
                GateFor::Findings,
                g.max_findings.as_ref().map(|v| v.span()),
            );
            key(
                "min-score",
                GateFor::Findings,
                g.min_score.as_ref().map(|v| v.span()),
            );
            if let Some(rate) = &g.min_pass_rate
                && !(0.0..=1.0).contains(rate.get_ref())
            {
                errors.push(
                    source
                        .error(
                            rate.span(),
                            format!("min-pass-rate {} is not between 0 and 1", rate.get_ref()),
                        )
                        .help("write it as a fraction: 0.95 means 95% of the cases that ran must pass"),
                );
            }
            if let Some(score) = &g.min_score
                && !(0.0..=100.0).contains(score.get_ref())
            {
                errors.push(
                    source
                        .error(score.span(), format!("min-score {} is not between 0 and 100", score.get_ref()))
                        .help("the score is max(0, 100 − 10·critical − 5·high − 2·medium); 80 allows two high findings"),
                );
            }
            let fail_on = g.fail_on.as_ref().and_then(|f| {
                let parsed = Severity::parse(f.get_ref());
                if parsed.is_none() {
                    let names: Vec<&str> = Severity::WORST_FIRST.iter().map(|s| s.name()).collect();
                    let mut e = source.error(f.span(), format!("`{}` is not a severity", f.get_ref()));
                    e = match did_you_mean(f.get_ref(), names.iter().copied()) {
                        Some(s) => e.help(format!("did you mean `{s}`? Severities: {}", names.join(", "))),
                        None => e.help(format!("severities, worst first: {}", names.join(", "))),
                    };
                    errors.push(e);
                }
                parsed
            });
            let findings =
                (g.fail_on.is_some() || g.max_findings.is_some() || g.min_score.is_some()).then(|| {
                    FindingsGate {
                        fail_on,
                        max_findings: g.max_findings.as_ref().map(|v| *v.get_ref()),
                        min_score: g.min_score.as_ref().map(|v| *v.get_ref()),
                    }
                });
            Gate {
                min_pass_rate: g.min_pass_rate.as_ref().map(|r| *r.get_ref()),
                max_failures: g.max_failures.as_ref().map(|v| *v.get_ref()),
                allow_skipped: g.allow_skipped.as_ref().map(|v| *v.get_ref()).unwrap_or(true),
                findings,
            }
        }
    };
    let sandbox_span = spec.sandbox.as_ref().map(|s| s.span());
    let sandbox = match &spec.sandbox {
        None => SandboxChoice::Auto,
        Some(s) => SandboxChoice::parse(s.get_ref()).unwrap_or_else(|| {
            errors.push(
                source
                    .error(s.span(), format!("`{}` is not a sandbox weir knows", s.get_ref()))
                    .help("use \"auto\" (bubblewrap when installed), \"bubblewrap\" (required) or \"none\""),
            );
            SandboxChoice::Auto
        }),
    };

    let mut env: Vec<(String, String)> = Vec::new();
    let mut env_spans: Vec<(String, Range<usize>)> = Vec::new();
    for (k, v) in pipeline_env.iter().chain(spec.env.iter()) {
        let key = k.get_ref();
        env_spans.push((key.clone(), k.span()));
        if !valid_env_name(key) {
            errors.push(
                source
                    .error(
                        k.span(),
                        format!("`{key}` is not a valid environment variable name"),
                    )
                    .help("use letters, digits and `_`, not starting with a digit"),
            );
        }
        env.retain(|(existing, _)| existing != key);
        env.push((key.clone(), v.get_ref().replace(PIPELINE_DIR, &pipeline_dir)));
    }
    for name in &spec.inherit_env {
        let key = name.get_ref();
        env_spans.push((key.clone(), name.span()));
        if !valid_env_name(key) {
            errors.push(source.error(
                name.span(),
                format!("`{key}` is not a valid environment variable name"),
            ));
        } else if let Ok(value) = std::env::var(key) {
            env.retain(|(existing, _)| existing != key);
            env.push((key.clone(), value));
        }
    }

    let when = spec
        .when
        .as_ref()
        .map(|w| {
            let w = w.get_ref();
            When {
                branch: w.branch.clone().map(|b| b.into_vec()).unwrap_or_default(),
                environment: w.environment.clone().map(|e| e.into_vec()).unwrap_or_default(),
            }
        })
        .unwrap_or_default();

    let rollout = spec.strategy.as_ref().map(|strategy| RolloutPlan {
        strategy: plan_use(
            source,
            name,
            "strategy",
            strategy,
            STRATEGY_TIMEOUT,
            declared,
            builtins,
            errors,
        ),
        checks: spec
            .checks
            .iter()
            .map(|c| {
                plan_use(
                    source,
                    name,
                    "check",
                    c,
                    CHECK_TIMEOUT,
                    declared,
                    builtins,
                    errors,
                )
            })
            .collect(),
        load: spec.load.as_ref().map(|l| {
            let l = l.get_ref();
            let rate = *l.rate.get_ref();
            if rate == 0 || rate > MAX_LOAD_RATE {
                errors.push(
                    source
                        .error(
                            l.rate.span(),
                            format!("a load of {rate} requests per second is out of range"),
                        )
                        .help(format!("use 1 to {MAX_LOAD_RATE}")),
                );
            }
            let path = l.path.as_ref().map_or("/".to_string(), |p| p.get_ref().clone());
            if !path.starts_with('/')
                && let Some(p) = &l.path
            {
                errors.push(source.error(p.span(), format!("the load path `{path}` must start with `/`")));
            }
            Load { rate, path }
        }),
    });
    if rollout.is_some()
        && let Some(c) = spec.cache.as_ref().filter(|c| *c.get_ref())
    {
        errors.push(
            source
                .error(
                    c.span(),
                    format!("stage `{name}` deploys, so it cannot be served from the stage cache"),
                )
                .help("a deploy changes what serves; remove `cache = true`"),
        );
    }
    if rollout.is_none() {
        for (what, span) in spec
            .checks
            .first()
            .map(|c| ("checks", c.span()))
            .into_iter()
            .chain(spec.load.as_ref().map(|l| ("load", l.span())))
        {
            errors.push(
                source
                    .error(span, format!("stage `{name}` has `{what}` but no `strategy`"))
                    .help("checks and load belong to a deploy stage: add strategy = { uses = \"canary\" }"),
            );
        }
    }

    let concurrency = concurrency_of(
        source,
        spec.concurrency.as_ref(),
        spec.cancel_in_progress.as_ref(),
        errors,
    )
    .into_iter()
    .collect();
    PlannedStage {
        rollout,
        concurrency,
        name: name.to_string(),
        plugin,
        uses_span,
        with,
        with_span: spec.with.as_ref().map(|w| w.span()),
        needs,
        upstream: BTreeSet::new(),
        timeout,
        retries,
        when,
        env,
        secret_env: Vec::new(),
        env_spans,
        grants,
        allow_span: spec.allow.as_ref().map(|a| a.span()),
        timeout_span: spec.timeout.as_ref().map(|t| t.span()),
        sandbox,
        sandbox_span,
        gate,
        gate_span: spec.gate.as_ref().map(|g| g.span()),
        gate_keys,
        environment: spec.environment.as_ref().map(|e| e.get_ref().clone()),
        cache: CachePolicy {
            setting: spec.cache.as_ref().map(|c| *c.get_ref()),
            inputs,
        },
    }
}

/// The plugin `uses` names: a `[plugins]` key or a built-in.
fn resolve_plugin(
    source: &SourceFile,
    who: &str,
    uses: &str,
    span: Range<usize>,
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
) -> PluginRef {
    if let Some(p) = declared.get(uses) {
        return p.clone();
    }
    if builtins.contains(&uses) {
        return PluginRef::Builtin(uses.to_string());
    }
    let candidates = builtins
        .iter()
        .copied()
        .chain(declared.keys().map(String::as_str));
    let help = suggest(uses, candidates).unwrap_or_else(|| {
        format!(
            "built-in plugins are {}; declare others with [plugins.{uses}] path = \"plugin.wasm\"",
            quoted(builtins.iter().copied())
        )
    });
    errors.push(
        source
            .error(span, format!("{who} `{uses}`, which is not a known plugin"))
            .help(help),
    );
    PluginRef::Builtin(uses.to_string())
}

/// A stage's `strategy` or a `checks` entry, planned.
#[expect(
    clippy::too_many_arguments,
    reason = "two call sites; a struct would only rename these"
)]
fn plan_use(
    source: &SourceFile,
    name: &str,
    what: &str,
    u: &toml::Spanned<crate::config::model::PluginUse>,
    default_timeout: Duration,
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
) -> PlannedUse {
    let spec = u.get_ref();
    let plugin = resolve_plugin(
        source,
        &format!("stage `{name}`'s {what} uses"),
        spec.uses.get_ref(),
        spec.uses.span(),
        declared,
        builtins,
        errors,
    );
    let timeout = match &spec.timeout {
        Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|msg| {
            errors.push(
                source
                    .error(t.span(), msg)
                    .help("write a number and a unit: \"250ms\", \"90s\", \"10m\""),
            );
            default_timeout
        }),
        None => default_timeout,
    };
    PlannedUse {
        plugin,
        uses_span: spec.uses.span(),
        with: match &spec.with {
            Some(t) => toml_to_json(&toml::Value::Table(t.get_ref().clone())),
            None => serde_json::Value::Object(Default::default()),
        },
        timeout,
    }
}

/// A strategy's call when it sets no `timeout`.
pub const STRATEGY_TIMEOUT: Duration = Duration::from_secs(10);
/// A check's run when it sets no `timeout`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// The most requests per second `load` may ask for.
pub const MAX_LOAD_RATE: u32 = 10_000;

/// A cycle as a path of stage indices whose last element equals its first.
fn find_cycle(stages: &[PlannedStage]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[PlannedStage],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        path.push(i);
        for &n in &stages[i].needs {
            match marks[n] {
                Mark::Active => {
                    let start = path.iter().position(|p| *p == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(n, stages, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for i in 0..stages.len() {
        if marks[i] == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(i, stages, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

fn fill_upstream(stages: &mut [PlannedStage]) {
    // Memoised over the needs graph (acyclic by now): a stage's upstream
    // is its needs and their upstreams, each computed once. Gathered in a
    // vector and built into the set in one sorted pass, which keeps a
    // 1,000-stage chain's half a million entries cheap.
    fn visit(i: usize, stages: &[PlannedStage], memo: &mut [Option<Vec<usize>>]) {
        if memo[i].is_some() {
            return;
        }
        let mut acc = Vec::new();
        for &n in &stages[i].needs {
            if n >= stages.len() || n == i {
                continue;
            }
            visit(n, stages, memo);
            acc.push(n);
            acc.extend(memo[n].iter().flatten().copied());
        }
        acc.sort_unstable();
        acc.dedup();
        memo[i] = Some(acc);
    }
    let mut memo: Vec<Option<Vec<usize>>> = vec![None; stages.len()];
    for i in 0..stages.len() {
        visit(i, stages, &mut memo);
    }
    for (stage, up) in stages.iter_mut().zip(memo) {
        stage.upstream = up.unwrap_or_default().into_iter().collect();
    }
}

fn check_references(
    source: &SourceFile,
    specs: &indexmap::IndexMap<toml::Spanned<String>, toml::Spanned<StageSpec>>,
    stages: &[PlannedStage],
    names: &[String],
    errors: &mut Vec<ConfigError>,
) {
    for (i, (_, spec)) in specs.iter().enumerate() {
        let spec = spec.get_ref();
        let stage = &stages[i];
        let mut strings: Vec<(String, Range<usize>)> = Vec::new();
        if let Some(with) = &spec.with {
            let mut all = Vec::new();
            json_strings(&stage.with, &mut all);
            strings.extend(all.into_iter().map(|s| (s, with.span())));
        }
        for (_, v) in &spec.env {
            strings.push((v.get_ref().clone(), v.span()));
        }
        for (text, region) in strings {
            let at = |needle: &str| -> Range<usize> {
                let hay = &source.text()[region.clone()];
                match hay.find(needle) {
                    Some(off) => region.start + off..region.start + off + needle.len(),
                    None => region.clone(),
                }
            };
            let pieces = match expr::parse(&text) {
                Ok(p) => p,
                Err(msg) => {
                    let needle = text.find("${{").map(|o| &text[o..]).unwrap_or(&text);
                    let needle = needle.split('\n').next().unwrap_or(needle);
                    errors.push(source.error(at(needle), msg));
                    continue;
                }
            };
            for piece in pieces {
                let expr::Piece::Ref(r, whole) = piece else {
                    continue;
                };
                match names.iter().position(|n| *n == r.stage) {
                    None => {
                        let help = suggest(&r.stage, names.iter().map(String::as_str))
                            .unwrap_or_else(|| "name a stage of this pipeline".to_string());
                        errors.push(
                            source
                                .error(
                                    at(whole),
                                    format!("`{whole}` refers to stage `{}`, which does not exist", r.stage),
                                )
                                .help(help),
                        );
                    }
                    Some(j) if !stage.upstream.contains(&j) => {
                        errors.push(
                            source
                                .error(at(whole), format!(
                                    "stage `{}` reads an output of `{}` but does not need it, so `{}` may not have run yet",
                                    stage.name, r.stage, r.stage
                                ))
                                .help(format!("add \"{}\" to `needs` of stage `{}`", r.stage, stage.name)),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

fn replace_in_json(v: &mut serde_json::Value, from: &str, to: &str) {
    match v {
        serde_json::Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| replace_in_json(i, from, to)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|i| replace_in_json(i, from, to)),
        _ => {}
    }
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| json_strings(i, out)),
        _ => {}
    }
}

/// TOML to JSON; dates become their TOML text.
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// `did you mean `X`?` when one of `candidates` is a likely typo of `word`.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|near| format!("did you mean `{near}`?"))
}

/// `` `a`, `b`, `c` ``.
fn quoted<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(text: &str) -> Result<Plan, InvalidConfig> {
        let loaded = crate::config::parse(Path::new("pipeline.toml"), text.into()).expect("parses");
        build(loaded, &["noop", "checksum"])
    }

    fn first_error(text: &str) -> ConfigError {
        plan(text).expect_err("invalid").errors.remove(0)
    }

    const HEAD: &str = "[pipeline]\nname = \"p\"\n";

    #[test]
    fn unknown_need_is_located_with_a_suggestion() {
        let e = first_error(&format!(
            "{HEAD}[stages.build]\nuses = \"noop\"\n[stages.test]\nuses = \"noop\"\nneeds = [\"biuld\"]\n"
        ));
        assert_eq!(e.location, "pipeline.toml:7:10");
        assert_eq!(e.help.as_deref(), Some("did you mean `build`?"));
    }

    #[test]
    fn focusing_keeps_a_stage_and_its_upstream_renumbered() {
        let mut p = plan(&format!(
            "{HEAD}[stages.other]\nuses = \"noop\"\n[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n[stages.d]\nuses = \"noop\"\nneeds = [\"c\"]\n"
        ))
        .expect("valid");
        let c = p.index_of("c").expect("c");
        p.focus_on(c);
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(p.stages[1].needs, [0]);
        assert_eq!(p.stages[2].needs, [1]);
        assert_eq!(p.stages[2].upstream, BTreeSet::from([0, 1]));
    }

    #[test]
    fn cycle_names_its_path() {
        let e = first_error(&format!(
            "{HEAD}[stages.a]\nuses = \"noop\"\nneeds = [\"c\"]\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n"
        ));
        assert!(e.message.contains("a → c → b → a"), "{}", e.message);
    }

    #[test]
    fn unknown_plugin_and_bad_duration_reported_together() {
        let err = plan(&format!(
            "{HEAD}[stages.a]\nuses = \"nop\"\ntimeout = \"10 minutes\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert_eq!(err.errors[0].help.as_deref(), Some("did you mean `noop`?"));
        assert_eq!(err.errors[1].location, "pipeline.toml:5:11");
    }

    #[test]
    fn output_reference_must_be_upstream() {
        let e = first_error(&format!(
            "{HEAD}[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nwith = {{ v = \"${{{{ stages.a.outputs.x }}}}\" }}\n"
        ));
        assert!(e.message.contains("does not need it"), "{}", e.message);
        assert_eq!(e.location, "pipeline.toml:7:15");
    }

    #[test]
    fn upstream_is_transitive_and_order_respects_needs() {
        let p = plan(&format!(
            "{HEAD}[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.a]\nuses = \"noop\"\n"
        ))
        .unwrap();
        assert_eq!(p.stages[0].upstream, BTreeSet::from([1, 2]));
        assert_eq!(p.topological_order(), vec![2, 1, 0]);
    }
}
