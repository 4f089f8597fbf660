//! One test per test guest, named after it (see `for_each_guest!`). Each
//! asserts the exact outcome and message.

// Guests of the `process` capability are tested in `process.rs`.
pub use crate::process::{exec, sneaky};
// The secrets guest is tested with the tenants, in `tenancy.rs`.
pub use crate::tenancy::exfiltrate;
// The HTTP guest is tested in `network.rs`.
pub use crate::network::fetch;
// The judges are tested with replay, in `replay.rs`.
pub use crate::replay::{judge, judge_strict};
// The rogue strategy is tested with the other rollouts, in `deploy.rs`.
pub use crate::deploy::a_deployer_may_touch_only_the_release_its_stage_rolls_out as greedy_deployer;
pub use crate::deploy::a_strategy_that_traps_mid_rollout_is_rolled_back_by_the_host as rogue_strategy;
pub use crate::deploy::a_tenant_cannot_deploy_over_another_tenants_service as runtime_probe;

use crate::guest_paths as g;
use crate::support::{CoreModule, Project, plugin, with_core_modules};

fn one_stage(name: &str, path: &str, stage_extra: &str) -> Project {
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"guest\"\n{}\n[stages.s]\nuses = \"{name}\"\n{stage_extra}\n",
        plugin(name, path)
    ));
    p
}

#[test]
pub fn record() {
    let p = one_stage(
        "record",
        g::RECORD,
        "with = { outputs = { answer = \"42\" } }\nenv = { ONLY = \"this\" }",
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["outputs"]["answer"], "42");
    // The plugin sees exactly the variables the stage declares.
    assert_eq!(done["outputs"]["env"], "ONLY=this");
    assert_eq!(done["summary"], "recorded s");
    // It wrote into the workspace.
    let trace = std::fs::read_to_string(run.workspace().join("trace.log")).expect("trace.log written");
    assert_eq!(trace, "s\n");
    let log = run.of("stage_log");
    assert_eq!(log[0]["message"], "hello from s");

    // Artifacts must be files inside the workspace.
    let p = one_stage(
        "record",
        g::RECORD,
        "with = { artifacts = { own = \"trace.log\" } }",
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    // Kept in the run's artifact store with its digest and size.
    let kept = &run.finished("s")["artifacts"][0];
    assert_eq!(kept["name"], "own");
    assert_eq!(kept["path"], "trace.log");
    assert_eq!(kept["size"], 2);
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"s\n"))
    };
    assert_eq!(kept["sha256"], digest);
    let stored = kept["stored"].as_str().expect("stored path");
    assert!(stored.ends_with("/artifacts/s/trace.log"), "{stored}");
    assert_eq!(std::fs::read_to_string(stored).expect("stored copy"), "s\n");
    for (path, why) in [
        (
            "../../etc/passwd",
            "must be a relative path inside the workspace, without `..`",
        ),
        (
            "/etc/passwd",
            "must be a relative path inside the workspace, without `..`",
        ),
        (
            "missing.txt",
            "cannot be read beneath the workspace (No such file or directory (os error 2)); an artifact must be a regular file reached without symlinks",
        ),
    ] {
        let p = one_stage(
            "record",
            g::RECORD,
            &format!("with = {{ artifacts = {{ bad = {path:?} }} }}"),
        );
        let run = p.run_json(&[]);
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(
            run.finished("s")["error"],
            format!("artifact `bad` at `{path}` {why}")
        );
    }
}

#[test]
pub fn fail() {
    let p = one_stage("fail", g::FAIL, "");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["status"], "failed");
    assert_eq!(done["failure"], "plugin");
    assert_eq!(done["error"], "the stage said no");
    assert_eq!(done["details"], "line 1 of the details\nline 2 of the details");
}

#[test]
pub fn trap() {
    let p = one_stage("trap", g::TRAP, "");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "trap");
    assert_eq!(
        done["error"],
        "plugin `trap` crashed: wasm `unreachable` instruction executed (its log shows any panic message)"
    );
    // The panic message the guest printed to stderr is in the stage log.
    let logged: Vec<String> = run
        .of("stage_log")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        logged.iter().any(|l| l == "deliberate panic in the trap guest"),
        "{logged:?}"
    );
}

#[test]
pub fn spin() {
    let p = one_stage("spin", g::SPIN, "timeout = \"1s\"");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "timeout");
    assert_eq!(
        done["error"],
        "stage `s` ran longer than its timeout of 1s and was stopped"
    );
}

#[test]
pub fn hog() {
    let p = one_stage("hog", g::HOG, "");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "limit");
    let error = done["error"].as_str().expect("error");
    assert!(
        error.starts_with("memory limit hit: the plugin asked for ")
            && error.ends_with(", the limit is 256 MiB (limit `memory`); stage `s` was stopped"),
        "{error}"
    );
}

#[test]
pub fn escape() {
    let p = Project::new();
    p.write("secret.txt", "host secret");
    let ws = p.path().join("ws");
    std::fs::create_dir_all(ws.join("sub")).expect("workspace");
    std::os::unix::fs::symlink(p.path(), ws.join("planted-link")).expect("symlink");
    p.pipeline(&format!(
        "[pipeline]\nname = \"guest\"\n{}\n[stages.s]\nuses = \"escape\"\n",
        plugin("escape", g::ESCAPE)
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "the guest reached outside its workspace: {run:?}");
    let outputs = &run.finished("s")["outputs"];
    assert_eq!(outputs["dotdot"], "denied (PermissionDenied)");
    assert_eq!(outputs["absolute"], "denied (NotFound)");
    assert_eq!(outputs["planted_symlink"], "denied (PermissionDenied)");
    assert_eq!(outputs["symlink_trailing_slash"], "denied (PermissionDenied)");
    assert_eq!(outputs["dotdot_trailing_slash"], "denied (PermissionDenied)");
    assert_eq!(outputs["list_root"], "denied (the root is the workspace)");

    // A directory granted with `allow.read` is readable at its absolute
    // path, never writable, and no way out of it; `/etc` is never opened
    // for a plugin, even when granted.
    let granted = p.path().join("granted");
    std::fs::create_dir_all(&granted).expect("granted dir");
    std::fs::write(granted.join("readable.txt"), "shared data").expect("write");
    let dir = granted.canonicalize().expect("canonical").display().to_string();
    p.pipeline(&format!(
        "[pipeline]\nname = \"guest\"\n{}\n[stages.s]\nuses = \"escape\"\nwith = {{ granted = {dir:?} }}\nallow = {{ read = [{dir:?}, \"/etc\"] }}\n",
        plugin("escape", g::ESCAPE)
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "the guest reached outside its grants: {run:?}");
    let outputs = &run.finished("s")["outputs"];
    assert_eq!(outputs["granted_read"], "READ 11 bytes");
    assert_eq!(outputs["granted_write"], "denied (PermissionDenied)");
    assert_eq!(outputs["granted_sibling"], "denied (PermissionDenied)");
    assert_eq!(outputs["absolute"], "denied (NotFound)");
    assert!(!granted.join("planted.txt").exists());
}

#[test]
pub fn peek() {
    // A plugin that does not declare `files` cannot read a directory the
    // stage grants with `allow.read`: that grant is for its programs.
    let p = Project::new();
    let granted = p.path().join("granted");
    std::fs::create_dir_all(&granted).expect("granted dir");
    std::fs::write(granted.join("readable.txt"), "shared data").expect("write");
    let dir = granted.canonicalize().expect("canonical").display().to_string();
    p.pipeline(&format!(
        "[pipeline]\nname = \"guest\"\n{}\n[stages.s]\nuses = \"peek\"\nwith = {{ path = \"{dir}/readable.txt\" }}\nallow = {{ read = [{dir:?}] }}\n",
        plugin("peek", g::PEEK)
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["outputs"]["read"], "denied (NotFound)");
}

#[test]
pub fn wrong_kind() {
    let p = one_stage("wrong-kind", g::WRONG_KIND, "");
    let run = p.weir(&["run", "pipeline.toml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "pipeline.toml:7:8: stage `s` uses plugin `wrong-kind` ({}), which is a strategy; a stage's `uses` takes a stage, analyzer or test-runner plugin",
            g::WRONG_KIND
        )),
        "{run:?}"
    );
}

#[test]
pub fn flaky() {
    let p = one_stage("flaky", g::FLAKY, "retries = 2\nwith = { succeed_on = 3 }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["outputs"]["attempt"], "3");
    let retries = run.of("stage_retrying");
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0]["error"], "attempt 1 failed");

    // One retry short: the stage fails after two attempts.
    let p = one_stage("flaky", g::FLAKY, "retries = 1\nwith = { succeed_on = 3 }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.finished("s")["attempts"], 2);
    assert_eq!(run.finished("s")["error"], "attempt 2 failed");
}

#[test]
pub fn rendezvous() {
    // Two stages that each wait for the other's marker: both succeed only
    // if they run at the same time.
    let pipeline = |within: u32| {
        format!(
            "[pipeline]\nname = \"meet\"\n{}\n[stages.a]\nuses = \"rendezvous\"\nwith = {{ mark = \"a\", wait_for = \"b\", within_ms = {within} }}\n[stages.b]\nuses = \"rendezvous\"\nwith = {{ mark = \"b\", wait_for = \"a\", within_ms = {within} }}\n",
            plugin("rendezvous", g::RENDEZVOUS)
        )
    };
    let p = Project::new();
    p.pipeline(&pipeline(60_000));
    let run = p.run_json(&["--jobs", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("a")["outputs"]["met"], "b");
    assert_eq!(run.finished("b")["outputs"]["met"], "a");

    // With one job they run one after the other, and the first gives up.
    let p = Project::new();
    p.pipeline(&pipeline(300));
    let run = p.run_json(&["--jobs", "1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("a")["error"],
        "`b.ready` never appeared: the stages did not run at the same time"
    );
}

#[test]
pub fn cases() {
    // Without a gate, any failed case fails the stage, naming it.
    let p = one_stage("cases", g::CASES, "with = { passed = 3, failed = 1 }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "gate");
    assert_eq!(
        done["tests"],
        serde_json::json!({"passed": 3, "failed": 1, "skipped": 0, "errored": 0})
    );
    assert_eq!(
        done["error"],
        "test gate failed: 1 failed (at most 0 allowed); failing: guest::case_3"
    );
    assert_eq!(done["details"], "guest::case_3: case_3 failed: expected 1, got 2");
    assert_eq!(done["cases"].as_array().map(Vec::len), Some(4));

    // The run's merged JUnit report has every case.
    let run_dir = run.workspace().parent().expect("run dir").to_path_buf();
    let junit = std::fs::read_to_string(run_dir.join("reports/junit.xml")).expect("junit.xml");
    assert!(
        junit.contains("<testsuite name=\"s\" tests=\"4\" failures=\"1\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"case_3 failed: expected 1, got 2\">"),
        "{junit}"
    );

    let p = one_stage("cases", g::CASES, "with = { passed = 2, failed = 0 }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["outputs"]["passed"], "2");
}

#[test]
fn gates_apply_to_test_runners() {
    let gate = |g: &str, cases: &str| {
        let p = one_stage("cases", g::CASES, &format!("with = {cases}\ngate = {g}"));
        p.run_json(&[])
    };
    // 9 of 10 pass: 90% meets 0.9, not 0.95; max-failures = 1 allows it.
    let run = gate(
        "{ min-pass-rate = 0.9, max-failures = 1 }",
        "{ passed = 9, failed = 1 }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = gate("{ min-pass-rate = 0.95 }", "{ passed = 9, failed = 1 }");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "test gate failed: pass rate 90.0% is below the minimum 95.0%; failing: guest::case_9"
    );
    let run = gate(
        "{ allow-skipped = false }",
        "{ passed = 2, failed = 0, skipped = 2 }",
    );
    assert_eq!(
        run.finished("s")["error"],
        "test gate failed: 2 skipped (allow-skipped = false); failing: guest::case_2, guest::case_3"
    );
    let run = gate("{ min-pass-rate = 1.0 }", "{ passed = 0, failed = 0 }");
    assert_eq!(
        run.finished("s")["error"],
        "test gate failed: no test case ran, so there is no pass rate"
    );

    // A gate on a stage that is not a test runner, or out of range, is a
    // configuration error.
    let p = Project::new();
    p.pipeline("[pipeline]\nname = \"g\"\n[stages.a]\nuses = \"noop\"\ngate = { max-failures = 1 }\n");
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "pipeline.toml:5:8: stage `a` has a `gate`, but its plugin `noop` is a stage; gates apply to test-runner and analyzer stages"
        ),
        "{run:?}"
    );
    p.pipeline("[pipeline]\nname = \"g\"\n[stages.b]\nuses = \"noop\"\ngate = { min-pass-rate = 95 }\n");
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("pipeline.toml:5:26: min-pass-rate 95 is not between 0 and 1"),
        "{run:?}"
    );
}

#[test]
pub fn recurse() {
    // Stack exhaustion is a trap reported for the stage, never an abort of
    // the host process: weir keeps going and reports the run.
    let p = one_stage("recurse", g::RECURSE, "");
    p.write(
        "pipeline.toml",
        format!(
            "{}\n[stages.after]\nuses = \"noop\"\n",
            std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap()
        ),
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "trap");
    assert_eq!(
        done["error"],
        "plugin `recurse` crashed: call stack exhausted (its log shows any panic message)"
    );
    assert_eq!(run.finished("after")["status"], "succeeded");
}

#[test]
pub fn flood() {
    // 20 MB of output against a 4 MiB log limit: the stage finishes, the
    // excess is dropped, and the drop is reported once, by name.
    let p = one_stage("flood", g::FLOOD, "with = { mode = \"lines\" }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.finished("s")["outputs"]["survived"], "yes");
    let logs = run.of("stage_log");
    let warnings: Vec<_> = logs.iter().filter(|e| e["level"] == "warn").collect();
    assert_eq!(warnings.len(), 1, "the limit is reported exactly once");
    assert_eq!(
        warnings[0]["message"],
        "log limit hit: stage `s` logged more than 4 MiB (limit `log`); further lines are dropped"
    );
    let logged: usize = logs
        .iter()
        .map(|e| e["message"].as_str().map_or(0, str::len))
        .sum();
    assert!(logged <= 4 << 20, "{logged} bytes of log kept");

    // One 32 MiB call against the 16 MiB hostcall limit.
    let p = one_stage("flood", g::FLOOD, "with = { mode = \"big-call\" }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "limit");
    assert_eq!(
        done["error"],
        "hostcall data limit hit: the plugin passed more than 16 MiB to the host in one call (limit `hostcall-bytes`); stage `s` was stopped"
    );
}

/// Terminal escapes and a forged event in the log are shown as text;
/// oversized or malformed results are refused by name; a loop through host
/// calls is stopped at its timeout like any other loop.
#[test]
fn what_a_plugin_writes_is_shown_in_the_terminal_and_report_md_never_read_as_markup() {
    for fail in [false, true] {
        let extra = format!("with = {{ mode = \"markup\", count = {} }}", u8::from(fail));
        let p = one_stage("forge", g::FORGE, &extra);
        let plain = p.weir(&["run", "pipeline.toml"]);
        assert_eq!(plain.code, i32::from(fail), "{plain:?}");
        assert!(
            !plain.stdout.contains('\x1b') && !plain.stderr.contains('\x1b'),
            "{plain:?}"
        );
        assert!(
            plain.stdout.contains("\\x1b[31mred"),
            "the escape is shown: {plain:?}"
        );
        let run = p.run_json(&[]);
        let id = run.of("run_started")[0]["run"].as_str().expect("id").to_string();
        let report = p.weir(&["runs", "report", &id]);
        assert_eq!(report.code, 0, "{report:?}");
        let md = std::fs::read_to_string(report.stdout.lines().next().expect("report.md path"))
            .expect("report.md");
        let row = md
            .lines()
            .find(|l| l.starts_with("| s |"))
            .unwrap_or_else(|| panic!("no row for stage s: {md}"));
        assert!(!md.contains('\x1b') && !md.contains("<script>"), "{md}");
        assert!(
            row.contains("&lt;script&gt;") && row.contains("\\\\x1b") && row.contains(" \\\\ "),
            "{row}"
        );
        assert!(row.contains("\\[link\\]\\(javascript:x\\)"), "{row}");
        // Four columns: the `|` in the text is a character, not a column.
        assert_eq!(row.matches(" | ").count(), 3, "{row}");
    }
}

#[test]
pub fn forge() {
    let p = one_stage("forge", g::FORGE, "with = { mode = \"escapes\" }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.log_messages();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains('\x1b') && !l.contains('\r') && !l.contains('\x07')),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07clear screen and retitle".to_string()),
        "{lines:?}"
    );
    // The forged event stays a log line of this stage: no stage `deploy` exists.
    assert!(
        run.events()
            .iter()
            .all(|e| e["stage"] != "deploy" || e["event"] == "stage_log")
    );
    let plain = p.weir(&["run", "pipeline.toml"]);
    assert!(
        !plain.stdout.contains('\x1b') && !plain.stderr.contains('\x1b'),
        "{plain:?}"
    );

    for (mode, error) in [
        (
            "many-outputs",
            "result limit hit: the plugin returned 100000 outputs; the limit is 256 (limit `outputs`); stage `s` was stopped",
        ),
        (
            "huge-output",
            "result limit hit: output `blob` is 8388608 bytes; the limit is 1048576 (limit `output-value`); keep large data in a file and return it as an artifact; stage `s` was stopped",
        ),
        (
            "bad-name",
            "malformed result: output name \"evil\\n::set-output name=x::\" is not a name (1 to 128 letters, digits, `-`, `_` or `.`); stage `s` was stopped",
        ),
    ] {
        let p = one_stage("forge", g::FORGE, &format!("with = {{ mode = \"{mode}\" }}"));
        let run = p.run_json(&[]);
        assert_eq!(run.code, 1, "{mode}: {run:?}");
        let done = run.finished("s");
        assert_eq!(done["failure"], "limit", "{mode}");
        assert_eq!(done["error"], error, "{mode}");
    }

    let p = one_stage(
        "forge",
        g::FORGE,
        "with = { mode = \"host-loop\" }\ntimeout = \"1s\"",
    );
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "stage `s` ran longer than its timeout of 1s and was stopped"
    );
}

/// A copy of the `record` guest with `modules` instantiated beside it.
fn record_with(p: &Project, modules: &[CoreModule]) -> String {
    let record = std::fs::read(g::RECORD).expect("the record guest");
    let path = p.path().join("record-plus.wasm");
    std::fs::write(&path, with_core_modules(&record, modules)).expect("write");
    path.display().to_string()
}

fn memory(pages: u32) -> CoreModule {
    CoreModule {
        memories: vec![pages],
        ..CoreModule::default()
    }
}

/// Memory is counted across all of a Store's memories: three more of
/// 50 MiB each fit the default 256 MiB, not a tenant's 128 MiB.
#[test]
fn many_memories_count_against_one_limit() {
    let p = Project::new();
    let path = record_with(&p, &[memory(800), memory(800), memory(800)]);
    p.write(
        "tenants.toml",
        "[tenants.small]\nlimits = { memory = \"128MiB\" }\n",
    );
    p.pipeline(&format!(
        "[pipeline]\nname = \"mem\"\n{}\n[stages.s]\nuses = \"big\"\n",
        plugin("big", &path)
    ));
    let alone = p.run_json(&[]);
    assert_eq!(alone.code, 0, "{alone:?}");
    let small = p.run_json(&["--tenants", "tenants.toml", "--tenant", "small"]);
    assert_eq!(small.code, 1, "{small:?}");
    let done = small.finished("s");
    assert_eq!(done["failure"], "limit", "{small:?}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("memory limit hit: the plugin asked for ")
            && error.ends_with(" in total, the limit is 128 MiB (limit `memory`); stage `s` was stopped"),
        "{error}"
    );
}

/// Extra memories, tables and table growth, which no Rust guest can
/// declare, are refused with the limit named, before anything runs.
#[test]
fn too_many_memories_and_huge_tables_are_refused_by_name() {
    let cases = [
        (
            vec![CoreModule {
                memories: vec![1, 1],
                ..CoreModule::default()
            }],
            "asks for more than a plugin may have: defined memories count of 2 exceeds the per-instance limit of 1 (limit `memories`)",
        ),
        (
            vec![memory(0), memory(0), memory(0), memory(0), memory(0), memory(0)],
            "asks for more than a plugin may have: The component transitively contains 7 Wasm linear memories, which exceeds the configured maximum of 4 in the pooling allocator (limit `memories`)",
        ),
        (
            (0..40).map(|_| CoreModule::default()).collect(),
            "asks for more than a plugin may have: The component transitively contains 43 core module instances, which exceeds the configured maximum of 32 in the pooling allocator (limit `instances`)",
        ),
        (
            vec![CoreModule {
                table: Some(1_000_000),
                ..CoreModule::default()
            }],
            "asks for more than a plugin may have: table index 0 has a minimum element size of 1000000 which exceeds the limit of 100000 (limit `tables`)",
        ),
        (
            vec![CoreModule {
                table: Some(1),
                grow_table_by: Some(1_000_000),
                ..CoreModule::default()
            }],
            "describe() failed: table limit hit: the plugin asked for ",
        ),
    ];
    for (modules, expected) in cases {
        let p = Project::new();
        let path = record_with(&p, &modules);
        p.pipeline(&format!(
            "[pipeline]\nname = \"t\"\n{}\n[stages.s]\nuses = \"big\"\n",
            plugin("big", &path)
        ));
        let run = p.run_json(&[]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(expected), "{expected}\n{run:?}");
    }
}

/// A plugin built straight from the frozen 0.1.0 contract
/// (`wit/since_v0.1.0`) with wit-bindgen and no weir-sdk loads, is linked
/// through the host's 0.1 bindings, runs, and fails the 0.1 way.
#[test]
pub fn frozen_v0_1() {
    let p = one_stage("frozen-v0-1", g::FROZEN_V0_1, "");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["outputs"]["contract"], "0.1.0");
    assert_eq!(done["summary"], "built from the frozen 0.1.0 contract");

    let inspected = p.weir(&["plugin", "inspect", g::FROZEN_V0_1, "--json"]);
    assert_eq!(inspected.code, 0, "{inspected:?}");
    let info: serde_json::Value = serde_json::from_str(&inspected.stdout).expect("JSON");
    assert_eq!(info["wit"], "weir:plugin@0.1.0");
    assert_eq!(info["contract"], "weir:plugin@0.1.0");
    assert_eq!(
        info["wit_declared"],
        serde_json::Value::Null,
        "built without the SDK's section"
    );
    assert_eq!(info["problems"], serde_json::json!([]));

    let p = one_stage("frozen-v0-1", g::FROZEN_V0_1, "with = { fail = true }");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "plugin");
    assert_eq!(done["error"], "asked to fail");
}
