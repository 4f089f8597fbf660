//! `weir dev DIR --pipeline FILE --stage NAME`: a plugin author's loop.
//! Build the plugin project in DIR, then run just stage NAME of the
//! pipeline with it, in the workspace of the pipeline's last run and with
//! its upstream stages' recorded results; then watch DIR and do it again
//! on every change. The first time, with no earlier run, the whole
//! pipeline runs once.
//!
//! Each iteration is a recorded run like any other (`weir runs list`
//! shows them); the plugin's `[plugins]` pin is not checked, since the
//! component changes with every edit, and that is said once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::RunArgs;
use super::run_cmd;
use crate::author::compile;
use crate::plan::PluginRef;
use crate::session::launch::FromRun;
use crate::session::state::state_dir;
use crate::store::Store;
use crate::store::queries::RunFilter;

/// `weir dev`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The plugin project (Rust, Python or JavaScript).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The pipeline that uses it (default: DIR/pipeline.toml).
    #[arg(long, short)]
    pub pipeline: Option<PathBuf>,
    /// The stage to run (default: the one stage that uses the plugin).
    #[arg(long, short)]
    pub stage: Option<String>,
    /// Build and run once, then exit with the run's code.
    #[arg(long)]
    pub once: bool,
    /// The workspace (default: the last run's).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Print one JSON event per line.
    #[arg(long)]
    pub json: bool,
    /// The tenant to run as.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The tenants file (default: $WEIR_TENANTS).
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
}

/// How often DIR is checked for changes.
const POLL: Duration = Duration::from_millis(300);

pub async fn dev(args: DevArgs, verbose: bool) -> ExitCode {
    let pipeline = args.pipeline.clone().unwrap_or_else(|| {
        if args.dir == Path::new(".") {
            PathBuf::from("pipeline.toml")
        } else {
            args.dir.join("pipeline.toml")
        }
    });
    let mut said_pin = false;
    // Listened to from the start: a Ctrl-C (or SIGTERM) while a round
    // runs cancels that run (its own handler) and, here, ends the loop
    // once it has.
    use tokio::signal::unix::{SignalKind, signal};
    let mut stops = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(int), Ok(term)) => Some((int, term)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot listen for Ctrl-C ({e}); stop weir dev by killing it");
            None
        }
    };
    loop {
        // The sources as they are built: an edit made while the build or
        // the run is going on starts the next round.
        let seen = fingerprint(&args.dir);
        let code = iteration(&args, &pipeline, &mut said_pin, verbose).await;
        if args.once {
            return code;
        }
        eprintln!(
            "\nweir dev: watching {} for changes (Ctrl-C to stop)",
            args.dir.display()
        );
        let stop = async {
            match stops.as_mut() {
                Some((int, term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = changed(&args.dir, seen) => {}
            () = stop => return ExitCode::from(130),
        }
    }
}

/// Build, then run the stage: the run's exit code, or 2 when it could not
/// be made.
async fn iteration(args: &DevArgs, pipeline: &Path, said_pin: &mut bool, verbose: bool) -> ExitCode {
    let dir = args.dir.clone();
    let built = match tokio::task::spawn_blocking(move || compile::build(&dir)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("weir dev: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("weir dev: the build thread failed: {e}");
            return ExitCode::from(70);
        }
    };
    eprintln!(
        "weir dev: built {} ({}, sha256 {})",
        built.name,
        crate::engine::limits::human_bytes(built.size as usize),
        &built.sha256[..12]
    );
    let (pipeline_name, stage, pinned) = match target(pipeline, args.stage.as_deref(), &built.name) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("weir dev: {why}");
            return ExitCode::from(2);
        }
    };
    if pinned && !*said_pin {
        eprintln!(
            "weir dev: {} pins `{}` by sha256; while developing, the component just built is used instead (paste the new pin from `weir plugin build` when done)",
            pipeline.display(),
            built.name
        );
        *said_pin = true;
    }
    let from = last_run(
        &pipeline_name,
        pipeline,
        args.tenant.as_deref().unwrap_or("default"),
        args.workspace.as_deref(),
    );
    match &from {
        Some(run) => eprintln!(
            "weir dev: running `{stage}` on run {}'s workspace and upstream results",
            run.id
        ),
        None => eprintln!(
            "weir dev: no earlier run of `{pipeline_name}` here: running the whole pipeline once; after that, only `{stage}` runs"
        ),
    }
    let focus = crate::session::launch::Focus {
        stage,
        plugin: built.name.clone(),
        component: built.path.clone(),
        from,
    };
    let run_args = RunArgs {
        pipeline: Some(pipeline.to_path_buf()),
        resume: None,
        explain_cache: false,
        json: args.json,
        jobs: None,
        workspace: args.workspace.clone(),
        branch: None,
        environment: None,
        tag: Vec::new(),
        fail_fast: false,
        tenant: args.tenant.clone(),
        tenants: args.tenants.clone(),
    };
    run_cmd::run_with(run_args, verbose, Some(&focus)).await
}

/// The pipeline's name, the stage to run and whether the plugin is
/// pinned; or why the pipeline does not fit.
fn target(pipeline: &Path, stage: Option<&str>, plugin: &str) -> Result<(String, String, bool), String> {
    let invalid = || format!("{} has the problems above", pipeline.display());
    let loaded = crate::config::load(pipeline).map_err(|e| {
        super::render(e);
        invalid()
    })?;
    let plan = crate::plan::build(loaded, &crate::plugins::builtin::names()).map_err(|e| {
        super::render(e);
        invalid()
    })?;
    let uses = |r: &PluginRef| matches!(r, PluginRef::File { name, .. } if name == plugin);
    let using: Vec<&str> = plan
        .stages
        .iter()
        .filter(|s| {
            uses(&s.plugin)
                || s.rollout
                    .as_ref()
                    .is_some_and(|r| uses(&r.strategy.plugin) || r.checks.iter().any(|c| uses(&c.plugin)))
        })
        .map(|s| s.name.as_str())
        .collect();
    let pins = |r: &PluginRef| matches!(r, PluginRef::File { name, sha256: Some(_), .. } if name == plugin);
    let pinned = plan.stages.iter().any(|s| {
        pins(&s.plugin)
            || s.rollout
                .as_ref()
                .is_some_and(|r| pins(&r.strategy.plugin) || r.checks.iter().any(|c| pins(&c.plugin)))
    });
    let chosen = match stage {
        Some(name) => {
            let Some(s) = plan.stages.iter().find(|s| s.name == name) else {
                let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "{} has no stage `{name}` (its stages: {})",
                    pipeline.display(),
                    names.join(", ")
                ));
            };
            if !using.contains(&name) {
                return Err(format!(
                    "stage `{name}` of {} does not use `{plugin}`, the plugin the project builds; stages that do: {}",
                    pipeline.display(),
                    if using.is_empty() {
                        "none".to_string()
                    } else {
                        using.join(", ")
                    }
                ));
            }
            s.name.to_string()
        }
        None => match using.as_slice() {
            [one] => one.to_string(),
            [] => {
                return Err(format!(
                    "no stage of {} uses `{plugin}`, the plugin the project builds; add `[plugins.{plugin}]` and a stage with `uses = \"{plugin}\"`",
                    pipeline.display()
                ));
            }
            many => {
                return Err(format!(
                    "stages {} all use `{plugin}`; pick one with --stage",
                    many.join(", ")
                ));
            }
        },
    };
    Ok((plan.name, chosen, pinned))
}

/// The newest finished run recorded here of pipeline `name` from the file
/// `file`, by `tenant`, whose workspace is still there (and is
/// `workspace`, when one is given): another file with the same name, or
/// another tenant's run, is not this author's last run.
fn last_run(name: &str, file: &Path, tenant: &str, workspace: Option<&Path>) -> Option<FromRun> {
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return None;
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let file = absolute(file);
    let workspace = workspace.map(absolute);
    let store = Store::open(&state_dir()).ok()?;
    let runs = store
        .list_runs(&RunFilter {
            pipeline: Some(name.to_string()),
            status: None,
            tenant: Some(tenant.to_string()),
            limit: Some(20),
            ..RunFilter::default()
        })
        .ok()?;
    runs.into_iter().filter(|r| r.status != "running").find_map(|r| {
        let info = store.resume_info(&r.id).ok()?;
        let used = PathBuf::from(&info.workspace);
        let same_file = Path::new(&info.pipeline_file) == file;
        let same_workspace = workspace.as_ref().is_none_or(|w| absolute(&used) == *w);
        (same_file && same_workspace && used.is_dir()).then(|| FromRun {
            id: r.id.clone(),
            workspace: used,
            succeeded: info.succeeded,
        })
    })
}

/// Folders whose changes are the build's own, not the author's.
const IGNORED: [&str; 10] = [
    "target",
    "build",
    "node_modules",
    ".weir",
    ".git",
    "__pycache__",
    "dist",
    ".venv",
    "venv",
    ".tox",
];

/// Whether `path` is a plugin's source: code, WIT and the manifests
/// (not the reports a sample pipeline writes beside them).
fn is_source(path: &Path) -> bool {
    const CODE: [&str; 8] = ["rs", "py", "js", "mjs", "cjs", "ts", "wit", "toml"];
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // (Cargo.lock is cargo's to write, during the build.)
    name == "package.json"
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CODE.contains(&e))
}

/// Size and modification time of every source file under `dir`.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                let name = entry.file_name();
                if !IGNORED.iter().any(|i| name == *i) {
                    pending.push(path);
                }
            } else if meta.is_file() && is_source(&path) {
                files.insert(path, (meta.len(), meta.modified().ok()));
            }
        }
    }
    files
}

/// Returns once a source file under `dir` differs from `seen`.
async fn changed(dir: &Path, seen: BTreeMap<PathBuf, (u64, Option<SystemTime>)>) {
    loop {
        tokio::time::sleep(POLL).await;
        let now = fingerprint(dir);
        if now != seen {
            let what = now
                .iter()
                .find(|(p, f)| seen.get(*p) != Some(f))
                .map(|(p, _)| p.clone())
                .or_else(|| seen.keys().find(|p| !now.contains_key(*p)).cloned());
            if let Some(path) = what {
                eprintln!("\nweir dev: {} changed", path.display());
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_outside_build_folders_are_watched() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app.py"), "x = 1\n").expect("write");
        std::fs::create_dir_all(dir.path().join("build")).expect("mkdir");
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("build/app.py"), "generated").expect("write");
        std::fs::write(dir.path().join("report.txt"), "a sample's output").expect("write");
        assert_eq!(fingerprint(dir.path()), before);
        std::fs::write(dir.path().join("app.py"), "x = 22\n").expect("write");
        assert_ne!(fingerprint(dir.path()), before);
    }
}
