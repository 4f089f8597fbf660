//! Reaching NATS: the URL, how to authenticate (user and password, an
//! nkey seed, or a credentials file), and TLS.

use std::path::PathBuf;
use std::time::Duration;

/// How `weir serve --nats` and `weir worker` reach NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsOptions {
    /// The NATS server (`nats://127.0.0.1:4222`; `tls://` for TLS); with
    /// JetStream enabled (`nats-server -js`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Authenticate as this user; the password is read from
    /// `$WEIR_NATS_PASSWORD` (never from the command line, where `ps`
    /// shows it).
    #[arg(long, value_name = "NAME")]
    pub nats_user: Option<String>,
    /// Authenticate with the nkey whose seed (`SU…`) is in FILE.
    #[arg(long, value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// Authenticate with a NATS credentials file (JWT and nkey).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Trust this CA for the server's TLS certificate (and require TLS).
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
}

/// The variable `--nats-user`'s password is read from.
pub const PASSWORD_ENV: &str = "WEIR_NATS_PASSWORD";

/// Why NATS could not be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NatsError {
    /// The password variable is not set.
    #[error("--nats-user {user} needs its password in ${PASSWORD_ENV}")]
    #[diagnostic(help("export {PASSWORD_ENV}=... before starting weir"))]
    NoPassword {
        /// The user.
        user: String,
    },
    /// A file named by an option cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    File {
        /// Which option's.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No connection.
    #[error("cannot connect to NATS at {url}: {source}")]
    #[diagnostic(help(
        "start one with JetStream (`nats-server -js`), or check --nats, its credentials and TLS options"
    ))]
    Connect {
        /// Where.
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// JetStream said no.
    #[error("JetStream at {url}: {what}: {why}")]
    #[diagnostic(help(
        "is JetStream enabled? (`nats-server -js`, or `jetstream {{}}` in its configuration)"
    ))]
    JetStream {
        /// Where.
        url: String,
        /// What was being done.
        what: String,
        /// Its answer.
        why: String,
    },
}

impl NatsOptions {
    /// The URL, or `None` when NATS is not used.
    pub fn url(&self) -> Option<&str> {
        self.nats.as_deref()
    }

    /// Connect as `name` (shown by `nats server report connections`).
    /// Once connected, the client reconnects by itself, forever, when the
    /// connection drops: workers go on working while NATS restarts.
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, NatsError> {
        let url = self
            .nats
            .clone()
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        if let Some(user) = &self.nats_user {
            let password =
                std::env::var(PASSWORD_ENV).map_err(|_| NatsError::NoPassword { user: user.clone() })?;
            options = options.user_and_password(user.clone(), password);
        }
        if let Some(path) = &self.nats_nkey {
            let seed = std::fs::read_to_string(path).map_err(|source| NatsError::File {
                what: "the nkey seed",
                path: path.clone(),
                source,
            })?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(path) = &self.nats_creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::File {
                    what: "the credentials file",
                    path: path.clone(),
                    source,
                })?;
        }
        if let Some(ca) = &self.nats_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        // The first connection is made here, so a NATS that is not there
        // is said at once; later drops are reconnected in the background.
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|source| NatsError::Connect {
                url: url.clone(),
                source,
            })?;
        Ok(client)
    }
}
