//! `weir serve`: the server, and `weir serve token create|revoke|list`,
//! the API tokens it accepts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use weir_pipeline::config::server::{SERVER_FILE, ServerConfig};

use std::io::IsTerminal;

use crate::report::style::Style;
use crate::store::Store;

/// `weir serve`'s arguments.
#[derive(Debug, Args)]
#[command(after_long_help = "\
A first setup (docs/serve.md has the whole story):

  TOKEN=$(weir serve token create --operator)   # shown once; only its hash is kept
  weir serve --listen 127.0.0.1:8080 &
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/v1/runs

With a weir-server.toml naming repositories, a forge's push webhook
(POST /api/v1/hooks/github|gitea|gitlab) queues a run of the pushed
commit, and POST /api/v1/runs queues one by hand. The API's description
is at /api/v1/openapi.json.")]
pub struct ServeArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// The server's configuration (default: ./weir-server.toml if there
    /// is one).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen (default: the file's `listen`, else 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// With --nats, runs go to `weir worker`s through NATS JetStream
    /// instead of running in this process (docs/workers.md).
    #[command(flatten)]
    nats: crate::fleet::NatsOptions,
    /// How long a worker may go silent before its run goes to another
    /// worker (it heartbeats three times within it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    ack_wait: std::time::Duration,
    /// After this many deliveries to workers (each died or vanished), a
    /// run ends `failed` instead.
    #[arg(long, value_name = "N", default_value_t = crate::serve::remote::DEFAULT_MAX_DELIVERIES)]
    max_deliveries: u32,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    weir_pipeline::config::duration::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// The API tokens the server accepts: create, revoke, list.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the API's OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for a tenant (or an operator's, which sees every
    /// tenant). The token is printed once; only its hash is kept.
    Create {
        /// The tenant its calls act for.
        #[arg(long, required_unless_present = "operator", conflicts_with = "operator")]
        tenant: Option<String>,
        /// An operator's token: sees and acts on every tenant.
        #[arg(long)]
        operator: bool,
        /// What it is for, shown by `token list`.
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token by its id (`tok_…`); calls with it fail from now on.
    Revoke {
        /// The token's id.
        id: String,
    },
    /// List tokens (ids, tenants, labels; never the secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn config(path: Option<&Path>) -> Result<ServerConfig, ExitCode> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(SERVER_FILE).is_file() => PathBuf::from(SERVER_FILE),
        None => return Ok(ServerConfig::default()),
    };
    ServerConfig::load(&path).map_err(|e| {
        eprintln!("{:?}", miette::Report::new(e));
        ExitCode::from(2)
    })
}

/// The store the server with `config` uses.
fn store(config: &ServerConfig) -> Result<Store, ExitCode> {
    let dir = match &config.data_dir {
        Some(d) => crate::session::state::choose_state_dir(d),
        None => crate::session::state::state_dir(),
    };
    Store::open(&dir).map_err(|e| {
        eprintln!("weir: {e}");
        ExitCode::from(1)
    })
}

/// `weir serve …`.
pub async fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match args.command {
        None => {
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            let workers = args.nats.url().map(|_| crate::serve::RemoteOptions {
                nats: args.nats.clone(),
                ack_wait: args.ack_wait,
                max_deliveries: args.max_deliveries.max(1),
            });
            match crate::serve::serve(config, workers).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{:?}", miette::Report::new(e));
                    ExitCode::from(2)
                }
            }
        }
        Some(ServeCommand::Openapi) => {
            println!("{}", crate::serve::openapi::json());
            ExitCode::SUCCESS
        }
        Some(ServeCommand::Token { command }) => token(&config, command),
    }
}

fn token(config: &ServerConfig, command: TokenCommand) -> ExitCode {
    let store = match store(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match command {
        TokenCommand::Create { tenant, label, .. } => {
            if let Some(t) = &tenant {
                let known = weir_pipeline::config::tenants::Tenants::load(config.tenants.as_deref())
                    .and_then(|ts| ts.get(Some(t)));
                if let Err(e) = known {
                    eprintln!("{:?}", miette::Report::new(e));
                    return ExitCode::from(2);
                }
            }
            let new = match crate::serve::auth::new_token() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("weir: {e}");
                    return ExitCode::from(1);
                }
            };
            if let Err(e) = store.add_token(&new.id, tenant.as_deref(), &new.sha256, label.as_deref()) {
                eprintln!("weir: {e}");
                return ExitCode::from(1);
            }
            let s = Style::new(std::io::stderr().is_terminal());
            eprintln!(
                "{} token {} for {} (shown once; only its hash is kept):",
                s.ok("made"),
                new.id,
                tenant
                    .as_deref()
                    .map_or("an operator (every tenant)".into(), |t| format!("tenant `{t}`"))
            );
            // The secret alone on stdout, for `TOKEN=$(weir serve token create …)`.
            println!("{}", new.secret);
            ExitCode::SUCCESS
        }
        TokenCommand::Revoke { id } => match store.revoke_token(&id) {
            Ok(true) => {
                println!("revoked {id}");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!("weir: no live token `{id}` (`weir serve token list` shows them)");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("weir: {e}");
                ExitCode::from(1)
            }
        },
        TokenCommand::List { json } => {
            let tokens = match store.tokens() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("weir: {e}");
                    return ExitCode::from(1);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            if tokens.is_empty() {
                println!("no tokens; `weir serve token create --tenant T` makes one");
                return ExitCode::SUCCESS;
            }
            for t in tokens {
                println!(
                    "{:<18} {:<16} {:<10} {}",
                    t.id,
                    t.tenant.as_deref().unwrap_or("(operator)"),
                    if t.revoked_ms.is_some() { "revoked" } else { "live" },
                    t.label.unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
    }
}
