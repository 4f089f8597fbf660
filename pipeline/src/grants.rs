//! Grants: what a stage may use beyond its workspace.
//!
//! One type for both outer keys of the lock: a stage's `allow` in
//! `pipeline.toml`, and the `allow` policy of its tenant (the most its
//! pipelines may grant). The plugin's manifest is the inner key; the host
//! links a capability only when all three agree.
//!
//! [`RULES`] is the table of grants: each line says how its items are
//! shown and whether a tenant's policy allows one. The tenant check and
//! every message about a policy read it, so a new grant is a field of
//! [`Grants`] and one line there.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `allow = { exec = ["cargo"], network = ["crates.io"], ... }`, in a
/// stage or as a tenant's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// Programs it may run.
    pub exec: Vec<String>,
    /// Hosts it may reach (`name`, `name:port`; in a policy,
    /// `*.example.com` allows the subdomains).
    pub network: Vec<String>,
    /// Secrets it may read (in a policy, also environments' and webhooks'
    /// secrets).
    pub secrets: Vec<String>,
    /// Metrics providers it may query.
    pub metrics: Vec<String>,
    /// Whether it may drive the deployment target.
    pub runtime: bool,
    /// Host paths its programs may read (mounted read-only in the
    /// sandbox); absolute once [`Grants::resolve_read`] ran. In a policy,
    /// the directories a stage's `read` must be inside.
    pub read: Vec<PathBuf>,
    /// Variables its plugin may set for programs. In a policy, the
    /// variables that can make a program run a command
    /// ([`crate::env_policy::dangerous`]) its stages may set or list.
    pub env: Vec<String>,
    /// Secrets whose values its artifacts may hold (a release that embeds
    /// a token on purpose); any other secret's value in an artifact fails
    /// the stage. Not a tenant bound: a stage may publish only secrets it
    /// is granted, which the policy bounds.
    pub publish: Vec<String>,
}

impl Grants {
    /// Make `read` absolute: `~/x` under weir's home, anything relative
    /// under `base`, canonical where the path exists.
    pub fn resolve_read(&mut self, base: &Path) {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        for r in &mut self.read {
            let joined = match (r.strip_prefix("~"), &home) {
                (Ok(rest), Some(h)) => h.join(rest),
                _ => base.join(&*r),
            };
            *r = joined.canonicalize().unwrap_or(joined);
        }
    }
}

/// One grant: how its items read and what a tenant's policy allows.
pub struct Rule {
    /// Its key in `allow`.
    pub key: &'static str,
    /// Its items, as a pipeline writes them (`runtime` is `true` or none).
    pub items: fn(&Grants) -> Vec<String>,
    /// Whether a policy allows `item`; `None` for a grant a policy does
    /// not bound.
    pub allows: Option<fn(policy: &Grants, item: &str) -> bool>,
    /// Why an item needs the policy's leave, when that is not plain.
    pub why: fn(item: &str) -> Option<String>,
}

impl Rule {
    /// `` `allow.exec = ["git"]` `` or `` `allow.runtime = true` ``.
    pub fn shown(&self, item: &str) -> String {
        match item {
            "true" if self.key == "runtime" => format!("`allow.{} = true`", self.key),
            _ => format!("`allow.{} = [\"{item}\"]`", self.key),
        }
    }
}

fn listed(policy: &[String], item: &str) -> bool {
    policy.iter().any(|p| p == item)
}

fn no_reason(_: &str) -> Option<String> {
    None
}

/// Every grant, in the order messages list them.
pub const RULES: &[Rule] = &[
    Rule {
        key: "exec",
        items: |g| g.exec.clone(),
        allows: Some(|p, item| listed(&p.exec, item)),
        why: no_reason,
    },
    Rule {
        key: "network",
        items: |g| g.network.clone(),
        allows: Some(|p, item| p.network.iter().any(|e| host_allowed(e, item))),
        why: no_reason,
    },
    Rule {
        key: "secrets",
        items: |g| g.secrets.clone(),
        allows: Some(|p, item| listed(&p.secrets, item)),
        why: no_reason,
    },
    Rule {
        key: "metrics",
        items: |g| g.metrics.clone(),
        allows: Some(|p, item| listed(&p.metrics, item)),
        why: no_reason,
    },
    Rule {
        key: "runtime",
        items: |g| match g.runtime {
            true => vec!["true".into()],
            false => vec![],
        },
        allows: Some(|p, _| p.runtime),
        why: no_reason,
    },
    Rule {
        key: "read",
        items: |g| g.read.iter().map(|r| r.display().to_string()).collect(),
        allows: Some(|p, item| p.read.iter().any(|dir| Path::new(item).starts_with(dir))),
        why: no_reason,
    },
    Rule {
        key: "env",
        items: |g| g.env.clone(),
        // Only the variables that can make a program run a command need
        // the tenant's leave; any other may be set freely.
        allows: Some(|p, item| crate::env_policy::dangerous(item).is_none() || listed(&p.env, item)),
        why: |item| {
            crate::env_policy::dangerous(item)
                .map(|why| format!("it can make a program run a command: {why}"))
        },
    },
    Rule {
        key: "publish",
        items: |g| g.publish.clone(),
        allows: None,
        why: no_reason,
    },
];

/// Every item of `grants` that `policy` does not allow: its rule and the
/// item.
pub fn refused(grants: &Grants, policy: &Grants) -> Vec<(&'static Rule, String)> {
    RULES
        .iter()
        .filter_map(|rule| rule.allows.map(|allows| (rule, allows)))
        .flat_map(|(rule, allows)| {
            (rule.items)(grants)
                .into_iter()
                .filter(move |item| !allows(policy, item))
                .map(move |item| (rule, item))
        })
        .collect()
}

/// `exec: cargo, git; network: crates.io; runtime` (or "nothing"): what
/// a policy allows.
pub fn summary(policy: &Grants) -> String {
    let parts: Vec<String> = RULES
        .iter()
        .filter(|rule| rule.allows.is_some())
        .filter_map(|rule| {
            let items = (rule.items)(policy);
            match items.as_slice() {
                [] => None,
                [only] if only == "true" && rule.key == "runtime" => Some(rule.key.to_string()),
                _ => Some(format!("{}: {}", rule.key, items.join(", "))),
            }
        })
        .collect();
    match parts.is_empty() {
        true => "nothing".into(),
        false => parts.join("; "),
    }
}

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

    fn policy() -> Grants {
        Grants {
            exec: vec!["cargo".into()],
            network: vec!["*.crates.io".into()],
            read: vec![PathBuf::from("/opt/cache")],
            env: vec!["LD_PRELOAD".into()],
            ..Grants::default()
        }
    }

    #[test]
    fn each_grant_beyond_the_policy_is_refused_by_name() {
        let asked = Grants {
            exec: vec!["cargo".into(), "sh".into()],
            network: vec!["static.crates.io".into(), "evil.com".into()],
            runtime: true,
            read: vec![PathBuf::from("/opt/cache/x"), PathBuf::from("/etc")],
            env: vec!["NO_COLOR".into(), "LD_PRELOAD".into(), "BASH_ENV".into()],
            publish: vec!["TOKEN".into()],
            ..Grants::default()
        };
        let shown: Vec<String> = refused(&asked, &policy())
            .into_iter()
            .map(|(rule, item)| rule.shown(&item))
            .collect();
        assert_eq!(
            shown,
            [
                "`allow.exec = [\"sh\"]`",
                "`allow.network = [\"evil.com\"]`",
                "`allow.runtime = true`",
                "`allow.read = [\"/etc\"]`",
                "`allow.env = [\"BASH_ENV\"]`",
            ]
        );
        assert!(refused(&policy(), &policy()).is_empty());
    }

    #[test]
    fn a_policy_reads_as_what_it_allows() {
        assert_eq!(summary(&Grants::default()), "nothing");
        let p = Grants {
            runtime: true,
            ..policy()
        };
        assert_eq!(
            summary(&p),
            "exec: cargo; network: *.crates.io; runtime; read: /opt/cache; env: LD_PRELOAD"
        );
    }

    #[test]
    fn read_paths_resolve_against_the_pipeline_and_home() {
        let mut g = Grants {
            read: vec![PathBuf::from("vendor"), PathBuf::from("/abs/olute")],
            ..Grants::default()
        };
        g.resolve_read(Path::new("/nonexistent/base"));
        assert_eq!(
            g.read,
            [
                PathBuf::from("/nonexistent/base/vendor"),
                PathBuf::from("/abs/olute")
            ]
        );
    }
}
