//! `weir runs list|show|logs|prune`: the run history, for people and
//! (`--json`) for machines.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::RunsCommand;
use crate::config::duration::parse_duration;
use crate::report::style::{self, Style};
use crate::session::state::{run_dir, state_dir};
use crate::store::queries::RunFilter;
use crate::store::{Store, StoreError};

pub async fn runs(command: RunsCommand) -> ExitCode {
    // Reading the history never creates one: a directory where weir never
    // ran has no runs, and gets no `.weir/` either.
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return match command {
            RunsCommand::List { json: true, .. } => {
                println!("[]");
                ExitCode::SUCCESS
            }
            RunsCommand::List { .. } => {
                println!(
                    "no runs recorded in {}/ yet (`weir run` records every run here)",
                    state_dir().display()
                );
                ExitCode::SUCCESS
            }
            RunsCommand::Prune { .. } => {
                println!("nothing to prune");
                ExitCode::SUCCESS
            }
            RunsCommand::Show { id, .. } | RunsCommand::Logs { id, .. } | RunsCommand::Report { id, .. } => {
                fail(StoreError::NoSuchRun(id))
            }
        };
    }
    let store = match Store::open(&state_dir()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let style = Style::new(std::io::stdout().is_terminal());
    match command {
        RunsCommand::List {
            pipeline,
            status,
            tenant,
            limit,
            json,
        } => {
            let filter = RunFilter {
                pipeline,
                status,
                tenant,
                limit: Some(limit),
                ..RunFilter::default()
            };
            let runs = match store.list_runs(&filter) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            if runs.is_empty() {
                println!(
                    "no runs recorded in {}/ yet (`weir run` records every run here)",
                    state_dir().display()
                );
                return ExitCode::SUCCESS;
            }
            let width = runs
                .iter()
                .map(|r| r.pipeline.chars().count())
                .max()
                .unwrap_or(8)
                .max(8);
            println!(
                "{}",
                style.bold(&format!(
                    "{:<22}  {:<width$}  {:<11}  {:<23}  {:>8}  TENANT",
                    "RUN", "PIPELINE", "STATUS", "STARTED", "TOOK"
                ))
            );
            for r in runs {
                let status = format!("{:<11}", r.status);
                let status = match r.status.as_str() {
                    "succeeded" => style.ok(&status),
                    "failed" => style.bad(&status),
                    _ => style.warn(&status),
                };
                println!(
                    "{:<22}  {:<width$}  {status}  {:<23}  {:>8}  {}",
                    r.id,
                    style::fit(&r.pipeline, 60),
                    style::timestamp(r.started_ms),
                    r.duration_ms
                        .map(|d| style::duration(d as u64))
                        .unwrap_or_else(|| "-".into()),
                    style::fit(&r.tenant, 40),
                );
            }
            ExitCode::SUCCESS
        }
        RunsCommand::Show { id, json } => {
            let detail = match store.run_detail(&id) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&detail).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let r = &detail.run;
            println!(
                "{} {}  pipeline `{}` ({}), tenant `{}`",
                style.bold("Run"),
                r.id,
                r.pipeline,
                detail.pipeline_file,
                r.tenant
            );
            println!(
                "{} {}, started {}{}",
                style.dim("status"),
                r.status,
                style::timestamp(r.started_ms),
                r.duration_ms
                    .map(|d| format!(", took {}", style::duration(d as u64)))
                    .unwrap_or_default()
            );
            println!("{} {}", style.dim("workspace"), detail.workspace);
            for a in store.approvals(&id).unwrap_or_default() {
                println!(
                    "{} stage `{}` to `{}`: {}{}{}",
                    style.dim("approval"),
                    a.stage,
                    a.environment,
                    a.decision.replace('_', " "),
                    a.decided_by.map(|b| format!(" by {b}")).unwrap_or_default(),
                    a.reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
            }
            let width = detail
                .stages
                .iter()
                .map(|s| s.name.chars().count())
                .max()
                .unwrap_or(4);
            println!();
            for s in &detail.stages {
                let note = s.error.as_deref().or(s.summary.as_deref()).unwrap_or("");
                let status = match (s.failure.as_deref(), s.reused.as_ref().map(|r| &r["from"])) {
                    (Some(f), _) => format!("failed ({f})"),
                    (None, Some(from)) if from == "cache" => "cached".to_string(),
                    (None, Some(from)) if from == "resume" => "reused".to_string(),
                    _ => s.status.clone(),
                };
                let note = match s.reused.as_ref() {
                    Some(r) if r["from"] == "cache" => {
                        format!("from run {} — {note}", r["run"].as_str().unwrap_or("?"))
                    }
                    Some(_) => format!("before the resume — {note}"),
                    None => note.to_string(),
                };
                println!(
                    "  {:<width$}  {:<11}  {:>7}  {}",
                    s.name,
                    status,
                    s.duration_ms
                        .map(|d| style::duration(d as u64))
                        .unwrap_or_default(),
                    style.dim(&style::fit(&note, 90))
                );
                if let Some(outputs) = s.outputs.as_object().filter(|o| !o.is_empty()) {
                    let shown: Vec<String> = outputs
                        .iter()
                        .take(8)
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect();
                    println!(
                        "  {:<width$}  {}",
                        "",
                        style.dim(&style::fit(&shown.join("  "), 110))
                    );
                }
                if let Some(t) = &s.tests {
                    println!(
                        "  {:<width$}  tests: {} passed, {} failed, {} skipped, {} errored",
                        "", t["passed"], t["failed"], t["skipped"], t["errored"]
                    );
                }
                for step in &s.rollout {
                    let split = crate::report::deployment::traffic_split(step)
                        .map(|w| format!("  ({w})"))
                        .unwrap_or_default();
                    println!(
                        "  {:<width$}    [{}] {}{split}",
                        "",
                        step["step"],
                        style::fit(step["message"].as_str().unwrap_or(""), 100)
                    );
                }
                if let Some(a) = &s.analysis {
                    println!(
                        "  {:<width$}  verdict {}, score {}",
                        "",
                        a["verdict"].as_str().unwrap_or("?"),
                        a["score"]
                    );
                }
                for f in s.findings.iter().take(5) {
                    let place = match (f["path"].as_str(), f["line"].as_i64()) {
                        (Some(p), Some(l)) => format!("{p}:{l}"),
                        (Some(p), None) => p.to_string(),
                        _ => "-".into(),
                    };
                    println!(
                        "  {:<width$}    {:<8} {}  {}",
                        "",
                        f["severity"].as_str().unwrap_or(""),
                        place,
                        style::fit(f["message"].as_str().unwrap_or(""), 100)
                    );
                }
                if s.findings.len() > 5 {
                    println!(
                        "  {:<width$}    … and {} more (--json has them all)",
                        "",
                        s.findings.len() - 5
                    );
                }
            }
            ExitCode::SUCCESS
        }
        RunsCommand::Report { id, out } => report(&store, &id, out),
        RunsCommand::Logs {
            id,
            stage,
            follow,
            json,
        } => logs(store, &id, stage.as_deref(), follow, json, &style).await,
        RunsCommand::Prune {
            keep,
            older_than,
            dry_run,
        } => prune(store, keep, older_than.as_deref(), dry_run),
    }
}

async fn logs(
    store: Store,
    id: &str,
    stage: Option<&str>,
    follow: bool,
    json: bool,
    style: &Style,
) -> ExitCode {
    let mut after = 0;
    if let Err(e) = store.status(id) {
        return fail(e);
    }
    loop {
        let lines = match store.logs(id, stage, after) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        for l in &lines {
            let line = crate::events::printable(&l.message);
            if json {
                // One object per line, so `--follow --json` streams.
                println!("{}", serde_json::to_string(l).unwrap_or_default());
            } else if stage.is_some() {
                println!("{line}");
            } else {
                println!("{} {} {line}", style.dim(&l.stage), style.dim("│"));
            }
            after = l.seq;
        }
        if !follow {
            return ExitCode::SUCCESS;
        }
        match store.status(id) {
            Ok(s) if s == "running" || s == "queued" => {}
            Ok(_) => {
                // One more read: lines written just before the run ended.
                if let Ok(rest) = store.logs(id, stage, after) {
                    for l in rest {
                        if json {
                            println!("{}", serde_json::to_string(&l).unwrap_or_default());
                        } else {
                            println!("{}", crate::events::printable(&l.message));
                        }
                    }
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => return fail(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn prune(mut store: Store, keep: Option<u32>, older_than: Option<&str>, dry_run: bool) -> ExitCode {
    if keep.is_none() && older_than.is_none() {
        eprintln!(
            "weir runs prune: say which runs to remove: --keep N (the newest N stay) or --older-than 30d"
        );
        return ExitCode::from(2);
    }
    let before = match older_than.map(parse_duration).transpose() {
        Ok(d) => d.map(|d| crate::events::now_ms() as i64 - d.as_millis() as i64),
        Err(e) => {
            eprintln!("weir runs prune: --older-than: {e}");
            return ExitCode::from(2);
        }
    };
    let ids = match store.prunable(keep, before) {
        Ok(ids) => ids,
        Err(e) => return fail(e),
    };
    for id in &ids {
        if dry_run {
            println!("would remove {id}");
            continue;
        }
        // The files first, then the record: a crash in between leaves a
        // record whose files are gone, which `prune` removes next time,
        // never files no record points to.
        let dir = run_dir(id);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            eprintln!("weir runs prune: cannot remove {}: {e}", dir.display());
            return ExitCode::from(1);
        }
        if let Err(e) = store.delete_run(id) {
            return fail(e);
        }
        println!("removed {id}");
    }
    if ids.is_empty() {
        println!("nothing to prune");
        return ExitCode::SUCCESS;
    }
    if dry_run {
        return ExitCode::SUCCESS;
    }
    // Input files kept for replay that no remaining run refers to.
    let keep = match store.referenced_blobs() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let blobs = crate::blobs::Blobs::new(state_dir().join(crate::blobs::BLOB_DIR));
    match blobs.collect_garbage(&keep) {
        Ok((0, _)) => {}
        Ok((n, bytes)) => println!(
            "removed {n} recorded input file(s) no run refers to any more ({})",
            crate::engine::limits::human_bytes(bytes as usize)
        ),
        Err(e) => {
            eprintln!(
                "weir runs prune: cannot clean {}: {e}",
                state_dir().join(crate::blobs::BLOB_DIR).display()
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// `weir runs report ID`: write `report.json` and `report.md`.
fn report(store: &Store, id: &str, out: Option<std::path::PathBuf>) -> ExitCode {
    use crate::report::deployment;
    let detail = match store.run_detail(id) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let options = store
        .resume_info(id)
        .ok()
        .and_then(|r| r.options)
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(serde_json::Value::Null);
    let failed_tests = detail
        .stages
        .iter()
        .filter(|s| s.tests.is_some())
        .map(|s| {
            (
                s.name.clone(),
                store.failed_tests(id, &s.name).unwrap_or_default(),
            )
        })
        .collect();
    let approvals = store.approvals(id).unwrap_or_default();
    let input = deployment::ReportInput {
        detail: &detail,
        options,
        failed_tests,
        approvals: &approvals,
        deliveries: store.deliveries(id).unwrap_or_default(),
    };
    let json = deployment::json(&input);
    let markdown = deployment::markdown(&json);
    let dir = out.unwrap_or_else(|| run_dir(id).join("reports"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::write(
                dir.join("report.json"),
                serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
            )
        })
        .and_then(|()| std::fs::write(dir.join("report.md"), &markdown));
    if let Err(e) = written {
        eprintln!("weir: cannot write the report in {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    println!("{}", dir.join("report.md").display());
    println!("{}", dir.join("report.json").display());
    ExitCode::SUCCESS
}

fn fail(e: StoreError) -> ExitCode {
    eprintln!("weir: {e}");
    match e {
        StoreError::NoSuchRun(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}
