//! `weir target up|status|down|serve`, `weir releases SERVICE` and
//! `weir rollback SERVICE`: the local deployment target by hand.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::style::{self, Style};
use crate::session::state::target_dir;
use crate::target::api::ServiceStatus;
use crate::target::client::{ClientError, TargetClient, ensure_up};

fn fail(e: ClientError) -> ExitCode {
    eprintln!("weir: {e}");
    match e {
        ClientError::NotRunning { .. } => ExitCode::from(2),
        ClientError::Refused { kind, .. } if kind != "failed" => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// `weir target up`.
pub async fn up(metrics_port: Option<u16>) -> ExitCode {
    match ensure_up(&target_dir(), metrics_port).await {
        Ok((client, started)) => {
            let Ok(status) = client.status().await else {
                return ExitCode::from(1);
            };
            println!(
                "target {} (pid {}); metrics at {}",
                if started { "started" } else { "already running" },
                status.pid,
                status.metrics_url
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `weir target down`.
pub async fn down() -> ExitCode {
    let client = TargetClient::new(&target_dir());
    match client.shutdown().await {
        Ok(()) => {
            // Wait for the socket to go: the target drains its instances.
            for _ in 0..600 {
                if !client.dir().join(crate::target::daemon::SOCKET).exists() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            println!("target stopped; its state is kept in {}", client.dir().display());
            ExitCode::SUCCESS
        }
        Err(ClientError::NotRunning { .. }) => {
            println!("no target is running");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn print_service(style: &Style, s: &ServiceStatus) {
    let split = s
        .weights
        .iter()
        .map(|(v, w)| format!("{v} {w}%"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{}  tenant {}  http://{}  stable {}  traffic {}",
        style.bold(&s.service),
        if s.tenant.is_empty() {
            "default"
        } else {
            s.tenant.as_str()
        },
        s.address,
        s.stable.as_deref().unwrap_or("none"),
        if split.is_empty() {
            "none".to_string()
        } else {
            split
        }
    );
    for r in &s.releases {
        if let Some(c) = r
            .launch
            .container
            .as_ref()
            .filter(|_| s.instances.iter().any(|i| i.version == r.version))
        {
            println!(
                "  {:<28} {}",
                format!("{} containers", r.version),
                style.dim(&c.image)
            );
        }
    }
    for i in &s.instances {
        let state = if i.ready {
            style.ok("ready")
        } else {
            style.warn("not ready")
        };
        println!(
            "  {:<28} {:<14} port {:<5} {state}{}",
            i.id,
            i.version,
            i.port,
            if i.restarts > 0 {
                format!(", restarted {}×", i.restarts)
            } else {
                String::new()
            }
        );
    }
}

/// `weir target status`.
pub async fn status(json: bool) -> ExitCode {
    let client = TargetClient::new(&target_dir());
    match client.status().await {
        Ok(status) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let style = Style::new(std::io::stdout().is_terminal());
            println!(
                "target pid {} (weir {}), up since {}; metrics at {}",
                status.pid,
                status.weir,
                style::timestamp(status.started_ms as i64),
                status.metrics_url
            );
            if status.services.is_empty() {
                println!("no services yet (a pipeline's deploy stage adds them)");
            }
            for s in &status.services {
                print_service(&style, s);
            }
            ExitCode::SUCCESS
        }
        Err(ClientError::NotRunning { .. }) if !json => {
            println!("no target is running (`weir target up` starts one; a deploy stage starts it too)");
            ExitCode::from(3)
        }
        Err(e) => fail(e),
    }
}

/// `weir releases SERVICE`.
pub async fn releases(service: &str, json: bool) -> ExitCode {
    let client = TargetClient::new(&target_dir());
    let s = match client.service(service).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s.releases).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let style = Style::new(std::io::stdout().is_terminal());
    println!(
        "{}",
        style.bold(&format!(
            "{:<16}  {:<11}  {:<23}  {:<22}  {:>8}  NOTE",
            "VERSION", "STATE", "CHANGED", "RUN", "REPLICAS"
        ))
    );
    for r in s.releases.iter().rev() {
        let state = format!("{:<11}", r.state.as_str());
        let state = match r.state {
            crate::target::state::ReleaseState::Stable => style.ok(&state),
            crate::target::state::ReleaseState::RolledBack => style.bad(&state),
            crate::target::state::ReleaseState::Candidate => style.busy(&state),
            crate::target::state::ReleaseState::Superseded => style.dim(&state),
        };
        println!(
            "{:<16}  {state}  {:<23}  {:<22}  {:>8}  {}",
            r.version,
            style::timestamp(r.changed_ms as i64),
            r.run.as_deref().unwrap_or("-"),
            r.replicas,
            r.reason.as_deref().unwrap_or("")
        );
        // A container release is its image: what a rollback runs again.
        if let Some(c) = &r.launch.container {
            println!("{:<16}  {}", "", style.dim(&format!("image {}", c.image)));
        }
    }
    ExitCode::SUCCESS
}

/// `weir rollback SERVICE`.
pub async fn rollback(service: &str) -> ExitCode {
    let client = TargetClient::new(&target_dir());
    let before = match client.service(service).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match client.rollback(service).await {
        Ok(after) => {
            println!(
                "{service}: rolled back from {} to {}; all traffic goes to {}",
                before.stable.as_deref().unwrap_or("nothing"),
                after.stable.as_deref().unwrap_or("nothing"),
                after.stable.as_deref().unwrap_or("nothing"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `weir target serve` (what `up` starts in the background).
pub async fn serve(dir: Option<PathBuf>, metrics_port: Option<u16>) -> ExitCode {
    let dir = dir.unwrap_or_else(target_dir);
    match crate::target::daemon::serve(&dir, metrics_port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir target: {e}");
            ExitCode::from(1)
        }
    }
}
