//! The tenants file: who may run pipelines on this host, what each tenant's
//! pipelines may grant at most, the limits every one of its plugins runs
//! under, and where its secrets come from.
//!
//! ```toml
//! [tenants.acme]
//! root = "/srv/weir/acme"          # runs' workspaces: ROOT/runs/RUN/workspace
//! max-runs = 2                     # runs at once (others queue)
//! max-stages = 4                   # stages at once, across its runs
//! allow = { exec = ["cargo", "git"], network = ["crates.io"], secrets = ["TOKEN"] }
//! limits = { memory = "256MiB", timeout = "30m", fuel = 5_000_000_000, output = "1MiB", log = "4MiB", program-memory = "2GiB", processes = 256, disk = "20GiB" }
//! secrets = { file = "/srv/weir/acme/secrets.toml" }
//! sandbox = "bubblewrap"            # the default: programs run in bubblewrap or not at all
//! ```
//!
//! Without a tenants file every run belongs to the tenant `default`, which
//! may grant whatever its pipeline asks, runs under the default limits, and
//! reads secrets from weir's environment (`WEIR_SECRET_NAME`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::source::{ConfigError, SourceFile};
use crate::grants::Grants;
use crate::limits::StageLimits;
use crate::sandbox::SandboxChoice;

mod resolve;

use resolve::resolve;
pub use resolve::{SizeError, parse_size};

/// The tenant a run belongs to when `--tenant` is not given.
pub const DEFAULT_TENANT: &str = "default";

/// The environment variable naming the tenants file (`--tenants` wins).
pub const TENANTS_ENV: &str = "WEIR_TENANTS";

/// Where the default tenant's secrets come from: `WEIR_SECRET_NAME`.
pub const DEFAULT_SECRET_PREFIX: &str = "WEIR_SECRET_";

/// Longest stage timeout when a tenant sets none.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// A whole tenants file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TenantsFile {
    #[serde(default)]
    tenants: IndexMap<Spanned<String>, Spanned<TenantSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TenantSpec {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    root: Option<Spanned<String>>,
    #[serde(default)]
    max_runs: Option<Spanned<u32>>,
    #[serde(default)]
    max_stages: Option<Spanned<u32>>,
    #[serde(default)]
    allow: Option<Spanned<AllowPolicy>>,
    #[serde(default)]
    limits: Option<Spanned<LimitsSpec>>,
    #[serde(default)]
    secrets: Option<Spanned<SecretsSpec>>,
    /// The weakest sandbox its stages may run programs in.
    #[serde(default)]
    sandbox: Option<Spanned<String>>,
}

/// The most a tenant's pipelines may grant: a [`Grants`] whose lists
/// bound theirs (see [`crate::grants::RULES`]).
pub type AllowPolicy = Grants;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsSpec {
    #[serde(default)]
    memory: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    fuel: Option<Spanned<u64>>,
    #[serde(default)]
    output: Option<Spanned<String>>,
    #[serde(default)]
    log: Option<Spanned<String>>,
    #[serde(default)]
    program_memory: Option<Spanned<String>>,
    #[serde(default)]
    processes: Option<Spanned<u64>>,
    #[serde(default)]
    disk: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SecretsSpec {
    #[serde(default)]
    file: Option<Spanned<String>>,
    #[serde(default)]
    env_prefix: Option<Spanned<String>>,
}

/// Where a tenant's secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// weir's environment: `PREFIXNAME`.
    Env {
        /// `WEIR_SECRET_` for the default tenant.
        prefix: String,
    },
    /// A TOML file of `NAME = "value"`, read when a secret is looked up.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Asked of someone else, one name at a time: a `weir worker` asks
    /// the server for each secret its run looks up, so it holds no
    /// secret its run does not use.
    Remote(SecretLookup),
}

/// How a [`SecretSource::Remote`] looks a secret up; `None` when the
/// owner has no such secret (or does not grant it).
#[derive(Clone)]
pub struct SecretLookup {
    /// Who answers, for messages (`the server's secrets of tenant acme`).
    pub from: String,
    /// The lookup.
    pub lookup: Lookup,
}

/// Looks one secret up by name.
pub type Lookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for SecretLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretLookup({})", self.from)
    }
}

impl PartialEq for SecretLookup {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.lookup, &other.lookup)
    }
}

impl Eq for SecretLookup {}

impl SecretSource {
    /// The value of secret `name`, if the source has it.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            SecretSource::Env { prefix } => std::env::var(format!("{prefix}{name}")).ok(),
            SecretSource::File { path } => {
                let text = std::fs::read_to_string(path).ok()?;
                let table: toml::Table = toml::from_str(&text).ok()?;
                table.get(name)?.as_str().map(str::to_string)
            }
            SecretSource::Remote(remote) => (remote.lookup)(name),
        }
    }

    /// How to add secret `name` to this source, for error messages.
    pub fn how_to_add(&self, name: &str) -> String {
        match self {
            SecretSource::Env { prefix } => format!("export {prefix}{name}=... before running weir"),
            SecretSource::File { path } => format!("add {name} = \"...\" to {}", path.display()),
            SecretSource::Remote(remote) => format!("add {name} to {}", remote.from),
        }
    }
}

/// Limits every plugin of a tenant runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Memory, table, handle, log and output limits per Store.
    pub stage: StageLimits,
    /// The longest timeout a stage may ask for.
    pub max_timeout: Duration,
    /// The limits the tenants file sets to `"unlimited"` on purpose.
    pub unlimited: Unlimited,
}

/// Limits a tenants file says `"unlimited"` for (the others have a value,
/// or none was written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unlimited {
    /// `disk = "unlimited"`.
    pub disk: bool,
    /// `program-memory = "unlimited"`.
    pub program_memory: bool,
}

impl Unlimited {
    /// The keys, as the tenants file writes them.
    pub fn keys(self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.disk {
            keys.push("disk");
        }
        if self.program_memory {
            keys.push("program-memory");
        }
        keys
    }
}

/// A service's default for `limits.disk` (a run's workspace).
pub const SERVICE_DISK: u64 = 20 << 30;
/// A service's default for `limits.program-memory` (per program).
pub const SERVICE_PROGRAM_MEMORY: u64 = 4 << 30;

impl TenantLimits {
    /// The limits for runs `weir serve` (or a worker) starts, on a host
    /// many share: every limit the tenant leaves unset that would be
    /// unbounded gets a finite default ([`SERVICE_DISK`],
    /// [`SERVICE_PROGRAM_MEMORY`]); memory, log, output and time are
    /// finite already. What the file sets `"unlimited"` stays so (and
    /// `weir serve` starts with that only when told it may).
    pub fn for_service(mut self) -> Self {
        if self.stage.disk_bytes.is_none() && !self.unlimited.disk {
            self.stage.disk_bytes = Some(SERVICE_DISK);
        }
        if self.stage.program_memory.is_none() && !self.unlimited.program_memory {
            self.stage.program_memory = Some(SERVICE_PROGRAM_MEMORY);
        }
        self
    }
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            stage: StageLimits::default(),
            max_timeout: DEFAULT_MAX_TIMEOUT,
            unlimited: Unlimited::default(),
        }
    }
}

/// One tenant, resolved.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its name.
    pub name: crate::names::TenantName,
    /// Where its runs' workspaces live (`ROOT/runs/RUN/workspace`); `None`
    /// for the default tenant without a tenants file (`.weir/runs/RUN`).
    pub root: Option<PathBuf>,
    /// The most its pipelines may grant; `None` allows whatever they ask
    /// (the default tenant without a tenants file).
    pub allow: Option<AllowPolicy>,
    /// Limits per plugin.
    pub limits: TenantLimits,
    /// Runs at once.
    pub max_runs: Option<u32>,
    /// Stages at once, across its runs.
    pub max_stages: Option<u32>,
    /// Where its secrets come from.
    pub secrets: SecretSource,
    /// The weakest sandbox its stages' programs may run in: `Required`
    /// (bubblewrap, the default in a tenants file), `Auto` (bubblewrap
    /// where installed) or `None` (a stage may opt out).
    pub sandbox: SandboxChoice,
    /// The tenants file it was read from, if any.
    pub file: Option<PathBuf>,
}

impl Tenant {
    /// The tenant of a host without a tenants file.
    pub fn unrestricted_default() -> Self {
        Self {
            name: crate::names::TenantName::reported(DEFAULT_TENANT),
            root: None,
            allow: None,
            limits: TenantLimits::default(),
            max_runs: None,
            max_stages: None,
            secrets: SecretSource::Env {
                prefix: DEFAULT_SECRET_PREFIX.to_string(),
            },
            sandbox: SandboxChoice::None,
            file: None,
        }
    }

    /// Where it was defined, for messages.
    pub fn origin(&self) -> String {
        match &self.file {
            Some(f) => format!("tenant `{}` ({})", self.name, f.display()),
            None => format!(
                "tenant `{}` (no tenants file: everything a pipeline asks is allowed)",
                self.name
            ),
        }
    }
}

/// Why the tenants file or a tenant in it cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TenantsError {
    /// The file cannot be read.
    #[error("cannot read the tenants file {}: {source}", path.display())]
    #[diagnostic(help("pass --tenants FILE or set WEIR_TENANTS to a readable file"))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{} is not a valid tenants file ({} {})", path.display(), errors.len(), if errors.len() == 1 { "problem" } else { "problems" })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem.
        #[related]
        errors: Vec<ConfigError>,
    },
    /// The tenant asked for is not in the file.
    #[error("tenant `{name}` is not defined in {}", path.display())]
    #[diagnostic(help("{}", help))]
    Unknown {
        /// The tenant.
        name: String,
        /// The file.
        path: PathBuf,
        /// The tenants it defines.
        help: String,
    },
    /// `--tenant` without a tenants file.
    #[error("--tenant {name} needs a tenants file, and none is configured")]
    #[diagnostic(help(
        "pass --tenants FILE or set WEIR_TENANTS; without one every run belongs to the tenant `default` (docs/security.md)"
    ))]
    NoFile {
        /// The tenant.
        name: String,
    },
}

/// Every tenant of a tenants file.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    file: Option<PathBuf>,
    tenants: BTreeMap<String, Tenant>,
}

impl Tenants {
    /// Read `path` (from `--tenants`, else [`TENANTS_ENV`]); none at all
    /// gives a host with only the unrestricted default tenant.
    pub fn load(path: Option<&Path>) -> Result<Self, TenantsError> {
        let from_env = std::env::var_os(TENANTS_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let Some(path) = path.map(Path::to_path_buf).or(from_env) else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|source| TenantsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, text)
    }

    /// Parse `text` as the tenants file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, TenantsError> {
        let source = SourceFile::new(path, text);
        let invalid = |errors| TenantsError::Invalid {
            path: path.to_path_buf(),
            errors,
        };
        let file: TenantsFile =
            toml::from_str(source.text()).map_err(|e| invalid(vec![super::toml_error(&source, &e)]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let mut tenants = BTreeMap::new();
        for (name, spec) in file.tenants {
            let name_span = name.span();
            let name = name.into_inner();
            if let Err(e) = crate::names::check(crate::names::NameKind::Tenant, &name) {
                errors.push(source.error(name_span, e.to_string()).help(format!(
                    "{} (it names directories and history rows)",
                    crate::names::NameError::HELP
                )));
                continue;
            }
            let spec = spec.into_inner();
            if let Some(t) = resolve(&name, spec, base, &source, &mut errors) {
                tenants.insert(
                    name,
                    Tenant {
                        file: Some(path.to_path_buf()),
                        ..t
                    },
                );
            }
        }
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        Ok(Self {
            file: Some(path.to_path_buf()),
            tenants,
        })
    }

    /// The tenant `name` (`None`: the default tenant).
    pub fn get(&self, name: Option<&str>) -> Result<Tenant, TenantsError> {
        let Some(file) = &self.file else {
            return match name {
                None | Some(DEFAULT_TENANT) => Ok(Tenant::unrestricted_default()),
                Some(other) => Err(TenantsError::NoFile {
                    name: other.to_string(),
                }),
            };
        };
        let wanted = name.unwrap_or(DEFAULT_TENANT);
        self.tenants
            .get(wanted)
            .cloned()
            .ok_or_else(|| TenantsError::Unknown {
                name: wanted.to_string(),
                path: file.clone(),
                help: if self.tenants.is_empty() {
                    "the file defines no tenants; add [tenants.NAME]".to_string()
                } else {
                    format!(
                        "its tenants are {}{}",
                        self.tenants
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if name.is_none() {
                            "; pass --tenant NAME"
                        } else {
                            ""
                        }
                    )
                },
            })
    }

    /// Every tenant, by name.
    pub fn all(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }
}

#[cfg(test)]
mod tests;
