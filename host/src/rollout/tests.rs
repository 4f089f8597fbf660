use super::controller::worst;
use super::release::release_of;
use super::*;

#[test]
fn a_release_comes_from_the_stage_config_with_checked_names() {
    let r = release_of(
        r#"{"service":"web","artifact":"bin/web","replicas":3,"env":{"MODE":"x"}}"#,
        "20261122-abc123",
    )
    .expect("release");
    assert_eq!(r.version, "abc123");
    assert_eq!(r.replicas, 3);
    assert_eq!(r.env, vec![("MODE".to_string(), "x".to_string())]);
    for bad in [
        r#"{"artifact":"a"}"#,
        r#"{"service":"web"}"#,
        r#"{"service":"../x","artifact":"a"}"#,
        r#"{"service":"web","artifact":"a","replicas":0}"#,
        r#"{"service":"web","artifact":"a","version":"a b"}"#,
    ] {
        assert!(release_of(bad, "r").is_err(), "{bad}");
    }
}

#[test]
fn the_worst_verdict_wins_and_no_data_is_never_a_pass() {
    assert!(matches!(
        worst(Verdict::Pass, Verdict::Inconclusive),
        Verdict::Inconclusive
    ));
    assert!(matches!(
        worst(Verdict::Fail, Verdict::Inconclusive),
        Verdict::Fail
    ));
    assert!(matches!(worst(Verdict::Warn, Verdict::Pass), Verdict::Warn));
}
