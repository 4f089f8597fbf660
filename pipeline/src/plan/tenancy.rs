//! Grants are layered: a tenant's policy ⊇ what its pipeline grants ⊇ what
//! a plugin's manifest declares. This checks the middle layer against the
//! first before anything runs; the capabilities check the last one on
//! every call.

use crate::config::ConfigError;
use crate::config::tenants::Tenant;
use crate::plan::Plan;
use crate::sandbox::SandboxChoice;

pub use crate::grants::{host_allowed, split_port};

/// Stages that say no timeout get the default one, cut to the tenant's
/// `limits.timeout`.
pub fn clamp_timeouts(plan: &mut Plan, tenant: &Tenant) {
    for stage in plan.stages.iter_mut().filter(|s| s.timeout_span.is_none()) {
        stage.timeout = stage.timeout.min(tenant.limits.max_timeout);
    }
}

/// Stages run their programs in at least the sandbox their tenant
/// requires: `auto` (the default) becomes `bubblewrap` under a tenant that
/// requires it. A stage's explicit `none` is left as it is, for [`check`]
/// to refuse.
pub fn raise_sandboxes(plan: &mut Plan, tenant: &Tenant) {
    for stage in plan
        .stages
        .iter_mut()
        .filter(|s| s.sandbox != SandboxChoice::None)
    {
        stage.sandbox = stage.sandbox.max(tenant.sandbox);
    }
}

/// Every grant of `plan` its tenant does not allow, and every explicit
/// timeout beyond its limit, each named exactly.
pub fn check(plan: &Plan, tenant: &Tenant) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let who = tenant.origin();
    let limits = &tenant.limits;
    for stage in &plan.stages {
        if stage.timeout > limits.max_timeout
            && let Some(span) = stage.timeout_span.clone()
        {
            errors.push(
                plan.source
                    .error(
                        span,
                        format!(
                            "stage `{}` may run for {}; {who} allows at most {} per stage (limit `timeout`)",
                            stage.name,
                            crate::config::duration::format_duration(stage.timeout),
                            crate::config::duration::format_duration(limits.max_timeout)
                        ),
                    )
                    .help(
                        "lower the stage's timeout, or ask the operator to raise the tenant's limits.timeout",
                    ),
            );
        }
        if stage.sandbox == SandboxChoice::None && tenant.sandbox > SandboxChoice::None {
            errors.push(
                plan.source
                    .error(
                        stage.sandbox_span.clone().unwrap_or(stage.uses_span.clone()),
                        format!(
                            "stage `{}` asks to run its programs without a sandbox (sandbox = \"none\"); {who} requires sandbox = \"{}\"",
                            stage.name,
                            tenant.sandbox.as_str()
                        ),
                    )
                    .label("this opt-out")
                    .help(format!(
                        "remove `sandbox = \"none\"` (programs then run inside bubblewrap), or ask the operator to set sandbox = \"none\" in [tenants.{}]",
                        tenant.name
                    )),
            );
        }
        let Some(policy) = &tenant.allow else { continue };
        let span = stage.allow_span.clone().unwrap_or(stage.uses_span.clone());
        let mut refuse = |grant: String| {
            errors.push(
                plan.source
                    .error(
                        span.clone(),
                        format!("stage `{}` is granted {grant}, which {who} does not allow", stage.name),
                    )
                    .label("this grant")
                    .help(format!(
                        "remove it from the stage's `allow`, or ask the operator to add it to [tenants.{}] allow; the tenant allows {}",
                        tenant.name,
                        crate::grants::summary(policy)
                    )),
            )
        };
        for (rule, item) in crate::grants::refused(&stage.grants, policy) {
            let mut grant = rule.shown(&item);
            if let Some(why) = (rule.why)(&item) {
                grant = format!("{grant} ({why})");
            } else if rule.key == "exec"
                && item == crate::plan::RUN_SHELL
                && !stage.with.get("command").is_none_or(serde_json::Value::is_null)
            {
                grant = format!("{grant} (the `run` shorthand runs its command with {item})");
            }
            refuse(grant);
        }
        // The stage's PATH is shown to its programs read-only, as a grant
        // to read those directories is: outside the system directories,
        // each entry must be within what the tenant lets it read.
        let path = stage
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        for dir in path
            .into_iter()
            .flat_map(|p| p.split(':'))
            .map(std::path::Path::new)
        {
            let system = crate::sandbox::SYSTEM_DIRS.iter().any(|s| dir.starts_with(s));
            if dir.is_absolute() && !system && !policy.read.iter().any(|p| dir.starts_with(p)) {
                refuse(format!(
                    "`{}` on its PATH (programs see each PATH directory, as with allow.read)",
                    dir.display()
                ));
            }
        }
    }
    let Some(policy) = &tenant.allow else {
        return errors;
    };
    for stage in &plan.stages {
        for (key, span) in &stage.env_spans {
            let Some(why) = crate::env_policy::dangerous(key) else {
                continue;
            };
            if policy.env.contains(key) {
                continue;
            }
            errors.push(
                plan.source
                    .error(
                        span.clone(),
                        format!(
                            "stage `{}` sets `{key}` for its programs, which {who} does not allow: {why}",
                            stage.name
                        ),
                    )
                    .label("this variable")
                    .help(format!(
                        "remove it, or ask the operator to add \"{key}\" to [tenants.{}] allow.env",
                        tenant.name
                    )),
            );
        }
    }
    for env in plan.environments.values() {
        for s in env.secrets.iter().filter(|s| !policy.secrets.contains(s)) {
            errors.push(
                plan.source
                    .error_whole(format!(
                        "environment `{}` gives its stages secret `{s}`, which {who} does not allow",
                        env.name
                    ))
                    .help(format!(
                        "remove it from [environments.{}] secrets, or ask the operator to add it to [tenants.{}] allow.secrets",
                        env.name, tenant.name
                    )),
            );
        }
    }
    for hook in &plan.notify {
        if let Some(s) = hook.secret.as_ref().filter(|s| !policy.secrets.contains(s)) {
            errors.push(
                plan.source
                    .error_whole(format!(
                        "webhook {} is signed with secret `{s}`, which {who} does not allow",
                        hook.url
                    ))
                    .help(format!(
                        "ask the operator to add `{s}` to [tenants.{}] allow.secrets",
                        tenant.name
                    )),
            );
        }
    }
    errors
}
