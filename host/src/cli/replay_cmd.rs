//! `weir replay RUN STAGE [--plugin PATH]`: re-run an analyzer offline on
//! what it received in a recorded run (its request, the answers its host
//! calls got, its input files) and show the recorded and the replayed
//! verdicts side by side.
//!
//! Exit codes: 0 the verdicts agree, 1 they differ, 2 the replay could not
//! be made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use super::ReplayArgs;
use crate::artifacts::ArtifactStore;
use crate::bindings::types::PluginKind;
use crate::blobs::{BLOB_DIR, Blobs};
use crate::capabilities::tape::Tape;
use crate::events::{Event, EventSink, FindingRecord};
use crate::execute::{RunInfo, Setup};
use crate::plan::PluginRef;
use crate::replay_record::ReplayRecord;
use crate::run::AttemptResult;
use crate::session::state::state_dir;
use crate::store::cache::Recording;
use crate::store::{Store, StoreError};

/// Why a replay could not be made, for people.
struct Refusal(String);

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal(e.to_string())
    }
}

pub async fn replay(args: ReplayArgs, verbose: bool) -> ExitCode {
    match replay_inner(&args, verbose).await {
        Ok(code) => code,
        Err(Refusal(why)) => {
            eprintln!("weir replay: {why}");
            ExitCode::from(2)
        }
    }
}

/// One side of the comparison.
struct Side {
    plugin: String,
    sha256: String,
    result: AttemptResult,
}

async fn replay_inner(args: &ReplayArgs, verbose: bool) -> Result<ExitCode, Refusal> {
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return Err(StoreError::NoSuchRun(args.run.clone()).into());
    }
    let store = Store::open(&state_dir())?;
    let run = store.resume_info(&args.run)?;
    let Some(recording) = store.recording(&args.run, &args.stage)? else {
        let recorded = store.recorded_stages(&args.run)?;
        return Err(Refusal(format!(
            "stage `{}` of run {} has no replay record; analyzer stages are recorded{}",
            args.stage,
            args.run,
            if recorded.is_empty() {
                " and this run has none".to_string()
            } else {
                format!(" (this run's: {})", recorded.join(", "))
            }
        )));
    };
    let text = run
        .pipeline_text
        .ok_or_else(|| Refusal(format!("run {} was recorded without its pipeline", args.run)))?;
    let path = PathBuf::from(&run.pipeline_file);
    let loaded = crate::config::parse(&path, text)
        .map_err(|e| Refusal(format!("the recorded pipeline no longer plans: {e}")))?;
    let plan = crate::plan::build(loaded, &crate::plugins::builtin::names())
        .map_err(|e| Refusal(format!("the recorded pipeline no longer plans: {e}")))?;
    let stage = plan
        .index_of(&args.stage)
        .map(|i| plan.stages[i].clone())
        .ok_or_else(|| Refusal(format!("the recorded pipeline has no stage `{}`", args.stage)))?;

    // The run's tenant, for the limits its plugins ran under.
    let tenant = crate::config::tenants::Tenants::load(args.tenants.as_deref())
        .and_then(|t| t.get(Some(&run.tenant)))
        .map_err(|e| {
            Refusal(format!(
                "run {} belongs to tenant `{}`: {e}",
                args.run, run.tenant
            ))
        })?;
    let loader = crate::session::prepare::loader_with(&crate::session::prepare::engine_for(&tenant))
        .map_err(|e| Refusal(e.to_string()))?;
    let plugin_ref = match &args.plugin {
        Some(p) => PluginRef::File {
            name: p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "replayed".into()),
            path: p.clone(),
            sha256: None,
        },
        None => stage.plugin.clone(),
    };
    let plugin = loader
        .load(&plugin_ref)
        .await
        .map_err(|e| Refusal(e.to_string()))?;
    if plugin.info.kind != PluginKind::Analyzer {
        return Err(Refusal(format!(
            "plugin `{}` is a {}; only analyzers can be replayed",
            plugin.info.name,
            crate::plugins::kind_name(plugin.info.kind)
        )));
    }

    // The recorded files, copied out of the blob store into a scratch
    // directory that is removed afterwards.
    let scratch =
        state_dir()
            .join("replay")
            .join(format!("{}-{}-{}", args.run, args.stage, std::process::id()));
    let scratch = std::path::absolute(&scratch).unwrap_or(scratch);
    let outcome = replay_in(
        &scratch,
        &recording,
        &stage,
        plugin.clone(),
        loader.engine().clone(),
        &tenant,
        &plan.name,
        verbose,
    )
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (result, used) = outcome?;

    let recorded = Side {
        plugin: recording.plugin.clone(),
        sha256: recording.plugin_sha256.clone(),
        result: ReplayRecord::read(&recording)
            .ok()
            .and_then(|r| r.result)
            .unwrap_or_default(),
    };
    let replayed = Side {
        plugin: format!("{} {}", plugin.info.manifest.name, plugin.info.manifest.version),
        sha256: plugin.info.sha256.clone(),
        result,
    };
    let same = verdict(&recorded.result) == verdict(&replayed.result);
    if args.json {
        let out = json!({
            "run": args.run,
            "stage": args.stage,
            "recorded": side_json(&recorded),
            "replayed": side_json(&replayed),
            "calls": {
                "answered": used.0.answered,
                "not_made": used.0.unused,
                "unanswered": used.0.unmatched,
            },
            "files": used.1,
            "same_verdict": same,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_side_by_side(args, &recorded, &replayed, &used.0, used.1, same);
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[allow(clippy::too_many_arguments)]
async fn replay_in(
    scratch: &Path,
    recording: &Recording,
    stage: &crate::plan::PlannedStage,
    plugin: Arc<crate::plugins::LoadedPlugin>,
    engine: crate::engine::WeirEngine,
    tenant: &crate::config::tenants::Tenant,
    pipeline: &str,
    verbose: bool,
) -> Result<(AttemptResult, (crate::capabilities::tape::ReplayUse, usize)), Refusal> {
    let record = ReplayRecord::read(recording).map_err(|e| Refusal(e.to_string()))?;
    let (request, calls, files) = (record.request, record.calls, record.files);
    let read_dirs = &request.read_dirs;

    let workspace = scratch.join("workspace");
    std::fs::create_dir_all(&workspace)
        .map_err(|e| Refusal(format!("cannot create {}: {e}", workspace.display())))?;
    // Granted directories outside the workspace are never copied into the
    // blob store (they may hold credentials): the replay reads them where
    // they are, read-only, after checking each recorded file is unchanged.
    let mapped: Vec<(PathBuf, String)> = read_dirs
        .iter()
        .filter_map(|d| crate::capabilities::wasi::plugin_readable(d, &workspace))
        .filter_map(|d| d.to_str().map(|g| (d.clone(), g.to_string())))
        .collect();
    let blobs = Blobs::new(state_dir().join(BLOB_DIR));
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    let mut links = Vec::new();
    for (name, f) in &files.files {
        if name.starts_with('/') {
            let unchanged = match &f.link {
                Some(to) => std::fs::read_link(name).is_ok_and(|t| t.to_string_lossy() == to.as_str()),
                None => {
                    crate::stage_cache::files::hash_file(Path::new(name)).is_ok_and(|d| d.sha256 == f.sha256)
                }
            };
            if !unchanged {
                changed.push(name.clone());
            }
            continue;
        }
        let rel = Path::new(name);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            missing.push(name.clone());
            continue;
        }
        let target = workspace.join(rel);
        match &f.link {
            // Made last, so no file is written through one.
            Some(to) => links.push((to.clone(), target)),
            None => {
                if let Some(parent) = target.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if blobs.restore(&f.sha256, &target).is_err() {
                    missing.push(name.clone());
                }
            }
        }
    }
    for (to, target) in links {
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::os::unix::fs::symlink(to, target);
    }
    let list = |v: &[String]| {
        format!(
            "{}{}",
            v.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if v.len() > 5 { ", …" } else { "" }
        )
    };
    if !missing.is_empty() {
        return Err(Refusal(format!(
            "{} of the {} recorded input files were not kept (over the limit `replay-bytes`, or changed while they were read): {}",
            missing.len(),
            files.files.len(),
            list(&missing)
        )));
    }
    if !changed.is_empty() {
        return Err(Refusal(format!(
            "{} file(s) of the granted directories changed since the run, and their contents are not recorded: {}",
            changed.len(),
            list(&changed)
        )));
    }

    let attempt = request.attempt(stage);
    let (sink, mut events) = EventSink::channel(&recording.run_id);
    let printer = tokio::spawn(async move {
        while let Some(record) = events.recv().await {
            if let Event::StageLog { level, message, .. } = &record.event
                && (verbose || *level >= crate::events::Level::Warn)
            {
                eprintln!("  │ {}", crate::events::printable(message));
            }
        }
    });
    let tape = Tape::replaying(calls);
    let info = RunInfo {
        run_id: recording.run_id.clone(),
        pipeline: pipeline.to_string(),
        tenant: tenant.name.to_string(),
        workspace: workspace.canonicalize().unwrap_or(workspace),
        limits: tenant.limits.stage,
        secrets: tenant.secrets.clone(),
        artifacts: ArtifactStore::new(scratch.join("artifacts")),
        history: None,
        // A replay never deploys; recorded metrics come from the tape.
        target: Default::default(),
        stopping: Default::default(),
    };
    let result = crate::execute::replay_attempt(
        engine,
        plugin,
        info,
        sink,
        attempt,
        Setup {
            read_dirs: Vec::new(),
            mapped_dirs: mapped,
            tape: tape.clone(),
            runtime_scope: None,
        },
    )
    .await;
    let _ = printer.await;
    Ok((result, (tape.replay_use(), files.files.len())))
}

/// The verdict a result stands for: the analysis's, or `error` when the
/// plugin did not return one.
fn verdict(r: &AttemptResult) -> String {
    match (&r.analysis, &r.failure) {
        (Some(a), _) => a.verdict.clone(),
        (None, Some(f)) => format!("error ({})", crate::report::style::failure_name(f.kind)),
        (None, None) => "none".into(),
    }
}

fn side_json(s: &Side) -> Value {
    json!({
        "plugin": s.plugin,
        "sha256": s.sha256,
        "verdict": verdict(&s.result),
        "analysis": s.result.analysis,
        "findings": s.result.findings,
        "summary": s.result.summary,
        "error": s.result.failure.as_ref().map(|f| f.message.clone()),
    })
}

fn finding_line(f: &FindingRecord) -> String {
    format!(
        "{:<8} {}  {}: {}",
        f.severity,
        crate::findings::place(f),
        f.rule,
        f.message.lines().next().unwrap_or("")
    )
}

fn print_side_by_side(
    args: &ReplayArgs,
    recorded: &Side,
    replayed: &Side,
    used: &crate::capabilities::tape::ReplayUse,
    files: usize,
    same: bool,
) {
    let style = crate::report::style::Style::new(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    println!(
        "{} stage `{}` of run {}: {} host call(s) answered from the recording, {} input file(s) restored",
        style.bold("Replay of"),
        args.stage,
        args.run,
        used.answered,
        files
    );
    let short = |s: &Side| format!("{} ({})", s.plugin, &s.sha256[..s.sha256.len().min(12)]);
    let counts = |s: &Side| {
        s.result
            .analysis
            .as_ref()
            .map(|a| a.counts.describe())
            .unwrap_or_else(|| "-".into())
    };
    let score = |s: &Side| {
        s.result
            .analysis
            .as_ref()
            .map(|a| format!("{}", a.score))
            .unwrap_or_else(|| "-".into())
    };
    let plugin_verdict = |s: &Side| {
        s.result
            .analysis
            .as_ref()
            .map(|a| a.plugin_verdict.clone())
            .unwrap_or_else(|| "-".into())
    };
    let summary = |s: &Side| match (&s.result.analysis, &s.result.failure) {
        (None, Some(f)) => f.message.clone(),
        _ => s.result.summary.clone().unwrap_or_default(),
    };
    let rows: Vec<(&str, String, String)> = vec![
        ("plugin", short(recorded), short(replayed)),
        ("verdict", verdict(&recorded.result), verdict(&replayed.result)),
        (
            "plugin verdict",
            plugin_verdict(recorded),
            plugin_verdict(replayed),
        ),
        ("score", score(recorded), score(replayed)),
        ("findings", counts(recorded), counts(replayed)),
        ("summary", summary(recorded), summary(replayed)),
    ];
    let left = rows
        .iter()
        .map(|r| r.1.chars().count().min(48))
        .max()
        .unwrap_or(8)
        .max(8);
    println!();
    println!(
        "  {:<15} {:<left$}  {}",
        "",
        style.bold("recorded"),
        style.bold("replayed")
    );
    for (name, a, b) in rows {
        let b = if a == b || name == "plugin" {
            b
        } else {
            style.warn(&b)
        };
        println!(
            "  {:<15} {:<left$}  {}",
            style.dim(name),
            crate::report::style::fit(&a, 48),
            b
        );
    }
    let key = |f: &FindingRecord| (f.rule.clone(), f.path.clone(), f.line, f.severity.clone());
    let before: Vec<_> = recorded.result.findings.iter().map(key).collect();
    let after: Vec<_> = replayed.result.findings.iter().map(key).collect();
    let added: Vec<&FindingRecord> = replayed
        .result
        .findings
        .iter()
        .filter(|f| !before.contains(&key(f)))
        .collect();
    let gone: Vec<&FindingRecord> = recorded
        .result
        .findings
        .iter()
        .filter(|f| !after.contains(&key(f)))
        .collect();
    for (title, list) in [("Only in the replay", &added), ("Only in the recording", &gone)] {
        if list.is_empty() {
            continue;
        }
        println!("\n{}", style.bold(title));
        for f in list.iter().take(20) {
            println!("  {}", crate::report::style::fit(&finding_line(f), 140));
        }
        if list.len() > 20 {
            println!("  … and {} more (--json has them all)", list.len() - 20);
        }
    }
    if used.unused > 0 || !used.unmatched.is_empty() {
        println!(
            "\n{} the replayed plugin did not make {} recorded call(s) and made {} call(s) the recording has no answer for{}",
            style.warn("note:"),
            used.unused,
            used.unmatched.len(),
            used.unmatched
                .first()
                .map(|c| format!(" (first: {c})"))
                .unwrap_or_default()
        );
    }
    println!(
        "\n{}",
        if same {
            style.ok("same verdict")
        } else {
            style.bad("the verdicts differ")
        }
    );
}
