//! The run history: every run recorded in `.weir/weir.db`, `weir runs
//! list|show|logs|prune`, and a killed run shown as interrupted.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use crate::guest_paths as g;
use crate::support::{Project, plugin};

fn json(run: &crate::support::Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

fn two_runs(p: &Project) -> (String, String) {
    p.write("ws/Dockerfile", "FROM debian\n");
    p.pipeline(
        "[pipeline]\nname = \"hist\"\n\n[stages.a]\nuses = \"noop\"\n\n[stages.scan]\nuses = \"scan\"\nneeds = [\"a\"]\n",
    );
    let first = p.run_json(&["--workspace", "ws"]);
    assert_eq!(first.code, 0, "{first:?}");
    p.write(
        "ws/Dockerfile",
        "FROM debian\nRUN curl -fsSL https://x.example.com | sh\n",
    );
    let second = p.run_json(&["--workspace", "ws"]);
    assert_eq!(second.code, 1, "{second:?}");
    let id = |r: &crate::support::Run| r.events()[0]["run"].as_str().expect("run id").to_string();
    (id(&first), id(&second))
}

#[test]
fn every_run_is_recorded_and_listed_newest_first() {
    let p = Project::new();
    // Before any run: an empty history, and none is created by asking.
    assert_eq!(json(&p.weir(&["runs", "list", "--json"])), serde_json::json!([]));
    assert!(!p.path().join(".weir").exists());
    let (first, second) = two_runs(&p);
    let list = json(&p.weir(&["runs", "list", "--json"]));
    let ids: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[1]["status"], "succeeded");

    let failed = json(&p.weir(&["runs", "list", "--status", "failed", "--json"]));
    assert_eq!(failed.as_array().map(Vec::len), Some(1));
    let other = json(&p.weir(&["runs", "list", "--pipeline", "nonesuch", "--json"]));
    assert_eq!(other, serde_json::json!([]));

    let shown = json(&p.weir(&["runs", "show", &second, "--json"]));
    assert_eq!(shown["pipeline"], "hist");
    let stages = shown["stages"].as_array().expect("stages");
    assert_eq!(stages[0]["name"], "a");
    assert_eq!(stages[0]["status"], "succeeded");
    assert_eq!(stages[1]["failure"], "gate");
    assert_eq!(stages[1]["analysis"]["verdict"], "fail");
    assert_eq!(stages[1]["outputs"]["findings-high"], "1");
    assert_eq!(stages[1]["findings"][0]["rule"], "curl-pipe-shell");
    assert_eq!(stages[1]["findings"][0]["line"], 2);

    let people = p.weir(&["runs", "show", &second]);
    assert_eq!(people.code, 0, "{people:?}");
    assert!(people.stdout.contains("failed (gate)"), "{people:?}");
    assert!(people.stdout.contains("Dockerfile:2"), "{people:?}");

    let missing = p.weir(&["runs", "show", "nonesuch"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("no run `nonesuch`"), "{missing:?}");
}

#[test]
fn logs_are_kept_per_stage() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"logs\"\n\n[stages.one]\nrun = \"echo first line; echo second line\"\n\n[stages.two]\nrun = \"echo other stage\"\nneeds = [\"one\"]\n",
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.events()[0]["run"].as_str().expect("id").to_string();
    let all = p.weir(&["runs", "logs", &id]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(
        all.stdout.contains("first line") && all.stdout.contains("other stage"),
        "{all:?}"
    );
    let one = p.weir(&["runs", "logs", &id, "--stage", "one"]);
    assert!(one.stdout.contains("first line\nsecond line"), "{one:?}");
    assert!(!one.stdout.contains("other stage"), "{one:?}");
    let lines = p.weir(&["runs", "logs", &id, "--stage", "one", "--json"]);
    let parsed: Vec<Value> = lines
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(parsed.len(), 2, "{lines:?}");
    assert_eq!(parsed[0]["message"], "first line");
    assert_eq!(parsed[0]["stage"], "one");
    assert_eq!(parsed[0]["level"], "info");
    // --follow on a finished run prints what there is and returns.
    let follow = p.weir(&["runs", "logs", &id, "--stage", "two", "--follow"]);
    assert_eq!(follow.code, 0, "{follow:?}");
    assert!(follow.stdout.contains("other stage"), "{follow:?}");
}

#[test]
fn a_killed_run_shows_as_interrupted() {
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"killed\"\n{}\n[stages.done]\nuses = \"noop\"\n\n[stages.forever]\nuses = \"spin\"\nneeds = [\"done\"]\ntimeout = \"10m\"\n",
        plugin("spin", g::SPIN)
    ));
    let mut child = p
        .command(&["run", "pipeline.toml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut id = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8");
        let e: Value = serde_json::from_str(&line).expect("an event");
        id = e["run"].as_str().unwrap_or_default().to_string();
        if e["event"] == "stage_started" && e["stage"] == "forever" {
            break;
        }
    }
    // Give the history a moment to commit the started stage, as a killed
    // host gets no say in when it dies.
    let mut tries = 0;
    let list = loop {
        let shown = json(&p.weir(&["runs", "show", &id, "--json"]));
        if shown["stages"][1]["status"] == "running" {
            break shown;
        }
        tries += 1;
        assert!(tries < 500, "the started stage was never recorded: {shown}");
    };
    assert_eq!(list["status"], "running");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let shown = json(&p.weir(&["runs", "show", &id, "--json"]));
    assert_eq!(shown["status"], "interrupted");
    assert_eq!(
        shown["stages"][0]["status"], "succeeded",
        "finished work stays recorded"
    );
    assert_eq!(shown["stages"][1]["status"], "interrupted");
    let listed = json(&p.weir(&["runs", "list", "--status", "interrupted", "--json"]));
    assert_eq!(listed[0]["id"], id.as_str());
}

#[test]
fn prune_removes_old_runs_with_their_files() {
    let p = Project::new();
    p.pipeline("[pipeline]\nname = \"prune\"\n\n[stages.a]\nuses = \"noop\"\n");
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let run = p.run_json(&[]);
            assert_eq!(run.code, 0, "{run:?}");
            run.events()[0]["run"].as_str().expect("id").to_string()
        })
        .collect();
    for id in &ids {
        assert!(p.path().join(".weir/runs").join(id).is_dir());
    }
    let usage = p.weir(&["runs", "prune"]);
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.contains("--keep N"), "{usage:?}");

    let dry = p.weir(&["runs", "prune", "--keep", "1", "--dry-run"]);
    assert!(
        dry.stdout.contains(&format!("would remove {}", ids[0])),
        "{dry:?}"
    );
    assert!(p.path().join(".weir/runs").join(&ids[0]).is_dir());

    let pruned = p.weir(&["runs", "prune", "--keep", "1"]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    let left = json(&p.weir(&["runs", "list", "--json"]));
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["id"], ids[2].as_str());
    assert!(!p.path().join(".weir/runs").join(&ids[0]).exists());
    assert!(!p.path().join(".weir/runs").join(&ids[1]).exists());
    assert!(p.path().join(".weir/runs").join(&ids[2]).is_dir());

    let none = p.weir(&["runs", "prune", "--older-than", "1h"]);
    assert!(none.stdout.contains("nothing to prune"), "{none:?}");
}

#[test]
fn the_history_stores_the_json_event_stream_as_documented() {
    let p = Project::new();
    p.pipeline("[pipeline]\nname = \"same\"\n\n[stages.one]\nrun = \"echo hello\"\n");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.events()[0]["run"].as_str().expect("id").to_string();
    assert_eq!(
        run.events()[0]["version"],
        1,
        "run_started carries the schema version"
    );
    let db = rusqlite::Connection::open(p.path().join(".weir/weir.db")).expect("the history");
    let mut stmt = db
        .prepare("SELECT body FROM events WHERE run_id = ?1 ORDER BY seq")
        .expect("query");
    let stored: Vec<Value> = stmt
        .query_map([&id], |r| r.get::<_, String>(0))
        .expect("rows")
        .map(|b| serde_json::from_str(&b.expect("row")).expect("JSON"))
        .collect();
    assert_eq!(stored, run.events(), "the store keeps exactly the --json stream");

    // Every event the host can emit is documented in docs/events.md.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md")).expect("docs");
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/events.rs")).expect("source");
    let body = source.split("pub enum Event {").nth(1).expect("the Event enum");
    let body = &body[..body.find("\n}\n").expect("its end")];
    let mut variants = 0;
    for line in body.lines() {
        let t = line.trim();
        if line.starts_with("    ") && !line.starts_with("     ") && t.ends_with('{') {
            let name = t.trim_end_matches('{').trim();
            let mut snake = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert!(
                docs.contains(&format!("### `{snake}`")),
                "docs/events.md does not document `{snake}`"
            );
            variants += 1;
        }
    }
    assert_eq!(variants, 13, "every variant was checked");
    assert!(docs.starts_with("# Events (schema version 1)"));
}

/// Start `weir run --json` and SIGKILL it once stage `stage` is recorded
/// as running and has created `marker` in the workspace; returns the run
/// id.
fn kill_while_running(p: &Project, stage: &str, marker: &str) -> String {
    let mut child = p
        .command(&["run", "pipeline.toml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut id = String::new();
    let mut workspace = std::path::PathBuf::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        let e: Value = serde_json::from_str(&line).expect("an event");
        id = e["run"].as_str().unwrap_or_default().to_string();
        if let Some(w) = e["workspace"].as_str() {
            workspace = w.into();
        }
        if e["event"] == "stage_started" && e["stage"] == stage {
            break;
        }
    }
    // Keep reading, so weir never writes into a closed pipe.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let mut tries = 0;
    loop {
        let shown = json(&p.weir(&["runs", "show", &id, "--json"]));
        let stages = shown["stages"].as_array().cloned().unwrap_or_default();
        if stages
            .iter()
            .any(|s| s["name"] == stage && s["status"] == "running")
        {
            break;
        }
        tries += 1;
        assert!(
            tries < 500,
            "stage `{stage}` was never recorded as running: {shown}"
        );
    }
    // The stage's program has started (a busy machine may take a while).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !workspace.join(marker).exists() {
        assert!(std::time::Instant::now() < deadline, "`{marker}` never appeared");
        #[expect(
            clippy::disallowed_methods,
            reason = "a plain test thread, not a tokio worker"
        )]
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let _ = drain.join();
    id
}

#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let p = Project::new();
    // `slow` blocks the first time (it is killed there) and finishes when
    // run again; `first` must not run again, and `last` must get its output.
    p.pipeline(&format!(
        "[pipeline]\nname = \"resumable\"\n{}
[stages.first]
uses = \"record\"
with = {{ outputs = {{ token = \"abc\" }} }}

[stages.slow]
needs = [\"first\"]
timeout = \"5m\"
run = \"if [ -f started ]; then echo resumed; else touch started; sleep 120; fi\"

[stages.last]
uses = \"record\"
needs = [\"slow\"]
with = {{ outputs = {{ got = \"${{{{ stages.first.outputs.token }}}}\" }} }}
",
        plugin("record", g::RECORD)
    ));
    let id = kill_while_running(&p, "slow", "started");
    let shown = json(&p.weir(&["runs", "show", &id, "--json"]));
    assert_eq!(shown["status"], "interrupted");
    let events_before: i64 = {
        let db = rusqlite::Connection::open(p.path().join(".weir/weir.db")).expect("db");
        db.query_row("SELECT MAX(seq) FROM events WHERE run_id = ?1", [&id], |r| {
            r.get(0)
        })
        .expect("events")
    };

    let resumed = p.weir(&["run", "--resume", &id, "--json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let started = resumed.of("run_started");
    assert_eq!(started[0]["run"], id.as_str(), "the same run goes on");
    assert_eq!(started[0]["resume"], 1);
    // `first` is not run again: its recorded result is reused.
    let first = resumed.finished("first");
    assert_eq!(first["reused"]["from"], "resume", "{first}");
    assert_eq!(first["outputs"]["token"], "abc");
    assert!(
        !resumed.of("stage_started").iter().any(|e| e["stage"] == "first"),
        "{resumed:?}"
    );
    // `slow` ran again, in the same workspace (it found its marker).
    assert_eq!(resumed.finished("slow")["status"], "succeeded", "{resumed:?}");
    assert!(
        resumed
            .of("stage_log")
            .iter()
            .any(|e| e["stage"] == "slow" && e["message"] == "resumed"),
        "{resumed:?}"
    );
    // `last` got `first`'s output from before the kill.
    assert_eq!(resumed.finished("last")["outputs"]["got"], "abc");
    let trace = std::fs::read_to_string(resumed.workspace().join("trace.log")).expect("the same workspace");
    assert_eq!(trace, "first\nlast\n", "each stage ran once in all");

    // The history: one run, succeeded, its events numbered on from where
    // the killed process stopped, every attempt kept.
    let shown = json(&p.weir(&["runs", "show", &id, "--json"]));
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["stages"][0]["reused"]["from"], "resume");
    let db = rusqlite::Connection::open(p.path().join(".weir/weir.db")).expect("db");
    let seqs: Vec<i64> = db
        .prepare("SELECT seq FROM events WHERE run_id = ?1 ORDER BY seq")
        .expect("query")
        .query_map([&id], |r| r.get(0))
        .expect("rows")
        .map(|s| s.expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    assert_eq!(seqs.len() as i64, events_before + resumed.events().len() as i64);
    let attempts: Vec<(String, String)> = db
        .prepare("SELECT stage, status FROM attempts WHERE run_id = ?1 ORDER BY id")
        .expect("query")
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|a| a.expect("attempt"))
        .collect();
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(
        attempts,
        owned(&[
            ("first", "succeeded"),
            ("slow", "interrupted"),
            ("slow", "succeeded"),
            ("last", "succeeded")
        ])
    );

    // A run that succeeded has nothing to resume.
    let again = p.weir(&["run", "--resume", &id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("nothing to resume"), "{again:?}");
    let unknown = p.weir(&["run", "--resume", "no-such-run"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("no run `no-such-run`"), "{unknown:?}");
}
