use super::*;
use crate::target::api::{Sample, Samples};

#[test]
fn parses_builtin_selectors_and_refuses_the_rest() {
    assert_eq!(
        parse_selector(r#"weir_requests{service="web", version="v2"}"#),
        Ok(Selector {
            name: "weir_requests".into(),
            service: "web".into(),
            version: Some("v2".into())
        })
    );
    for bad in [
        "up",
        r#"weir_requests{version="v2"}"#,
        r#"weir_requests{service=web}"#,
        r#"weir_requests{service="web",code="5xx"}"#,
        r#"weir_requests{service="web""#,
    ] {
        assert!(parse_selector(bad).is_err(), "{bad}");
    }
}

#[test]
fn builtin_counts_per_step_and_keeps_raw_latencies() {
    let sample = |at_ms, status, seconds| Sample {
        at_ms,
        status,
        seconds,
    };
    let samples = Samples {
        versions: vec![
            (
                "v1".into(),
                vec![
                    sample(1_100, 200, 0.01),
                    sample(1_900, 500, 0.02),
                    sample(2_500, 200, 0.03),
                ],
            ),
            ("v2".into(), vec![sample(1_500, 502, 0.5)]),
        ],
        truncated: false,
    };
    let q = |expr: &str| metrics::Query {
        provider: "builtin".into(),
        expr: expr.into(),
        start_ms: 1_000,
        end_ms: 3_000,
        step_ms: 1_000,
    };
    let sel = parse_selector(r#"weir_requests{service="web"}"#).expect("selector");
    let series = builtin_series(&sel, &q("weir_requests"), samples.clone());
    assert_eq!(series.len(), 2);
    let values: Vec<f64> = series[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, [2.0, 1.0]);
    let sel = parse_selector(r#"weir_errors{service="web",version="v1"}"#).expect("selector");
    let series = builtin_series(&sel, &q("weir_errors"), samples.clone());
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points.iter().map(|p| p.value).sum::<f64>(), 1.0);
    let sel = parse_selector(r#"weir_latency_seconds{service="web",version="v2"}"#).expect("selector");
    let series = builtin_series(&sel, &q("x"), samples);
    assert_eq!(series[0].points.len(), 1);
    assert_eq!(series[0].points[0].value, 0.5);
}

#[test]
fn reads_prometheus_matrix_answers() {
    let answer = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "weir_requests_total", "version": "v1"}, "values": [[1700000000.5, "3"], [1700000001, "4.5"]]}
    ]}});
    let series = prometheus_series(&answer, "q").expect("series");
    assert_eq!(series[0].name, "weir_requests_total");
    assert_eq!(series[0].labels, vec![("version".to_string(), "v1".to_string())]);
    assert_eq!(series[0].points[0].timestamp_ms, 1_700_000_000_500);
    assert_eq!(series[0].points[1].value, 4.5);
    let scalar =
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "2.5"]}});
    let series = prometheus_series(&scalar, "1 + 1.5").expect("scalar");
    assert_eq!(
        (series[0].name.as_str(), series[0].points[0].value),
        ("1 + 1.5", 2.5)
    );
    let refused = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
    assert!(
        prometheus_series(&refused, "q")
            .unwrap_err()
            .contains("parse error")
    );
}
