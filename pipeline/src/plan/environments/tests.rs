use super::*;
use std::path::Path;

fn plan(text: &str) -> Plan {
    let loaded = crate::config::parse(Path::new("p.toml"), text.into()).unwrap();
    super::super::build(loaded, &["noop", "deploy", "canary", "canary-metrics"]).unwrap()
}

const PIPELINE: &str = r#"
[pipeline]
name = "p"
environment = "staging"
[environments.staging]
variables = { LEVEL = "debug" }
deploy = { replicas = 1 }
checks = { canary-metrics = { max-error-rate = 0.1 } }
[environments.production]
variables = { LEVEL = "info" }
secrets = ["TOKEN"]
deploy = { replicas = 3 }
branches = ["main", "release/*"]
approval = { approvers = ["alice"], timeout = "1h" }
[stages.build]
uses = "noop"
env = { LEVEL = "stage" }
[stages.ship]
uses = "deploy"
env = { LEVEL = "stage" }
with = { service = "s", replicas = 9 }
strategy = { uses = "canary" }
checks = [{ uses = "canary-metrics", with = { max-error-rate = 0.5, min-requests = 5 } }]
"#;

fn var(stage: &PlannedStage, k: &str) -> Option<String> {
    stage.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn the_default_environment_is_laid_over_deploy_stages_only() {
    let mut p = plan(PIPELINE);
    let r = resolve(&mut p, None, &|_| None).unwrap();
    assert_eq!(r.environment.as_deref(), Some("staging"));
    assert_eq!(p.stages[0].environment, None);
    assert_eq!(var(&p.stages[0], "LEVEL").as_deref(), Some("stage"));
    let ship = &p.stages[1];
    assert_eq!(ship.environment.as_deref(), Some("staging"));
    assert_eq!(var(ship, "LEVEL").as_deref(), Some("debug"));
    assert_eq!(ship.with["replicas"], 1);
    assert_eq!(ship.with["service"], "s");
    let check = &ship.rollout.as_ref().unwrap().checks[0].with;
    assert_eq!(check["max-error-rate"], 0.1);
    assert_eq!(check["min-requests"], 5);
    assert_eq!(ship.concurrency[0].group, "environment/staging");
}

#[test]
fn missing_secrets_are_named_and_present_ones_masked() {
    let mut p = plan(PIPELINE);
    let e = resolve(&mut p, Some("production"), &|_| None).unwrap_err();
    assert_eq!(
        e,
        [EnvironmentError::MissingSecret {
            user: "environment `production`".into(),
            secret: "TOKEN".into()
        }]
    );
    let mut p = plan(PIPELINE);
    let r = resolve(&mut p, Some("production"), &|n| {
        (n == "TOKEN").then(|| "s3cret".into())
    })
    .unwrap();
    assert_eq!(r.secret_values, ["s3cret"]);
    assert_eq!(var(&p.stages[1], "TOKEN").as_deref(), Some("s3cret"));
    let (shown, errors) = describe(&p.environments["production"], &|_| Some("s3cret".into()));
    assert!(errors.is_empty());
    assert_eq!(shown["variables"]["TOKEN"], MASK);
}

#[test]
fn an_unknown_environment_is_refused() {
    let mut p = plan(PIPELINE);
    let e = resolve(&mut p, Some("prod"), &|_| None).unwrap_err();
    assert!(e[0].to_string().contains("no environment `prod`"), "{}", e[0]);
}

#[test]
fn branch_rules_name_the_stage_and_the_rules() {
    let mut p = plan(PIPELINE);
    resolve(&mut p, Some("production"), &|_| Some("x".into())).unwrap();
    let facts = |b: &str| RunFacts {
        branch: Some(b.into()),
        environment: Some("production".into()),
    };
    assert!(check_refs(&p, &facts("main"), &[]).is_empty());
    assert!(check_refs(&p, &facts("release/2"), &[]).is_empty());
    let e = check_refs(&p, &facts("feature/x"), &[]);
    assert_eq!(
        e[0].to_string(),
        "stage `ship` deploys to environment `production`, which accepts branches main, release/*; this run builds branch `feature/x`"
    );
}

#[test]
fn diff_lines_come_from_flattening() {
    let p = plan(PIPELINE);
    let (a, _) = describe(&p.environments["staging"], &|_| None);
    let flat = flatten(&a);
    assert_eq!(flat["deploy.replicas"], "1");
    assert_eq!(flat["variables.LEVEL"], "\"debug\"");
}
