//! `weir plugin new`, `build` and `inspect`: what a plugin author runs
//! first, from nothing to a digest-pinned plugin in a pipeline.

use std::path::Path;

use serde_json::Value;

use crate::support::{Project, Run};

/// The guests' target directory: the scaffolds build their dependencies
/// (weir-sdk, wit-bindgen, serde) once, there, not once per test project.
fn shared_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests")
}

/// The scaffold's unit test, natively, in the directory where CI builds
/// the guest crates' native tests (their dependencies are there).
fn cargo_test(dir: &Path) -> Run {
    let host = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    crate::support::without_build_wrappers(&mut cargo)
        .args(["test", "--quiet", "--target", &host, "--target-dir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests-native"))
        .current_dir(dir)
        .output()
        .expect("cargo runs")
        .into()
}

fn weir_in(dir: &Path, args: &[&str]) -> Run {
    let mut weir = std::process::Command::new(crate::support::weir_bin());
    crate::support::without_build_wrappers(&mut weir)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .env("WEIR_STATE_DIR", crate::support::state_beside(dir))
        .env_remove("WEIR_TENANTS")
        .output()
        .expect("weir runs")
        .into()
}

/// Each kind's project builds as it is, its component is what `build`
/// says (size, digest, a table pinning it), and the sample pipeline runs
/// it: the work kinds on the project's own files, the deploy kinds by
/// deploying the sample service to the local target.
#[test]
fn every_kind_scaffolds_builds_and_runs() {
    let p = Project::new();
    for (kind, stage) in [
        ("stage", "check"),
        ("analyzer", "check"),
        ("test-runner", "check"),
        ("strategy", "deploy"),
        ("deployer", "deploy"),
    ] {
        let name = format!("my-{kind}");
        let new = weir_in(p.path(), &["plugin", "new", &name, "--kind", kind]);
        assert_eq!(new.code, 0, "{new:?}");
        assert!(new.stdout.contains(&format!("Created {name}, ")), "{new:?}");
        let dir = p.path().join(&name);
        let tested = cargo_test(&dir);
        assert_eq!(tested.code, 0, "{kind}: the scaffold's unit test: {tested:?}");
        assert!(tested.stdout.contains("1 passed"), "{tested:?}");
        // The sample pipeline names target/…: the shared directory.
        std::os::unix::fs::symlink(shared_target(), dir.join("target")).expect("symlink");

        let built = weir_in(&dir, &["plugin", "build", "--json"]);
        assert_eq!(built.code, 0, "{built:?}");
        let out: Value = serde_json::from_str(&built.stdout).expect("JSON");
        let path = out["path"].as_str().expect("path").to_string();
        let bytes = std::fs::read(&path).expect("the component is where build says");
        assert_eq!(out["size"], bytes.len() as u64);
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        assert_eq!(out["sha256"], digest.as_str());
        let snippet = out["snippet"].as_str().unwrap_or_default();
        let wasm = format!("{}.wasm", name.replace('-', "_"));
        assert_eq!(
            snippet,
            format!(
                "[plugins.{name}]\npath = \"target/wasm32-wasip2/release/{wasm}\"\nsha256 = \"{digest}\"\n"
            )
        );

        let inspected = weir_in(&dir, &["plugin", "inspect", &path, "--json"]);
        assert_eq!(inspected.code, 0, "{inspected:?}");
        let info: Value = serde_json::from_str(&inspected.stdout).expect("JSON");
        assert_eq!(info["kind"], kind);
        assert_eq!(info["name"], name.as_str());
        assert_eq!(info["wit"], "weir:plugin@0.1.0");

        // Pinned as build says, the sample pipeline still loads it.
        let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).expect("pipeline");
        let pinned = pipeline.replace(
            &format!("[plugins.{name}]\npath = \"target/wasm32-wasip2/release/{wasm}\"\n"),
            snippet,
        );
        assert_ne!(pinned, pipeline, "the sample names the built path");
        std::fs::write(dir.join("pipeline.toml"), pinned).expect("write");
        let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", ".", "--json"]);
        let down = || weir_in(&dir, &["target", "down"]);
        if run.code != 0 {
            down();
        }
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        let done = run.finished(stage);
        assert_eq!(done["status"], "succeeded", "{run:?}");
        if kind == "strategy" {
            // A first release takes all the traffic at once; the next one
            // goes through the sample's steps.
            let second = weir_in(&dir, &["run", "pipeline.toml", "--workspace", ".", "--json"]);
            down();
            assert_eq!(second.code, 0, "{second:?}");
            let summary = second.finished(stage)["summary"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(summary.contains("(50% → 100%; 2 analyses passed)"), "{summary}");
        } else if kind == "deployer" {
            down();
            assert!(
                done["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("promoted my-deployer-sample "),
                "{done}"
            );
        }
    }
    // The stage counted its own source; the analyzer found markers in its
    // own; the test runner compared its golden file.
    let again = weir_in(p.path(), &["plugin", "new", "my-stage", "--kind", "stage"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again
            .stderr
            .contains("already exists and is not empty; choose another name or --dir (nothing was written)"),
        "{again:?}"
    );
}

/// Names, and directories that are not plugin projects, are refused
/// before anything is written or built.
#[test]
fn bad_names_and_non_projects_are_refused_by_name() {
    let p = Project::new();
    let bad = weir_in(p.path(), &["plugin", "new", "My_Plugin", "--kind", "stage"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr
            .contains("`My_Plugin` is not a plugin name: use lowercase letters, digits and dashes"),
        "{bad:?}"
    );
    assert!(!p.path().join("My_Plugin").exists());
    let nothing = weir_in(p.path(), &["plugin", "build"]);
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert!(nothing.stderr.contains("has no Cargo.toml"), "{nothing:?}");
}

/// A plugin whose weir-sdk declares another contract is refused before it
/// is compiled, with both versions named.
#[test]
fn a_plugin_for_another_contract_is_refused_with_both_versions() {
    let p = Project::new();
    let record = std::fs::read(crate::guest_paths::RECORD).expect("the record guest");
    let ours = b"weir-wit-packageweir:plugin@0.1.0";
    let at = record
        .windows(ours.len())
        .position(|w| w == ours)
        .expect("weir-sdk wrote its weir-wit-package section");
    let mut other = record.clone();
    other[at..at + ours.len()].copy_from_slice(b"weir-wit-packageweir:plugin@0.9.0");
    std::fs::write(p.path().join("other.wasm"), &other).expect("write");
    std::fs::write(
        p.path().join("pipeline.toml"),
        "[pipeline]\nname = \"p\"\n[plugins.other]\npath = \"other.wasm\"\n[stages.s]\nuses = \"other\"\n",
    )
    .expect("write");
    let refused = weir_in(p.path(), &["run", "pipeline.toml"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "was built with a weir-sdk for weir:plugin@0.9.0, but this weir supports weir:plugin@0.1.0"
        ),
        "{refused:?}"
    );
    // inspect shows it all the same, with the problem listed.
    let inspected = weir_in(p.path(), &["plugin", "inspect", "other.wasm"]);
    assert_eq!(inspected.code, 1, "{inspected:?}");
    assert!(
        inspected.stdout.contains(
            "was built with a weir-sdk for weir:plugin@0.9.0, but this weir supports weir:plugin@0.1.0; rebuild it against a matching weir-sdk"
        ),
        "{inspected:?}"
    );
    let ok = weir_in(
        p.path(),
        &["plugin", "inspect", crate::guest_paths::RECORD, "--json"],
    );
    let info: Value = serde_json::from_str(&ok.stdout).expect("JSON");
    assert_eq!(info["wit_declared"], "weir:plugin@0.1.0");
}

/// The sample stage `name` with a stage before it and one after it. (Each
/// test has its own name: the scaffolds share a target directory, where
/// one crate's component has one path.)
fn dev_project(p: &Project, name: &str) -> std::path::PathBuf {
    let new = weir_in(p.path(), &["plugin", "new", name, "--kind", "stage"]);
    assert_eq!(new.code, 0, "{new:?}");
    let dir = p.path().join(name);
    std::os::unix::fs::symlink(shared_target(), dir.join("target")).expect("symlink");
    let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).expect("pipeline");
    let pipeline = pipeline.replace("[stages.check]\n", "[stages.check]\nneeds = [\"prep\"]\n")
        + &format!(
            "\n[stages.prep]\nuses = \"checksum\"\nwith = {{ paths = [\"src/**\"] }}\n\n[stages.after]\nuses = \"checksum\"\nneeds = [\"check\"]\nwith = {{ paths = [\"{name}-report.txt\"] }}\n"
        );
    std::fs::write(dir.join("pipeline.toml"), pipeline).expect("write");
    dir
}

fn edit_summary(dir: &Path, to: &str) {
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).expect("lib.rs");
    let from = "format!(\"{total} lines in {} file(s)\", files.len())";
    let changed = text.replace(
        from,
        &format!("format!(\"{{total}} {to} in {{}} file(s)\", files.len())"),
    );
    assert_ne!(changed, text, "the template's summary is {from}");
    std::fs::write(lib, changed).expect("write");
}

/// `weir dev --once`: the first time, with no run to take inputs from, the
/// whole pipeline runs; after an edit, only the stage runs, rebuilt, with
/// its upstream stage taken from the run before and nothing after it.
#[test]
fn dev_reruns_one_stage_on_the_last_runs_results() {
    let p = Project::new();
    let dir = dev_project(&p, "dev-once");
    let first = weir_in(&dir, &["dev", "--once", "--workspace", ".", "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stderr
            .contains("no earlier run of `dev-once-sample` here: running the whole pipeline once"),
        "{first:?}"
    );
    for stage in ["prep", "check", "after"] {
        assert_eq!(first.finished(stage)["status"], "succeeded", "{first:?}");
    }
    let first_id = first.of("run_finished")[0]["run"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    edit_summary(&dir, "non-blank lines");
    let second = weir_in(&dir, &["dev", "--once", "--json"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second
            .stderr
            .contains(&format!("running `check` on run {first_id}'s workspace")),
        "{second:?}"
    );
    assert_eq!(
        second.of("run_started")[0]["stages"],
        serde_json::json!(["check", "prep"])
    );
    assert_eq!(
        second.finished("prep")["reused"],
        serde_json::json!({"from": "dev", "run": first_id})
    );
    let check = second.finished("check");
    assert!(check.get("reused").is_none_or(Value::is_null), "{check}");
    assert!(
        check["summary"]
            .as_str()
            .unwrap_or_default()
            .ends_with(" non-blank lines in 1 file(s)"),
        "{check}"
    );
    assert!(second.of("stage_finished").iter().all(|e| e["stage"] != "after"));

    let wrong = weir_in(&dir, &["dev", "--once", "--stage", "after"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(
        wrong.stderr.contains("stage `after` of pipeline.toml does not use `dev-once`, the plugin the project builds; stages that do: check"),
        "{wrong:?}"
    );
}

/// `weir dev` without `--once` watches the project: an edit rebuilds the
/// plugin and runs the stage again, and Ctrl-C ends it.
#[test]
fn dev_watches_and_reruns_on_an_edit() {
    use std::io::BufRead;
    let p = Project::new();
    let dir = dev_project(&p, "dev-watch");
    let mut weir = std::process::Command::new(crate::support::weir_bin());
    crate::support::without_build_wrappers(&mut weir)
        .args(["dev", "--workspace", ".", "--json"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .env("WEIR_STATE_DIR", crate::support::state_beside(&dir))
        .env_remove("WEIR_TENANTS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    /// Ends `weir dev` however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Stop(weir.spawn().expect("weir dev starts"));
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The summaries of `check`, one per run, until `want` runs finished.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut summaries = Vec::new();
    let wait_for_runs = |want: usize, summaries: &mut Vec<String>| {
        let mut runs = 0;
        while runs < want {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("weir dev reports a run in time");
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["event"] == "stage_finished" && event["stage"] == "check" {
                summaries.push(event["summary"].as_str().unwrap_or_default().to_string());
            }
            if event["event"] == "run_finished" {
                runs += 1;
            }
        }
    };
    wait_for_runs(1, &mut summaries);
    edit_summary(&dir, "lines of code");
    wait_for_runs(1, &mut summaries);
    let stopped = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = child.0.wait().expect("weir dev ends");
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C ends weir dev, as an interrupted command"
    );
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(summaries[0].ends_with(" lines in 1 file(s)"), "{summaries:?}");
    assert!(
        summaries[1].ends_with(" lines of code in 1 file(s)"),
        "{summaries:?}"
    );
}
