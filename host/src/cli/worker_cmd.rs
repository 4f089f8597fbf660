//! `weir worker` (take runs from a `weir serve --nats`) and `weir workers
//! list` (who is out there).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::fleet::NatsOptions;

/// `weir worker`'s arguments.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Start NATS with JetStream, a server that hands runs to workers, and a worker
(docs/workers.md has the whole story):

  nats-server -js &
  weir serve --nats nats://127.0.0.1:4222 &
  weir worker --nats nats://127.0.0.1:4222 --labels podman --concurrency 4

SIGTERM drains the worker: it finishes the runs it has and takes no new
ones; a second SIGTERM cancels them.")]
pub struct WorkerArgs {
    #[command(flatten)]
    nats: NatsOptions,
    /// Labels this worker has; a pipeline's `runs-on` names the ones it
    /// needs.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    labels: Vec<String>,
    /// Most runs at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    concurrency: usize,
    /// Only runs of these tenants (default: every tenant's).
    #[arg(long = "tenant", value_delimiter = ',', value_name = "NAME")]
    tenants: Vec<String>,
    /// Where its checkouts, workspaces and scratch history live.
    #[arg(long, default_value = ".weir-worker", value_name = "DIR")]
    dir: PathBuf,
    /// Its id in `weir workers list` (default: host name and process id).
    #[arg(long, value_name = "ID")]
    name: Option<String>,
}

/// `weir workers …`.
#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// The workers NATS has heard from: labels, version, runs, last
    /// heartbeat.
    List {
        #[command(flatten)]
        nats: NatsOptions,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `weir worker`.
pub async fn worker(args: WorkerArgs) -> ExitCode {
    if args.nats.url().is_none() {
        eprintln!("weir worker: --nats URL is needed (the NATS JetStream `weir serve --nats` uses)");
        return ExitCode::from(2);
    }
    let options = crate::worker::WorkerOptions {
        nats: args.nats,
        labels: args.labels,
        concurrency: args.concurrency.max(1),
        tenants: args.tenants,
        dir: args.dir,
        name: args.name,
    };
    match crate::worker::work(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(2)
        }
    }
}

/// `weir workers …`.
pub async fn workers(command: WorkersCommand) -> ExitCode {
    let WorkersCommand::List { nats, json } = command;
    if nats.url().is_none() {
        eprintln!("weir workers list: --nats URL is needed");
        return ExitCode::from(2);
    }
    let fleet = match connect(&nats).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return ExitCode::from(2);
        }
    };
    let beats = match crate::serve::remote::beats(&fleet).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("weir workers list: cannot read the heartbeats: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&beats).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if beats.is_empty() {
        println!("no workers have sent a heartbeat in the last day");
        return ExitCode::SUCCESS;
    }
    let now = crate::events::now_ms();
    let rows: Vec<[String; 7]> = beats
        .iter()
        .map(|b| {
            let age = now.saturating_sub(b.time_ms) / 1000;
            let state = if b.state != "stopped" && age > 30 {
                "silent".to_string()
            } else {
                b.state.clone()
            };
            [
                b.id.clone(),
                state,
                if b.labels.is_empty() {
                    "-".into()
                } else {
                    b.labels.join(",")
                },
                b.version.clone(),
                format!("{}/{}", b.running.len(), b.concurrency),
                b.finished.to_string(),
                format!("{age}s ago"),
            ]
        })
        .collect();
    let head = [
        "WORKER",
        "STATE",
        "LABELS",
        "VERSION",
        "RUNNING",
        "FINISHED",
        "HEARTBEAT",
    ];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(&head.map(String::from)));
    for row in &rows {
        println!("{}", line(row));
    }
    ExitCode::SUCCESS
}

async fn connect(nats: &NatsOptions) -> Result<crate::fleet::Fleet, crate::fleet::NatsError> {
    let url = nats.url().unwrap_or_default().to_string();
    let client = nats.connect("weir workers").await?;
    crate::fleet::ensure(client, &url).await
}
