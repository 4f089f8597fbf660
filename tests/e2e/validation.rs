//! Invalid pipelines and plugins: exit code 2, and the error names the
//! file, line and column and says how to fix it.

use crate::guest_paths as g;
use crate::support::{Project, plugin};

fn invalid(toml: &str) -> String {
    let p = Project::new();
    p.pipeline(toml);
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    // `run` refuses the same file the same way, before running anything.
    let run2 = p.weir(&["run"]);
    assert_eq!(run2.code, 2, "{run2:?}");
    assert!(
        !p.path().join(".weir").exists(),
        "an invalid pipeline created run state"
    );
    run.stderr
}

const HEAD: &str = "[pipeline]\nname = \"p\"\n";

#[test]
fn unknown_key_with_suggestion() {
    let err = invalid(&format!("{HEAD}[stages.build]\nuses = \"noop\"\nnedds = []\n"));
    assert!(err.contains("pipeline.toml:5:1: unknown field `nedds`"), "{err}");
    assert!(err.contains("did you mean `needs`?"), "{err}");
}

#[test]
fn wrong_type() {
    let err = invalid(&format!(
        "{HEAD}[stages.build]\nuses = \"noop\"\nretries = \"two\"\n"
    ));
    assert!(
        err.contains("pipeline.toml:5:11: invalid type: string \"two\", expected u32"),
        "{err}"
    );
}

#[test]
fn unknown_stage_in_needs() {
    let err = invalid(&format!(
        "{HEAD}[stages.build]\nuses = \"noop\"\n[stages.test]\nuses = \"noop\"\nneeds = [\"biuld\"]\n"
    ));
    assert!(
        err.contains("pipeline.toml:7:10: stage `test` needs `biuld`, which is not a stage"),
        "{err}"
    );
    assert!(err.contains("did you mean `build`?"), "{err}");
}

#[test]
fn cycle_with_its_path() {
    let err = invalid(&format!(
        "{HEAD}[stages.a]\nuses = \"noop\"\nneeds = [\"b\"]\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n"
    ));
    assert!(err.contains("the stages form a cycle: a → b → a"), "{err}");
    assert!(err.contains("pipeline.toml:8:10"), "{err}");
}

#[test]
fn unknown_plugin() {
    let err = invalid(&format!("{HEAD}[stages.a]\nuses = \"chekcsum\"\n"));
    assert!(
        err.contains("pipeline.toml:4:8: stage `a` uses `chekcsum`, which is not a known plugin"),
        "{err}"
    );
    assert!(err.contains("did you mean `checksum`?"), "{err}");
}

#[test]
fn bad_duration() {
    let err = invalid(&format!(
        "{HEAD}[stages.a]\nuses = \"noop\"\ntimeout = \"10 minutes\"\n"
    ));
    assert!(
        err.contains("pipeline.toml:5:11: `10 minutes` has an unknown unit ` minutes`"),
        "{err}"
    );
    assert!(err.contains("\"90s\", \"10m\", \"1h30m\""), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = invalid(&format!(
        "{HEAD}[stages.a]\nuses = \"nope\"\ntimeout = \"5\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"zzz\"]\n"
    ));
    assert!(err.contains("is not a valid pipeline (3 problems)"), "{err}");
}

#[test]
fn output_reference_to_a_stage_not_needed() {
    let err = invalid(&format!(
        "{HEAD}[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nenv = {{ V = \"${{{{ stages.a.outputs.v }}}}\" }}\n"
    ));
    assert!(
        err.contains("pipeline.toml:7:14: stage `b` reads an output of `a` but does not need it"),
        "{err}"
    );
    assert!(err.contains("add \"a\" to `needs` of stage `b`"), "{err}");
}

#[test]
fn pinned_digest_mismatch_refuses_to_run() {
    let err = invalid(&format!(
        "{HEAD}[plugins.record]\npath = {:?}\nsha256 = \"{}\"\n[stages.a]\nuses = \"record\"\n",
        g::RECORD,
        "0".repeat(64)
    ));
    assert!(err.contains("but the pipeline pins 0000000000000000000000000000000000000000000000000000000000000000; refusing to run it"), "{err}");
}

#[test]
fn pinned_digest_match_runs() {
    let bytes = std::fs::read(g::RECORD).expect("guest");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let p = Project::new();
    p.pipeline(&format!(
        "{HEAD}[plugins.record]\npath = {:?}\nsha256 = \"{digest}\"\n[stages.a]\nuses = \"record\"\n",
        g::RECORD
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn malformed_components_name_the_file_and_reason() {
    let p = Project::new();
    p.write("garbage.wasm", b"this is not wasm at all");
    p.write("core.wasm", b"\0asm\x01\0\0\0");
    p.pipeline(&format!(
        "{HEAD}{}{}[stages.a]\nuses = \"garbage\"\n[stages.b]\nuses = \"core\"\n",
        plugin("garbage", "garbage.wasm"),
        plugin("core", "core.wasm")
    ));
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("plugin `garbage` (") && run.stderr.contains("garbage.wasm) is not a valid WebAssembly component: it does not start with the WebAssembly magic bytes"),
        "{run:?}"
    );
    assert!(run.stderr.contains("core.wasm) is not a valid WebAssembly component: it is a core WebAssembly module, not a component"), "{run:?}");
}

#[test]
fn missing_plugin_file() {
    let err = invalid(&format!(
        "{HEAD}{}[stages.a]\nuses = \"gone\"\n",
        plugin("gone", "gone.wasm")
    ));
    assert!(err.contains("pipeline.toml:4:8: plugin file"), "{err}");
    assert!(err.contains("gone.wasm` does not exist"), "{err}");
}

#[test]
fn unreadable_pipeline_path() {
    let p = Project::new();
    let run = p.weir(&["run", "nowhere.toml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot read nowhere.toml"), "{run:?}");
}

#[test]
fn validate_prints_the_plan() {
    let p = Project::new();
    p.pipeline(&format!("{HEAD}[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\nretries = 2\n[stages.a]\nuses = \"checksum\"\ntimeout = \"90s\"\nwith = {{ paths = [\"*\"] }}\n"));
    let run = p.weir(&["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("✓ pipeline.toml is valid: pipeline `p`, 2 stage(s)"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("a  checksum 0.1.0 (stage), timeout 1m30s"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("b  noop 0.1.0 (stage), timeout 10m, 2 retries, needs a"),
        "{run:?}"
    );
}

#[test]
fn with_is_checked_against_the_plugins_config_schema() {
    let err = invalid(&format!(
        "{HEAD}[stages.sums]\nuses = \"checksum\"\nwith = {{ path = [\"dist/*\"], write = 3 }}\n[stages.n]\nuses = \"noop\"\nwith = {{ x = 1 }}\n"
    ));
    assert!(err.contains("is not a valid pipeline (4 problems)"), "{err}");
    assert!(
        err.contains(
            "pipeline.toml:5:8: stage `sums`: `with.paths` is required but missing (plugin `checksum`)"
        ),
        "{err}"
    );
    assert!(
        err.contains("pipeline.toml:5:10: stage `sums`: `with.path` is not a setting of this plugin; its settings are `paths`, `write` (plugin `checksum`)"),
        "{err}"
    );
    assert!(err.contains("did you mean `paths`?"), "{err}");
    assert!(
        err.contains("pipeline.toml:5:29: stage `sums`: `with.write` must be a string, not the number 3 (plugin `checksum`)"),
        "{err}"
    );
    assert!(
        err.contains("`with.x` is not a setting of this plugin, which takes no settings (plugin `noop`)"),
        "{err}"
    );
}

#[test]
fn huge_and_deeply_nested_pipelines_are_refused_with_a_location_not_a_crash() {
    // 100,000 nested arrays in `with`: the TOML parser's depth limit, not
    // the host's stack, ends it.
    let deep = format!(
        "[pipeline]\nname = \"deep\"\n[stages.a]\nuses = \"noop\"\nwith = {{ x = {}{} }}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = invalid(&deep);
    assert!(e.contains("pipeline.toml:5:"), "{e}");
    // 5,000 stages in a chain, each needing the one before: planned, not
    // refused, and checked in one go.
    let mut long = String::from("[pipeline]\nname = \"long\"\n[stages.s0]\nuses = \"noop\"\n");
    for i in 1..5000 {
        long.push_str(&format!(
            "[stages.s{i}]\nuses = \"noop\"\nneeds = [\"s{}\"]\n",
            i - 1
        ));
    }
    let p = Project::new();
    p.pipeline(&long);
    let run = p.weir(&["validate", "pipeline.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("5000 stage(s)"), "{}", run.stdout);
    // A 64 MiB file is refused before it is parsed.
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"big\"\ndescription = \"{}\"\n",
        "x".repeat(64 << 20)
    ));
    let run = p.weir(&["validate", "pipeline.toml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("pipeline.toml is 67108905 bytes; the limit is 16777216 bytes (limit `pipeline-size`)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_plugin_file_says_how_to_build_that_plugin() {
    for (marker, lang) in [
        ("pyproject.toml", "Python"),
        ("package.json", "JavaScript"),
        ("Cargo.toml", "Rust"),
    ] {
        let p = Project::new();
        p.write(marker, "");
        p.pipeline(
            r#"[pipeline]
name = "missing"

[plugins.mine]
path = "build/mine.wasm"

[stages.s]
uses = "mine"
"#,
        );
        let r = p.weir(&["validate", "pipeline.toml"]);
        assert_eq!(r.code, 2, "{r:?}");
        // As one line: the report wraps its help to the terminal.
        let said = format!("{} {}", r.stdout, r.stderr)
            .split_whitespace()
            .filter(|w| !w.chars().all(|c| "│╰╭─·".contains(c)))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            said.contains("plugin file") && said.contains("does not exist"),
            "{said}"
        );
        assert!(
            said.contains(&format!("it is a {lang} plugin")) && said.contains("weir plugin build"),
            "{said}"
        );
        assert!(!said.contains("cargo build --release --target"), "{said}");
    }
}
