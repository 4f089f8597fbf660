//! `weir replay RUN STAGE [--plugin PATH]`: re-run an analyzer offline on
//! what it received in a recorded run (its request, the answers its host
//! calls got, its input files) and show the recorded and the replayed
//! verdicts side by side.
//!
//! Exit codes: 0 the verdicts agree, 1 they differ, 2 the replay could not
//! be made.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::ReplayArgs;
use crate::events::{Event, FindingRecord};
use crate::run::AttemptResult;
use crate::session::replay::{ReplayRequest, Replayed, Side};

/// Why a replay could not be made, for people.
struct Refusal(String);

pub async fn replay(args: ReplayArgs, verbose: bool) -> ExitCode {
    match replay_inner(&args, verbose).await {
        Ok(code) => code,
        Err(Refusal(why)) => {
            eprintln!("weir replay: {why}");
            ExitCode::from(2)
        }
    }
}

async fn replay_inner(args: &ReplayArgs, verbose: bool) -> Result<ExitCode, Refusal> {
    let request = ReplayRequest {
        run: args.run.clone(),
        stage: args.stage.clone(),
        plugin: args.plugin.clone(),
        tenants: args.tenants.clone(),
    };
    let (observer, mut events) = tokio::sync::mpsc::unbounded_channel::<crate::events::EventRecord>();
    let printer = tokio::spawn(async move {
        while let Some(record) = events.recv().await {
            if let Event::StageLog { level, message, .. } = &record.event
                && (verbose || *level >= crate::events::Level::Warn)
            {
                eprintln!("  │ {}", crate::events::printable(message));
            }
        }
    });
    let replayed = crate::session::replay::replay(&request, observer).await;
    let _ = printer.await;
    let Replayed {
        recorded,
        replayed,
        calls,
        files,
    } = replayed.map_err(|e| Refusal(e.to_string()))?;
    let same = verdict(&recorded.result) == verdict(&replayed.result);
    if args.json {
        let out = json!({
            "run": args.run,
            "stage": args.stage,
            "recorded": side_json(&recorded),
            "replayed": side_json(&replayed),
            "calls": {
                "answered": calls.answered,
                "not_made": calls.unused,
                "unanswered": calls.unmatched,
            },
            "files": files,
            "same_verdict": same,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_side_by_side(args, &recorded, &replayed, &calls, files, same);
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
