//! SLSA v1 provenance: `weir keys generate`, the signed DSSE envelope a run
//! that makes artifacts writes, `weir verify`, an independent verifier
//! (securesystemslib, from PyPI), and what fails verification.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Project, Run, outside_tool};

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// A repository with one commit, and a pipeline that checks it out and
/// builds `dist/app.bin` from it.
fn project() -> (Project, String) {
    let p = Project::new();
    let origin = p.path().join("origin");
    std::fs::create_dir_all(&origin).expect("origin");
    p.write("origin/app.txt", "the app, version 1\n");
    crate::git::git(&origin, &["init", "--quiet"]);
    crate::git::git(&origin, &["add", "."]);
    crate::git::git(&origin, &["commit", "--quiet", "-m", "one"]);
    let head = crate::git::git(&origin, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    p.pipeline(&format!(
        "[pipeline]\nname = \"signed\"\n\n[stages.checkout]\nuses = \"git\"\nwith = {{ repo = {:?} }}\n\
         allow = {{ exec = [\"git\"], read = [\"origin\"] }}\n\n\
         [stages.build]\nuses = \"build\"\nneeds = [\"checkout\"]\nallow = {{ exec = [\"sh\"] }}\n\
         with = {{ dir = \"src\", command = \"mkdir -p dist && cp app.txt dist/app.bin\", artifacts = [\"dist/app.bin\"] }}\n",
        origin.display().to_string()
    ));
    (p, head)
}

fn run_signed(p: &Project, key: &Path) -> Run {
    p.command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SIGNING_KEY", key)
        .output()
        .expect("weir runs")
        .into()
}

fn provenance_of(p: &Project, run: &Run) -> PathBuf {
    let id = run.events()[0]["run"].as_str().expect("run id").to_string();
    p.path()
        .join(".weir/runs")
        .join(id)
        .join("reports/provenance.intoto.jsonl")
}

fn statement_of(envelope: &Value) -> Value {
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    serde_json::from_slice(&payload).expect("the statement is JSON")
}

#[test]
fn a_run_that_makes_artifacts_signs_slsa_provenance_that_verifies() {
    let (p, head) = project();
    let keys = p.path().join("keys");
    let made = p.weir(&["keys", "generate", "--out", &keys.display().to_string()]);
    assert_eq!(made.code, 0, "{made:?}");
    let private = keys.join("weir-signing.key");
    let public = keys.join("weir-signing.pub");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&private).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the signing key is its owner's alone");
    assert!(
        std::fs::read_to_string(&public)
            .expect("pub")
            .starts_with("-----BEGIN PUBLIC KEY-----"),
        "SubjectPublicKeyInfo PEM"
    );
    let again = p.weir(&["keys", "generate", "--out", &keys.display().to_string()]);
    assert_eq!(again.code, 1, "an existing key is kept: {again:?}");
    assert!(again.stderr.contains("--force"), "{}", again.stderr);

    let run = run_signed(&p, &private);
    assert_eq!(run.code, 0, "{run:?}");
    let file = provenance_of(&p, &run);
    let text = std::fs::read_to_string(&file).expect("provenance.intoto.jsonl");
    assert_eq!(text.lines().count(), 1, "one envelope per line");
    let envelope: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"].as_array().map(Vec::len), Some(1));

    // What the statement says.
    let artifact = run.workspace().join("src/dist/app.bin");
    let s = statement_of(&envelope);
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        s["subject"],
        serde_json::json!([{ "name": "app.bin", "digest": { "sha256": sha256_of(&artifact) } }])
    );
    let definition = &s["predicate"]["buildDefinition"];
    assert_eq!(
        definition["externalParameters"]["pipeline"]["digest"]["sha256"],
        sha256_of(&p.path().join("pipeline.toml"))
    );
    assert_eq!(
        definition["externalParameters"]["stages"]["build"]["artifacts"],
        serde_json::json!(["dist/app.bin"])
    );
    let deps = definition["resolvedDependencies"].as_array().expect("deps");
    let source = deps
        .iter()
        .find(|d| d["digest"]["gitCommit"].is_string())
        .expect("the commit");
    assert_eq!(source["digest"]["gitCommit"], head.as_str());
    assert!(
        source["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("git+file://") && u.ends_with(&head)),
        "{source}"
    );
    for plugin in ["git", "build"] {
        let d = deps
            .iter()
            .find(|d| d["name"] == format!("plugin {plugin}"))
            .unwrap_or_else(|| panic!("plugin {plugin} in {deps:?}"));
        assert_eq!(d["annotations"]["wit"], "weir:plugin@0.1.0");
        assert_eq!(d["digest"]["sha256"].as_str().map(str::len), Some(64), "{d}");
    }
    let details = &s["predicate"]["runDetails"];
    assert_eq!(details["metadata"]["invocationId"], run.events()[0]["run"]);
    for when in ["startedOn", "finishedOn"] {
        assert!(
            details["metadata"][when]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
            "{when}: {details}"
        );
    }
    assert!(details["builder"]["id"].as_str().is_some_and(|b| !b.is_empty()));

    // weir verify: the artifact as built.
    let (prov, key) = (file.display().to_string(), public.display().to_string());
    let ok = p.weir(&[
        "verify",
        &artifact.display().to_string(),
        "--provenance",
        &prov,
        "--key",
        &key,
    ]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("subject   app.bin"), "{}", ok.stdout);
    assert!(ok.stdout.contains(&head), "{}", ok.stdout);

    // A changed artifact is not a subject.
    let changed = p.write(
        "changed.bin",
        format!("{}!", std::fs::read_to_string(&artifact).expect("artifact")),
    );
    let bad = p.weir(&[
        "verify",
        &changed.display().to_string(),
        "--provenance",
        &prov,
        "--key",
        &key,
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("is not what this provenance describes"),
        "{}",
        bad.stderr
    );

    // A changed statement (claiming the changed file) breaks the signature.
    let mut forged_statement = s.clone();
    forged_statement["subject"][0]["digest"]["sha256"] = Value::String(sha256_of(&changed));
    let mut forged = envelope.clone();
    forged["payload"] = Value::String(STANDARD.encode(serde_json::to_vec(&forged_statement).expect("json")));
    let forged_file = p.write(
        "forged.intoto.jsonl",
        serde_json::to_string(&forged).expect("json"),
    );
    let forged_arg = forged_file.display().to_string();
    let bad = p.weir(&[
        "verify",
        &changed.display().to_string(),
        "--provenance",
        &forged_arg,
        "--key",
        &key,
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("the signature does not match"),
        "{}",
        bad.stderr
    );

    // Another key does not verify it.
    let other = p.path().join("other-keys");
    assert_eq!(
        p.weir(&["keys", "generate", "--out", &other.display().to_string()])
            .code,
        0
    );
    let other_pub = other.join("weir-signing.pub").display().to_string();
    let bad = p.weir(&[
        "verify",
        &artifact.display().to_string(),
        "--provenance",
        &prov,
        "--key",
        &other_pub,
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains("no signature in the envelope was made by this key"),
        "{}",
        bad.stderr
    );

    // An independent implementation agrees: securesystemslib verifies the
    // real envelope and rejects the forged one.
    if outside_tool(
        "securesystemslib",
        &["python3", "-c", "import securesystemslib.dsse, cryptography"],
        "pip install securesystemslib cryptography",
    ) {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/provenance/verify_dsse.py");
        let check = |envelope: &str| {
            std::process::Command::new("python3")
                .arg(&script)
                .arg(envelope)
                .arg(&public)
                .output()
                .expect("python3")
        };
        let real = check(&prov);
        assert!(real.status.success(), "{real:?}");
        let said = String::from_utf8_lossy(&real.stdout);
        assert!(
            said.contains(&format!(
                "verified https://slsa.dev/provenance/v1 app.bin={}",
                sha256_of(&artifact)
            )),
            "{said}"
        );
        let fake = check(&forged_arg);
        assert!(
            !fake.status.success(),
            "securesystemslib accepted a forged statement: {fake:?}"
        );
    }
}

#[test]
fn the_signing_key_is_never_readable_by_a_stage() {
    let (p, _) = project();
    let keys = p.path().join("secret-keys");
    assert_eq!(
        p.weir(&["keys", "generate", "--out", &keys.display().to_string()])
            .code,
        0
    );
    let private = keys.join("weir-signing.key");
    // A stage granted the folder the key is in is refused before it runs.
    p.write("secret-keys/.keep", "");
    let pipeline = std::fs::read_to_string(p.path().join("pipeline.toml")).expect("pipeline");
    p.pipeline(&pipeline.replace("read = [\"origin\"]", "read = [\"origin\", \"secret-keys\"]"));
    let run = run_signed(&p, &private);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("stage `checkout` may read")
            && run.stderr.contains("which holds weir's provenance signing key"),
        "{}",
        run.stderr
    );
    // A key others can read is not used.
    p.pipeline(&pipeline);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = run_signed(&p, &private);
    assert!(
        run.stderr
            .contains("can be read by other users (mode 644); run `chmod 600"),
        "{run:?}"
    );
    assert!(
        !provenance_of(&p, &run).exists(),
        "nothing unsigned passes for signed"
    );
    // Without a key the provenance is written unsigned, and says so.
    let run = p.run_json(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(provenance_of(&p, &run)).expect("file")).expect("JSON");
    assert_eq!(envelope["signatures"], serde_json::json!([]));
    let unsigned = p.weir(&[
        "verify",
        &run.workspace().join("src/dist/app.bin").display().to_string(),
        "--provenance",
        &provenance_of(&p, &run).display().to_string(),
        "--key",
        &keys.join("weir-signing.pub").display().to_string(),
    ]);
    assert_eq!(unsigned.code, 1);
    assert!(
        unsigned.stderr.contains("the provenance is not signed"),
        "{}",
        unsigned.stderr
    );
}
