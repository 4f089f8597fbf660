use super::*;
use std::path::Path;

fn plan(text: &str) -> Result<Plan, InvalidConfig> {
    let loaded = crate::config::parse(Path::new("pipeline.toml"), text.into()).expect("parses");
    build(loaded, &["noop", "checksum"])
}

fn first_error(text: &str) -> ConfigError {
    plan(text).expect_err("invalid").errors.remove(0)
}

const HEAD: &str = "[pipeline]\nname = \"p\"\n";

#[test]
fn unknown_need_is_located_with_a_suggestion() {
    let e = first_error(&format!(
        "{HEAD}[stages.build]\nuses = \"noop\"\n[stages.test]\nuses = \"noop\"\nneeds = [\"biuld\"]\n"
    ));
    assert_eq!(e.location, "pipeline.toml:7:10");
    assert_eq!(e.help.as_deref(), Some("did you mean `build`?"));
}

#[test]
fn focusing_keeps_a_stage_and_its_upstream_renumbered() {
    let mut p = plan(&format!(
            "{HEAD}[stages.other]\nuses = \"noop\"\n[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n[stages.d]\nuses = \"noop\"\nneeds = [\"c\"]\n"
        ))
        .expect("valid");
    let c = p.index_of("c").expect("c");
    p.focus_on(c);
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(p.stages[1].needs, [0]);
    assert_eq!(p.stages[2].needs, [1]);
    assert_eq!(p.stages[2].upstream, BTreeSet::from([0, 1]));
}

#[test]
fn untrusted_code_loses_deploys_secrets_and_what_needs_them() {
    let mut p = plan(&format!(
        "{HEAD}[stages.build]\nuses = \"noop\"\n[stages.sign]\nuses = \"noop\"\nneeds = [\"build\"]\n[stages.deploy]\nuses = \"noop\"\nneeds = [\"build\"]\n[stages.smoke]\nuses = \"noop\"\nneeds = [\"deploy\"]\n[stages.lint]\nuses = \"noop\"\nneeds = [\"build\"]\n"
    ))
    .expect("valid");
    let at = |p: &Plan, n: &str| p.index_of(n).expect(n);
    let (sign, deploy) = (at(&p, "sign"), at(&p, "deploy"));
    p.stages[sign].secret_env.push("SIGNING_KEY".into());
    p.stages[deploy].environment = Some("staging".into());
    let left_out = p.clone().without_trusted_stages();
    assert_eq!(left_out, ["sign", "deploy", "smoke"]);
    // Every other way to a secret or the target is left out too.
    let lint = at(&p, "lint");
    for grant in [
        |s: &mut PlannedStage| s.grants.secrets.push("TOKEN".into()),
        |s: &mut PlannedStage| s.grants.runtime = true,
        |s: &mut PlannedStage| s.grants.metrics.push("prometheus".into()),
        |s: &mut PlannedStage| s.inherited.push("AWS_SECRET_ACCESS_KEY".into()),
    ] {
        let mut q = p.clone();
        grant(&mut q.stages[lint]);
        assert_eq!(q.without_trusted_stages(), ["sign", "deploy", "smoke", "lint"]);
    }
    p.without_trusted_stages();
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["build", "lint"]);
    assert_eq!(p.stages[1].needs, [0]);
    assert!(p.notify.is_empty());
    assert!(
        p.stages.iter().all(|s| s.cache.setting == Some(false)),
        "untrusted runs keep out of the cache"
    );
}

#[test]
fn cycle_names_its_path() {
    let e = first_error(&format!(
        "{HEAD}[stages.a]\nuses = \"noop\"\nneeds = [\"c\"]\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n"
    ));
    assert!(e.message.contains("a → c → b → a"), "{}", e.message);
}

#[test]
fn unknown_plugin_and_bad_duration_reported_together() {
    let err = plan(&format!(
        "{HEAD}[stages.a]\nuses = \"nop\"\ntimeout = \"10 minutes\"\n"
    ))
    .unwrap_err();
    assert_eq!(err.errors.len(), 2);
    assert_eq!(err.errors[0].help.as_deref(), Some("did you mean `noop`?"));
    assert_eq!(err.errors[1].location, "pipeline.toml:5:11");
}

#[test]
fn output_reference_must_be_upstream() {
    let e = first_error(&format!(
        "{HEAD}[stages.a]\nuses = \"noop\"\n[stages.b]\nuses = \"noop\"\nwith = {{ v = \"${{{{ stages.a.outputs.x }}}}\" }}\n"
    ));
    assert!(e.message.contains("does not need it"), "{}", e.message);
    assert_eq!(e.location, "pipeline.toml:7:15");
}

#[test]
fn upstream_is_transitive_and_order_respects_needs() {
    let p = plan(&format!(
            "{HEAD}[stages.c]\nuses = \"noop\"\nneeds = [\"b\"]\n[stages.b]\nuses = \"noop\"\nneeds = [\"a\"]\n[stages.a]\nuses = \"noop\"\n"
        ))
        .unwrap();
    assert_eq!(p.stages[0].upstream, BTreeSet::from([1, 2]));
    assert_eq!(p.topological_order(), vec![2, 1, 0]);
}
