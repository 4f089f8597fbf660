//! `weir plugins`, the example pipeline, and the compile cache.

use crate::guest_paths as g;
use crate::support::Project;

#[test]
fn plugins_list_shows_the_builtins() {
    let run = Project::new().weir(&["plugins", "list"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{run:?}");
    let row = |name: &str| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cols| cols.first().is_some_and(|c| c == name))
            .unwrap_or_else(|| panic!("no `{name}` in {run:?}"))
    };
    assert_eq!(row("checksum")[1..4], ["stage", "0.1.0", "Hashes"]);
    assert_eq!(row("noop")[1], "stage");
    assert_eq!(row("require-files")[1], "analyzer");
    assert_eq!(row("deploy")[1], "deployer");
    for strategy in ["canary", "blue-green", "rolling", "recreate"] {
        assert_eq!(row(strategy)[1], "strategy");
    }
    assert_eq!(row("canary-metrics")[1], "analyzer");
}

#[test]
fn plugins_inspect_a_builtin_and_a_file() {
    let run = Project::new().weir(&["plugins", "inspect", "checksum", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let info: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(info["kind"], "stage");
    assert_eq!(info["wit"], "weir:plugin@0.1.0");
    assert_eq!(info["sha256"].as_str().map(str::len), Some(64));
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(imports.contains(&"weir:plugin/log@0.1.0"), "{imports:?}");
    assert!(
        info["config_schema"]
            .as_str()
            .is_some_and(|s| s.contains("\"paths\""))
    );

    let run = Project::new().weir(&["plugins", "inspect", g::EXEC]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("kind          stage"), "{run:?}");
    assert!(run.stdout.contains("capabilities  process"), "{run:?}");
    assert!(run.stdout.contains("  weir:plugin/process@0.1.0"), "{run:?}");

    let run = Project::new().weir(&["plugins", "inspect", "nonesuch"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("`nonesuch` is neither a file nor a built-in plugin"),
        "{run:?}"
    );
}

#[test]
fn the_quickstart_checks_out_builds_and_tests_the_service() {
    let pipeline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart/pipeline.toml"
    );
    let p = Project::new();
    struct Down<'a>(&'a Project);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.weir(&["target", "down"]);
        }
    }
    let _down = Down(&p);
    let run = p.weir(&["run", pipeline, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let checkout = run.finished("checkout");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert_eq!(
        checkout["outputs"]["sha"],
        String::from_utf8_lossy(&head.stdout).trim()
    );
    let build = run.finished("build");
    let artifact = &build["artifacts"][0];
    assert_eq!(
        artifact["path"],
        "src/examples/quickstart/service/target/release/quickstart-service"
    );
    assert_eq!(artifact["sha256"], build["outputs"]["artifact-sha256"]);
    assert!(std::path::Path::new(artifact["stored"].as_str().expect("stored")).is_file());
    let test = run.finished("test");
    assert_eq!(
        test["tests"],
        serde_json::json!({"passed": 5, "failed": 0, "skipped": 0, "errored": 0})
    );
    let names: Vec<&str> = test["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"tests::version_reports_name_and_version"),
        "{names:?}"
    );

    // The first release goes live; a build with errors built in is
    // caught by the canary and rolled back, and the first keeps serving.
    let deployed = run.finished("deploy");
    let good = deployed["outputs"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert!(
        deployed["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("promoted quickstart-staging {good}"))),
        "{deployed}"
    );
    // The run deployed to staging, the pipeline's default environment,
    // with staging's settings; production's differ and need approval.
    let report = p.weir(&[
        "runs",
        "report",
        run.of("run_started")[0]["run"].as_str().expect("id"),
    ]);
    assert_eq!(report.code, 0, "{report:?}");
    let md =
        std::fs::read_to_string(report.stdout.lines().next().expect("report.md path")).expect("report.md");
    assert!(md.contains("**environment** staging"), "{md}");
    assert!(
        md.contains("## Rollout: deploy") && md.contains("| promoted |"),
        "{md}"
    );
    assert!(md.contains("## Tests: test") && md.contains("5 passed"), "{md}");
    for (env, replicas, service) in [
        ("staging", 1, "quickstart-staging"),
        ("production", 2, "quickstart"),
    ] {
        let v = p.weir(&["validate", pipeline, "--env", env]);
        assert_eq!(v.code, 0, "{v:?}");
        assert!(v.stdout.contains(&format!("\"replicas\":{replicas}")), "{v:?}");
        assert!(v.stdout.contains(&format!("\"service\":\"{service}\"")), "{v:?}");
    }
    let diff = p.weir(&["env", "diff", "staging", "production", "-p", pipeline]);
    assert!(
        diff.stdout
            .contains("- deploy.replicas = 1\n+ deploy.replicas = 2"),
        "{diff:?}"
    );
    let out = p
        .command(&["run", pipeline, "--json"])
        .env("QUICKSTART_FAULT", "errors")
        .output()
        .expect("weir");
    let bad = crate::support::Run::from(out);
    assert_eq!(bad.code, 1, "{bad:?}");
    let rolled_back = bad.finished("deploy");
    assert_eq!(rolled_back["failure"], "rolled_back", "{rolled_back}");
    let error = rolled_back["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("error rate") && error.contains(&format!("all traffic is back on {good}")),
        "{error}"
    );
    let status = p.weir(&["target", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status["services"][0]["stable"], good.as_str());
}

#[test]
fn the_readme_example_runs() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello/pipeline.toml");
    let p = Project::new();
    let run = p.weir(&["run", example, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let notes = run.finished("notes");
    assert_eq!(notes["outputs"]["version"], "0.1.0");
    let digest = run.finished("checksum")["outputs"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(run.finished("verify")["outputs"]["verdict"], "pass");
    let published =
        std::fs::read_to_string(run.workspace().join("publish/RELEASE_NOTES.md")).expect("published notes");
    assert!(published.contains(&digest), "{published}");
    let sums = std::fs::read_to_string(run.workspace().join("dist/SHA256SUMS")).expect("sums");
    assert_eq!(sums.lines().count(), 2, "{sums}");
}

#[test]
fn a_second_run_loads_compiled_plugins_from_the_cache() {
    let p = Project::new();
    let cache = p.path().join("cache");
    p.pipeline("[pipeline]\nname = \"c\"\n[stages.a]\nuses = \"noop\"\n");
    let run = |p: &Project| {
        let out = p
            .command(&["run", "--json"])
            .env("WEIR_CACHE_DIR", &cache)
            .output()
            .expect("weir");
        assert!(out.status.success());
    };
    run(&p);
    let entries: Vec<_> = std::fs::read_dir(cache.join("components"))
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(entries.len(), 1, "one compiled component cached");
    let path = entries[0].path();
    assert!(path.extension().is_some_and(|e| e == "cwasm"));
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    run(&p);
    let again = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        written, again,
        "the second run recompiled instead of loading the cache"
    );

    // A corrupt entry is discarded and rebuilt, not trusted.
    std::fs::write(&path, b"corrupt").expect("corrupt the entry");
    run(&p);
    assert_ne!(std::fs::read(&path).expect("entry"), b"corrupt");
}

#[test]
fn a_cache_inside_the_workspace_is_refused() {
    let p = Project::new();
    p.pipeline("[pipeline]\nname = \"c\"\n[stages.a]\nuses = \"noop\"\n");
    std::fs::create_dir_all(p.path().join("ws")).unwrap();
    let out = p
        .command(&["run", "--workspace", "ws"])
        .env("WEIR_CACHE_DIR", p.path().join("ws/cache"))
        .output()
        .expect("weir");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/ws/cache is inside the workspace"), "{stderr}");
    assert!(
        stderr.contains("a plugin could plant compiled code in it"),
        "{stderr}"
    );
}

#[test]
fn a_cache_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    let cache = p.path().join("open-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    p.pipeline("[pipeline]\nname = \"c\"\n[stages.a]\nuses = \"noop\"\n");
    let out = p
        .command(&["run", "--json"])
        .env("WEIR_CACHE_DIR", &cache)
        .output()
        .expect("weir");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lets others write to it"), "{stderr}");
    assert!(
        !cache.join("components").exists(),
        "nothing was written to an open cache"
    );
}

/// Run `weir ARGS` with its stdout's reader already gone: how it ended
/// and what it said on stderr.
fn with_the_reader_gone(p: &Project, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut child = p
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts");
    drop(child.stdout.take());
    let mut stderr = String::new();
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut stderr);
    (child.wait().expect("weir ends"), stderr)
}

#[test]
fn every_command_family_ends_quietly_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    let p = Project::new();
    p.pipeline(
        r#"[pipeline]
name = "piped"

[stages.a]
uses = "noop"
"#,
    );
    let first = p.run_json(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    let run = first.events()[0]["run"].as_str().expect("run id").to_string();
    // Printers end with the reader (SIGPIPE, as `ls | head` does); a run
    // goes on to its end and says nothing of the closed pipe.
    for args in [
        vec!["runs", "list"],
        vec!["runs", "list", "--json"],
        vec!["runs", "show", &run],
        vec!["runs", "logs", &run],
        vec!["plugins", "list"],
        vec!["plugins", "list", "--json"],
        vec!["validate", "pipeline.toml"],
        vec!["target", "status"],
        vec!["run", "pipeline.toml"],
        vec!["run", "pipeline.toml", "--json"],
    ] {
        let (status, stderr) = with_the_reader_gone(&p, &args);
        assert!(!stderr.contains("panicked"), "weir {args:?} panicked: {stderr}");
        assert_ne!(status.code(), Some(101), "weir {args:?}: {stderr}");
        assert!(
            status.success() || status.signal() == Some(13),
            "weir {args:?} ended {status:?}: {stderr}"
        );
    }
    // The runs with no reader still ran to their end.
    let list = p.weir(&["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&list.stdout).expect("runs JSON");
    let succeeded = runs
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["status"] == "succeeded").count());
    assert_eq!(succeeded, 3, "{runs}");
}
