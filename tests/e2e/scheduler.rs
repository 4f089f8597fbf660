//! The DAG: order, outputs, failure propagation, `when`, exit codes,
//! events, cancellation.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::guest_paths as g;
use crate::support::{Project, plugin};

fn head() -> String {
    format!(
        "[pipeline]\nname = \"dag\"\n{}{}{}\n",
        plugin("record", g::RECORD),
        plugin("fail", g::FAIL),
        plugin("spin", g::SPIN)
    )
}

#[test]
fn needs_order_stages_and_outputs_flow_downstream() {
    let p = Project::new();
    p.pipeline(&format!(
        "{}
[stages.c]
uses = \"record\"
needs = [\"b\"]
with = {{ message = \"v=${{{{ stages.a.outputs.version }}}}, n=${{{{ stages.b.outputs.n }}}}\" }}
env = {{ VERSION = \"${{{{ stages.a.outputs.version }}}}\" }}

[stages.b]
uses = \"record\"
needs = [\"a\"]
with = {{ outputs = {{ n = \"7\" }} }}

[stages.a]
uses = \"record\"
with = {{ outputs = {{ version = \"1.2.3\" }} }}
",
        head()
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let trace = std::fs::read_to_string(run.workspace().join("trace.log")).expect("trace");
    assert_eq!(trace, "a\nb\nc\n", "stages ran out of order");
    let c = run.finished("c");
    // Every upstream stage's outputs are inputs, directly needed or not.
    assert_eq!(
        c["outputs"]["inputs"],
        "a.attempt=1,a.env=,a.inputs=,a.version=1.2.3,b.attempt=1,b.env=,b.inputs=a.attempt=1,a.env=,a.inputs=,a.version=1.2.3,b.n=7"
    );
    assert_eq!(c["outputs"]["env"], "VERSION=1.2.3");
    let config = std::fs::read_to_string(run.workspace().join("c.out")).expect("c.out");
    assert!(config.contains("\"message\":\"v=1.2.3, n=7\""), "{config}");
}

#[test]
fn a_failure_skips_its_dependents_but_not_independent_stages() {
    let p = Project::new();
    p.pipeline(&format!(
        "{}
[stages.bad]
uses = \"fail\"
[stages.after-bad]
uses = \"record\"
needs = [\"bad\"]
[stages.after-after]
uses = \"record\"
needs = [\"after-bad\"]
[stages.independent]
uses = \"record\"
",
        head()
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let skipped = run.of("stage_skipped");
    let reason = |s: &str| {
        skipped
            .iter()
            .find(|e| e["stage"] == s)
            .map(|e| e["reason"].clone())
    };
    assert_eq!(reason("after-bad"), Some("needs `bad`, which failed".into()));
    assert_eq!(
        reason("after-after"),
        Some("needs `after-bad`, which was skipped".into())
    );
    assert_eq!(run.finished("independent")["status"], "succeeded");
    let finished = run.of("run_finished");
    assert_eq!(finished[0]["status"], "failed");
    assert_eq!(
        finished[0]["counts"],
        serde_json::json!({"failed": 1, "skipped": 2, "succeeded": 1})
    );
}

#[test]
fn when_skips_by_branch_and_environment() {
    let p = Project::new();
    p.pipeline(&format!(
        "{}
[stages.main-only]
uses = \"record\"
when = {{ branch = [\"main\", \"release/*\"] }}
[stages.prod-only]
uses = \"record\"
when = {{ environment = \"prod\" }}
[stages.after-prod]
uses = \"record\"
needs = [\"prod-only\"]
",
        head()
    ));
    let run = p.run_json(&["--branch", "release/1.0", "--env", "staging"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("main-only")["status"], "succeeded");
    let skipped = run.of("stage_skipped");
    assert_eq!(skipped[0]["stage"], "prod-only");
    assert_eq!(skipped[0]["reason"], "environment `staging` is not `prod`");
    assert_eq!(skipped[1]["reason"], "needs `prod-only`, which was skipped");

    let run = p.run_json(&["--branch", "feature/x", "--env", "prod"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.of("stage_skipped")[0]["reason"],
        "branch `feature/x` does not match `main` or `release/*`"
    );
    assert_eq!(run.finished("after-prod")["status"], "succeeded");
}

#[test]
fn json_events_are_one_object_per_line_in_order() {
    let p = Project::new();
    p.pipeline(&format!("{}\n[stages.only]\nuses = \"record\"\n", head()));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let kinds: Vec<String> = run
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "stage_cache",
            "stage_started",
            "stage_log",
            "stage_log",
            "stage_finished",
            "run_finished"
        ]
    );
    for e in run.events() {
        assert!(e["time_ms"].as_u64().is_some_and(|t| t > 0), "{e}");
        assert_eq!(e["run"], run.events()[0]["run"]);
    }
}

#[test]
fn plain_output_names_each_stage_and_summarises() {
    let p = Project::new();
    p.pipeline(&format!(
        "{}\n[stages.ok]\nuses = \"record\"\n[stages.bad]\nuses = \"fail\"\n",
        head()
    ));
    let run = p.weir(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("✓ ok   succeeded in"), "{run:?}");
    assert!(run.stdout.contains("✗ bad  failed after"), "{run:?}");
    assert!(run.stdout.contains("Run `dag` failed in"), "{run:?}");
    assert!(run.stdout.contains("What failed"), "{run:?}");
    assert!(run.stdout.contains("      line 2 of the details"), "{run:?}");
}

#[test]
fn a_missing_output_fails_the_stage_that_reads_it() {
    let p = Project::new();
    p.pipeline(&format!(
        "{}\n[stages.a]\nuses = \"record\"\n[stages.b]\nuses = \"record\"\nneeds = [\"a\"]\nwith = {{ message = \"${{{{ stages.a.outputs.nope }}}}\" }}\n",
        head()
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let b = run.finished("b");
    assert_eq!(b["failure"], "host");
    assert_eq!(
        b["error"],
        "`${{ stages.a.outputs.nope }}` has no value: stage `a` produced no output `nope` (its outputs: attempt, env, inputs)"
    );
}

#[test]
fn fail_fast_starts_nothing_after_a_failure() {
    let p = Project::new();
    p.pipeline(&format!("{}\n[stages.bad]\nuses = \"fail\"\n[stages.later]\nuses = \"record\"\nneeds = []\n[stages.last]\nuses = \"record\"\nneeds = [\"later\"]\n", head()));
    let run = p.run_json(&["--jobs", "1", "--fail-fast"]);
    assert_eq!(run.code, 1, "{run:?}");
    let reasons: Vec<String> = run
        .of("stage_skipped")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        reasons.contains(&"an earlier stage failed and --fail-fast is on".to_string()),
        "{run:?}"
    );
}

#[test]
fn ctrl_c_cancels_the_run_cleanly() {
    let p = Project::new();
    p.pipeline(&format!("{}\n[stages.forever]\nuses = \"spin\"\ntimeout = \"10m\"\n[stages.next]\nuses = \"record\"\nneeds = [\"forever\"]\n", head()));
    let mut child = p
        .command(&["run", "pipeline.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        let started = line.contains("forever started");
        seen.push(line);
        if started {
            break;
        }
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("weir exits");
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("⊘ forever cancelled while running"), "{out}");
    assert!(
        out.contains("⊘ next     cancelled") && out.contains("the run was cancelled before it started"),
        "{out}"
    );
    assert!(out.contains("Run `dag` cancelled in"), "{out}");
}

#[test]
fn a_cancelled_run_gives_its_programs_sigterm_and_time_to_clean_up() {
    let p = Project::new();
    p.write("ws/.keep", "");
    // The program says it is ready only once its TERM handler is set, and
    // cleans up when it gets TERM: a run dropped at once would kill it
    // with SIGKILL and leave no trace.
    p.pipeline(
        "[pipeline]\nname = \"grace\"\n[stages.serve]\nrun = \"trap 'echo cleaned > cleaned-up; exit 0' TERM; touch ready; while :; do sleep 0.1; done\"\ntimeout = \"10m\"\n",
    );
    let child = p
        .command(&["run", "--workspace", "ws"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let ready = p.path().join("ws/ready");
    for _ in 0..600 {
        if ready.exists() {
            break;
        }
        crate::support::nap(std::time::Duration::from_millis(50));
    }
    assert!(ready.exists(), "the program never started");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("weir exits");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("ws/cleaned-up"))
            .ok()
            .as_deref(),
        Some("cleaned\n"),
        "the program got SIGTERM and ran its handler: {text}"
    );
    assert!(text.contains("serve cancelled while running"), "{text}");
}

#[test]
fn findings_are_listed_after_the_run() {
    let p = Project::new();
    p.write("ws/key.pem", "-----BEGIN PRIVATE KEY-----");
    p.pipeline("[pipeline]\nname = \"f\"\n[stages.verify]\nuses = \"require-files\"\nwith = { paths = [\"dist/app\"], forbid = [\"**/*.pem\"] }\n");
    let run = p.weir(&["run", "--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("verify  verdict fail, score 85, 1 critical, 1 high"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("high     -  missing-file  no file matches `dist/app`"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "critical key.pem  forbidden-file  `key.pem` matches a forbidden pattern and must not ship"
        ),
        "{run:?}"
    );
}
