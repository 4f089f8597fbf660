//! The `scan` and `lint` analyzers, analyzer gates and `reports/scan.sarif`,
//! driven through the real `weir` binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Project, Run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository")
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// `../shared/advisory-db` beside the repository: present here and in CI,
/// not in a user's clone. Without it the tests that need it say so and
/// pass, unless `WEIR_REQUIRE_ADVISORY_DB` is set (as `.ci/run` does).
fn advisory_db() -> Option<PathBuf> {
    let db = repo().join("../shared/advisory-db");
    if db.join("crates").is_dir() {
        return Some(db.canonicalize().expect("canonical advisory-db"));
    }
    assert!(
        std::env::var_os("WEIR_REQUIRE_ADVISORY_DB").is_none(),
        "WEIR_REQUIRE_ADVISORY_DB is set but {} is missing",
        db.display()
    );
    eprintln!("skipped: no advisory database at {}", db.display());
    None
}

/// A program on PATH, or `None` (and a note) when it is not installed and
/// `WEIR_REQUIRE_LINTERS` is not set.
fn linter(program: &str) -> Option<PathBuf> {
    // ruff's Python package knows where its binary is (PATH may only have
    // a pyenv shim, which needs pyenv itself to run).
    let from_python = (program == "ruff")
        .then(|| {
            std::process::Command::new("python3")
                .args(["-c", "import ruff; print(ruff.find_ruff_bin())"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
        .flatten();
    let found = from_python.filter(|p| p.is_file()).or_else(|| {
        std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
            .map(|p| p.canonicalize().unwrap_or(p))
    });
    if found.is_none() {
        assert!(
            std::env::var_os("WEIR_REQUIRE_LINTERS").is_none(),
            "WEIR_REQUIRE_LINTERS is set but `{program}` is not on PATH"
        );
        eprintln!("skipped: `{program}` is not installed");
    }
    found
}

fn findings(run: &Run, stage: &str) -> Vec<Value> {
    run.finished(stage)["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn lines_of(text: &str) -> Vec<(String, u32, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let path = f.next().expect("path").to_string();
            let line = f.next().expect("line").parse().expect("line number");
            (path, line, f.next().unwrap_or("").to_string())
        })
        .collect()
}

fn scan_pipeline(with: &str, allow: &str) -> String {
    format!("[pipeline]\nname = \"scan\"\n\n[stages.scan]\nuses = \"scan\"\nwith = {with}\n{allow}\n")
}

#[test]
fn scan_agrees_with_cargo_audit_on_thousands_of_edge_cases() {
    let Some(db) = advisory_db() else { return };
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("ws")).expect("workspace");
    std::fs::copy(fixtures().join("deps/Cargo.lock"), p.path().join("ws/Cargo.lock"))
        .expect("copy lock file");
    let db = db.display().to_string();
    p.pipeline(&scan_pipeline(
        &format!("{{ checks = [\"dependencies\"], advisory-db = {db:?} }}"),
        &format!("allow = {{ read = [{db:?}] }}"),
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "vulnerable packages fail the stage: {}", run.stderr);
    let mut ours: BTreeSet<String> = BTreeSet::new();
    for f in findings(&run, "scan") {
        let fields = &f["fields"];
        ours.insert(format!(
            "{} {} {} {}",
            fields["kind"].as_str().unwrap_or(""),
            fields["package"].as_str().unwrap_or(""),
            fields["version"].as_str().unwrap_or(""),
            fields["advisory"].as_str().unwrap_or("")
        ));
        assert_eq!(f["path"], "Cargo.lock");
        assert!(f["line"].as_u64().is_some_and(|l| l > 1), "{f}");
    }
    let expected = std::fs::read_to_string(fixtures().join("deps/cargo-audit.expected")).expect("expected");
    let theirs: BTreeSet<String> = expected
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(theirs.len() > 8000, "the recorded answer covers the database");
    let missing: Vec<_> = theirs.difference(&ours).take(10).collect();
    let extra: Vec<_> = ours.difference(&theirs).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "weir and cargo audit disagree: only cargo audit {missing:?}, only weir {extra:?}"
    );
    let summary = run.finished("scan")["summary"].as_str().unwrap_or("").to_string();
    assert!(
        summary.contains("7195 vulnerable dependencies among 5757 packages"),
        "{summary}"
    );
}

#[test]
fn scan_finds_every_planted_secret_and_no_decoy() {
    let corpus = fixtures().join("secrets/corpus");
    let p = Project::new();
    p.pipeline(&scan_pipeline("{ checks = [\"secrets\"] }", ""));
    let run = p.run_json(&["--workspace", corpus.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 1, "{run:?}");
    let truth = lines_of(&std::fs::read_to_string(fixtures().join("secrets/truth.txt")).expect("truth"));
    let found: BTreeSet<(String, u32, String)> = findings(&run, "scan")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0) as u32,
                f["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let planted: BTreeSet<(String, u32, String)> = truth.into_iter().collect();
    assert!(planted.len() >= 30);
    let missed: Vec<_> = planted.difference(&found).collect();
    let decoys: Vec<_> = found.difference(&planted).collect();
    assert!(missed.is_empty(), "planted secrets missed: {missed:?}");
    assert!(decoys.is_empty(), "decoys reported as secrets: {decoys:?}");
    // No fewer than detect-secrets: every planted secret it finds, weir finds.
    let theirs = lines_of(
        &std::fs::read_to_string(fixtures().join("secrets/detect-secrets.expected")).expect("expected"),
    );
    for (path, line, _) in &theirs {
        assert!(
            found.iter().any(|(p, l, _)| p == path && l == line),
            "detect-secrets finds {path}:{line}, weir does not"
        );
    }
    assert!(found.len() >= theirs.len());
}

/// The longest run of token characters on `line`: the planted secret.
fn secret_on(line: &str) -> String {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "+/_-.~".contains(c)))
        .max_by_key(|s| s.len())
        .unwrap_or("")
        .to_string()
}

#[test]
fn secrets_are_redacted_in_every_output() {
    let corpus = fixtures().join("secrets/corpus");
    let truth = lines_of(&std::fs::read_to_string(fixtures().join("secrets/truth.txt")).expect("truth"));
    let secrets: Vec<String> = truth
        .iter()
        .map(|(path, line, _)| {
            let text = std::fs::read_to_string(corpus.join(path)).expect("corpus file");
            secret_on(text.lines().nth(*line as usize - 1).expect("line"))
        })
        .filter(|s| s.len() >= 16 && !s.starts_with("-----"))
        .collect();
    assert!(secrets.len() >= 25, "{secrets:?}");
    let p = Project::new();
    p.pipeline(&scan_pipeline("{ checks = [\"secrets\"] }", ""));
    let ws = corpus.to_str().expect("utf-8 path");
    let json = p.run_json(&["--workspace", ws]);
    let plain = p.weir(&["run", "pipeline.toml", "--workspace", ws]);
    let sarif = std::fs::read_to_string(p.path().join(sarif_path_in(&p, &json))).expect("scan.sarif");
    for s in &secrets {
        // What may be shown is the prefix naming the token type.
        let hidden = &s[s.len() - 12..];
        for (name, out) in [
            ("--json", &json.stdout),
            ("plain output", &plain.stdout),
            ("stderr", &plain.stderr),
            ("SARIF", &sarif),
        ] {
            assert!(
                !out.contains(hidden),
                "{name} shows a secret ending in …{}",
                &hidden[8..]
            );
        }
    }
}

fn sarif_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("sarif/sarif-schema-2.1.0.json")).expect("schema"),
    )
    .expect("schema is JSON");
    jsonschema::options()
        .offline()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

fn assert_valid_sarif(doc: &Value) {
    let errors: Vec<String> = sarif_validator()
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "scan.sarif is not valid SARIF 2.1.0: {errors:#?}"
    );
}

#[test]
fn scan_sarif_is_valid_sarif_2_1_0_with_rules_results_and_levels() {
    let p = Project::new();
    p.write(
        "ws/Dockerfile",
        "FROM node\nRUN curl -fsSL https://get.example.com | sh\n",
    );
    p.write(
        "ws/.github/workflows/ci.yml",
        "jobs:\n  a:\n    steps:\n      - uses: some-org/action@v1\n",
    );
    p.write(
        "ws/conf/app dev.env",
        "GITHUB_TOKEN=ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T\n", // weir:ignore github-token (a made-up token the tests plant)
    );
    p.write("ws/src/clean.rs", "fn main() {}\n");
    p.pipeline(
        "[pipeline]\nname = \"sarif\"\n\n[stages.scan]\nuses = \"scan\"\n\n[stages.clean]\nuses = \"scan\"\nwith = { dir = \"src\" }\n\n[stages.files]\nuses = \"require-files\"\nwith = { paths = [\"src/clean.rs\"] }\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let path = p.path().join(sarif_path_in(&p, &run));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("scan.sarif")).expect("JSON");
    assert_valid_sarif(&doc);
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3, "one SARIF run per analyzer stage");
    let scan = runs
        .iter()
        .find(|r| r["properties"]["stage"] == "scan")
        .expect("the scan run");
    assert_eq!(scan["tool"]["driver"]["name"], "scan");
    let rules: Vec<&str> = scan["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for rule in [
        "curl-pipe-shell",
        "dockerfile-root-user",
        "actions-unpinned-third-party",
        "github-token",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
    let token = scan["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "github-token")
        .expect("the token");
    assert_eq!(token["level"], "error");
    let loc = &token["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "conf/app%20dev.env");
    assert_eq!(loc["region"]["startLine"], 1);
    assert_eq!(loc["region"]["startColumn"], 14);
    let clean = runs
        .iter()
        .find(|r| r["properties"]["stage"] == "clean")
        .expect("the clean run");
    assert_eq!(clean["results"], serde_json::json!([]));

    // A run with no analyzer still writes a valid, empty log.
    let q = Project::new();
    q.pipeline("[pipeline]\nname = \"none\"\n\n[stages.a]\nuses = \"noop\"\n");
    let run = q.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(q.path().join(sarif_path_in(&q, &run))).expect("scan.sarif"),
    )
    .expect("JSON");
    assert_valid_sarif(&doc);
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "never an empty `runs`: {doc}");
    assert_eq!(runs[0]["tool"]["driver"]["name"], "weir");
    assert_eq!(runs[0]["results"], serde_json::json!([]));
}

/// `weir advisories fetch` clones the database into weir's data directory
/// (here from a local git copy of the snapshot: no network), a `scan` that
/// names no database uses it, and a second fetch updates it in place.
#[test]
fn advisories_fetch_keeps_the_database_scan_uses_by_default() {
    let Some(db) = advisory_db() else { return };
    let p = Project::new();
    let origin = p.path().join("advisory-origin");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&db)
        .arg(&origin)
        .status()
        .expect("cp");
    assert!(copied.success());
    crate::git::git(&origin, &["init", "--quiet"]);
    crate::git::git(&origin, &["add", "."]);
    crate::git::git(&origin, &["commit", "--quiet", "-m", "snapshot"]);

    // Before: the summary says how to get one.
    std::fs::create_dir_all(p.path().join("ws")).expect("workspace");
    std::fs::copy(fixtures().join("deps/Cargo.lock"), p.path().join("ws/Cargo.lock")).expect("lock");
    p.pipeline(&scan_pipeline("{ checks = [\"dependencies\"] }", ""));
    let before = p.run_json(&["--workspace", "ws"]);
    assert_eq!(before.code, 0, "{before:?}");
    let summary = before.finished("scan")["summary"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(summary.contains("run `weir advisories fetch`"), "{summary}");

    let origin_arg = origin.display().to_string();
    let fetch = p.weir(&["advisories", "fetch", "--from", &origin_arg]);
    assert_eq!(fetch.code, 0, "{fetch:?}");
    let kept = p.path().join(".weir-data/advisory-db");
    assert!(kept.join("crates").is_dir(), "{fetch:?}");
    assert!(
        fetch.stdout.starts_with(&format!("fetched {}", kept.display())),
        "{}",
        fetch.stdout
    );
    assert!(fetch.stdout.contains(" advisories, commit "), "{}", fetch.stdout);

    let after = p.run_json(&["--workspace", "ws"]);
    assert_eq!(after.code, 1, "vulnerable packages are found now: {after:?}");
    assert!(!findings(&after, "scan").is_empty(), "{}", after.finished("scan"));

    // A new advisory upstream arrives with the next fetch.
    p.write("advisory-origin/crates/zzz-weir-test/RUSTSEC-2099-0001.md", "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"zzz-weir-test\"\ndate = \"2099-01-01\"\ntitle = \"t\"\ndescription = \"d\"\n[versions]\npatched = []\n```\n");
    crate::git::git(&origin, &["add", "."]);
    crate::git::git(&origin, &["commit", "--quiet", "-m", "one more"]);
    let again = p.weir(&["advisories", "fetch", "--from", &origin_arg]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.starts_with("updated "), "{}", again.stdout);
    assert!(kept.join("crates/zzz-weir-test/RUSTSEC-2099-0001.md").is_file());

    // Not a database: refused, the kept one untouched.
    let empty = p.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    p.write("empty/README", "nothing\n");
    crate::git::git(&empty, &["init", "--quiet"]);
    crate::git::git(&empty, &["add", "."]);
    crate::git::git(&empty, &["commit", "--quiet", "-m", "x"]);
    let bad = p.weir(&["advisories", "fetch", "--from", &empty.display().to_string()]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("is not a RustSec advisory database"),
        "{}",
        bad.stderr
    );
    assert!(kept.join("crates/zzz-weir-test/RUSTSEC-2099-0001.md").is_file());
}

/// Findings in a checked-out repository point at the repository's files,
/// and keep their identity when the file changes above them.
#[test]
fn sarif_names_files_from_the_repository_root_and_fingerprints_survive_edits() {
    let p = Project::new();
    let origin = p.path().join("origin");
    std::fs::create_dir_all(origin.join("docker")).expect("dir");
    let dockerfile = "FROM node\nRUN curl -fsSL https://get.example.com | sh\n";
    p.write("origin/docker/Dockerfile", dockerfile);
    crate::git::git(&origin, &["init", "--quiet"]);
    crate::git::git(&origin, &["add", "."]);
    crate::git::git(&origin, &["commit", "--quiet", "-m", "one"]);
    p.pipeline(&format!(
        "[pipeline]\nname = \"sarif\"\n[stages.checkout]\nuses = \"git\"\nwith = {{ repo = {:?} }}\n\
         allow = {{ exec = [\"git\"], read = [\"origin\"] }}\n\
         [stages.scan]\nuses = \"scan\"\nneeds = [\"checkout\"]\nwith = {{ dir = \"src\", checks = [\"config\"] }}\n",
        origin.display().to_string()
    ));
    let curl = |p: &Project| -> Value {
        let run = p.run_json(&[]);
        assert_eq!(run.code, 1, "the scan finds curl | sh: {run:?}");
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(p.path().join(sarif_path_in(p, &run))).expect("scan.sarif"),
        )
        .expect("JSON");
        assert_valid_sarif(&doc);
        let run = &doc["runs"][0];
        let rule = run["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["id"] == "curl-pipe-shell")
            .expect("the rule")
            .clone();
        for field in ["fullDescription", "help"] {
            assert!(
                rule[field]["text"].as_str().is_some_and(|t| !t.is_empty()),
                "{field}: {rule}"
            );
        }
        let base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
            .as_str()
            .expect("%SRCROOT%");
        assert!(base.ends_with("/src/"), "{base}");
        run["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["ruleId"] == "curl-pipe-shell")
            .expect("the finding")
            .clone()
    };
    let before = curl(&p);
    let loc = &before["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "docker/Dockerfile", "{before}");
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(loc["region"]["startLine"], 2);

    // An unrelated line above the finding moves it, but it is the same alert.
    p.write("origin/docker/Dockerfile", format!("# build image\n{dockerfile}"));
    crate::git::git(&origin, &["commit", "--quiet", "-am", "a comment on top"]);
    let after = curl(&p);
    assert_eq!(
        after["locations"][0]["physicalLocation"]["region"]["startLine"],
        3
    );
    assert_eq!(
        before["partialFingerprints"], after["partialFingerprints"],
        "the fingerprint follows the finding, not its line number"
    );
    assert!(
        before["partialFingerprints"]["weir/v1"]
            .as_str()
            .is_some_and(|f| f.ends_with(":1")),
        "{before}"
    );
}

fn sarif_path_in(p: &Project, run: &Run) -> PathBuf {
    let id = run.events()[0]["run"].as_str().expect("run id").to_string();
    let rel = PathBuf::from(".weir/runs").join(&id).join("reports/scan.sarif");
    assert!(p.path().join(&rel).is_file(), "no {}", rel.display());
    rel
}

#[test]
fn the_sarif_validator_rejects_what_is_not_sarif() {
    // The schema check above can fail: a wrong level and a line 0 are caught.
    let bad = serde_json::json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "x"}},
            "results": [{
                "level": "fatal",
                "message": {"text": "m"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a"}, "region": {"startLine": 0}}}]
            }]
        }]
    });
    let errors: Vec<String> = sarif_validator()
        .iter_errors(&bad)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

/// A workspace whose scan finds one medium (root user) and one low
/// (unpinned base image) finding: score 98.
fn two_findings(gate: &str) -> Run {
    let p = Project::new();
    p.write("ws/Dockerfile", "FROM debian\nRUN true\n");
    p.pipeline(&format!(
        "[pipeline]\nname = \"gate\"\n\n[stages.scan]\nuses = \"scan\"\n{gate}\n"
    ));
    p.run_json(&["--workspace", "ws"])
}

#[test]
fn analyzer_gates_fail_on_max_findings_and_min_score() {
    // No gate: the plugin's verdict (fail at high) lets a medium through.
    let run = two_findings("");
    assert_eq!(run.code, 0, "{run:?}");
    let scan = run.finished("scan");
    assert_eq!(scan["analysis"]["verdict"], "warn");
    assert_eq!(scan["analysis"]["score"], 98.0);
    assert_eq!(scan["analysis"]["counts"]["medium"], 1);
    assert_eq!(scan["outputs"]["findings-low"], "1");

    let run = two_findings("gate = { fail-on = \"medium\" }");
    assert_eq!(run.code, 1, "{run:?}");
    let scan = run.finished("scan");
    assert_eq!(scan["failure"], "gate");
    assert!(
        scan["error"]
            .as_str()
            .unwrap_or("")
            .contains("1 finding(s) at or above medium"),
        "{scan}"
    );

    let run = two_findings("gate = { fail-on = \"high\", max-findings = 1 }");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.finished("scan")["error"]
            .as_str()
            .unwrap_or("")
            .contains("2 findings, more than max-findings = 1")
    );

    let run = two_findings("gate = { min-score = 99 }");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.finished("scan")["error"]
            .as_str()
            .unwrap_or("")
            .contains("score 98 is below min-score = 99")
    );

    let run = two_findings("gate = { fail-on = \"critical\", max-findings = 2, min-score = 98 }");
    assert_eq!(run.code, 0, "{run:?}");

    // The summary shows the counts and the top findings with file:line.
    let p = Project::new();
    p.write("ws/Dockerfile", "FROM debian\nRUN true\n");
    p.pipeline(
        "[pipeline]\nname = \"gate\"\n\n[stages.scan]\nuses = \"scan\"\ngate = { fail-on = \"medium\" }\n",
    );
    let plain = p.weir(&["run", "pipeline.toml", "--workspace", "ws"]);
    assert!(
        plain.stdout.contains("verdict fail, score 98, 1 medium, 1 low"),
        "{plain:?}"
    );
    assert!(
        plain.stdout.contains("Dockerfile:1  dockerfile-root-user"),
        "{plain:?}"
    );
}

#[test]
fn gate_keys_must_fit_the_plugin_kind() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"g\"\n\n[stages.scan]\nuses = \"scan\"\ngate = { min-pass-rate = 0.9 }\n",
    );
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("`min-pass-rate` does not apply to stage `scan`"),
        "{run:?}"
    );
    assert!(run.stderr.contains("fail-on, max-findings, min-score"), "{run:?}");
    assert!(run.stderr.contains("pipeline.toml:6"), "{run:?}");

    p.pipeline(
        "[pipeline]\nname = \"g\"\n\n[stages.scan]\nuses = \"scan\"\ngate = { fail-on = \"severe\" }\n",
    );
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("`severe` is not a severity"), "{run:?}");

    p.pipeline("[pipeline]\nname = \"g\"\n\n[stages.a]\nuses = \"noop\"\ngate = { fail-on = \"high\" }\n");
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("gates apply to test-runner and analyzer stages"),
        "{run:?}"
    );
}

#[test]
fn the_quickstart_scan_stops_a_planted_secret_and_vulnerable_dependency() {
    let Some(db) = advisory_db() else { return };
    // A copy of the quickstart in its own repository, with a leaked token
    // and a Cargo.lock pinning smallvec 1.6.0 (RUSTSEC-2021-0003).
    let p = Project::new();
    let service = repo().join("examples/quickstart/service");
    for file in ["Cargo.toml", "src/main.rs"] {
        let text = std::fs::read_to_string(service.join(file)).expect("quickstart file");
        p.write(&format!("repo/examples/quickstart/service/{file}"), text);
    }
    p.write(
        "repo/examples/quickstart/service/deploy.env",
        "DEPLOY_TOKEN=ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T\n", // weir:ignore github-token (a made-up token the tests plant)
    );
    p.write(
        "repo/examples/quickstart/service/Cargo.lock",
        "version = 4\n\n[[package]]\nname = \"quickstart-service\"\nversion = \"0.1.0\"\ndependencies = [\"smallvec\"]\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    );
    // The quickstart's own pipeline, with the scan stage pointed at the
    // database; build, test and lint are left out to keep this test short
    // (the quickstart test runs them).
    let original =
        std::fs::read_to_string(repo().join("examples/quickstart/pipeline.toml")).expect("pipeline");
    let mut doc: toml::Table = original.parse().expect("the quickstart is TOML");
    let stages = doc
        .get_mut("stages")
        .and_then(|s| s.as_table_mut())
        .expect("stages");
    stages.retain(|name, _| name == "checkout" || name == "scan");
    let scan = stages
        .get_mut("scan")
        .and_then(|s| s.as_table_mut())
        .expect("scan stage");
    let db = db.display().to_string();
    scan.get_mut("with")
        .and_then(|w| w.as_table_mut())
        .expect("with")
        .insert("advisory-db".into(), toml::Value::String(db.clone()));
    let mut allow = toml::Table::new();
    allow.insert("read".into(), toml::Value::Array(vec![toml::Value::String(db)]));
    scan.insert("allow".into(), toml::Value::Table(allow));
    p.write(
        "repo/examples/quickstart/pipeline.toml",
        toml::to_string(&doc).expect("TOML"),
    );
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "planted",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(p.path().join("repo"))
            .status()
            .expect("git");
        assert!(ok.success());
    }
    let run = p.weir(&["run", "repo/examples/quickstart/pipeline.toml", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let scan = run.finished("scan");
    assert_eq!(scan["failure"], "gate");
    let found = findings(&run, "scan");
    let token = found
        .iter()
        .find(|f| f["rule"] == "github-token")
        .expect("the planted token");
    assert_eq!(token["path"], "src/examples/quickstart/service/deploy.env");
    assert_eq!(token["line"], 1);
    let vuln = found
        .iter()
        .find(|f| f["rule"] == "RUSTSEC-2021-0003")
        .expect("the vulnerable smallvec");
    assert_eq!(vuln["path"], "src/examples/quickstart/service/Cargo.lock");
    assert_eq!(vuln["fields"]["package"], "smallvec");
    assert_eq!(vuln["fields"]["version"], "1.6.0");
    assert_eq!(vuln["fields"]["aliases"], "CVE-2021-25900, GHSA-43w2-9j62-hq99");
    assert_eq!(vuln["fields"]["patched"], ">= 0.6.14, < 1.0.0; >= 1.6.1");
    assert_eq!(vuln["severity"], "critical", "CVSS 9.8");
}

#[test]
fn an_advisory_db_must_be_granted_and_its_absence_is_said() {
    let p = Project::new();
    p.write("ws/Cargo.lock", "version = 4\n");
    let db = p.write("db/crates/x/RUSTSEC-0000-0000.md", "not an advisory");
    let db = db
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("db dir")
        .display()
        .to_string();
    p.pipeline(&scan_pipeline(&format!("{{ advisory-db = {db:?} }}"), ""));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("scan")["error"].as_str().unwrap_or("").to_string();
    assert!(
        error.contains("not granted") && error.contains("allow = { read = ["),
        "{error}"
    );

    p.pipeline(&scan_pipeline("{}", ""));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "{run:?}");
    let summary = run.finished("scan")["summary"].as_str().unwrap_or("").to_string();
    assert!(
        summary.contains("dependencies not checked: no advisory database"),
        "{summary}"
    );
}

#[test]
fn scan_matches_package_lock_json_against_an_npm_collection() {
    let p = Project::new();
    p.write("db/crates/.keep", "");
    p.write(
        "db/npm/lodash/GHSA-35jh-r3h4-6jhm.md",
        "```toml\n[advisory]\nid = \"GHSA-35jh-r3h4-6jhm\"\npackage = \"lodash\"\naliases = [\"CVE-2021-23337\"]\ncvss = \"CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H\"\n\n[versions]\npatched = [\">= 4.17.21\"]\n```\n\n# Command injection in lodash\n",
    );
    p.write(
        "ws/web/package-lock.json",
        r#"{
  "name": "web",
  "lockfileVersion": 3,
  "packages": {
    "": { "name": "web" },
    "node_modules/lodash": { "version": "4.17.20" },
    "node_modules/left-pad": { "version": "1.3.0" }
  }
}
"#,
    );
    let db = p.path().join("db").display().to_string();
    p.pipeline(&scan_pipeline(
        &format!("{{ advisory-db = {db:?} }}"),
        &format!("allow = {{ read = [{db:?}] }}"),
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let found = findings(&run, "scan");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["rule"], "GHSA-35jh-r3h4-6jhm");
    assert_eq!(found[0]["path"], "web/package-lock.json");
    assert_eq!(found[0]["line"], 6);
    assert_eq!(found[0]["severity"], "high", "CVSS 7.2");
}

#[test]
fn scan_suppressions_and_skipped_files() {
    let p = Project::new();
    let token = "ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T"; // weir:ignore github-token (a made-up token the tests plant)
    p.write(
        "ws/a.env",
        format!("T1={token}\nT2={token} # weir:ignore github-token\n"),
    );
    p.write("ws/fixtures/b.env", format!("T={token}\n"));
    p.write("ws/docs/c.env", format!("T={token}\n"));
    p.write("ws/.weir-scan-ignore", "fixtures/**\ngithub-token docs/*.env\n");
    p.write("ws/node_modules/x/d.env", format!("T={token}\n"));
    p.write("ws/logo.png", format!("T={token}\n"));
    p.write("ws/data.bin.txt", [b"T=\0".as_slice(), token.as_bytes()].concat());
    p.write("ws/big.env", format!("T={token}\n{}", "x".repeat(2048)));
    p.pipeline(&scan_pipeline("{ max-file-bytes = 1024 }", ""));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let found = findings(&run, "scan");
    let places: Vec<String> = found
        .iter()
        .map(|f| format!("{}:{}", f["path"].as_str().unwrap_or(""), f["line"]))
        .collect();
    assert_eq!(places, ["a.env:1"], "{found:?}");
    let summary = run.finished("scan")["summary"].as_str().unwrap_or("").to_string();
    assert!(summary.contains("1 over 1.0 KiB (first: big.env)"), "{summary}");
    assert!(summary.contains("1 binary"), "{summary}");
    assert!(summary.contains("3 suppressed"), "{summary}");
}

fn lint_project(files: &[(&str, &str)], stage: &str) -> Run {
    let p = Project::new();
    for (name, text) in files {
        p.write(&format!("ws/{name}"), text);
    }
    p.pipeline(&format!(
        "[pipeline]\nname = \"lint\"\n\n[stages.lint]\nuses = \"lint\"\n{stage}\n"
    ));
    p.run_json(&["--workspace", "ws"])
}

#[test]
fn lint_turns_clippy_json_into_findings() {
    let run = lint_project(
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"lintme\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            (
                "src/main.rs",
                "fn main() {\n    let v: Vec<u8> = Vec::new();\n    println!(\"{}\", v.len() == 0);\n}\n",
            ),
        ],
        "inherit-env = [\"HOME\", \"PATH\"]\nallow = { exec = [\"cargo\"], read = [\"~/.cargo\", \"~/.rustup\"] }\nwith = { severity = { \"clippy::len_zero\" = \"high\" } }",
    );
    assert_eq!(run.code, 1, "the override makes the lint high: {run:?}");
    let found = findings(&run, "lint");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["rule"], "clippy::len_zero");
    assert_eq!(found[0]["severity"], "high");
    assert_eq!(found[0]["path"], "src/main.rs");
    assert_eq!(found[0]["line"], 3);
    assert_eq!(found[0]["fields"]["linter"], "clippy");
}

#[test]
fn lint_skips_a_detected_linter_that_is_not_granted() {
    let run = lint_project(&[("ruff.toml", "")], "");
    assert_eq!(run.code, 0, "{run:?}");
    let summary = run.finished("lint")["summary"].as_str().unwrap_or("").to_string();
    assert!(
        summary.contains("ruff: configured but skipped, `ruff` is not granted"),
        "{summary}"
    );

    let run = lint_project(&[("ruff.toml", "")], "with = { linters = [\"ruff\"] }");
    assert_eq!(run.code, 1, "a linter asked for by name must run: {run:?}");
    assert!(
        run.finished("lint")["error"]
            .as_str()
            .unwrap_or("")
            .contains("ruff could not run")
    );
}

#[test]
fn lint_reads_ruff_and_eslint_json() {
    if let Some(ruff) = linter("ruff") {
        let dir = ruff.parent().expect("ruff's directory").display().to_string();
        let run = lint_project(
            &[
                ("ruff.toml", "[lint]\nselect = [\"E\", \"F\", \"S\"]\n"),
                ("pkg/app.py", "import os\nprint(undefined_name)\n"),
            ],
            &format!(
                "env = {{ PATH = \"{dir}:/usr/bin:/bin\" }}\nallow = {{ exec = [\"ruff\"], read = [{dir:?}] }}"
            ),
        );
        assert_eq!(run.code, 1, "{run:?}");
        let found = findings(&run, "lint");
        let got: Vec<(String, String, u64)> = found
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap_or("").into(),
                    f["path"].as_str().unwrap_or("").into(),
                    f["line"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("F401".into(), "pkg/app.py".into(), 1),
                ("F821".into(), "pkg/app.py".into(), 2)
            ],
            "{found:?}"
        );
        assert_eq!(found[1]["severity"], "high");
    }
    if let Some(eslint) = linter("eslint") {
        let mut read = vec![eslint.parent().expect("dir").display().to_string()];
        if let Ok(real) = eslint.canonicalize() {
            // A global npm install links bin/eslint into lib/node_modules.
            read.extend(real.ancestors().nth(3).map(|d| d.display().to_string()));
        }
        let run = lint_project(
            &[
                (
                    "eslint.config.js",
                    "module.exports = [{ rules: { \"no-unused-vars\": \"error\", \"eqeqeq\": \"warn\" } }];\n",
                ),
                (
                    "index.js",
                    "const unused = 1;\nif (process.argv.length == 3) { console.log(\"three\"); }\n",
                ),
            ],
            &format!("allow = {{ exec = [\"eslint\"], read = {read:?} }}"),
        );
        assert_eq!(run.code, 1, "{run:?}");
        let found = findings(&run, "lint");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0]["rule"], "no-unused-vars");
        assert_eq!(found[0]["severity"], "high");
        assert_eq!(found[0]["path"], "index.js");
        assert_eq!(found[1]["rule"], "eqeqeq");
        assert_eq!(found[1]["severity"], "medium");
        assert_eq!(
            (found[1]["line"].as_u64(), found[1]["column"].as_u64()),
            (Some(2), Some(25))
        );
    }
}
