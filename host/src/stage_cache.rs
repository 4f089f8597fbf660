//! The stage cache: a stage whose plugin, resolved configuration, upstream
//! outputs and input files are the same as in an earlier successful run
//! is not run again; its result (outputs, findings, test cases, artifacts)
//! is taken from that run.
//!
//! Which stages are cacheable: those whose plugin declares none of the
//! capabilities that reach beyond the stage's inputs (`process`,
//! `network`, `metrics`, `secrets`, `runtime`), unless the stage says
//! `cache = false`; others only with `cache = true`. The key is the
//! sha256 of its [`Key::parts`], each itself a digest; `--explain-cache`
//! shows them, and on a miss what differs from the stage's newest entry.

pub mod files;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attempt::AttemptRequest;
use crate::bindings::types::Capability;
use crate::plan::CachePolicy;
use files::FileSet;

/// A stage's cache key, with what it was made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Key {
    /// sha256 of the parts, hex.
    pub key: String,
    /// Each part's digest, by name.
    pub parts: BTreeMap<String, String>,
    /// The input files, each with its digest.
    pub files: FileSet,
}

/// A cacheable stage about to run: the key to store its result under,
/// and the workspace before it ran, to tell which files it wrote. A stage
/// that writes files it does not return as artifacts is not cached, since
/// a hit could not put them back.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The key.
    pub key: Key,
    /// The workspace before the stage.
    pub before: files::Snapshot,
    /// The run's attempts when the stage was about to start.
    pub mark: Mark,
}

/// How many attempts of a run are running and have started: a file that
/// changed while a stage ran is surely its own only if no other stage ran
/// beside it. Otherwise, that it was not cached is no news (the quickstart's
/// scan runs beside its build every time), and is said at debug level.
#[derive(Debug, Default)]
pub struct Activity {
    running: std::sync::atomic::AtomicUsize,
    started: std::sync::atomic::AtomicUsize,
}

/// [`Activity`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    running: usize,
    started: usize,
}

impl Activity {
    /// Before an attempt's cache check.
    pub fn mark(&self) -> Mark {
        use std::sync::atomic::Ordering::SeqCst;
        Mark {
            running: self.running.load(SeqCst),
            started: self.started.load(SeqCst),
        }
    }

    /// An attempt starts.
    pub fn begin(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.started.fetch_add(1, SeqCst);
        self.running.fetch_add(1, SeqCst);
    }

    /// An attempt ended.
    pub fn end(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = self.running.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Whether the attempt marked `mark` (and since ended) ran alone: none
    /// was running when it was marked, it is the only one started since,
    /// and none runs now.
    pub fn ran_alone(&self, mark: Mark) -> bool {
        let now = self.mark();
        mark.running == 0 && now.started <= mark.started + 1 && now.running == 0
    }
}

/// Capabilities that make a plugin's result depend on more than its
/// inputs.
const OUTSIDE: &[(Capability, &str)] = &[
    (Capability::Process, "process"),
    (Capability::Network, "network"),
    (Capability::Metrics, "metrics"),
    (Capability::Secrets, "secrets"),
    (Capability::Runtime, "runtime"),
];

/// Why a stage is not served from the stage cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCached {
    /// `cache = false`.
    #[error("the stage says `cache = false`")]
    OptedOut,
    /// Its plugin reaches outside its inputs and the stage did not opt in.
    #[error(
        "plugin `{plugin}` declares `{}`, so its result may depend on more than its inputs; `cache = true` opts the stage in",
        reaching.join("`, `")
    )]
    ReachesOut {
        /// The plugin.
        plugin: String,
        /// The capabilities that reach out.
        reaching: Vec<&'static str>,
    },
}

/// `Ok` when the stage may be cached, else why not (for people).
pub fn cacheable(policy: &CachePolicy, plugin: &str, capabilities: &[Capability]) -> Result<(), NotCached> {
    match policy.setting {
        Some(false) => Err(NotCached::OptedOut),
        Some(true) => Ok(()),
        None => {
            let reaching: Vec<&'static str> = OUTSIDE
                .iter()
                .filter(|(c, _)| capabilities.contains(c))
                .map(|(_, n)| *n)
                .collect();
            if reaching.is_empty() {
                Ok(())
            } else {
                Err(NotCached::ReachesOut {
                    plugin: plugin.to_string(),
                    reaching,
                })
            }
        }
    }
}

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// What identifies a stage's work besides its files.
pub struct KeySource<'a> {
    /// The tenant (entries never cross tenants).
    pub tenant: &'a str,
    /// sha256 of the plugin's component.
    pub plugin_sha256: &'a str,
    /// The attempt that would run.
    pub request: &'a AttemptRequest,
    /// The input files.
    pub files: FileSet,
}

/// The key for `source`.
pub fn key(source: KeySource<'_>) -> Key {
    let r = source.request;
    let mut parts = BTreeMap::new();
    parts.insert("weir".to_string(), sha(&[env!("CARGO_PKG_VERSION").as_bytes()]));
    parts.insert("tenant".to_string(), sha(&[source.tenant.as_bytes()]));
    parts.insert("plugin".to_string(), source.plugin_sha256.to_string());
    parts.insert("config".to_string(), sha(&[r.config.as_bytes()]));
    let mut env = r.env.clone();
    env.sort();
    parts.insert(
        "env".to_string(),
        sha(&env
            .iter()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
            .collect::<Vec<_>>()),
    );
    // Each stage, name and value a field of its own: no separator can be
    // forged by an output's text.
    let mut upstream: Vec<(&str, &str, &str)> = r
        .inputs
        .iter()
        .flat_map(|(stage, outs)| {
            outs.iter()
                .map(move |(k, v)| (stage.as_str(), k.as_str(), v.as_str()))
        })
        .collect();
    upstream.sort();
    parts.insert(
        "upstream".to_string(),
        sha(&upstream
            .iter()
            .flat_map(|(s, k, v)| [s.as_bytes(), k.as_bytes(), v.as_bytes()])
            .collect::<Vec<_>>()),
    );
    parts.insert(
        "environment".to_string(),
        sha(&[r.environment.as_deref().unwrap_or_default().as_bytes()]),
    );
    parts.insert("gate".to_string(), sha(&[format!("{:?}", r.gate).as_bytes()]));
    parts.insert("grants".to_string(), sha(&[format!("{:?}", r.grants).as_bytes()]));
    parts.insert(
        "sandbox".to_string(),
        sha(&[format!("{:?}", r.sandbox).as_bytes()]),
    );
    parts.insert("files".to_string(), source.files.digest());
    let joined: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Key {
        key: sha(&joined.iter().map(String::as_bytes).collect::<Vec<_>>()),
        parts,
        files: source.files,
    }
}

/// Why `now` differs from `older`, for people: the parts that changed,
/// and which files.
pub fn differences(now: &Key, older: &Key, max: usize) -> Vec<String> {
    let mut out: Vec<String> = now
        .parts
        .iter()
        .filter(|(k, v)| *k != "files" && older.parts.get(*k) != Some(*v))
        .map(|(k, _)| match k.as_str() {
            "plugin" => "the plugin changed (another sha256)".to_string(),
            "config" => "the stage's `with` (after substitution) changed".to_string(),
            "upstream" => "an upstream stage's outputs changed".to_string(),
            "env" => "the stage's environment changed".to_string(),
            "weir" => "weir itself changed version".to_string(),
            other => format!("`{other}` changed"),
        })
        .collect();
    out.extend(now.files.changes_since(&older.files, max));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AttemptRequest {
        AttemptRequest {
            stage: 0,
            stage_name: "s".into(),
            attempt: 1,
            config: r#"{"a":1}"#.into(),
            env: vec![("B".into(), "2".into()), ("A".into(), "1".into())],
            secret_env: Vec::new(),
            inputs: vec![("up".into(), vec![("x".into(), "1".into())])],
            timeout: std::time::Duration::from_secs(1),
            environment: None,
            grants: Default::default(),
            sandbox: Default::default(),
            gate: Default::default(),
            cache: Default::default(),
        }
    }

    fn key_of(r: &AttemptRequest, tenant: &str, files: FileSet) -> Key {
        key(KeySource {
            tenant,
            plugin_sha256: "abc",
            request: r,
            files,
        })
    }

    #[test]
    fn every_part_moves_the_key_and_differences_name_it() {
        let base = request();
        let k = key_of(&base, "t", FileSet::default());
        assert_eq!(k.key, key_of(&base, "t", FileSet::default()).key, "stable");
        // The attempt number and the timeout are not part of the work.
        let mut same = base.clone();
        same.attempt = 2;
        same.timeout = std::time::Duration::from_secs(9);
        same.env.reverse();
        assert_eq!(k.key, key_of(&same, "t", FileSet::default()).key);

        let mut config = base.clone();
        config.config = r#"{"a":2}"#.into();
        let changed = key_of(&config, "t", FileSet::default());
        assert_ne!(k.key, changed.key);
        assert_eq!(
            differences(&changed, &k, 10),
            ["the stage's `with` (after substitution) changed"]
        );
        let mut upstream = base.clone();
        upstream.inputs[0].1[0].1 = "2".into();
        assert_ne!(k.key, key_of(&upstream, "t", FileSet::default()).key);
        assert_ne!(k.key, key_of(&base, "other", FileSet::default()).key, "tenants");
        let mut files = FileSet::default();
        files.files.insert(
            "a".into(),
            files::FileDigest {
                sha256: "0".repeat(64),
                size: 1,
                link: None,
            },
        );
        let with_file = key_of(&base, "t", files);
        assert_ne!(k.key, with_file.key);
        assert_eq!(differences(&with_file, &k, 10), ["file `a` was added"]);
    }

    #[test]
    fn only_inside_plugins_are_cacheable_by_default() {
        let none = CachePolicy::default();
        assert!(cacheable(&none, "scan", &[Capability::Files]).is_ok());
        let why = cacheable(&none, "lint", &[Capability::Process])
            .unwrap_err()
            .to_string();
        assert!(why.contains("`process`") && why.contains("cache = true"), "{why}");
        let on = CachePolicy {
            setting: Some(true),
            inputs: vec![],
        };
        assert!(cacheable(&on, "lint", &[Capability::Process]).is_ok());
        let off = CachePolicy {
            setting: Some(false),
            inputs: vec![],
        };
        assert!(cacheable(&off, "scan", &[]).is_err());
    }
}

#[cfg(test)]
mod activity_tests {
    use super::Activity;

    #[test]
    fn an_attempt_ran_alone_only_when_no_other_ran_beside_it() {
        let a = Activity::default();
        let m = a.mark();
        a.begin();
        a.end();
        assert!(a.ran_alone(m));
        // Another started while it ran.
        let m = a.mark();
        a.begin();
        a.begin();
        a.end();
        a.end();
        assert!(!a.ran_alone(m));
        // Another was running when it started.
        a.begin();
        let m = a.mark();
        a.begin();
        a.end();
        assert!(!a.ran_alone(m));
        a.end();
    }
}
