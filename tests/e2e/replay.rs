//! `weir replay`: an analyzer re-run offline on what it received in a
//! recorded run (its host calls' answers, its input files), with the same
//! plugin or another version of it, verdicts side by side.

use serde_json::Value;

use crate::guest_paths as g;
use crate::support::{Project, Run, plugin};

/// The judge runs a program, so it is not cacheable and its workspace is
/// recorded only as far as `inputs` names it.
fn judged(p: &Project, latency: &str, threshold: &str) -> Run {
    p.pipeline(&format!(
        "[pipeline]\nname = \"judged\"\n{}\n[stages.judge]\nuses = \"judge\"\nallow = {{ exec = [\"cat\"] }}\ninputs = [\"threshold.txt\"]\n",
        plugin("judge", g::JUDGE)
    ));
    p.write("ws/latency.txt", latency);
    p.write("ws/threshold.txt", threshold);
    p.run_json(&["--workspace", "ws"])
}

fn id(run: &Run) -> String {
    run.events()[0]["run"].as_str().expect("run id").to_string()
}

/// The judge's verdict follows its inputs: a host call, a file, a query.
#[test]
pub fn judge() {
    let p = Project::new();
    let run = judged(&p, "120", "200");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("judge")["outputs"]["verdict"], "pass");
    assert_eq!(
        run.finished("judge")["summary"],
        "latency 120, threshold 200, metrics unavailable"
    );
    let run = judged(&p, "300", "200");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.finished("judge")["outputs"]["verdict"], "fail");
}

/// The judge's next version is twice as strict.
#[test]
pub fn judge_strict() {
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"strict\"\n{}\n[stages.judge]\nuses = \"judge\"\nallow = {{ exec = [\"cat\"] }}\n",
        plugin("judge", g::JUDGE_STRICT)
    ));
    p.write("ws/latency.txt", "120");
    p.write("ws/threshold.txt", "200");
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.finished("judge")["plugin"], "judge 0.2.0");
}

#[test]
fn replay_uses_the_recorded_inputs_and_compares_verdicts() {
    let p = Project::new();
    let run = judged(&p, "120", "200");
    assert_eq!(run.code, 0, "{run:?}");
    let id = id(&run);
    // What the judge would see now is different; the replay must not look.
    p.write("ws/latency.txt", "999");
    p.write("ws/threshold.txt", "1");

    let same = p.weir(&["replay", &id, "judge", "--json"]);
    assert_eq!(same.code, 0, "same plugin, same inputs, same verdict: {same:?}");
    let out: Value = serde_json::from_str(&same.stdout).expect("JSON");
    assert_eq!(out["recorded"]["verdict"], "pass");
    assert_eq!(out["replayed"]["verdict"], "pass");
    assert_eq!(
        out["replayed"]["summary"],
        "latency 120, threshold 200, metrics unavailable"
    );
    // metrics.query-range is not granted, so it is not linked: its
    // stand-in refuses the same way in the run and the replay, and there
    // is nothing to record.
    assert_eq!(out["calls"]["answered"], 1, "process.run: {out}");
    assert_eq!(out["calls"]["not_made"], 0);
    assert_eq!(out["files"], 1, "threshold.txt, as `inputs` names it");
    assert_eq!(out["same_verdict"], true);

    // Another version of the judge, on the same past inputs.
    let strict = p.weir(&["replay", &id, "judge", "--plugin", g::JUDGE_STRICT]);
    assert_eq!(strict.code, 1, "the verdicts differ: {strict:?}");
    let text = &strict.stdout;
    assert!(
        text.contains("judge 0.1.0") && text.contains("judge 0.2.0"),
        "{text}"
    );
    let verdict_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("verdict"))
        .expect("a verdict row");
    assert!(
        verdict_row.contains("pass") && verdict_row.contains("fail"),
        "side by side: {verdict_row}"
    );
    assert!(text.contains("Only in the replay"), "{text}");
    assert!(
        text.contains("latency 120 ms × 2 is over the threshold 200 ms"),
        "{text}"
    );
    assert!(text.contains("the verdicts differ"), "{text}");

    // Without `inputs`, a judge that runs programs has no files recorded:
    // what it read from the workspace is not there in a replay.
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"judged\"\n{}\n[stages.judge]\nuses = \"judge\"\nallow = {{ exec = [\"cat\"] }}\n",
        plugin("judge", g::JUDGE)
    ));
    p.write("ws/latency.txt", "120");
    p.write("ws/threshold.txt", "200");
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "{run:?}");
    let replayed = p.weir(&[
        "replay",
        run.events()[0]["run"].as_str().expect("run id"),
        "judge",
        "--json",
    ]);
    assert_eq!(replayed.code, 1, "{replayed:?}");
    let out: Value = serde_json::from_str(&replayed.stdout).expect("JSON");
    assert_eq!(out["files"], 0);
    assert!(
        out["replayed"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("threshold.txt")),
        "{out}"
    );
}

#[test]
fn only_recorded_analyzers_can_be_replayed() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"plain\"\n\n[stages.a]\nuses = \"noop\"\n\n[stages.scan]\nuses = \"scan\"\n",
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = id(&run);
    let refused = p.weir(&["replay", &id, "a"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("stage `a` of run") && refused.stderr.contains("(this run's: scan)"),
        "{refused:?}"
    );
    let scan = p.weir(&["replay", &id, "scan"]);
    assert_eq!(scan.code, 0, "{scan:?}");
    assert!(scan.stdout.contains("same verdict"), "{scan:?}");
    let unknown = p.weir(&["replay", "nope", "scan"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
}

/// A replay runs under the limits of the tenant the run belonged to, as
/// the tenants file says now.
#[test]
fn replay_runs_under_the_runs_tenant() {
    let p = Project::new();
    let run = judged(&p, "120", "200");
    assert_eq!(run.code, 0, "{run:?}");
    let id = id(&run);
    p.write(
        "tenants.toml",
        "[tenants.default]\nallow = { exec = [\"cat\"] }\nlimits = { fuel = 1000 }\n",
    );
    let tight = p.weir(&["replay", &id, "judge", "--json", "--tenants", "tenants.toml"]);
    assert_eq!(tight.code, 1, "{tight:?}");
    let out: Value = serde_json::from_str(&tight.stdout).expect("JSON");
    let error = out["replayed"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("(limit `fuel`)"), "{out}");

    p.write("tenants.toml", "[tenants.acme]\n");
    let gone = p.weir(&["replay", &id, "judge", "--tenants", "tenants.toml"]);
    assert_eq!(gone.code, 2, "{gone:?}");
    assert!(
        gone.stderr
            .contains(&format!("run {id} belongs to tenant `default`: ")),
        "{gone:?}"
    );
}
