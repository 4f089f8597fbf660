//! The `weir` command: parse arguments, run a subcommand, render errors
//! with their source location, and choose the exit code.
//!
//! Exit codes: 0 success, 1 the pipeline failed, 2 the configuration (or a
//! plugin it names) is invalid, 130 the run was cancelled.

mod dev_cmd;
mod env_cmd;
mod pipe;
mod plugin_cmd;
mod plugins_cmd;
mod provenance_cmd;
mod replay_cmd;
mod run_cmd;
mod runs_cmd;
mod serve_cmd;
mod target_cmd;
mod validate_cmd;
mod worker_cmd;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// CI/CD pipelines whose every step is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show debug log lines from plugins (and, with -vv, weir's own).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline.
    Run(RunArgs),
    /// Check a pipeline (and the plugins it uses) without running it.
    Validate(ValidateArgs),
    /// List and inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Write a plugin: scaffold one, build it, inspect the component.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// The run history: list, show, logs, prune.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Re-run a recorded analyzer stage offline, on what it received, and
    /// compare verdicts.
    Replay(ReplayArgs),
    /// Develop a plugin: build the project, run just the stage that uses
    /// it on the last run's workspace and upstream results, and again on
    /// every change.
    Dev(dev_cmd::DevArgs),
    /// Run weir as a service: an HTTP API, forge webhooks, a durable queue
    /// of runs and their live logs (docs/serve.md).
    Serve(serve_cmd::ServeArgs),
    /// Take runs from a `weir serve --nats` through NATS JetStream and run
    /// them here (docs/workers.md).
    Worker(worker_cmd::WorkerArgs),
    /// The workers of a NATS JetStream: list.
    Workers {
        #[command(subcommand)]
        command: worker_cmd::WorkersCommand,
    },
    /// The local deployment target: up, status, down.
    Target {
        #[command(subcommand)]
        command: TargetCommand,
    },
    /// A service's release history on the local target, newest first.
    Releases {
        /// The service (a deploy stage's `service`).
        service: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a service back on the release that was stable before the
    /// current one, and send it all traffic.
    Rollback {
        /// The service.
        service: String,
    },
    /// The RustSec advisory database `scan` checks dependencies against.
    Advisories {
        #[command(subcommand)]
        command: AdvisoriesCommand,
    },
    /// weir's provenance signing keys: generate.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check an artifact against a run's signed SLSA provenance: its
    /// sha256 is a subject, and the signature is the key's.
    Verify {
        /// The artifact file.
        artifact: std::path::PathBuf,
        /// The run's `reports/provenance.intoto.jsonl`.
        #[arg(long, value_name = "FILE")]
        provenance: std::path::PathBuf,
        /// The public key (`weir-signing.pub`).
        #[arg(long, value_name = "PUB")]
        key: std::path::PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A pipeline's environments: show one resolved, diff two.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Approve a run's deploy to a protected environment.
    Approve(DecideArgs),
    /// Refuse a run's deploy to a protected environment; the stage fails.
    Reject {
        #[command(flatten)]
        args: DecideArgs,
        /// Why, recorded with the run and shown to its people.
        #[arg(long)]
        reason: String,
    },
}

/// `weir advisories`.
#[derive(Debug, Subcommand)]
enum AdvisoriesCommand {
    /// Clone the RustSec advisory database into weir's data directory, or
    /// update the clone there; `scan` stages that name no `advisory-db`
    /// use it.
    Fetch {
        /// Where to clone from: a git URL or a local clone.
        #[arg(long, value_name = "URL", default_value = crate::advisories::DEFAULT_SOURCE)]
        from: String,
        /// Keep it here instead (default: DATA_DIR/advisory-db, DATA_DIR
        /// being $WEIR_DATA_DIR, else $XDG_DATA_HOME/weir, else
        /// ~/.local/share/weir).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// `weir keys`.
#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make an ed25519 key pair for signing provenance: the private key
    /// (mode 0600) and the public key, as PEM.
    Generate {
        /// Write the pair here (default: DATA_DIR/keys, where runs look
        /// for the signing key unless $WEIR_SIGNING_KEY names one).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Replace a key that is there.
        #[arg(long)]
        force: bool,
    },
}

/// `weir approve` and `weir reject`.
#[derive(Debug, Args)]
struct DecideArgs {
    /// The run waiting (`weir runs list --status running` shows it).
    run: String,
    /// Only this stage's request (default: every pending one of the run).
    #[arg(long)]
    stage: Option<String>,
    /// Who decides, checked against the environment's approvers
    /// (default: $USER).
    #[arg(long = "as", value_name = "NAME")]
    who: Option<String>,
}

/// `weir env`.
#[derive(Debug, Subcommand)]
enum EnvCommand {
    /// An environment's resolved settings (secrets masked) and the stages
    /// that deploy there; exits 2 if a variable or secret is missing.
    Show {
        /// The environment.
        name: String,
        /// The pipeline file.
        #[arg(short, long, default_value = "pipeline.toml")]
        pipeline: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read secrets from this tenant's secret source.
        #[arg(long)]
        tenant: Option<String>,
        /// The tenants file (default: $WEIR_TENANTS).
        #[arg(long, value_name = "FILE")]
        tenants: Option<PathBuf>,
    },
    /// What differs between two environments (secrets by name only).
    Diff {
        /// The first environment (`-` lines).
        a: String,
        /// The second (`+` lines).
        b: String,
        /// The pipeline file.
        #[arg(short, long, default_value = "pipeline.toml")]
        pipeline: PathBuf,
    },
}

/// `weir target`.
#[derive(Debug, Subcommand)]
enum TargetCommand {
    /// Start the target in the background (a deploy stage does this too).
    Up {
        /// Serve `/metrics` on this port of 127.0.0.1 (default: the port
        /// it had, or any free one).
        #[arg(long)]
        metrics_port: Option<u16>,
    },
    /// What the target runs: services, traffic, instances.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drain and stop every instance, then the target; its state is kept
    /// and the next `up` starts the stable releases again.
    Down,
    /// Run the target in the foreground (what `up` starts).
    #[command(hide = true)]
    Serve {
        /// The target directory (default: `.weir/target`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// As for `up`.
        #[arg(long)]
        metrics_port: Option<u16>,
    },
}

/// `weir replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run (`weir runs list` shows them).
    pub run: String,
    /// The analyzer stage to replay.
    pub stage: String,
    /// Replay with this plugin (a component file) instead of the one the
    /// run used, to test a new version against past inputs.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The tenants file (default: $WEIR_TENANTS). The replay runs under
    /// the limits of the tenant the run belonged to.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
}

/// `weir runs`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recorded runs, newest first.
    List {
        /// Only runs of this pipeline (its `[pipeline] name`).
        #[arg(long)]
        pipeline: Option<String>,
        /// Only runs with this status: running, succeeded, failed,
        /// cancelled, interrupted.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: its stages, durations, outputs, gates, findings, tests.
    Show {
        /// The run's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a run's deployment report, Markdown and JSON: commit,
    /// stages, tests, findings, approvals, rollout steps, rollback.
    Report {
        /// The run's id.
        id: String,
        /// Where to write `report.md` and `report.json` (default: the
        /// run's reports directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A run's log lines.
    Logs {
        /// The run's id.
        id: String,
        /// Only this stage's lines.
        #[arg(long)]
        stage: Option<String>,
        /// Keep printing new lines until the run ends.
        #[arg(long, short)]
        follow: bool,
        /// Print one JSON object per line: seq, stage, time_ms, level,
        /// message.
        #[arg(long)]
        json: bool,
    },
    /// Remove old runs: their records, logs, reports and artifacts.
    Prune {
        /// Keep the newest N finished runs.
        #[arg(long)]
        keep: Option<u32>,
        /// Remove runs that started longer ago than this (`30d`, `12h`).
        #[arg(long)]
        older_than: Option<String>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (default: pipeline.toml).
    #[arg(conflicts_with = "resume")]
    pub pipeline: Option<PathBuf>,
    /// Resume an interrupted, failed or cancelled run: the stages that
    /// succeeded keep their results; the others run again, in the same
    /// workspace, with the pipeline and options recorded with the run.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["workspace", "branch", "environment", "tenant", "tag"])]
    pub resume: Option<String>,
    /// Show each stage's cache key, what went into it, and why it hit or
    /// missed.
    #[arg(long)]
    pub explain_cache: bool,
    /// Print one JSON event per line instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Most stages to run at once (default: the number of CPUs).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Use this directory as the workspace instead of a fresh one under
    /// `.weir/runs/RUN/workspace`.
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// The branch being built, for `when = { branch = ... }` (default: read
    /// from the git repository around the pipeline file).
    #[arg(long)]
    pub branch: Option<String>,
    /// The environment this run targets: deploy stages that name none
    /// deploy there, with its settings (default: `[pipeline] environment`).
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// A tag pointing at the commit being built, for an environment's
    /// `tags` rule (default: read with `git tag --points-at HEAD`).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Start no new stage once one has failed.
    #[arg(long)]
    pub fail_fast: bool,
    /// The tenant the run belongs to (default: `default`); its policy
    /// bounds what the pipeline may grant and the limits its plugins run
    /// under.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The tenants file (default: $WEIR_TENANTS; without one every run
    /// belongs to the unrestricted tenant `default`).
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
}

/// `weir validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Also resolve this environment: show what its stages get, and
    /// reject missing variables or secrets.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Check the pipeline against this tenant's policy.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The tenants file (default: $WEIR_TENANTS).
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
}

/// `weir plugin`.
#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// A new plugin project that builds and runs as it is: the plugin, a
    /// unit test and a sample pipeline.toml.
    New {
        /// The plugin's name: lowercase letters, digits and dashes.
        name: String,
        /// What kind of plugin.
        #[arg(long, value_enum)]
        kind: plugin_cmd::KindArg,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: plugin_cmd::LangArg,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The weir-sdk to depend on: the `sdk` directory of a weir
        /// checkout (default: the one this weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin in DIR and print its path, size, sha256 and the
    /// `[plugins.NAME]` table that pins it.
    Build {
        /// The plugin project.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A component's manifest, kind, WIT version, imports and capabilities.
    Inspect(InspectArgs),
}

/// `weir plugin inspect` and `weir plugins inspect`.
#[derive(Debug, Args)]
struct InspectArgs {
    /// A component file, or a built-in's name.
    plugin: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the built-in plugins.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's manifest, kind, WIT version, imports, size and
    /// sha256 (the same as `weir plugin inspect`).
    Inspect(InspectArgs),
}

impl Command {
    /// Whether the command prints and ends, talking to no peer that may
    /// close on it ([`pipe`]).
    fn only_prints(&self) -> bool {
        match self {
            Command::Validate(_)
            | Command::Plugins { .. }
            | Command::Runs { .. }
            | Command::Workers { .. }
            | Command::Releases { .. }
            | Command::Verify { .. }
            | Command::Env { .. } => true,
            Command::Plugin { command } => matches!(command, PluginCommand::Inspect(_)),
            Command::Target { command } => matches!(command, TargetCommand::Status { .. }),
            _ => false,
        }
    }
}

/// Run the `weir` command with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints() {
        pipe::end_with_the_reader();
    }
    init_tracing(cli.verbose);
    init_miette();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let verbose = cli.verbose > 0;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run_cmd::run(args, verbose).await,
            Command::Validate(args) => validate_cmd::validate(args).await,
            Command::Plugins { command } => match command {
                PluginsCommand::List { json } => plugins_cmd::list(json).await,
                PluginsCommand::Inspect(a) => plugins_cmd::inspect(&a.plugin, a.json).await,
            },
            Command::Plugin { command } => match command {
                PluginCommand::New {
                    name,
                    kind,
                    lang,
                    dir,
                    sdk,
                } => plugin_cmd::new(name, kind, lang, dir, sdk),
                PluginCommand::Build { dir, json } => plugin_cmd::build(&dir, json).await,
                PluginCommand::Inspect(a) => plugins_cmd::inspect(&a.plugin, a.json).await,
            },
            Command::Runs { command } => runs_cmd::runs(command).await,
            Command::Replay(args) => replay_cmd::replay(args, verbose).await,
            Command::Dev(args) => dev_cmd::dev(args, verbose).await,
            Command::Serve(args) => serve_cmd::serve(args).await,
            Command::Worker(args) => worker_cmd::worker(args).await,
            Command::Workers { command } => worker_cmd::workers(command).await,
            Command::Target { command } => match command {
                TargetCommand::Up { metrics_port } => target_cmd::up(metrics_port).await,
                TargetCommand::Status { json } => target_cmd::status(json).await,
                TargetCommand::Down => target_cmd::down().await,
                TargetCommand::Serve { dir, metrics_port } => target_cmd::serve(dir, metrics_port).await,
            },
            Command::Releases { service, json } => target_cmd::releases(&service, json).await,
            Command::Rollback { service } => target_cmd::rollback(&service).await,
            Command::Env { command } => match command {
                EnvCommand::Show {
                    name,
                    pipeline,
                    json,
                    tenant,
                    tenants,
                } => env_cmd::show(&pipeline, &name, json, tenants.as_deref(), tenant.as_deref()),
                EnvCommand::Diff { a, b, pipeline } => env_cmd::diff(&pipeline, &a, &b),
            },
            Command::Keys { command } => match command {
                KeysCommand::Generate { out, force } => provenance_cmd::generate(out, force),
            },
            Command::Verify {
                artifact,
                provenance,
                key,
                json,
            } => provenance_cmd::verify(&artifact, &provenance, &key, json),
            Command::Advisories { command } => match command {
                AdvisoriesCommand::Fetch { from, dir } => advisories_fetch(&from, dir),
            },
            Command::Approve(a) => env_cmd::decide(&a.run, a.stage.as_deref(), true, a.who, None),
            Command::Reject { args, reason } => {
                env_cmd::decide(&args.run, args.stage.as_deref(), false, args.who, Some(&reason))
            }
        }
    })
}

fn advisories_fetch(from: &str, dir: Option<std::path::PathBuf>) -> ExitCode {
    let Some(dir) = dir.or_else(crate::advisories::database_dir) else {
        eprintln!("weir: {}", crate::advisories::FetchError::NoDataDir);
        return ExitCode::from(1);
    };
    eprintln!("fetching the RustSec advisory database from {from} …");
    match crate::advisories::fetch(from, &dir) {
        Ok(f) => {
            let short = f.commit.get(..12).unwrap_or(&f.commit);
            println!(
                "{} {} ({} advisories, commit {short} of {})",
                if f.updated { "updated" } else { "fetched" },
                f.dir.display(),
                f.advisories,
                f.date
            );
            if Some(&f.dir) == crate::advisories::database_dir().as_ref() {
                println!("scan stages that name no `advisory-db` check dependencies against it");
            } else {
                println!(
                    "use it with `with = {{ advisory-db = {:?} }}` and `allow = {{ read = [{:?}] }}`",
                    f.dir.display().to_string(),
                    f.dir.display().to_string()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir: cannot fetch the advisory database: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = if verbose >= 2 { "weir=debug" } else { "weir=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn init_miette() {
    let tty = std::io::stderr().is_terminal();
    let color = tty && std::env::var_os("NO_COLOR").is_none();
    // On a terminal, wrap to its width; elsewhere (CI logs, pipes) keep each
    // message on one line so it can be searched, and let the viewer wrap.
    let width = if tty {
        terminal_size::terminal_size().map_or(100, |(w, _)| w.0 as usize)
    } else {
        100_000
    };
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(true)
                .terminal_links(false)
                .force_graphical(true)
                .width(width)
                .build(),
        )
    }));
}

/// Print `err` with its source snippet and help to stderr.
pub(crate) fn render(err: impl miette::Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(err));
}

/// The tenant `name` of the tenants file `file` (or `$WEIR_TENANTS`); a
/// problem is rendered, and the command should exit 2.
pub(crate) fn load_tenant(
    file: Option<&std::path::Path>,
    name: Option<&str>,
) -> Option<crate::config::tenants::Tenant> {
    match crate::config::tenants::Tenants::load(file).and_then(|t| t.get(name)) {
        Ok(t) => Some(t),
        Err(e) => {
            render(e);
            None
        }
    }
}
