//! Expressions in shell text reach the shell as data: an upstream output
//! full of shell syntax is never run, in `run`, in `env`, and in the
//! `command` of `build` and `junit`; and every malformed expression is a
//! configuration error `weir validate` names.

use crate::guest_paths as g;
use crate::support::{Project, plugin};

/// What the upstream stage outputs: each way text can become code in `sh`.
const HOSTILE: &str = "$(id) `id` ; id && id | id \" ' \\ * $HOME\nline two ";

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

#[test]
fn an_output_full_of_shell_syntax_reaches_programs_as_data() {
    let p = Project::new();
    // `printf` joins the parts, so that the pipeline itself never holds the
    // `${{ secrets.X }}` the value carries.
    let expected = format!("{HOSTILE}${{{{ secrets.X }}}} end");
    let args = format!(
        "[\"%s{{%s\", {}, \"{{ secrets.X }}}} end\"]",
        toml_string(&format!("{HOSTILE}$"))
    );
    let e = "${{ stages.a.outputs.stdout }}";
    let run_text = format!(
        "printf '%s' {e} > bare.txt\nprintf '%s' \"{e}\" > dq.txt\nprintf '%s' 'x{e}' > sq.txt\n\
         cat > heredoc.txt <<EOF\n{e}\nEOF\nprintf '%s' \"$V\" > env.txt\n"
    );
    p.pipeline(&format!(
        "[pipeline]\nname = \"inject\"\n{}\n[stages.a]\nuses = \"exec\"\nwith = {{ program = \"printf\", args = {args} }}\nallow = {{ exec = [\"printf\"] }}\n\n\
         [stages.b]\nneeds = [\"a\"]\nrun = {}\nenv = {{ V = \"{e}\" }}\n\n\
         [stages.c]\nuses = \"build\"\nneeds = [\"a\"]\nallow = {{ exec = [\"sh\"] }}\nwith = {{ command = \"printf '%s' {e} > build.txt\" }}\n\n\
         [stages.d]\nuses = \"junit\"\nneeds = [\"a\"]\nallow = {{ exec = [\"sh\"] }}\n\
         with = {{ command = \"printf '%s' {e} > junit.txt; printf '<testsuite name=\\\"s\\\" tests=\\\"1\\\"><testcase name=\\\"t\\\"/></testsuite>' > r.xml\", reports = [\"r.xml\"] }}\n",
        plugin("exec", g::EXEC),
        toml_string(&run_text),
    ));
    let validate = p.weir(&["validate", "pipeline.toml"]);
    assert_eq!(validate.code, 0, "{validate:?}");
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("a")["outputs"]["stdout"], expected.as_str());
    let ws = run.workspace();
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    for (file, want) in [
        ("bare.txt", expected.clone()),
        ("dq.txt", expected.clone()),
        ("sq.txt", format!("x{expected}")),
        ("heredoc.txt", format!("{expected}\n")),
        ("env.txt", expected.clone()),
        ("build.txt", expected.clone()),
        ("junit.txt", expected.clone()),
    ] {
        assert_eq!(
            read(file),
            want,
            "{file}: the value reached the program changed, or ran"
        );
    }
    // Nothing ran `id`.
    let logs = run.log_messages().join("\n");
    assert!(!logs.contains("uid="), "{logs}");

    // A NUL byte cannot be handed over at all: said, not cut short.
    p.pipeline(&format!(
        "[pipeline]\nname = \"nul\"\n{}\n[stages.a]\nuses = \"exec\"\nwith = {{ program = \"printf\", args = [\"a\\\\0b\"] }}\nallow = {{ exec = [\"printf\"] }}\n\n\
         [stages.b]\nneeds = [\"a\"]\nrun = \"printf '%s' {e} > nul.txt\"\n",
        plugin("exec", g::EXEC)
    ));
    let run = p.run_json(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("b")["error"].as_str().unwrap_or("").to_string();
    assert!(
        error.contains("holds a NUL byte, which no program can be given"),
        "{error}"
    );
}

#[test]
fn every_malformed_expression_in_shell_text_is_a_configuration_error() {
    let p = Project::new();
    let cases = [
        (
            "run = \"echo ${{ stages.a.outputs.x\"",
            "pipeline.toml:8:",
            "is not closed: add `}}`",
        ),
        (
            "run = \"echo ${{ matrix.rust }}\"",
            "pipeline.toml:8:",
            "is not an expression weir knows",
        ),
        (
            "run = \"echo ${{ stages.nope.outputs.x }}\"",
            "pipeline.toml:8:",
            "refers to stage `nope`, which does not exist",
        ),
        (
            "run = \"cat <<'EOF'\\n${{ stages.a.outputs.x }}\\nEOF\"",
            "pipeline.toml:",
            "heredoc with a quoted delimiter",
        ),
        (
            "run = \"true\"\nenv = { WEIR_EXPR_1 = \"x\" }",
            "pipeline.toml:9:",
            "is a name weir keeps for itself",
        ),
    ];
    // `[pipeline] env` too.
    p.pipeline("[pipeline]\nname = \"bad\"\nenv = { A = \"${{ stages.a.outputs.x\" }\n\n[stages.a]\nrun = \"true\"\n");
    let v = p.weir(&["validate", "pipeline.toml"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(
        v.stderr.contains("is not closed") && v.stderr.contains("pipeline.toml:3:"),
        "{}",
        v.stderr
    );
    p.pipeline("[pipeline]\nname = \"bad\"\nenv = { A = \"${{ stages.a.outputs.x }}\" }\n\n[stages.a]\nrun = \"true\"\n");
    let v = p.weir(&["validate", "pipeline.toml"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("but it is every stage's"), "{}", v.stderr);
    for (stage, at, says) in cases {
        p.pipeline(&format!(
            "[pipeline]\nname = \"bad\"\n\n[stages.a]\nrun = \"true\"\n[stages.b]\nneeds = [\"a\"]\n{stage}\n"
        ));
        // Line 8 is stage b's `run`, line 9 its `env`.
        let v = p.weir(&["validate", "pipeline.toml"]);
        assert_eq!(v.code, 2, "{stage}: {v:?}");
        assert!(v.stderr.contains(says), "{stage}: {}", v.stderr);
        assert!(v.stderr.contains(at), "{stage}: no location in {}", v.stderr);
    }
}
