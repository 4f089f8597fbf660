//! The serde model of `pipeline.toml`, as written: every value a user wrote
//! keeps its span so later checks can point at it. Unknown keys are errors.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A whole `pipeline.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineFile {
    /// `[pipeline]`.
    pub pipeline: PipelineSection,
    /// `[stages.NAME]`, in file order.
    #[serde(default)]
    pub stages: IndexMap<Spanned<String>, Spanned<StageSpec>>,
    /// `[plugins.NAME]`: third-party plugins by path.
    #[serde(default)]
    pub plugins: IndexMap<Spanned<String>, Spanned<PluginSpec>>,
    /// `[providers.NAME]`: metrics providers stages may be granted.
    #[serde(default)]
    pub providers: IndexMap<Spanned<String>, Spanned<ProviderSpec>>,
    /// `[environments.NAME]`: where a build is deployed, each with its own
    /// settings and rules.
    #[serde(default)]
    pub environments: IndexMap<Spanned<String>, Spanned<EnvironmentSpec>>,
    /// `[notify]`: webhooks told about the run.
    #[serde(default)]
    pub notify: Option<Spanned<NotifySpec>>,
}

/// `[environments.NAME]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvironmentSpec {
    /// What it is, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Variables its stages see, over their own `env`.
    #[serde(default)]
    pub variables: IndexMap<Spanned<String>, Spanned<String>>,
    /// Variables copied from weir's own environment; each must be set.
    #[serde(default)]
    pub inherit_env: Vec<Spanned<String>>,
    /// Secrets its stages get as variables (masked in every log and
    /// event); each must exist in the secret source.
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    /// Keys laid over a deploy stage's `with`: `replicas`, `service`,
    /// `target`, `resources`, ...
    #[serde(default)]
    pub deploy: Option<Spanned<toml::Table>>,
    /// Per check plugin, keys laid over that check's `with`:
    /// `checks = { canary-metrics = { max-error-rate = 0.01 } }`.
    #[serde(default)]
    pub checks: IndexMap<Spanned<String>, Spanned<toml::Table>>,
    /// Branch patterns that may deploy here (`*` matches any run of
    /// characters). With neither `branches` nor `tags`, any ref may.
    #[serde(default)]
    pub branches: Vec<Spanned<String>>,
    /// Tag patterns that may deploy here.
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Present when a person must approve before a stage deploys here.
    #[serde(default)]
    pub approval: Option<Spanned<ApprovalSpec>>,
}

/// `approval = { approvers = ["alice"], timeout = "24h" }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApprovalSpec {
    /// Who may approve (`weir approve --as NAME`, default `$USER`); empty
    /// means anyone who can run weir here.
    #[serde(default)]
    pub approvers: Vec<Spanned<String>>,
    /// How long to wait before the stage fails (default 24h).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

/// `[notify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifySpec {
    /// `webhooks = [{ url = "...", events = [...], secret = "NAME" }]`.
    #[serde(default)]
    pub webhooks: Vec<Spanned<WebhookSpec>>,
}

/// One webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookSpec {
    /// An `http://` URL.
    pub url: Spanned<String>,
    /// Which events it receives (default: run-failed, deploy-promoted,
    /// deploy-rolled-back).
    #[serde(default)]
    pub events: Vec<Spanned<String>>,
    /// The secret (by name) whose value signs each body (HMAC-SHA256).
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
}

/// `[providers.NAME]`: `prometheus = "http://127.0.0.1:9090"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProviderSpec {
    /// A Prometheus server's base URL (its HTTP API is queried).
    pub prometheus: Spanned<String>,
}

/// A plugin a deploy stage uses besides its deployer: `strategy = { uses =
/// "canary", with = { ... } }` or an entry of `checks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginUse {
    /// A built-in name or a `[plugins.NAME]` key.
    pub uses: Spanned<String>,
    /// Its configuration.
    #[serde(default)]
    pub with: Option<Spanned<toml::Table>>,
    /// How long one call may take (default 10s for a strategy, 2m for a
    /// check).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

/// `load = { rate = 50, path = "/" }`: traffic the rollout sends to the
/// service's router while it runs, so analysis windows have data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadSpec {
    /// Requests per second.
    pub rate: Spanned<u32>,
    /// The path requested (default `/`).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
}

/// `[pipeline]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineSection {
    /// The pipeline's name.
    pub name: Spanned<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Variables every stage gets (a stage's own `env` wins).
    #[serde(default)]
    pub env: IndexMap<Spanned<String>, Spanned<String>>,
    /// The environment a run targets when `weir run --env` is not given.
    #[serde(default)]
    pub environment: Option<Spanned<String>>,
    /// A concurrency group: at most one run of it at a time.
    #[serde(default)]
    pub concurrency: Option<Spanned<String>>,
    /// Cancel the run holding the group instead of queueing behind it.
    #[serde(default)]
    pub cancel_in_progress: Option<Spanned<bool>>,
    /// Labels a `weir worker` must have to take the run (`weir worker
    /// --labels podman,gpu`); empty: any worker.
    #[serde(default)]
    pub runs_on: Vec<Spanned<String>>,
}

/// `[stages.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageSpec {
    /// The plugin: a built-in name or a `[plugins.NAME]` key.
    #[serde(default)]
    pub uses: Option<Spanned<String>>,
    /// Shorthand: a shell command run by the built-in `run` plugin.
    #[serde(default)]
    pub run: Option<Spanned<String>>,
    /// `auto` (bubblewrap when installed), `bubblewrap` (required) or
    /// `none` (an explicit opt-out, shown in the run summary).
    #[serde(default)]
    pub sandbox: Option<Spanned<String>>,
    /// The plugin's configuration; passed to it as JSON.
    #[serde(default)]
    pub with: Option<Spanned<toml::Table>>,
    /// Stages that must succeed first.
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// How long one attempt may take, e.g. `10m`.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// How many times to retry a failed attempt.
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    /// Run only when these conditions hold.
    #[serde(default)]
    pub when: Option<Spanned<WhenSpec>>,
    /// Environment variables the plugin sees (and nothing else).
    #[serde(default)]
    pub env: IndexMap<Spanned<String>, Spanned<String>>,
    /// Variables copied from weir's own environment, e.g. `["HOME", "PATH"]`.
    #[serde(default)]
    pub inherit_env: Vec<Spanned<String>>,
    /// What the stage may use beyond its workspace.
    #[serde(default)]
    pub allow: Option<Spanned<crate::grants::Grants>>,
    /// The environment this stage targets, e.g. `staging`.
    #[serde(default)]
    pub environment: Option<Spanned<String>>,
    /// A line for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Quality gate for a test-runner or analyzer stage.
    #[serde(default)]
    pub gate: Option<Spanned<GateSpec>>,
    /// Whether the stage may be served from the stage cache: `true` opts a
    /// plugin that runs programs or reaches outside in, `false` opts out.
    #[serde(default)]
    pub cache: Option<Spanned<bool>>,
    /// Workspace files (globs) the stage's result depends on; their
    /// digests go into its cache key and its replay record.
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    /// A deploy stage's strategy plugin.
    #[serde(default)]
    pub strategy: Option<Spanned<PluginUse>>,
    /// A deploy stage's checks (analyzers run when the strategy asks).
    #[serde(default)]
    pub checks: Vec<Spanned<PluginUse>>,
    /// A deploy stage's load generator.
    #[serde(default)]
    pub load: Option<Spanned<LoadSpec>>,
    /// A concurrency group the stage holds while it runs.
    #[serde(default)]
    pub concurrency: Option<Spanned<String>>,
    /// Cancel the run holding the stage's group instead of queueing.
    #[serde(default)]
    pub cancel_in_progress: Option<Spanned<bool>>,
}

/// A stage's gate. Test runners: `gate = { min-pass-rate = 0.95,
/// max-failures = 2, allow-skipped = false }`. Analyzers: `gate = {
/// fail-on = "high", max-findings = 10, min-score = 80 }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GateSpec {
    /// Passed cases over all cases that ran (skipped ones excluded), 0 to 1.
    #[serde(default)]
    pub min_pass_rate: Option<Spanned<f64>>,
    /// Most failed or errored cases allowed.
    #[serde(default)]
    pub max_failures: Option<Spanned<u32>>,
    /// Whether skipped cases are acceptable (default true).
    #[serde(default)]
    pub allow_skipped: Option<Spanned<bool>>,
    /// Fail on any finding this severe or worse.
    #[serde(default)]
    pub fail_on: Option<Spanned<String>>,
    /// Most findings allowed.
    #[serde(default)]
    pub max_findings: Option<Spanned<u32>>,
    /// Least score allowed, 0 to 100.
    #[serde(default)]
    pub min_score: Option<Spanned<f64>>,
}

/// `when = { branch = "main", environment = ["staging", "prod"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WhenSpec {
    /// Branch name patterns (`*` matches any run of characters).
    #[serde(default)]
    pub branch: Option<OneOrMany>,
    /// Environment names.
    #[serde(default)]
    pub environment: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `"main"`.
    One(String),
    /// `["main", "release/*"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[plugins.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginSpec {
    /// The component file, relative to the pipeline file.
    pub path: Spanned<String>,
    /// The expected sha256 of the file, hex; a mismatch refuses to run.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
}
