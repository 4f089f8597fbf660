//! The human view: redrawn in place on a terminal, one line per event
//! elsewhere; the same summary at the end either way.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::model::{RunView, ViewState};
use super::style::{self, Style};
use super::{Mode, ReportSetup};
use crate::events::{Event, EventRecord, Level, RunStatus, StageStatus, printable};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Consume events until `RunFinished`, drawing as it goes.
pub async fn report(setup: ReportSetup, mut rx: UnboundedReceiver<EventRecord>) {
    let live = setup.mode == Mode::Live;
    let style = Style::new(live || std::io::stdout().is_terminal());
    let mut view = RunView::new(&setup.stages, setup.verbose);
    view.explain_cache = setup.explain_cache;
    let shown = |file: &str| {
        setup
            .reports
            .as_ref()
            .map(|d| super::style::short_path(&d.join(file).display().to_string()))
    };
    view.junit = shown(super::JUNIT_FILE);
    view.sarif = shown(super::SARIF_FILE);
    view.provenance = setup
        .reports
        .as_ref()
        .map(|d| d.join(crate::report::provenance::PROVENANCE_FILE));
    let name_width = setup
        .stages
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut drawn = 0usize;
    let mut frame = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut finished: Option<(RunStatus, u64)> = None;
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { break };
                view.apply(&record.run, &record.event);
                if let Event::RunStarted { pipeline, stages, workspace, .. } = &record.event {
                    // A reader gone away (`| head`) does not stop the run.
                    let _ = writeln!(
                        std::io::stdout(),
                        "{} {} {}",
                        style.bold("weir"),
                        style.dim(&format!("run {}", record.run)),
                        format_args!("pipeline `{pipeline}`, {} stage(s), workspace {}", stages.len(), super::style::short_path(workspace))
                    );
                }
                if !live {
                    plain_line(&style, name_width, setup.verbose, &record.event);
                }
                if let Event::RunFinished { status, duration_ms, .. } = record.event {
                    finished = Some((status, duration_ms));
                    break;
                }
            }
            _ = tick.tick(), if live => {
                frame += 1;
                drawn = redraw(&view, &style, name_width, drawn, frame);
            }
        }
    }
    if live {
        redraw(&view, &style, name_width, drawn, frame);
    }
    if let Some((status, ms)) = finished {
        super::summary::print(&view, &style, name_width, status, ms);
    }
}

/// One line for one event, for logs and pipes.
fn plain_line(style: &Style, width: usize, verbose: bool, event: &Event) {
    let pad = |s: &str| format!("{s:<width$}");
    let line = match event {
        Event::StageStarted {
            stage,
            attempt,
            plugin,
        } => Some(format!(
            "{} {} started ({plugin}, attempt {attempt})",
            style.busy("▶"),
            pad(stage)
        )),
        Event::StageLog {
            stage,
            level,
            message,
            fields,
        } if verbose || *level >= Level::Info => {
            let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            let text = format!("{message}{}", style.dim(&fields));
            let text = match level {
                Level::Warn => style.warn(&text),
                Level::Error => style.bad(&text),
                _ => text,
            };
            Some(format!("  {} {} {text}", style.dim(&pad(stage)), style.dim("│")))
        }
        Event::StageRetrying {
            stage,
            attempt,
            error,
        } => Some(format!(
            "{} {} attempt {attempt} failed: {}; retrying in a fresh sandbox",
            style.warn("↻"),
            pad(stage),
            printable(error)
        )),
        Event::StageSkipped { stage, reason } => Some(format!(
            "{} {} skipped: {}",
            style.warn("↷"),
            pad(stage),
            printable(reason)
        )),
        Event::RunWaiting { message, .. } => Some(format!("{} {}", style.warn("⏸"), printable(message))),
        Event::StageWaiting { stage, message, .. } => Some(format!(
            "{} {} {}",
            style.warn("⏸"),
            pad(stage),
            printable(message)
        )),
        Event::ApprovalDecided {
            stage,
            decision,
            by,
            reason,
            ..
        } => Some(format!(
            "{} {} approval {}{}{}",
            if decision == "approved" {
                style.ok("✓")
            } else {
                style.bad("✗")
            },
            pad(stage),
            decision.replace('_', " "),
            by.as_ref()
                .map(|b| format!(" by {}", printable(b)))
                .unwrap_or_default(),
            reason
                .as_ref()
                .map(|r| format!(": {}", printable(r)))
                .unwrap_or_default()
        )),
        Event::StageFinished {
            stage,
            status,
            failure,
            duration_ms,
            summary,
            error,
            reused,
            ..
        } => Some(match status {
            StageStatus::Succeeded if reused.is_some() => format!(
                "{} {} {}{}",
                style.ok("✓"),
                pad(stage),
                reused
                    .as_deref()
                    .map(super::model::reused_note)
                    .unwrap_or_default(),
                summary
                    .as_ref()
                    .map(|s| format!(" — {}", printable(s)))
                    .unwrap_or_default()
            ),
            StageStatus::Succeeded => format!(
                "{} {} succeeded in {}{}",
                style.ok("✓"),
                pad(stage),
                style::duration(*duration_ms),
                summary
                    .as_ref()
                    .map(|s| format!(" — {}", printable(s)))
                    .unwrap_or_default()
            ),
            StageStatus::Failed => format!(
                "{} {} {} after {}: {}",
                style.bad("✗"),
                pad(stage),
                failure.map(style::failure_name).unwrap_or("failed"),
                style::duration(*duration_ms),
                printable(error.as_deref().unwrap_or_default())
            ),
            other => format!(
                "{} {} {}",
                style::symbol(*other),
                pad(stage),
                printable(error.as_deref().unwrap_or_default())
            ),
        }),
        _ => None,
    };
    if let Some(line) = line {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Redraw the stage block in place; returns how many lines it drew.
fn redraw(view: &RunView, style: &Style, width: usize, previous: usize, frame: usize) -> usize {
    let columns = terminal_size::terminal_size()
        .map_or(100, |(w, _)| w.0 as usize)
        .max(40);
    let mut out = String::new();
    if previous > 0 {
        out.push_str(&format!("\x1b[{previous}A"));
    }
    for s in &view.stages {
        let (symbol, state, time, note) = match &s.state {
            ViewState::Waiting => (style.dim("·"), style.dim("waiting"), String::new(), String::new()),
            ViewState::Running { attempt, since } => (
                style.busy(SPINNER[frame % SPINNER.len()]),
                style.busy(if *attempt > 1 { "retrying" } else { "running" }),
                style::duration(since.elapsed().as_millis() as u64),
                s.last_line.clone().unwrap_or_default(),
            ),
            ViewState::Done {
                status,
                failure,
                duration_ms,
                note,
                ..
            } => {
                let sym = style::symbol(*status);
                let (sym, word) = match status {
                    StageStatus::Succeeded => (style.ok(sym), style.ok("done")),
                    StageStatus::Failed => (
                        style.bad(sym),
                        style.bad(failure.map(style::failure_name).unwrap_or("failed")),
                    ),
                    StageStatus::Skipped => (style.warn(sym), style.warn("skipped")),
                    StageStatus::Cancelled => (style.warn(sym), style.warn("cancelled")),
                };
                let time = if *status == StageStatus::Skipped {
                    String::new()
                } else {
                    style::duration(*duration_ms)
                };
                (sym, word, time, note.clone().unwrap_or_default())
            }
        };
        // Visible width before the note: 1 + 1 + name + 2 + 9 + 2 + 7 + 2.
        let used = width + 24;
        let note = style::fit(&note, columns.saturating_sub(used + 1));
        out.push_str(&format!(
            "\x1b[2K {symbol} {:<width$}  {state:<9}  {time:>7}  {}\n",
            s.name,
            style.dim(&note),
            state = pad_visible(&state, 9),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    view.stages.len()
}

/// Pad a possibly coloured string to `width` visible characters.
fn pad_visible(s: &str, width: usize) -> String {
    let visible = strip_ansi(s).chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(visible)))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
