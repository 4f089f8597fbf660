//! Grants are layered: a tenant's policy ⊇ what its pipeline grants ⊇ what
//! a plugin's manifest declares. This checks the middle layer against the
//! first before anything runs; the capabilities check the last one on
//! every call.

use crate::config::ConfigError;
use crate::config::tenants::{AllowPolicy, Tenant};
use crate::plan::Plan;
use crate::sandbox::SandboxChoice;

/// Whether `host` (`name` or `name:port`) is allowed by a policy entry:
/// `name` allows any port, `name:port` that port only, `*.example.com`
/// the subdomains of `example.com`.
pub fn host_allowed(entry: &str, host: &str) -> bool {
    let (h_name, h_port) = split_port(host);
    let (e_name, e_port) = split_port(entry);
    if e_port.is_some() && e_port != h_port {
        return false;
    }
    let h_name = h_name.to_ascii_lowercase();
    let e_name = e_name.to_ascii_lowercase();
    match e_name.strip_prefix("*.") {
        Some(domain) => h_name.ends_with(&format!(".{domain}")),
        None => h_name == e_name,
    }
}

/// `name:port`, `[v6]:port` or a bare name, split.
pub fn split_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        // [::1]:8080
        return match host.split_once("]:") {
            Some((name, port)) => (&name[1..], Some(port)),
            None => (host.trim_start_matches('[').trim_end_matches(']'), None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    }
}

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
                        summary(policy)
                    )),
            )
        };
        let g = &stage.grants;
        for v in g
            .env
            .iter()
            .filter(|v| crate::env_policy::dangerous(v).is_some() && !policy.env.contains(v))
        {
            refuse(format!(
                "`allow.env = [\"{v}\"]` (it can make a program run a command: {})",
                crate::env_policy::dangerous(v).unwrap_or_default()
            ));
        }
        for p in g.exec.iter().filter(|p| !policy.exec.contains(p)) {
            if p == crate::plan::RUN_SHELL
                && !stage.with.get("command").is_none_or(serde_json::Value::is_null)
            {
                refuse(format!(
                    "`allow.exec = [\"{p}\"]` (the `run` shorthand runs its command with {p})"
                ));
            } else {
                refuse(format!("`allow.exec = [\"{p}\"]`"));
            }
        }
        for h in g
            .network
            .iter()
            .filter(|h| !policy.network.iter().any(|e| host_allowed(e, h)))
        {
            refuse(format!("`allow.network = [\"{h}\"]`"));
        }
        for s in g.secrets.iter().filter(|s| !policy.secrets.contains(s)) {
            refuse(format!("`allow.secrets = [\"{s}\"]`"));
        }
        for m in g.metrics.iter().filter(|m| !policy.metrics.contains(m)) {
            refuse(format!("`allow.metrics = [\"{m}\"]`"));
        }
        if g.runtime && !policy.runtime {
            refuse("`allow.runtime = true`".to_string());
        }
        for r in g
            .read
            .iter()
            .filter(|r| !policy.read.iter().any(|p| r.starts_with(p)))
        {
            refuse(format!("`allow.read = [\"{}\"]`", r.display()));
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

/// `exec: cargo, git; network: crates.io; ...` (or "nothing").
fn summary(p: &AllowPolicy) -> String {
    let mut parts = Vec::new();
    let mut list = |key: &str, v: Vec<String>| {
        if !v.is_empty() {
            parts.push(format!("{key}: {}", v.join(", ")));
        }
    };
    list("exec", p.exec.clone());
    list("network", p.network.clone());
    list("secrets", p.secrets.clone());
    list("metrics", p.metrics.clone());
    list("read", p.read.iter().map(|r| r.display().to_string()).collect());
    list("env", p.env.clone());
    if p.runtime {
        parts.push("runtime".into());
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_name_port_and_subdomain() {
        assert!(host_allowed("crates.io", "crates.io"));
        assert!(host_allowed("crates.io", "crates.io:443"));
        assert!(host_allowed("CRATES.io", "crates.IO"));
        assert!(!host_allowed("crates.io:443", "crates.io:80"));
        assert!(host_allowed("*.crates.io", "static.crates.io"));
        assert!(!host_allowed("*.crates.io", "crates.io"));
        assert!(!host_allowed("*.crates.io", "evilcrates.io"));
        assert!(!host_allowed("crates.io", "crates.io.evil.com"));
        assert!(host_allowed("127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(host_allowed("[::1]:80", "[::1]:80"));
    }
}
