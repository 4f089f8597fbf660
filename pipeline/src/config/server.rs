//! `weir-server.toml`: what `weir serve` builds and how.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! data-dir = "/var/lib/weir"      # the run history, queue and tokens
//! tenants = "tenants.toml"        # the tenants' policies
//! concurrency = 4                 # runs at once, over all tenants
//! allow-unlimited = false         # start even if a tenant sets a limit to "unlimited"
//!
//! [repositories.app]
//! forge = "github"                # github | gitea | gitlab
//! name = "acme/app"               # as the forge names it (default: the key)
//! clone-url = "https://github.com/acme/app.git"
//! secret-env = "APP_WEBHOOK_SECRET"
//! tenant = "acme"
//! ```
//!
//! Relative paths are relative to the file's directory. Every problem is
//! reported with its line, as for `pipeline.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, SourceFile};

/// The file `weir serve` reads when `--config` does not name one.
pub const SERVER_FILE: &str = "weir-server.toml";

/// Where `weir serve` listens when neither `--listen` nor the file says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Requests a token may make per second, on average, when the file does
/// not say (`rate-limit`); twice as many may come at once.
pub const DEFAULT_RATE_LIMIT: u32 = 50;

/// The largest request body, when the file does not say (`max-body`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// How long a request may take to arrive and be answered, when the file
/// does not say (`request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A git forge, by how it signs its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// `X-Hub-Signature-256`: HMAC-SHA256 of the body.
    Github,
    /// Gitea and Forgejo: `X-Gitea-Signature`, HMAC-SHA256 of the body.
    Gitea,
    /// `X-Gitlab-Token`: the secret itself.
    Gitlab,
}

impl Forge {
    /// Its name in URLs and the history (`github`).
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitea => "gitea",
            Forge::Gitlab => "gitlab",
        }
    }
}

/// What a pull request from a fork may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForkPolicy {
    /// Nothing: no run is queued.
    Ignore,
    /// The pipeline without its deploys and secrets (the default).
    #[default]
    Untrusted,
    /// Everything, secrets and deploys included. Only for forges where
    /// nobody outside the team can open a pull request.
    Trusted,
}

/// One repository the server builds.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The key in `[repositories]`: its name in the API.
    pub key: String,
    /// The forge it lives on.
    pub forge: Forge,
    /// Its name on the forge (`acme/app`), matched against webhooks.
    pub name: String,
    /// Where to fetch it from.
    pub clone_url: String,
    /// The variable holding its webhook secret.
    pub secret_env: Option<String>,
    /// The tenant its runs belong to.
    pub tenant: Option<String>,
    /// Its pipeline file, inside the repository.
    pub pipeline: PathBuf,
    /// What pull requests from forks may run.
    pub fork_pull_requests: ForkPolicy,
    /// The forge's API, for commit statuses (`https://api.github.com`).
    pub api_url: Option<String>,
    /// The variable holding the token commit statuses are posted with.
    pub status_token_env: Option<String>,
}

/// The whole file, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the history, queue and tokens live.
    pub data_dir: Option<PathBuf>,
    /// The tenants file.
    pub tenants: Option<PathBuf>,
    /// Runs at once, over all tenants.
    pub concurrency: usize,
    /// Requests per second a token may make, on average.
    pub rate_limit: u32,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// The server's address as the forge's users reach it, for the links
    /// in commit statuses.
    pub public_url: Option<String>,
    /// The repositories, by key.
    pub repositories: IndexMap<String, Repository>,
    /// Whether a tenant may set a limit to `"unlimited"` on this shared
    /// host (`allow-unlimited = true`); otherwise `weir serve` refuses to
    /// start with such a tenant.
    pub allow_unlimited: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            file: None,
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: None,
            tenants: None,
            concurrency: 2,
            rate_limit: DEFAULT_RATE_LIMIT,
            max_body: DEFAULT_MAX_BODY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            public_url: None,
            repositories: IndexMap::new(),
            allow_unlimited: false,
        }
    }
}

/// Why the server's file cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ServerConfigError {
    /// It cannot be read.
    #[error("cannot read the server's configuration {}: {source}", path.display())]
    #[diagnostic(help(
        "pass --config FILE, or write weir-server.toml (docs/serve.md has one to start from)"
    ))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("{} is not a valid server configuration ({} {})", path.display(), errors.len(), if errors.len() == 1 { "problem" } else { "problems" })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem.
        #[related]
        errors: Vec<ConfigError>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    repositories: IndexMap<Spanned<String>, RepositorySpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ServerSection {
    listen: Option<Spanned<String>>,
    data_dir: Option<String>,
    tenants: Option<String>,
    concurrency: Option<Spanned<u32>>,
    rate_limit: Option<Spanned<u32>>,
    max_body: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    public_url: Option<String>,
    allow_unlimited: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RepositorySpec {
    forge: Forge,
    name: Option<String>,
    clone_url: Spanned<String>,
    secret_env: Option<String>,
    tenant: Option<Spanned<String>>,
    pipeline: Option<String>,
    #[serde(default)]
    fork_pull_requests: ForkPolicy,
    api_url: Option<String>,
    status_token_env: Option<String>,
}

impl ServerConfig {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Self, ServerConfigError> {
        // Paths in it are relative to it, wherever the server runs them from.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|source| ServerConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, text)
    }

    /// Parse `text` as the server's file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, ServerConfigError> {
        let source = SourceFile::new(path, text);
        let invalid = |errors| ServerConfigError::Invalid {
            path: path.to_path_buf(),
            errors,
        };
        let file: ServerFile =
            toml::from_str(source.text()).map_err(|e| invalid(vec![super::toml_error(&source, &e)]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let mut errors = Vec::new();
        let mut config = ServerConfig {
            file: Some(path.to_path_buf()),
            ..ServerConfig::default()
        };
        let s = file.server;
        if let Some(listen) = s.listen {
            match listen.get_ref().parse::<SocketAddr>() {
                Ok(addr) => config.listen = addr,
                Err(_) => errors.push(
                    source
                        .error(
                            listen.span(),
                            format!("`{}` is not an address to listen on", listen.get_ref()),
                        )
                        .help("write an IP address and a port: \"127.0.0.1:8080\", \"0.0.0.0:443\""),
                ),
            }
        }
        config.data_dir = s.data_dir.as_deref().map(relative);
        config.tenants = s.tenants.as_deref().map(relative);
        let positive = |value: &Option<Spanned<u32>>, key: &str, errors: &mut Vec<ConfigError>| match value {
            Some(v) if *v.get_ref() == 0 => {
                errors.push(source.error(v.span(), format!("`{key}` must be at least 1")));
                None
            }
            Some(v) => Some(*v.get_ref()),
            None => None,
        };
        if let Some(n) = positive(&s.concurrency, "concurrency", &mut errors) {
            config.concurrency = n as usize;
        }
        if let Some(n) = positive(&s.rate_limit, "rate-limit", &mut errors) {
            config.rate_limit = n;
        }
        if let Some(max) = s.max_body {
            if *max.get_ref() < 1024 {
                errors.push(
                    source
                        .error(max.span(), "`max-body` is in bytes and must be at least 1024")
                        .help("forges send push events of a few hundred KiB; 1048576 (1 MiB) is the default"),
                );
            } else {
                config.max_body = usize::try_from(*max.get_ref()).unwrap_or(usize::MAX);
            }
        }
        if let Some(t) = s.request_timeout {
            match super::duration::parse_duration(t.get_ref()) {
                Ok(d) if !d.is_zero() => config.request_timeout = d,
                Ok(_) => errors.push(source.error(t.span(), "`request-timeout` must be longer than 0s")),
                Err(e) => errors.push(source.error(t.span(), e.to_string())),
            }
        }
        config.public_url = s.public_url.map(|u| u.trim_end_matches('/').to_string());
        config.allow_unlimited = s.allow_unlimited.unwrap_or(false);
        for (key, spec) in file.repositories {
            let span = key.span();
            let key = key.into_inner();
            if let Err(e) = crate::names::check(crate::names::NameKind::Tenant, &key) {
                errors.push(source.error(span, format!("repository key: {e}")).help(format!(
                    "{} (it is the repository's name in the API)",
                    crate::names::NameError::HELP
                )));
                continue;
            }
            if spec.clone_url.get_ref().trim().is_empty() {
                errors.push(source.error(spec.clone_url.span(), "`clone-url` is empty"));
            }
            let tenant = match spec.tenant {
                Some(t) => match crate::names::check(crate::names::NameKind::Tenant, t.get_ref()) {
                    Ok(()) => Some(t.into_inner()),
                    Err(e) => {
                        errors.push(source.error(t.span(), e.to_string()));
                        None
                    }
                },
                None => None,
            };
            // A local path is relative to this file, like every path here.
            let clone_url = spec.clone_url.into_inner();
            let clone_url = if clone_url.contains("://") || clone_url.contains('@') {
                clone_url
            } else {
                relative(&clone_url).display().to_string()
            };
            let name = spec.name.clone().unwrap_or_else(|| key.clone());
            if let Some(other) = config
                .repositories
                .values()
                .find(|r| r.forge == spec.forge && r.name.eq_ignore_ascii_case(&name))
            {
                errors.push(
                    source
                        .error(
                            span.clone(),
                            format!(
                                "repository `{key}` has the same {} name `{name}` as `{}`",
                                spec.forge.as_str(),
                                other.key
                            ),
                        )
                        .help("a webhook names its repository; two with one name could not be told apart"),
                );
                continue;
            }
            config.repositories.insert(
                key.clone(),
                Repository {
                    name,
                    key,
                    forge: spec.forge,
                    clone_url,
                    secret_env: spec.secret_env,
                    tenant,
                    pipeline: PathBuf::from(spec.pipeline.as_deref().unwrap_or("pipeline.toml")),
                    fork_pull_requests: spec.fork_pull_requests,
                    api_url: spec.api_url.map(|u| u.trim_end_matches('/').to_string()),
                    status_token_env: spec.status_token_env,
                },
            );
        }
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        Ok(config)
    }

    /// The repository a forge's webhook names (`acme/app`).
    pub fn repository_named(&self, forge: Forge, name: &str) -> Option<&Repository> {
        self.repositories
            .values()
            .find(|r| r.forge == forge && r.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ServerConfigError> {
        ServerConfig::parse(Path::new("/etc/weir/weir-server.toml"), text.into())
    }

    #[test]
    fn a_repository_with_relative_paths_and_defaults() {
        let c = parse(
            "[server]\nconcurrency = 3\ntenants = \"tenants.toml\"\n[repositories.app]\nforge = \"github\"\nname = \"acme/app\"\nclone-url = \"repos/app\"\ntenant = \"acme\"\n",
        )
        .expect("valid");
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.tenants.as_deref(), Some(Path::new("/etc/weir/tenants.toml")));
        let app = &c.repositories["app"];
        assert_eq!(app.clone_url, "/etc/weir/repos/app");
        assert_eq!(app.pipeline, Path::new("pipeline.toml"));
        assert_eq!(app.fork_pull_requests, ForkPolicy::Untrusted);
        assert!(c.repository_named(Forge::Github, "ACME/app").is_some());
        assert!(c.repository_named(Forge::Gitlab, "acme/app").is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let Err(ServerConfigError::Invalid { errors, .. }) = parse(
            "[server]\nlisten = \"localhost\"\nconcurrency = 0\n[repositories.app]\nforge = \"github\"\nclone-url = \"\"\n",
        ) else {
            panic!("invalid");
        };
        let at: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(
            at,
            [
                "/etc/weir/weir-server.toml:2:10",
                "/etc/weir/weir-server.toml:3:15",
                "/etc/weir/weir-server.toml:6:13"
            ]
        );
    }

    #[test]
    fn an_unknown_forge_names_the_ones_known() {
        let Err(ServerConfigError::Invalid { errors, .. }) =
            parse("[repositories.app]\nforge = \"bitbucket\"\nclone-url = \"x\"\n")
        else {
            panic!("invalid");
        };
        assert!(errors[0].message.contains("github"), "{}", errors[0].message);
    }
}
