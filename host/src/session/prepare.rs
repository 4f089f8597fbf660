//! Before a run: read the pipeline, plan it, lay the run's environments
//! and its tenant's policy over it, load every plugin it uses and check
//! each fits the stage that uses it. `weir validate` stops here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::bindings::types::PluginKind;
use crate::config::{self, ConfigError, InvalidConfig, LoadError};
use crate::engine::{CompileCache, EngineSettings, WeirEngine};
use crate::plan::{self, Plan};
use crate::plugins::{self, LoadedPlugin, PluginLoader, kind_name};

/// A pipeline ready to run.
pub struct Prepared {
    /// The plan.
    pub plan: Plan,
    /// The plugin of each stage, by plan index.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Deploy stages' strategies and checks, by plan index.
    pub rollouts: BTreeMap<usize, Arc<crate::rollout::RolloutPlugins>>,
    /// The engine.
    pub engine: WeirEngine,
}

/// Why a pipeline cannot run; all are configuration errors (exit 2).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PrepareError {
    /// Reading or planning failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] LoadError),
    /// The engine could not be built.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The run's environments cannot be laid over the plan.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Environment(#[from] EnvironmentProblems),
    /// The tenants file cannot be used, or names no such tenant.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tenants(#[from] crate::config::tenants::TenantsError),
    /// The pipeline grants more than its tenant allows.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tenancy(#[from] BeyondTenant),
    /// Stages must run programs inside bubblewrap, and it cannot be had.
    #[error("{} cannot run here: stage{} {} must run {} programs inside bubblewrap ({}), and {why}", path.display(), if stages.len() == 1 { "" } else { "s" }, stages.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "), if stages.len() == 1 { "its" } else { "their" }, required_by)]
    #[diagnostic(help(
        "install bubblewrap where weir runs (Debian: apt-get install bubblewrap), or run on a host that has it; nothing was run or recorded"
    ))]
    NoSandbox {
        /// The pipeline file.
        path: std::path::PathBuf,
        /// The stages that would run programs.
        stages: Vec<String>,
        /// Who requires it: the tenant's policy or the stage.
        required_by: String,
        /// Why bubblewrap cannot be used.
        why: Box<crate::confine::bwrap::Unusable>,
    },
    /// The compile cache is somewhere a plugin could write.
    #[error("the compile cache {} is inside the workspace {}; a plugin could plant compiled code in it", cache.display(), workspace.display())]
    #[diagnostic(help("point WEIR_CACHE_DIR outside the workspace, or use another --workspace"))]
    CacheInWorkspace {
        /// The cache directory.
        cache: std::path::PathBuf,
        /// The workspace.
        workspace: std::path::PathBuf,
    },
    /// The provenance signing key is somewhere a stage could read it.
    #[error("weir's provenance signing key {} is inside the workspace {}; a stage could read it and sign anything as this builder", key.display(), workspace.display())]
    #[diagnostic(help(
        "keep the key outside the workspace (WEIR_SIGNING_KEY=FILE), or use another --workspace"
    ))]
    KeyInWorkspace {
        /// The key.
        key: std::path::PathBuf,
        /// The workspace.
        workspace: std::path::PathBuf,
    },
}

/// Problems with a run's environments, one per line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{}", problems.iter().map(|p| format!("{}: {p}", path.display())).collect::<Vec<_>>().join("\n"))]
#[diagnostic(help("`weir env show NAME` shows an environment's settings and what it is missing"))]
pub struct EnvironmentProblems {
    /// The pipeline file.
    pub path: std::path::PathBuf,
    /// Each problem.
    pub problems: Vec<String>,
}

/// Grants and limits a pipeline asks for beyond its tenant's policy.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} asks for more than tenant `{tenant}` allows ({} {})", path.display(), errors.len(), if errors.len() == 1 { "problem" } else { "problems" })]
pub struct BeyondTenant {
    /// The pipeline file.
    pub path: std::path::PathBuf,
    /// The tenant.
    pub tenant: String,
    /// Each grant or limit refused.
    #[related]
    pub errors: Vec<ConfigError>,
}

/// The engine a tenant's plugins run on: fuel metering only when the
/// tenant sets a CPU budget (metering costs time on every instruction).
pub fn engine_for(tenant: &crate::config::tenants::Tenant) -> EngineSettings {
    EngineSettings {
        fuel: tenant.limits.stage.fuel.is_some(),
        ..EngineSettings::default()
    }
}

/// The check of `plan` against `tenant`'s policy, as a layer's result.
pub fn within_tenant(plan: &mut Plan, tenant: &crate::config::tenants::Tenant) -> Result<(), PrepareError> {
    crate::plan::tenancy::clamp_timeouts(plan, tenant);
    crate::plan::tenancy::raise_sandboxes(plan, tenant);
    let errors = crate::plan::tenancy::check(plan, tenant);
    if errors.is_empty() {
        return Ok(());
    }
    Err(BeyondTenant {
        path: plan.source.path().to_path_buf(),
        tenant: tenant.name.to_string(),
        errors,
    }
    .into())
}

/// Refuse a run some of whose stages must run programs inside bubblewrap
/// (their own `sandbox = "bubblewrap"`, or their tenant's policy) where
/// bubblewrap cannot start a sandbox. Only stages whose plugin can run
/// programs (it declares `process`) need it.
pub fn sandbox_available(
    prepared: &Prepared,
    tenant: &crate::config::tenants::Tenant,
) -> Result<(), PrepareError> {
    use crate::plan::SandboxChoice;
    let needing: Vec<String> = prepared
        .plan
        .stages
        .iter()
        .zip(&prepared.plugins)
        .filter(|(s, p)| {
            s.sandbox == SandboxChoice::Required
                && p.info
                    .declares(crate::bindings::host::weir::plugin::types::Capability::Process)
        })
        .map(|(s, _)| s.name.to_string())
        .collect();
    if needing.is_empty() {
        return Ok(());
    }
    let Err(why) = crate::capabilities::process::Sandbox::usable() else {
        return Ok(());
    };
    let required_by = match tenant.sandbox {
        SandboxChoice::Required => format!("{} requires sandbox = \"bubblewrap\"", tenant.origin()),
        _ => "sandbox = \"bubblewrap\"".to_string(),
    };
    Err(PrepareError::NoSandbox {
        path: prepared.plan.source.path().to_path_buf(),
        stages: needing,
        required_by,
        why: Box::new(why),
    })
}

impl From<InvalidConfig> for PrepareError {
    fn from(e: InvalidConfig) -> Self {
        PrepareError::Load(LoadError::Invalid(e))
    }
}

/// A new engine and loader with the default cache.
pub fn loader() -> Result<PluginLoader, PrepareError> {
    loader_with(&EngineSettings::default())
}

/// A new engine with `settings` and a loader with the default cache.
pub fn loader_with(settings: &EngineSettings) -> Result<PluginLoader, PrepareError> {
    let engine = WeirEngine::new(settings).map_err(|e| PrepareError::Engine(format!("{e:#}")))?;
    PluginLoader::new(engine, CompileCache::default_dir()).map_err(|e| PrepareError::Engine(format!("{e:#}")))
}

/// What is laid over a plan before its plugins check it (a run's
/// environments), so they check what will run.
pub type Layer<'a> = &'a mut (dyn FnMut(&mut Plan) -> Result<(), PrepareError> + Send);

/// Load, plan and check `path` with `layer` applied to the plan first; `text` is the
/// pipeline's text when already read (a resumed run's, as recorded).
pub async fn prepare_layered(
    path: &Path,
    text: Option<String>,
    workspace: Option<&Path>,
    engine: &EngineSettings,
    layer: Layer<'_>,
) -> Result<Prepared, PrepareError> {
    let loaded = match text {
        Some(t) => config::parse(path, t)?,
        None => config::load(path)?,
    };
    prepare_loaded(loaded, workspace, engine, layer).await
}

async fn prepare_loaded(
    loaded: config::LoadedPipeline,
    workspace: Option<&Path>,
    engine: &EngineSettings,
    layer: Layer<'_>,
) -> Result<Prepared, PrepareError> {
    let builtins = plugins::builtin::names();
    let mut plan = plan::build(loaded, &builtins)?;
    if let Some(db) = crate::advisories::installed() {
        crate::advisories::default_for_scan(&mut plan, &db);
    }
    layer(&mut plan)?;
    let loader = loader_with(engine)?;
    if let Some(ws) = workspace
        && loader.cache().is_inside(ws)
    {
        return Err(PrepareError::CacheInWorkspace {
            cache: loader.cache().dir().map(Path::to_path_buf).unwrap_or_default(),
            workspace: ws.to_path_buf(),
        });
    }

    let mut by_ref: BTreeMap<&plan::PluginRef, Result<Arc<LoadedPlugin>, String>> = BTreeMap::new();
    let rollout_refs = plan
        .stages
        .iter()
        .filter_map(|s| s.rollout.as_ref())
        .flat_map(|r| std::iter::once(&r.strategy.plugin).chain(r.checks.iter().map(|c| &c.plugin)));
    for plugin in plan.stages.iter().map(|s| &s.plugin).chain(rollout_refs) {
        if !by_ref.contains_key(plugin) {
            let loaded = loader.load(plugin).await.map_err(|e| e.to_string());
            by_ref.insert(plugin, loaded);
        }
    }

    let mut errors: Vec<ConfigError> = Vec::new();
    let mut reported: Vec<&plan::PluginRef> = Vec::new();
    let mut stage_plugins = Vec::with_capacity(plan.stages.len());
    let mut shell_keys: Vec<Vec<String>> = Vec::with_capacity(plan.stages.len());
    for stage in &plan.stages {
        let mut shell = stage.shell.clone();
        if let Ok(p) = &by_ref[&stage.plugin]
            && let Some(schema) = &p.info.manifest.config_schema
        {
            shell.extend(plugins::schema::shell_keys(schema));
        }
        shell.sort();
        shell.dedup();
        for key in &shell {
            if let Some(why) = stage
                .with
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(plan::shell::problem)
            {
                let span = stage.with_span.clone().unwrap_or_else(|| stage.uses_span.clone());
                errors.push(
                    plan.source
                        .error(span, format!("stage `{}`'s `{key}`: {why}", stage.name))
                        .help("write `<<EOF` instead of `<<'EOF'`, or put the value in a file an earlier stage writes"),
                );
            }
        }
        shell_keys.push(shell);
        match &by_ref[&stage.plugin] {
            Ok(p) => {
                if stage.rollout.is_some() && p.info.kind != PluginKind::Deployer {
                    errors.push(
                        plan.source
                            .error(
                                stage.uses_span.clone(),
                                format!(
                                    "stage `{}` has a `strategy`, so its `uses` must be a deployer; plugin `{}` is a {}",
                                    stage.name,
                                    p.info.name,
                                    kind_name(p.info.kind)
                                ),
                            )
                            .help("use the built-in `deploy`, or remove `strategy`, `checks` and `load`"),
                    );
                } else if p.info.kind == PluginKind::Deployer && stage.rollout.is_none() {
                    errors.push(
                        plan.source
                            .error(
                                stage.uses_span.clone(),
                                format!(
                                    "stage `{}` uses the deployer `{}` but says no `strategy`",
                                    stage.name, p.info.name
                                ),
                            )
                            .help("add strategy = { uses = \"canary\" } (or blue-green)"),
                    );
                } else if p.info.kind != PluginKind::Deployer
                    && !matches!(
                        p.info.kind,
                        PluginKind::Stage | PluginKind::Analyzer | PluginKind::TestRunner
                    )
                {
                    errors.push(
                        plan.source
                            .error(
                                stage.uses_span.clone(),
                                format!(
                                    "stage `{}` uses plugin `{}` ({}), which is a {}; a stage's `uses` takes a stage, analyzer or test-runner plugin",
                                    stage.name,
                                    p.info.name,
                                    p.info.source,
                                    kind_name(p.info.kind)
                                ),
                            )
                            .help("strategies and deployers are used by deploy stages (`strategy = { uses = ... }`), not as stages themselves"),
                    );
                }
                if let Some(e) = gate_error(&plan, stage, &p.info.name, p.info.kind) {
                    errors.push(e);
                }
                if let Some(schema) = &p.info.manifest.config_schema {
                    for e in plugins::schema::check(schema, &stage.with) {
                        errors.push(schema_error(&plan, stage, &p.info.name, &e));
                    }
                }
                stage_plugins.push(p.clone());
            }
            Err(message) => {
                if !reported.contains(&&stage.plugin) {
                    reported.push(&stage.plugin);
                    errors.push(
                        plan.source
                            .error(stage.uses_span.clone(), message.clone())
                            .label("this plugin")
                            .help("`weir plugins inspect PATH` shows what a component exports and imports"),
                    );
                }
            }
        }
    }
    let mut rollouts = BTreeMap::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let Some(r) = &stage.rollout else { continue };
        let mut fetch = |used: &plan::PlannedUse, want: PluginKind, role: &str| match &by_ref[&used.plugin] {
            Ok(p) if p.info.kind == want => {
                if let Some(schema) = &p.info.manifest.config_schema {
                    for e in plugins::schema::check(schema, &used.with) {
                        errors.push(
                            plan.source
                                .error(
                                    used.uses_span.clone(),
                                    format!(
                                        "stage `{}`'s {role} `{}`: `{}` {}",
                                        stage.name,
                                        p.info.name,
                                        e.location(),
                                        e.message
                                    ),
                                )
                                .help(format!(
                                    "`weir plugins inspect {}` shows the settings it takes",
                                    p.info.name
                                )),
                        );
                    }
                }
                Some((p.clone(), used.clone()))
            }
            Ok(p) => {
                errors.push(
                    plan.source
                        .error(
                            used.uses_span.clone(),
                            format!(
                                "stage `{}`'s {role} uses plugin `{}`, which is a {}; a {role} must be a {}",
                                stage.name,
                                p.info.name,
                                kind_name(p.info.kind),
                                kind_name(want)
                            ),
                        )
                        .help("`weir plugins list` shows each plugin's kind"),
                );
                None
            }
            Err(message) => {
                errors.push(
                    plan.source
                        .error(used.uses_span.clone(), message.clone())
                        .label("this plugin"),
                );
                None
            }
        };
        let strategy = fetch(&r.strategy, PluginKind::Strategy, "strategy");
        let checks: Vec<_> = r
            .checks
            .iter()
            .filter_map(|c| fetch(c, PluginKind::Analyzer, "check"))
            .collect();
        if let Some(strategy) = strategy {
            rollouts.insert(
                i,
                Arc::new(crate::rollout::RolloutPlugins {
                    strategy,
                    checks,
                    load: r.load.clone(),
                }),
            );
        }
    }
    // The provenance signing key is the host's alone: no stage's programs
    // may read it, or they could sign anything as this builder.
    if let Some(key) = crate::report::provenance::keys::signing_key_path().filter(|k| k.exists()) {
        for stage in &plan.stages {
            let reads = stage.grants.read.iter().map(std::path::PathBuf::as_path);
            if let Some(grant) = crate::report::provenance::keys::exposed_to(&key, reads) {
                errors.push(
                    plan.source
                        .error(
                            stage.allow_span.clone().unwrap_or_else(|| stage.uses_span.clone()),
                            format!(
                                "stage `{}` may read {}, which holds weir's provenance signing key {}: its programs could sign anything as this builder",
                                stage.name,
                                grant.display(),
                                key.display()
                            ),
                        )
                        .help(format!(
                            "grant a narrower path in allow.read, or keep the key elsewhere ({}=FILE)",
                            crate::report::provenance::keys::SIGNING_KEY_ENV
                        )),
                );
            }
        }
        if let Some(ws) = workspace
            && crate::report::provenance::keys::exposed_to(&key, [ws]).is_some()
        {
            return Err(PrepareError::KeyInWorkspace {
                key,
                workspace: ws.to_path_buf(),
            });
        }
    }
    drop(by_ref);
    for (stage, shell) in plan.stages.iter_mut().zip(shell_keys) {
        stage.shell = shell;
    }
    if !errors.is_empty() {
        return Err(InvalidConfig {
            path: plan.source.path().to_path_buf(),
            errors,
        }
        .into());
    }
    Ok(Prepared {
        plan,
        rollouts,
        plugins: stage_plugins,
        engine: loader.engine().clone(),
    })
}

/// A config error pointing at the offending key of the `with` table (or
/// at the table, or at `uses` when there is no table).
fn schema_error(
    plan: &Plan,
    stage: &plan::PlannedStage,
    plugin: &str,
    e: &plugins::schema::SchemaError,
) -> ConfigError {
    let region = stage.with_span.clone().unwrap_or(stage.uses_span.clone());
    let text = plan.source.text();
    let key = e.path.iter().rev().find(|p| !p.starts_with('['));
    let span = key
        .and_then(|k| find_key(&text[region.clone()], k))
        .map(|r| region.start + r.start..region.start + r.end)
        .filter(|_| e.message != "is required but missing")
        .unwrap_or(region);
    let mut error = plan.source.error(
        span,
        format!(
            "stage `{}`: `{}` {} (plugin `{plugin}`)",
            stage.name,
            e.location(),
            e.message
        ),
    );
    if e.message == "is required but missing" {
        let name = key.map_or("it", String::as_str);
        error = error.help(format!("add `{name}` to the stage's `with` table"));
    } else if let Some(k) = key
        && let Some(near) = config::did_you_mean(k, e.expected.iter().map(String::as_str))
    {
        error = error.help(format!("did you mean `{near}`?"));
    } else {
        error = error.help(format!(
            "`weir plugins inspect {plugin}` shows the settings it takes (its config schema)"
        ));
    }
    error
}

/// Where `key = ` (or `"key" =`) is written inside `region`.
fn find_key(region: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut from = 0;
    while let Some(off) = region[from..].find(key) {
        let start = from + off;
        let end = start + key.len();
        let before = region[..start].chars().next_back();
        let quoted = matches!(before, Some('"')) && region[end..].starts_with('"');
        let after = if quoted {
            &region[end + 1..]
        } else {
            &region[end..]
        };
        let boundary = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if boundary && after.trim_start().starts_with('=') {
            return Some(start..end);
        }
        from = end;
    }
    None
}

/// A `gate` that does not fit the stage's plugin: a gate on a plain stage,
/// or a key for test runners on an analyzer (and the other way round).
fn gate_error(
    plan: &Plan,
    stage: &crate::plan::PlannedStage,
    plugin: &str,
    kind: PluginKind,
) -> Option<ConfigError> {
    use crate::plan::GateFor;
    let wanted = match kind {
        PluginKind::TestRunner => GateFor::Tests,
        PluginKind::Analyzer => GateFor::Findings,
        _ => {
            let span = stage.gate_span.clone()?;
            return Some(
                plan.source
                    .error(
                        span,
                        format!(
                            "stage `{}` has a `gate`, but its plugin `{plugin}` is a {}; gates apply to test-runner and analyzer stages",
                            stage.name,
                            kind_name(kind)
                        ),
                    )
                    .help("remove `gate`; a stage passes unless its plugin returns a failure"),
            );
        }
    };
    let key = stage.gate_keys.iter().find(|k| k.applies_to != wanted)?;
    let (this, keys) = match wanted {
        GateFor::Tests => ("test runner", "min-pass-rate, max-failures, allow-skipped"),
        GateFor::Findings => ("analyzer", "fail-on, max-findings, min-score"),
    };
    Some(
        plan.source
            .error(
                key.span.clone(),
                format!(
                    "`{}` does not apply to stage `{}`: its plugin `{plugin}` is a {this}",
                    key.name, stage.name
                ),
            )
            .help(format!("a {this}'s gate takes {keys}")),
    )
}
