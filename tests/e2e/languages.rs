//! Plugins in Python and JavaScript: `weir plugin new --lang python|js`
//! for every kind, each project's own unit test, `weir plugin build`
//! through componentize-py and componentize-js, and the two examples in
//! `examples/` run in pipelines.
//!
//! The tools come from .ci/run: `pip install componentize-py` and
//! componentize-js in `tests/js-toolchain/node_modules`. Without them
//! these tests say so and pass, unless `WEIR_REQUIRE_COMPONENTIZE` is set
//! (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Project, Run, weir_bin, without_build_wrappers};

const KINDS: [&str; 5] = ["stage", "analyzer", "test-runner", "strategy", "deployer"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// componentize-js's node_modules for the tests' projects.
fn js_toolchain() -> PathBuf {
    repo().join("tests/js-toolchain/node_modules")
}

/// Whether `lang`'s build tool is here; when it is not, a note, or a
/// failure if `WEIR_REQUIRE_COMPONENTIZE` is set.
fn tools_for(lang: &str) -> bool {
    let found = match lang {
        "python" => Command::new("python3")
            .args(["-c", "import componentize_py"])
            .status()
            .is_ok_and(|s| s.success()),
        _ => {
            js_toolchain()
                .join("@bytecodealliance/componentize-js/src/componentize.js")
                .is_file()
                && Command::new("node").arg("--version").output().is_ok()
        }
    };
    if !found {
        assert!(
            std::env::var_os("WEIR_REQUIRE_COMPONENTIZE").is_none(),
            "WEIR_REQUIRE_COMPONENTIZE is set but the {lang} build tool is missing (see .ci/run)"
        );
        eprintln!("skipped: the {lang} build tool is not installed (see .ci/run)");
    }
    found
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(program);
    without_build_wrappers(&mut cmd)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WEIR_CACHE_DIR", crate::support::shared_cache())
        .env("WEIR_STATE_DIR", crate::support::state_beside(dir))
        .env_remove("WEIR_TENANTS")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
        .into()
}

fn weir_in(dir: &Path, args: &[&str]) -> Run {
    run_in(dir, weir_bin(), args)
}

/// The project's unit tests, natively, as its "Next" lines say.
fn unit_tests(dir: &Path, lang: &str) -> Run {
    match lang {
        "python" => run_in(dir, "python3", &["-m", "unittest"]),
        _ => run_in(dir, "node", &["--test"]),
    }
}

/// `weir plugin build --json` in `dir`: the JSON, checked against the
/// file it names (size, sha256, a snippet pinning it at build/NAME.wasm),
/// and the component's bytes.
fn build(dir: &Path, name: &str) -> (Value, Vec<u8>) {
    let built = weir_in(dir, &["plugin", "build", "--json"]);
    assert_eq!(built.code, 0, "{name}: {built:?}");
    let out: Value = serde_json::from_str(&built.stdout).expect("JSON");
    let bytes = std::fs::read(out["path"].as_str().expect("path")).expect("the component");
    assert_eq!(out["size"], bytes.len() as u64);
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(out["sha256"], digest.as_str());
    assert_eq!(
        out["snippet"],
        format!("[plugins.{name}]\npath = \"build/{name}.wasm\"\nsha256 = \"{digest}\"\n").as_str()
    );
    (out, bytes)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The sample pipeline, with the plugin pinned as `build` said.
fn pin(dir: &Path, name: &str, snippet: &str) {
    let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).expect("pipeline");
    let pinned = pipeline.replace(
        &format!("[plugins.{name}]\npath = \"build/{name}.wasm\"\n"),
        snippet,
    );
    assert_ne!(pinned, pipeline, "the sample names build/{name}.wasm");
    std::fs::write(dir.join("pipeline.toml"), pinned).expect("write");
}

/// Every kind scaffolds in Python and JavaScript, its own unit test
/// passes natively, and it builds into a component that exports that
/// kind and declares weir's WIT version. The sample pipelines of a
/// Python stage and a JavaScript analyzer run as they are, pinned by the
/// digest build printed. (Each sample was run by hand for every kind;
/// compiling a 13–18 MB component takes about 30 s in a debug weir, too
/// long to do ten times here.)
#[test]
fn every_kind_scaffolds_tests_and_builds_in_python_and_javascript() {
    let p = Project::new();
    for lang in ["python", "js"] {
        if !tools_for(lang) {
            continue;
        }
        for kind in KINDS {
            let name = format!("{lang}-{kind}");
            let new = weir_in(
                p.path(),
                &["plugin", "new", &name, "--kind", kind, "--lang", lang],
            );
            assert_eq!(new.code, 0, "{new:?}");
            let language = if lang == "js" { "JavaScript" } else { "Python" };
            assert!(
                new.stdout.contains(&format!(" {kind} in {language}, in {name}:")),
                "{new:?}"
            );
            let dir = p.path().join(&name);
            if lang == "js" {
                std::os::unix::fs::symlink(js_toolchain(), dir.join("node_modules")).expect("link");
            }
            let tested = unit_tests(&dir, lang);
            assert_eq!(tested.code, 0, "{name}: its unit test: {tested:?}");
            let (out, bytes) = build(&dir, &name);
            assert!(
                contains(&bytes, &format!("weir:plugin/{kind}@0.1.0")),
                "{name} exports {kind}"
            );
            assert!(
                contains(&bytes, "weir-wit-packageweir:plugin@0.1.0"),
                "{name} declares the WIT it was built for"
            );
            let sample = match (lang, kind) {
                ("python", "stage") => "check",
                ("js", "analyzer") => "check",
                _ => continue,
            };
            pin(&dir, &name, out["snippet"].as_str().unwrap_or_default());
            let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", ".", "--json"]);
            assert_eq!(run.code, 0, "{name}: {run:?}");
            let done = run.finished(sample);
            assert_eq!(done["status"], "succeeded", "{run:?}");
            let summary = done["summary"].as_str().unwrap_or_default();
            if kind == "stage" {
                // app.py, test_app.py and weir_plugin.py.
                assert!(summary.ends_with(" lines in 3 file(s)"), "{summary}");
                assert!(dir.join(format!("{name}-report.txt")).is_file());
            } else {
                // app.js and lib.js name the markers they look for.
                assert!(summary.contains(" marker(s), 0 at or above high"), "{summary}");
                let findings = done["findings"].as_array().cloned().unwrap_or_default();
                assert!(findings.iter().any(|f| f["path"] == "lib.js"), "{done}");
            }
            let inspected = weir_in(
                &dir,
                &["plugin", "inspect", &format!("build/{name}.wasm"), "--json"],
            );
            assert_eq!(inspected.code, 0, "{inspected:?}");
            let info: Value = serde_json::from_str(&inspected.stdout).expect("JSON");
            assert_eq!(info["kind"], kind);
            assert_eq!(info["wit_declared"], "weir:plugin@0.1.0");
            assert_eq!(info["problems"], serde_json::json!([]));
            if lang == "python" {
                inspect_flags_what_weir_would_refuse(&dir, &name);
            }
        }
    }
}

/// The Python stage, changed to say it is an analyzer and to import a
/// function weir does not offer: `weir plugin inspect` still shows it
/// (describe() runs, the import stubbed), lists both problems and exits
/// 1.
fn inspect_flags_what_weir_would_refuse(dir: &Path, name: &str) {
    let edit = |file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(dir.join(file)).expect(file);
        assert!(text.contains(from), "{file} has {from}");
        std::fs::write(dir.join(file), text.replace(from, to)).expect("write");
    };
    edit(
        "app.py",
        "kind=types.PluginKind.STAGE",
        "kind=types.PluginKind.ANALYZER",
    );
    edit(
        "app.py",
        "        config = weir.config(ctx, DEFAULTS)\n",
        "        config = weir.config(ctx, DEFAULTS)\n        wit_world.lookup(\"key\")\n",
    );
    edit(
        "app.py",
        "from wit_world import exports\n",
        "import wit_world\nfrom wit_world import exports\n",
    );
    edit(
        "wit/world.wit",
        "    include weir:plugin/stage-plugin@0.1.0;\n",
        "    include weir:plugin/stage-plugin@0.1.0;\n    import lookup: func(key: string) -> string;\n",
    );
    build(dir, name);
    let inspected = weir_in(
        dir,
        &["plugin", "inspect", &format!("build/{name}.wasm"), "--json"],
    );
    assert_eq!(inspected.code, 1, "{inspected:?}");
    let info: Value = serde_json::from_str(&inspected.stdout).expect("JSON");
    assert_eq!(info["kind"], "stage", "its exports still say stage");
    let problems: Vec<&str> = info["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("imports `lookup`, which weir does not offer a plugin")),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"exports the `stage` interface but its manifest says it is a `analyzer`"),
        "{problems:?}"
    );
    assert_eq!(
        info["description"], "Counts the lines of workspace files",
        "describe() ran"
    );
    let text = weir_in(dir, &["plugin", "inspect", &format!("build/{name}.wasm")]);
    assert_eq!(text.code, 1, "{text:?}");
    assert!(
        text.stdout.contains("  lookup  ← not offered by weir"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("problems (weir would refuse to run it)"),
        "{text:?}"
    );
    // The sample pins the digest of the first build: the changed file is
    // refused before it is even loaded.
    let run = weir_in(dir, &["run", "pipeline.toml", "--workspace", "."]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("but the pipeline pins"), "{run:?}");
}

/// A project `weir plugin build` cannot build is refused naming the
/// file and the fix, before any tool runs.
#[test]
fn broken_python_and_javascript_projects_are_refused_by_file() {
    let p = Project::new();
    let py = p.path().join("py");
    std::fs::create_dir_all(&py).expect("mkdir");
    std::fs::write(py.join("pyproject.toml"), "[project]\nversion = \"1\"\n").expect("write");
    let run = weir_in(&py, &["plugin", "build"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "pyproject.toml: has no `[project] name`; add `name = \"my-plugin\"` under `[project]`"
        ),
        "{run:?}"
    );
    std::fs::write(py.join("pyproject.toml"), "[project]\nname = \"py\"\n").expect("write");
    let run = weir_in(&py, &["plugin", "build"]);
    assert!(
        run.stderr
            .contains("app.py is missing: componentize-py starts from the module `app`"),
        "{run:?}"
    );

    let js = p.path().join("js");
    std::fs::create_dir_all(js.join("wit")).expect("mkdir");
    std::fs::write(js.join("package.json"), r#"{"name": "js", "main": "index.js"}"#).expect("write");
    std::fs::write(js.join("index.js"), "export const plugin = {};\n").expect("write");
    std::fs::write(
        js.join("wit/world.wit"),
        "package local:plugin;\nworld plugin {}\n",
    )
    .expect("write");
    let run = weir_in(&js, &["plugin", "build"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("wit/deps/weir-plugin is missing: it holds weir's WIT"),
        "{run:?}"
    );
}

/// Copy an example project (not its build output or node_modules) to
/// `to`.
fn copy_example(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("example") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if ["build", "node_modules", ".weir", "__pycache__"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_example(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn findings_of(run: &Run, stage: &str) -> Vec<(String, String, u64)> {
    run.finished(stage)["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["path"].as_str().unwrap_or_default().to_string(),
                f["line"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// examples/python/pins, a Python analyzer: its unit tests pass, and on
/// its sample it fails the stage on requirements-dev.txt's range, editable
/// install and repository branch, by line; pinned files pass.
#[test]
fn the_python_example_flags_unpinned_requirements() {
    if !tools_for("python") {
        return;
    }
    let p = Project::new();
    let dir = p.path().join("pins");
    copy_example(&repo().join("examples/python/pins"), &dir);
    let tested = unit_tests(&dir, "python");
    assert_eq!(tested.code, 0, "{tested:?}");
    assert!(tested.stderr.contains("Ran 7 tests"), "{tested:?}");
    build(&dir, "pins");

    let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", "sample", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("pins");
    assert_eq!(done["status"], "failed", "{done}");
    let dev = "requirements-dev.txt".to_string();
    assert_eq!(
        findings_of(&run, "pins"),
        [
            ("unpinned".to_string(), dev.clone(), 2),
            ("editable".to_string(), dev.clone(), 4),
            ("vcs-not-pinned".to_string(), dev, 5),
        ]
    );
    assert!(
        done["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3 of 6 requirement(s) pinned in 2 file(s)"),
        "{done}"
    );

    // Only the pinned file, with hashes required: it passes.
    std::fs::remove_file(dir.join("sample/requirements-dev.txt")).expect("rm");
    let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).expect("read");
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline.replace(
            "fail-at = \"high\"",
            "fail-at = \"medium\", require-hashes = true",
        ),
    )
    .expect("write");
    let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", "sample", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("pins")["analysis"]["verdict"], "pass", "{run:?}");
}

/// examples/js/size-budget, a JavaScript stage: its unit tests pass; on
/// its sample every budget holds and the report and outputs carry the
/// real sizes; with a budget lowered, the stage fails naming it.
#[test]
fn the_javascript_example_holds_build_output_to_budgets() {
    if !tools_for("js") {
        return;
    }
    let p = Project::new();
    let dir = p.path().join("size-budget");
    copy_example(&repo().join("examples/js/size-budget"), &dir);
    std::os::unix::fs::symlink(js_toolchain(), dir.join("node_modules")).expect("link");
    let tested = unit_tests(&dir, "js");
    assert_eq!(tested.code, 0, "{tested:?}");
    build(&dir, "size-budget");

    let sample = dir.join("sample/dist");
    let size = |p: &str| std::fs::metadata(sample.join(p)).expect("sample file").len();
    let total = size("assets/app.js") + size("assets/style.css") + size("index.html");
    let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", "sample", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let done = run.finished("sizes");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["outputs"]["total-bytes"],
        total.to_string().as_str(),
        "{done}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sample/size-report.json")).expect("the report"),
    )
    .expect("JSON");
    assert_eq!(report["budgets"][0]["path"], "dist/**/*.js");
    assert_eq!(report["budgets"][0]["bytes"], size("assets/app.js"));
    assert_eq!(report["budgets"][0]["max"], 8192);

    let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).expect("read");
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline.replace("max = \"2 KiB\"", "max = \"1 KiB\""),
    )
    .expect("write");
    let run = weir_in(&dir, &["run", "pipeline.toml", "--workspace", "sample", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("sizes")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("dist/**/*.css is 1.2 KiB, 217 B over its budget of 1 KiB"),
        "{error}"
    );
}

/// The examples carry weir's helpers and WIT as `weir plugin new` would
/// write them today.
#[test]
fn the_examples_carry_the_current_helpers_and_wit() {
    let root = repo();
    let same = |copy: &str, original: &str| {
        let a = std::fs::read_to_string(root.join(copy)).unwrap_or_else(|e| panic!("{copy}: {e}"));
        let b = std::fs::read_to_string(root.join(original)).expect(original);
        assert!(a == b, "{copy} differs from {original}: copy it again");
    };
    same("examples/python/pins/weir_plugin.py", "sdk/python/weir_plugin.py");
    same("examples/js/size-budget/weir.js", "sdk/js/weir.js");
    for entry in std::fs::read_dir(root.join("wit")).expect("wit") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".wit") {
            for example in ["examples/python/pins", "examples/js/size-budget"] {
                same(
                    &format!("{example}/wit/deps/weir-plugin/{name}"),
                    &format!("wit/{name}"),
                );
            }
        }
    }
    for wasi in ["io", "clocks", "filesystem"] {
        same(
            &format!("examples/js/size-budget/wit/deps/wasi-{wasi}/{wasi}.wit"),
            &format!("sdk/js/wit-deps/{wasi}.wit"),
        );
    }
}
