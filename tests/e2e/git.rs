//! The built-in `git` stage on temporary repositories made here; every
//! output is compared with what `git` itself says.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, Run, assert_valid_junit, outside_tool};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with three commits on `main`, a tag `v1` on the second,
/// and a branch `feature` with one more commit.
fn repo(p: &Project) -> std::path::PathBuf {
    let dir = p.path().join("origin");
    std::fs::create_dir_all(&dir).expect("repo dir");
    git(&dir, &["init", "--quiet"]);
    for (i, file) in ["README.md", "src/lib.rs", "src/main.rs"].iter().enumerate() {
        p.write(&format!("origin/{file}"), format!("version {i}\n"));
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "--quiet", "-m", &format!("commit {i}: {file}")]);
        if i == 1 {
            git(&dir, &["tag", "v1"]);
        }
    }
    git(&dir, &["checkout", "--quiet", "-b", "feature"]);
    p.write("origin/src/feature.rs", "new\n");
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "--quiet", "-m", "feature work"]);
    git(&dir, &["checkout", "--quiet", "main"]);
    dir
}

fn checkout(p: &Project, with: &str) -> Run {
    p.pipeline(&format!(
        "[pipeline]\nname = \"git\"\n[stages.co]\nuses = \"git\"\nwith = {with}\nallow = {{ exec = [\"git\"], read = [\"origin\"] }}\n"
    ));
    p.run_json(&[])
}

fn expect_commit(run: &Run, origin: &Path, rev: &str) {
    let o = &run.finished("co")["outputs"];
    let log = git(origin, &["log", "-1", "--format=%H%n%h%n%an <%ae>%n%s%n%cI", rev]);
    let want: Vec<&str> = log.lines().collect();
    assert_eq!(o["sha"], want[0], "{run:?}");
    assert_eq!(o["short-sha"], want[1]);
    assert_eq!(o["author"], want[2]);
    assert_eq!(o["message"], want[3]);
    assert_eq!(o["committed-at"], want[4]);
    // The workspace holds that commit's files.
    let head = git(
        &run.workspace().join(o["dir"].as_str().expect("dir")),
        &["rev-parse", "HEAD"],
    );
    assert_eq!(head, want[0]);
}

#[test]
fn checks_out_branches_tags_and_commits_like_git() {
    let p = Project::new();
    let origin = repo(&p);
    let path = origin.display().to_string();

    let run = checkout(&p, &format!("{{ repo = {path:?} }}"));
    assert_eq!(run.code, 0, "{run:?}");
    expect_commit(&run, &origin, "HEAD");
    assert_eq!(run.finished("co")["outputs"]["branch"], "main");

    let run = checkout(
        &p,
        &format!("{{ repo = \"file://{path}\", ref = \"feature\", depth = 1 }}"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    expect_commit(&run, &origin, "feature");
    assert_eq!(run.finished("co")["outputs"]["branch"], "feature");

    let run = checkout(
        &p,
        &format!("{{ repo = {path:?}, ref = \"v1\", dir = \"tagged\" }}"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    expect_commit(&run, &origin, "v1");
    assert_eq!(run.finished("co")["outputs"]["tag"], "v1");
    assert!(run.workspace().join("tagged/src/lib.rs").is_file());
    assert!(
        !run.workspace().join("tagged/src/main.rs").exists(),
        "v1 predates main.rs"
    );

    let sha = git(&origin, &["rev-parse", "v1"]);
    for rev in [sha.as_str(), &sha[..8]] {
        let run = checkout(&p, &format!("{{ repo = {path:?}, ref = {rev:?} }}"));
        assert_eq!(run.code, 0, "{run:?}");
        expect_commit(&run, &origin, &sha);
    }
}

#[test]
fn files_changed_against_a_base_match_git_diff() {
    let p = Project::new();
    let origin = repo(&p);
    let run = checkout(
        &p,
        &format!(
            "{{ repo = {:?}, ref = \"feature\", base = \"v1\" }}",
            origin.display().to_string()
        ),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let o = &run.finished("co")["outputs"];
    let want = git(&origin, &["diff", "--name-only", "v1", "feature"]);
    assert_eq!(o["files-changed"], want);
    assert_eq!(o["files-changed-count"], "2");
}

#[test]
fn a_bad_ref_or_a_missing_repository_fails_clearly() {
    let p = Project::new();
    let origin = repo(&p);
    let path = origin.display().to_string();
    let run = checkout(&p, &format!("{{ repo = {path:?}, ref = \"nope\" }}"));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("co")["error"],
        format!("ref `nope` is not a branch, tag or commit of `{path}`")
    );

    let run = checkout(&p, &format!("{{ repo = {path:?}, ref = \"deadbeef\" }}"));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("co")["error"],
        format!("ref `deadbeef` is not a branch, tag or commit of `{path}`")
    );

    let missing = p.path().join("nowhere").display().to_string();
    let run = checkout(&p, &format!("{{ repo = {missing:?} }}"));
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("co")["error"].as_str().expect("error").to_string();
    assert!(
        error.starts_with(&format!(
            "repository `{missing}` cannot be read: fatal: '{missing}' does not appear to be a git repository"
        )),
        "{error}"
    );
}

#[test]
fn a_failing_unit_test_fails_the_run_and_names_the_test() {
    let p = Project::new();
    let dir = p.path().join("origin");
    std::fs::create_dir_all(dir.join("src")).expect("dir");
    p.write(
        "origin/Cargo.toml",
        "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    p.write(
        "origin/src/lib.rs",
        "pub fn add(a: u32, b: u32) -> u32 { a + b }\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(super::add(1, 2), 3); }\n    #[test]\n    fn broken() { assert_eq!(super::add(2, 2), 5, \"math is off\"); }\n}\n",
    );
    git(&dir, &["init", "--quiet"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "--quiet", "-m", "a crate with a broken test"]);
    p.pipeline(&format!(
        "[pipeline]\nname = \"ci\"\n[stages.checkout]\nuses = \"git\"\nwith = {{ repo = {:?} }}\nallow = {{ exec = [\"git\"], read = [\"origin\"] }}\n\
         [stages.test]\nuses = \"cargo-test\"\nneeds = [\"checkout\"]\nwith = {{ dir = \"src\", report-time = true }}\ninherit-env = [\"HOME\", \"PATH\"]\n\
         allow = {{ exec = [\"cargo\"], read = [\"~/.cargo\", \"~/.rustup\"], env = [\"RUSTC_BOOTSTRAP\"] }}\n",
        dir.display().to_string()
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let test = run.finished("test");
    assert_eq!(test["failure"], "gate", "{test}");
    assert_eq!(
        test["error"],
        "test gate failed: 1 failed (at most 0 allowed); failing: unittests src/lib.rs::tests::broken"
    );
    let broken = test["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "tests::broken")
        .expect("the broken case")
        .clone();
    assert_eq!(broken["status"], "failed");
    // report-time = true: libtest timed each case (`... ok <0.000s>`), so
    // the durations come from libtest, not a placeholder.
    let timed = run.of("stage_log").iter().any(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("test tests::adds ... ok <") && m.ends_with("s>"))
    });
    assert!(timed, "libtest did not time the tests: {run:?}");
    // Named from the workspace (the crate is checked out into `src`).
    assert_eq!(broken["file"], "src/src/lib.rs");
    assert!(
        broken["message"].as_str().unwrap_or("").contains("math is off"),
        "{broken}"
    );
    let reports = run.workspace().parent().expect("run dir").join("reports");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).expect("junit");
    assert!(
        junit.contains("<testcase classname=\"lib.tests\" name=\"broken\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"assertion `left == right` failed: math is off\">thread &apos;tests::broken&apos; "),
        "{junit}"
    );
    assert!(
        !junit.contains(" file="),
        "junit-10.xsd has no testcase@file: {junit}"
    );
    let gitlab = std::fs::read_to_string(reports.join("junit-gitlab.xml")).expect("gitlab");
    assert!(
        gitlab.contains("name=\"broken\" file=\"src/lib.rs\""),
        "the file, from the repository's root: {gitlab}"
    );
    assert_valid_junit(&reports.join("junit.xml"));
    // A real consumer reads it: junitparser, from PyPI.
    if outside_tool(
        "junitparser",
        &["python3", "-c", "import junitparser"],
        "pip install junitparser",
    ) {
        let read = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\nfrom junitparser import JUnitXml\n\
                 for suite in JUnitXml.fromfile(sys.argv[1]):\n\
                 \x20   for case in suite:\n\
                 \x20       r = [(type(x).__name__, x.message) for x in case.result]\n\
                 \x20       print(suite.name, case.classname, case.name, r)\n",
            )
            .arg(reports.join("junit.xml"))
            .output()
            .expect("python3");
        let out = String::from_utf8_lossy(&read.stdout);
        assert!(read.status.success(), "{read:?}");
        assert!(out.contains("test lib.tests adds []"), "{out}");
        assert!(
            out.contains(
                "test lib.tests broken [('Failure', 'assertion `left == right` failed: math is off')]"
            ),
            "{out}"
        );
    }
}
