//! Environments: `[environments.NAME]`, checked when the plan is built and
//! laid over the stages that target one when a run starts.
//!
//! A stage targets an environment when it says `environment = "NAME"`; a
//! deploy stage that says nothing targets the run's (`weir run --env`, else
//! `[pipeline] environment`). The environment's values win over the
//! stage's own: its variables, inherited variables and secrets over the
//! stage's `env`, its `deploy` keys over the deployer's `with`, its
//! `checks.PLUGIN` keys over that check's `with`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::text::valid_env_name;
use super::{Plan, PlannedStage, RunFacts};
use crate::config::duration::parse_duration;
use crate::config::model::EnvironmentSpec;
use crate::config::{ConfigError, SourceFile, did_you_mean};

/// How long an approval is waited for when `timeout` is not set.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Where secrets come from: weir's own environment, `WEIR_SECRET_NAME`.
pub const SECRET_PREFIX: &str = "WEIR_SECRET_";

/// How secret values are shown.
pub const MASK: &str = "***";

/// One `[environments.NAME]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// Its name.
    pub name: crate::names::EnvironmentName,
    /// What it is.
    pub description: Option<String>,
    /// `variables`, in file order.
    pub variables: Vec<(String, String)>,
    /// `inherit-env`: names read from weir's environment.
    pub inherit_env: Vec<String>,
    /// `secrets`: names read from the secret source.
    pub secrets: Vec<String>,
    /// `deploy`: keys over a deploy stage's `with`.
    pub deploy: serde_json::Map<String, serde_json::Value>,
    /// `checks.PLUGIN`: keys over that check's `with`.
    pub checks: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Branch patterns that may deploy here.
    pub branches: Vec<String>,
    /// Tag patterns that may deploy here.
    pub tags: Vec<String>,
    /// Present when deploying here needs a person's approval.
    pub approval: Option<Approval>,
}

/// `approval = { ... }`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Who may approve; empty means anyone.
    pub approvers: Vec<String>,
    /// How long to wait before the stage fails.
    pub timeout: Duration,
}

/// Check every `[environments.NAME]`.
pub(super) fn plan_environments(
    source: &SourceFile,
    specs: &indexmap::IndexMap<toml::Spanned<String>, toml::Spanned<EnvironmentSpec>>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Environment> {
    let mut out = BTreeMap::new();
    for (key, spec) in specs {
        let name = key.get_ref().clone();
        if let Err(e) = crate::names::check(crate::names::NameKind::Environment, &name) {
            errors.push(source.error(key.span(), e.to_string()).help(format!(
                "{}, e.g. staging or production",
                crate::names::NameError::HELP
            )));
        }
        let spec = spec.get_ref();
        let mut env_name = |k: &toml::Spanned<String>, what: &str| {
            if k.get_ref().starts_with(super::shell::VAR_PREFIX) {
                errors.push(
                    source
                        .error(k.span(), format!("`{}` is a name weir keeps for itself", k.get_ref()))
                        .help("weir hands the values of expressions in shell text to the shell as WEIR_EXPR_1, WEIR_EXPR_2, …; choose another name"),
                );
            }
            if !valid_env_name(k.get_ref()) {
                errors.push(
                    source
                        .error(k.span(), format!("`{}` is not a valid {what} name", k.get_ref()))
                        .help("use letters, digits and `_`, not starting with a digit"),
                );
            }
            k.get_ref().clone()
        };
        let variables = spec
            .variables
            .iter()
            .map(|(k, v)| (env_name(k, "variable"), v.get_ref().clone()))
            .collect();
        let inherit_env = spec.inherit_env.iter().map(|k| env_name(k, "variable")).collect();
        let secrets = spec.secrets.iter().map(|k| env_name(k, "secret")).collect();
        let table = |t: &toml::Table| match super::toml_to_json(&toml::Value::Table(t.clone())) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let approval = spec.approval.as_ref().map(|a| {
            let a = a.get_ref();
            let timeout = match &a.timeout {
                Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|msg| {
                    errors.push(
                        source
                            .error(t.span(), msg.to_string())
                            .help("write a number and a unit: \"30m\", \"24h\""),
                    );
                    DEFAULT_APPROVAL_TIMEOUT
                }),
                None => DEFAULT_APPROVAL_TIMEOUT,
            };
            Approval {
                approvers: a.approvers.iter().map(|s| s.get_ref().clone()).collect(),
                timeout,
            }
        });
        out.insert(
            name.clone(),
            Environment {
                name: crate::names::EnvironmentName::reported(&name),
                description: spec.description.clone(),
                variables,
                inherit_env,
                secrets,
                deploy: spec
                    .deploy
                    .as_ref()
                    .map(|d| table(d.get_ref()))
                    .unwrap_or_default(),
                checks: spec
                    .checks
                    .iter()
                    .map(|(k, v)| (k.get_ref().clone(), table(v.get_ref())))
                    .collect(),
                branches: spec.branches.iter().map(|s| s.get_ref().clone()).collect(),
                tags: spec.tags.iter().map(|s| s.get_ref().clone()).collect(),
                approval,
            },
        );
    }
    out
}

/// Where an environment name is written, checked against those declared.
pub(super) fn check_reference(
    source: &SourceFile,
    environments: &BTreeMap<String, Environment>,
    name: &toml::Spanned<String>,
    errors: &mut Vec<ConfigError>,
) {
    if environments.is_empty() || environments.contains_key(name.get_ref()) {
        return;
    }
    let known: Vec<&str> = environments.keys().map(String::as_str).collect();
    let e = source.error(
        name.span(),
        format!("there is no environment `{}`", name.get_ref()),
    );
    errors.push(match did_you_mean(name.get_ref(), known.iter().copied()) {
        Some(near) => e.help(format!("did you mean `{near}`?")),
        None => e.help(format!(
            "the environments declared are {}; add [environments.{}] to declare it",
            known.join(", "),
            name.get_ref()
        )),
    });
}

/// Why a run cannot target its environments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// `--env` names no `[environments.NAME]`.
    #[error("there is no environment `{name}` in this pipeline (it declares {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Those declared.
        known: String,
    },
    /// An `inherit-env` variable is not set in weir's environment.
    #[error(
        "environment `{environment}` needs variable `{variable}`, which is not set: export {variable}=... before running weir"
    )]
    MissingVariable {
        /// The environment.
        environment: String,
        /// The variable.
        variable: String,
    },
    /// A secret is not in the secret source.
    #[error(
        "{user} needs secret `{secret}`, which is not in the secret source: export {SECRET_PREFIX}{secret}=... before running weir"
    )]
    MissingSecret {
        /// What needs it, e.g. "environment `production`".
        user: String,
        /// The secret.
        secret: String,
    },
    /// The branch or tag being built may not deploy there.
    #[error(
        "stage `{stage}` deploys to environment `{environment}`, which accepts {accepts}; this run builds {building}"
    )]
    RefNotAllowed {
        /// The stage.
        stage: String,
        /// The environment.
        environment: String,
        /// Its rules, for people.
        accepts: String,
        /// The branch and tags of the run, for people.
        building: String,
    },
}

/// What resolving a run's environments decided.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The run's environment (`--env`, else `[pipeline] environment`).
    pub environment: Option<String>,
    /// Secret values the run uses: masked in every event.
    pub secret_values: Vec<String>,
    /// The same secrets by name, for refusals that name them (an artifact
    /// that holds one).
    pub secrets: Vec<(String, String)>,
}

/// A secret's value from weir's environment.
pub fn secret_from_env(name: &str) -> Option<String> {
    std::env::var(format!("{SECRET_PREFIX}{name}")).ok()
}

/// The environment `stage` targets when the run targets `run_env`.
pub fn target_of(stage: &PlannedStage, run_env: Option<&str>) -> Option<String> {
    stage
        .environment
        .clone()
        .or_else(|| stage.rollout.as_ref().and(run_env.map(str::to_string)))
}

/// Lay each targeted environment over its stages. `requested` is
/// `--env`; `secret` looks a secret up. Every problem is returned, not
/// just the first.
pub fn resolve(
    plan: &mut Plan,
    requested: Option<&str>,
    secret: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, Vec<EnvironmentError>> {
    let mut errors = Vec::new();
    let run_env = requested
        .map(str::to_string)
        .or_else(|| plan.default_environment.clone());
    if let Some(name) = &run_env
        && !plan.environments.is_empty()
        && !plan.environments.contains_key(name)
    {
        errors.push(EnvironmentError::Unknown {
            name: name.clone(),
            known: plan
                .environments
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
        });
        return Err(errors);
    }
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    for stage in &mut plan.stages {
        let Some(target) = target_of(stage, run_env.as_deref()) else {
            continue;
        };
        stage.environment = Some(target.clone());
        let Some(env) = plan.environments.get(&target) else {
            continue;
        };
        used.insert(target.clone());
        let layered = layer_variables(env, secret, &mut errors);
        for (k, v) in layered {
            stage.secret_env.retain(|existing| *existing != k);
            if env.secrets.contains(&k) {
                values.insert(k.clone(), v.clone());
                stage.secret_env.push(k.clone());
            }
            stage.env.retain(|(existing, _)| *existing != k);
            stage.env.push((k, v));
        }
        if let Some(rollout) = &mut stage.rollout {
            if let serde_json::Value::Object(with) = &mut stage.with {
                for (k, v) in &env.deploy {
                    with.insert(k.clone(), v.clone());
                }
            }
            for check in &mut rollout.checks {
                if let (Some(over), serde_json::Value::Object(with)) =
                    (env.checks.get(check.plugin.name()), &mut check.with)
                {
                    for (k, v) in over {
                        with.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // Deploys to one environment never overlap.
        let group = format!("environment/{target}");
        if !stage.concurrency.iter().any(|c| c.group == group) {
            stage.concurrency.push(super::Concurrency {
                group,
                cancel_in_progress: false,
            });
        }
    }
    for hook in &plan.notify {
        if let Some(name) = &hook.secret {
            match secret(name) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => errors.push(EnvironmentError::MissingSecret {
                    user: format!("webhook {}", hook.url),
                    secret: name.clone(),
                }),
            }
        }
    }
    errors.dedup();
    if !errors.is_empty() {
        return Err(errors);
    }
    let _ = used;
    Ok(Resolved {
        environment: run_env,
        secrets: values
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secret_values: values.into_values().filter(|v| !v.is_empty()).collect(),
    })
}

/// An environment's variables, inherited variables and secrets, in that
/// order (later wins); missing ones are pushed to `errors`.
fn layer_variables(
    env: &Environment,
    secret: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<EnvironmentError>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env.variables.clone();
    for name in &env.inherit_env {
        match std::env::var(name) {
            Ok(v) => out.push((name.clone(), v)),
            Err(_) => errors.push(EnvironmentError::MissingVariable {
                environment: env.name.to_string(),
                variable: name.clone(),
            }),
        }
    }
    for name in &env.secrets {
        match secret(name) {
            Some(v) => out.push((name.clone(), v)),
            None => errors.push(EnvironmentError::MissingSecret {
                user: format!("environment `{}`", env.name),
                secret: name.clone(),
            }),
        }
    }
    out
}

/// The stages that will run and whose environment's `branches`/`tags`
/// do not accept what this run builds.
pub fn check_refs(plan: &Plan, facts: &RunFacts, tags: &[String]) -> Vec<EnvironmentError> {
    let mut errors = Vec::new();
    for stage in &plan.stages {
        let Some(env) = stage.environment.as_ref().and_then(|e| plan.environments.get(e)) else {
            continue;
        };
        if (env.branches.is_empty() && env.tags.is_empty()) || stage.when.check(facts).is_err() {
            continue;
        }
        let branch_ok = facts
            .branch
            .as_ref()
            .is_some_and(|b| env.branches.iter().any(|p| super::when::pattern::matches(p, b)));
        let tag_ok = tags
            .iter()
            .any(|t| env.tags.iter().any(|p| super::when::pattern::matches(p, t)));
        if branch_ok || tag_ok {
            continue;
        }
        let mut accepts = Vec::new();
        if !env.branches.is_empty() {
            accepts.push(format!("branches {}", env.branches.join(", ")));
        }
        if !env.tags.is_empty() {
            accepts.push(format!("tags {}", env.tags.join(", ")));
        }
        let mut building = match &facts.branch {
            Some(b) => format!("branch `{b}`"),
            None => "an unknown branch (pass --branch)".to_string(),
        };
        if !tags.is_empty() {
            building.push_str(&format!(" with tags {}", tags.join(", ")));
        }
        errors.push(EnvironmentError::RefNotAllowed {
            stage: stage.name.to_string(),
            environment: env.name.to_string(),
            accepts: accepts.join(" and "),
            building,
        });
    }
    errors
}

/// An environment as `weir env show` prints it: everything resolved,
/// secrets masked, problems listed.
pub fn describe(
    env: &Environment,
    secret: &dyn Fn(&str) -> Option<String>,
) -> (serde_json::Value, Vec<EnvironmentError>) {
    let mut errors = Vec::new();
    let mut variables = serde_json::Map::new();
    for (k, v) in layer_variables(env, secret, &mut errors) {
        let shown = if env.secrets.contains(&k) {
            MASK.to_string()
        } else {
            v
        };
        variables.insert(k, serde_json::Value::String(shown));
    }
    let value = serde_json::json!({
        "name": env.name,
        "description": env.description,
        "variables": variables,
        "secrets": env.secrets,
        "deploy": env.deploy,
        "checks": env.checks,
        "branches": env.branches,
        "tags": env.tags,
        "approval": env.approval.as_ref().map(|a| serde_json::json!({
            "approvers": a.approvers,
            "timeout": crate::config::duration::format_duration(a.timeout),
        })),
    });
    (value, errors)
}

/// `value` flattened to `path = value` lines: `deploy.replicas = 2`.
pub fn flatten(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Null => {}
            serde_json::Value::Array(a) if a.is_empty() => {}
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out.remove("name");
    out
}

#[cfg(test)]
mod tests;
