//! The `process` capability: both keys, a cleared environment, a confined
//! working directory, timeouts that kill the whole group, bounded output,
//! and bubblewrap.

use std::net::TcpListener;
use std::time::Duration;

use crate::guest_paths as g;
use crate::support::{Project, Run, plugin};

fn exec_stage(p: &Project, with: &str, extra: &str) -> Run {
    p.pipeline(&format!(
        "[pipeline]\nname = \"proc\"\n{}{}\n[stages.s]\nuses = \"exec\"\nwith = {with}\n{extra}\n",
        plugin("exec", g::EXEC),
        plugin("sneaky", g::SNEAKY)
    ));
    std::fs::create_dir_all(p.path().join("ws")).expect("workspace directory");
    p.run_json(&["--workspace", "ws"])
}

fn bwrap_installed() -> bool {
    std::path::Path::new("/usr/bin/bwrap").exists()
}

#[test]
pub fn exec() {
    // Granted: runs, output returned and streamed into the log, env cleared.
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"sh\", args = [\"-c\", \"echo out; echo err >&2; env | sort\"] }",
        "allow = { exec = [\"sh\"] }\nenv = { ONLY = \"this\" }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["code"], "0");
    assert_eq!(out["stderr"], "err\n");
    let stdout = out["stdout"].as_str().unwrap();
    let env: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(
        env,
        [
            "ONLY=this",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ],
        "{stdout}"
    );
    let logged: Vec<String> = run
        .of("stage_log")
        .iter()
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect();
    assert!(
        logged.iter().any(|l| l == "out") && logged.iter().any(|l| l == "err"),
        "{logged:?}"
    );
}

#[test]
fn a_program_not_granted_is_refused_by_name() {
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"curl\", args = [\"http://127.0.0.1/\"] }",
        "allow = { exec = [\"sh\"] }",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "denied: process:exec `curl` is not granted to stage `s` (tenant `default`); grant it with allow = { exec = [\"curl\"] }"
    );
}

#[test]
pub fn sneaky() {
    // The pipeline grants `true`, but the plugin never declared `process`:
    // weir's process code is not linked into its Store, and a stand-in
    // answers its call.
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"proc\"\n{}\n[stages.s]\nuses = \"sneaky\"\nallow = {{ exec = [\"true\"] }}\n",
        plugin("sneaky", g::SNEAKY)
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "denied: weir:plugin/process#run `true` refused: plugin `sneaky` does not declare the `process` capability in its manifest, so it is not linked into stage `s` (tenant `default`)"
    );
}

#[test]
fn the_working_directory_stays_in_the_workspace() {
    for (cwd, why) in [
        (
            "..",
            "working directory `..` must be a relative path inside the workspace, without `..`",
        ),
        (
            "/etc",
            "working directory `/etc` must be a relative path inside the workspace, without `..`",
        ),
        (
            "out",
            "working directory `out` resolves outside the workspace (through a symlink)",
        ),
    ] {
        let p = Project::new();
        std::fs::create_dir_all(p.path().join("ws")).unwrap();
        std::os::unix::fs::symlink("/etc", p.path().join("ws/out")).unwrap();
        let run = exec_stage(
            &p,
            &format!("{{ program = \"true\", cwd = {cwd:?} }}"),
            "allow = { exec = [\"true\"] }",
        );
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(run.finished("s")["error"], format!("invalid: {why}"));
    }
}

#[test]
fn a_timeout_kills_a_program_that_ignores_sigterm_and_its_children() {
    // Without bubblewrap the pids are the host's: the background child must
    // be gone (or a zombie) once the stage ends.
    let p = Project::new();
    let script = "trap '' TERM; (trap '' TERM; sleep 600) & echo $! > child.pid; wait";
    let run = exec_stage(
        &p,
        &format!("{{ program = \"sh\", args = [\"-c\", {script:?}], timeout_ms = 300 }}"),
        "allow = { exec = [\"sh\"] }\nsandbox = \"none\"",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["timed_out"], "true");
    assert_eq!(out["signal"], "9", "SIGTERM was ignored, so SIGKILL ended it");
    let pid = std::fs::read_to_string(p.path().join("ws/child.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
    assert!(
        matches!(state, None | Some('Z') | Some('X')),
        "the child {pid} is still running: {stat}"
    );
    let warned = run
        .of("stage_log")
        .iter()
        .any(|e| e["message"] == "`sh` ran past its timeout of 300 ms and was killed with its process group");
    assert!(warned, "{run:?}");
}

#[test]
fn a_timeout_inside_bubblewrap_ends_every_process_in_it() {
    if !bwrap_installed() {
        eprintln!("skipped: bubblewrap is not installed (.ci/run installs it)");
        return;
    }
    // A background writer that ignores SIGTERM keeps touching a file; once
    // the stage ends, the file must stop changing.
    let p = Project::new();
    let script = "trap '' TERM; (trap '' TERM; while true; do date +%s%N > alive; sleep 0.05; done) & wait";
    let run = exec_stage(
        &p,
        &format!("{{ program = \"sh\", args = [\"-c\", {script:?}], timeout_ms = 500 }}"),
        "allow = { exec = [\"sh\"] }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["outputs"]["timed_out"], "true");
    assert_eq!(run.finished("s")["sandbox"], "bubblewrap");
    let before = std::fs::read_to_string(p.path().join("ws/alive")).unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "a plain test thread, not a tokio worker"
    )]
    std::thread::sleep(Duration::from_millis(400));
    let after = std::fs::read_to_string(p.path().join("ws/alive")).unwrap();
    assert_eq!(before, after, "a process in the sandbox outlived the stage");
}

#[test]
fn output_over_the_bound_is_cut_and_reported() {
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"sh\", args = [\"-c\", \"yes 0123456789 | head -c 3000000\"] }",
        "allow = { exec = [\"sh\"] }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["stdout_truncated"], "true");
    assert_eq!(out["stdout_bytes"], (1 << 20).to_string());
    let reported = run.of("stage_log").iter().any(|e| {
        e["message"]
            == "stdout cut at 1 MiB for the plugin (limit `process-output`); the program kept running"
    });
    assert!(reported, "the cut was not reported");
}

#[test]
fn bubblewrap_hides_files_outside_the_workspace() {
    if !bwrap_installed() {
        eprintln!("skipped: bubblewrap is not installed (.ci/run installs it)");
        return;
    }
    let p = Project::new();
    let secret = p.write("secret.txt", "host secret");
    let with = format!(
        "{{ program = \"cat\", args = [{:?}] }}",
        secret.display().to_string()
    );
    let run = exec_stage(&p, &with, "allow = { exec = [\"cat\"] }");
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["code"], "1");
    assert!(
        out["stderr"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{out}"
    );
    assert_eq!(run.finished("s")["sandbox"], "bubblewrap");

    // The explicit opt-out reads it, and says so.
    let p2 = Project::new();
    let run = exec_stage(&p2, &with, "allow = { exec = [\"cat\"] }\nsandbox = \"none\"");
    assert_eq!(run.finished("s")["outputs"]["stdout"], "host secret");
    assert_eq!(run.finished("s")["sandbox"], "none (sandbox = \"none\")");
    let plain = p2.weir(&["run", "--workspace", "ws"]);
    assert!(
        plain.stdout.contains("sandbox none (sandbox = \"none\")"),
        "{plain:?}"
    );
}

#[test]
fn bubblewrap_blocks_the_network_unless_granted() {
    if !bwrap_installed() {
        eprintln!("skipped: bubblewrap is not installed (.ci/run installs it)");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("echo ping > /dev/tcp/127.0.0.1/{port}");
    let with = format!("{{ program = \"bash\", args = [\"-c\", {connect:?}] }}");

    let p = Project::new();
    let run = exec_stage(&p, &with, "allow = { exec = [\"bash\"] }");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["code"], "1", "{out}");
    assert!(
        listener.accept().is_err(),
        "a sandboxed program without a network grant reached the host"
    );

    // Granted network, it still has a namespace of its own: the host's
    // loopback is not there (only weir's proxy is, which checks each host;
    // boundary.rs tries it).
    let p = Project::new();
    let run = exec_stage(
        &p,
        &with,
        "allow = { exec = [\"bash\"], network = [\"127.0.0.1\"] }",
    );
    assert_eq!(run.finished("s")["outputs"]["code"], "1", "{run:?}");
    assert!(
        listener.accept().is_err(),
        "a sandboxed program reached the host's loopback directly"
    );
}

#[test]
fn the_run_shorthand_runs_a_shell_command_under_the_same_rules() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("ws")).unwrap();
    p.pipeline("[pipeline]\nname = \"r\"\n[stages.ok]\nrun = \"echo built > out.txt; echo done\"\n[stages.bad]\nrun = \"echo about to fail; exit 3\"\n");
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("ws/out.txt")).unwrap(),
        "built\n"
    );
    assert_eq!(run.finished("ok")["outputs"]["exit-code"], "0");
    let bad = run.finished("bad");
    assert_eq!(bad["error"], "`echo about to fail; exit 3` exited with code 3");
    assert_eq!(bad["details"], "about to fail");

    // Neither `uses` nor `run`; both.
    p.pipeline("[pipeline]\nname = \"r\"\n[stages.x]\ntimeout = \"1m\"\n[stages.y]\nuses = \"noop\"\nrun = \"true\"\n");
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("pipeline.toml:3:9: stage `x` says neither what plugin it uses nor what to run"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("stage `y` has both `uses` and `run`"),
        "{run:?}"
    );
}

#[test]
fn junit_reads_the_reports_a_command_wrote() {
    let p = Project::new();
    p.write(
        "ws/fixtures/surefire.xml",
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.FooTest" tests="3" failures="1" errors="0" skipped="1" time="0.020">
  <testcase name="works" classname="com.example.FooTest" time="0.005"/>
  <testcase name="fails" classname="com.example.FooTest" time="0.015">
    <failure message="expected &lt;1&gt; but was &lt;2&gt;">at com.example.FooTest.fails(FooTest.java:21)</failure>
  </testcase>
  <testcase name="later" classname="com.example.FooTest" time="0"><skipped/></testcase>
</testsuite>"#,
    );
    // Test tools exit non-zero when tests fail; the cases decide, not the code.
    p.pipeline(
        "[pipeline]\nname = \"j\"\n[stages.test]\nuses = \"junit\"\nallow = { exec = [\"sh\"] }\n\
         with = { command = \"mkdir -p out && cp fixtures/surefire.xml out/TEST-foo.xml && exit 1\", reports = [\"out/*.xml\"] }\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let test = run.finished("test");
    assert_eq!(
        test["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 1, "errored": 0})
    );
    assert_eq!(
        test["error"],
        "test gate failed: 1 failed (at most 0 allowed); failing: com.example.FooTest::fails"
    );
    let fails = &test["cases"][1];
    assert_eq!(fails["duration_ms"], 15);
    assert_eq!(
        fails["message"],
        "expected <1> but was <2>\nat com.example.FooTest.fails(FooTest.java:21)"
    );
    // The merged report keeps Surefire's classnames and is schema-valid.
    let id = run.events()[0]["run"].as_str().expect("run id").to_string();
    let reports = p.path().join(".weir/runs").join(id).join("reports");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains("<testcase classname=\"com.example.FooTest\" name=\"fails\" time=\"0.015\">\n      <failure message=\"expected &lt;1&gt; but was &lt;2&gt;\">"),
        "{junit}"
    );
    crate::support::assert_valid_junit(&reports.join("junit.xml"));

    // No report at all fails the stage, saying how the command ended.
    p.pipeline(
        "[pipeline]\nname = \"j\"\n[stages.test]\nuses = \"junit\"\nallow = { exec = [\"sh\"] }\n\
         with = { command = \"true\", reports = [\"nothing/*.xml\"] }\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("test")["error"],
        "no JUnit report matches [\"nothing/*.xml\"] (`true` exited with code 0)"
    );
}

#[test]
fn build_detects_the_toolchain_and_keeps_artifacts() {
    let p = Project::new();
    p.write(
        "ws/app/Makefile",
        "dist/app.txt:\n\tmkdir -p dist && echo built by make > dist/app.txt\n",
    );
    p.pipeline(
        "[pipeline]\nname = \"b\"\n[stages.build]\nuses = \"build\"\nallow = { exec = [\"make\"] }\n\
         with = { dir = \"app\", artifacts = [\"dist/*.txt\"] }\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "{run:?}");
    let build = run.finished("build");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"built by make\n"))
    };
    assert_eq!(build["outputs"]["command"], "make");
    assert_eq!(build["outputs"]["artifact"], "app/dist/app.txt");
    assert_eq!(build["outputs"]["artifact-sha256"], digest);
    assert_eq!(
        build["outputs"]["artifacts"],
        format!("{digest}  app/dist/app.txt")
    );
    assert_eq!(build["artifacts"][0]["sha256"], digest);
    assert_eq!(build["artifacts"][0]["size"], 14);

    // A failing build fails the stage with the end of its output.
    p.write(
        "ws/app/Makefile",
        "all:\n\t@echo compiling; echo 'error: it broke' >&2; exit 2\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let build = run.finished("build");
    assert_eq!(build["error"], "the build `make` exited with code 2");
    assert!(
        build["details"]
            .as_str()
            .unwrap_or("")
            .contains("error: it broke"),
        "{build}"
    );
}

#[test]
fn programs_run_under_rlimits() {
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"cat\", args = [\"/proc/self/limits\"] }",
        "allow = { exec = [\"cat\"] }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let table = run.finished("s")["outputs"]["stdout"]
        .as_str()
        .expect("stdout")
        .to_string();
    // `Max open files            4096                 4096                 files`
    let soft = |name: &str| -> u64 {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {table}"));
        let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
        fields[0].parse().unwrap_or(u64::MAX)
    };
    assert_eq!(soft("Max cpu time"), 3600, "{table}");
    assert_eq!(soft("Max file size"), 8 << 30, "{table}");
    // Capped at 4096, or lower where weir's own hard limit is lower.
    assert!(soft("Max open files") <= 4096, "{table}");
    assert!(soft("Max processes") <= 4096, "{table}");
}

#[test]
fn a_plugin_cannot_redirect_what_runs_through_its_env() {
    for var in ["PATH", "LD_PRELOAD"] {
        let p = Project::new();
        let run = exec_stage(
            &p,
            &format!("{{ program = \"true\", env = [[\"{var}\", \"/tmp/evil\"]] }}"),
            "allow = { exec = [\"true\"] }",
        );
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(
            run.finished("s")["error"],
            format!(
                "denied: plugin `exec` may not set `{var}` for programs: where programs are found and what they load is set by the stage's `env` in pipeline.toml"
            )
        );
    }
}

#[test]
fn output_without_newlines_stays_bounded() {
    // 8 MB with no newline at all: the host must not buffer it as one line.
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"sh\", args = [\"-c\", \"head -c 8000000 /dev/zero | tr '\\\\0' x\"] }",
        "allow = { exec = [\"sh\"] }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["stdout_truncated"], "true");
    assert_eq!(out["stdout_bytes"], (1 << 20).to_string());
    for e in run.of("stage_log") {
        let len = e["message"].as_str().map_or(0, str::len);
        assert!(len <= (16 << 10) + 64, "a log line of {len} bytes");
    }
}

#[test]
fn inside_bubblewrap_programs_are_unprivileged_and_root_only_files_are_masked() {
    if !bwrap_installed() {
        eprintln!("skipped: bubblewrap is not installed (.ci/run installs it)");
        return;
    }
    let p = Project::new();
    let run = exec_stage(
        &p,
        "{ program = \"sh\", args = [\"-c\", \"id -u; wc -c < /etc/shadow 2>/dev/null || echo absent\"] }",
        "allow = { exec = [\"sh\"] }",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let stdout = run.finished("s")["outputs"]["stdout"]
        .as_str()
        .expect("stdout")
        .to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "65534", "{stdout}");
    assert!(
        lines[1].trim() == "0" || lines[1] == "absent",
        "/etc/shadow was readable: {stdout}"
    );
}

/// A granted program cannot be made to run one that is not: `env PROG`,
/// git's command-running options and variables, a look-alike binary in the
/// workspace, each refused by name.
#[test]
fn the_allowlist_cannot_be_bypassed_through_a_granted_program() {
    for (with, allow, why) in [
        (
            r#"{ program = "env", args = ["sh", "-c", "id"] }"#,
            r#"{ exec = ["env"] }"#,
            "denied: process:exec `env` refused for stage `s` (tenant `default`): `env` would run `sh`, which is not granted; grant it with allow = { exec = [\"sh\"] }",
        ),
        (
            r#"{ program = "env", args = ["-S", "sh -c id"] }"#,
            r#"{ exec = ["env", "sh"] }"#,
            "denied: process:exec `env` refused for stage `s` (tenant `default`): `env -S` splits a string into a command line; run the program itself",
        ),
        (
            r#"{ program = "git", args = ["-c", "core.sshCommand=sh -c id", "fetch", "ssh://x/y"] }"#,
            r#"{ exec = ["git"] }"#,
            "denied: process:exec `git` refused for stage `s` (tenant `default`): git's `-c core.sshCommand` is not one of the settings a plugin may pass (protocol.file.allow, uploadpack.allowAnySHA1InWant, safe.directory, init.defaultBranch, user.name, user.email, advice.detachedHead, gc.auto, color.ui); others can make git run any command",
        ),
        (
            r#"{ program = "git", args = ["ls-remote", "--upload-pack=sh -c id", "."] }"#,
            r#"{ exec = ["git"] }"#,
            "denied: process:exec `git` refused for stage `s` (tenant `default`): git's `--upload-pack=sh -c id` names a program for git to run; it is not allowed from a plugin",
        ),
        (
            r#"{ program = "git", args = ["fetch"], env = [["GIT_SSH_COMMAND", "sh -c id"]] }"#,
            r#"{ exec = ["git"] }"#,
            "denied: plugin `exec` may not set `GIT_SSH_COMMAND` for programs: stage `s` (tenant `default`) does not list it; add allow = { env = [\"GIT_SSH_COMMAND\"] } to the stage if the pipeline means it. It is one the tenant must also allow by name ([tenants.default] allow.env): git reads commands, protocols (`ext::`), hooks and configuration from GIT_* variables.",
        ),
        (
            r#"{ program = "./git", args = ["--version"] }"#,
            r#"{ exec = ["git"] }"#,
            "denied: process:exec `./git` is not granted to stage `s` (tenant `default`); grant it with allow = { exec = [\"./git\"] }",
        ),
    ] {
        let p = Project::new();
        let run = exec_stage(&p, with, &format!("allow = {allow}"));
        assert_eq!(run.code, 1, "{with}: {run:?}");
        assert_eq!(run.finished("s")["error"], why, "{with}");
    }
    // A `git` planted in the workspace is not what `git` runs.
    let p = Project::new();
    let fake = p.write("ws/git", "#!/bin/sh\necho pwned\n");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let run = exec_stage(
        &p,
        r#"{ program = "git", args = ["--version"] }"#,
        r#"allow = { exec = ["git"] }"#,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let stdout = run.finished("s")["outputs"]["stdout"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(stdout.starts_with("git version"), "{stdout}");
}
