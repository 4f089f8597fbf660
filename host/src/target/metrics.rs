//! What the router measures, per service and version: requests by status
//! class, upstream errors, a latency histogram, and a bounded sample of
//! recent latencies for statistics (the canary judge's Mann-Whitney test).
//! Rendered as Prometheus text for `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram bucket upper bounds, in seconds (Prometheus' defaults,
/// extended down to a millisecond for loopback services).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most latencies kept per version for statistics; the oldest go first.
pub const SAMPLE: usize = 4096;

/// One request's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When it ended, ms since the Unix epoch.
    pub at_ms: u64,
    /// The status the client got (502 when the upstream failed).
    pub status: u16,
    /// Time to the response's headers, in seconds.
    pub seconds: f64,
    /// Whether the upstream could not be reached or failed mid-response.
    pub upstream_error: bool,
}

/// One version's series.
#[derive(Debug, Clone, Default)]
pub struct VersionStats {
    /// Requests by status class: 1xx … 5xx.
    pub by_class: [u64; 5],
    /// Requests whose upstream failed (also counted as 5xx).
    pub upstream_errors: u64,
    /// Cumulative counts per bucket of [`BUCKETS`], then +Inf.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Sum of latencies, seconds.
    pub sum: f64,
    /// The latest observations, oldest first.
    pub sample: VecDeque<Observation>,
}

impl VersionStats {
    /// Requests in all.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    fn observe(&mut self, o: Observation) {
        let class = usize::from((o.status / 100).clamp(1, 5)) - 1;
        self.by_class[class] += 1;
        if o.upstream_error {
            self.upstream_errors += 1;
        }
        let at = BUCKETS
            .iter()
            .position(|b| o.seconds <= *b)
            .unwrap_or(BUCKETS.len());
        for b in &mut self.buckets[at..] {
            *b += 1;
        }
        self.sum += o.seconds;
        if self.sample.len() == SAMPLE {
            self.sample.pop_front();
        }
        self.sample.push_back(o);
    }
}

/// The series of every version of one service.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    versions: Mutex<BTreeMap<String, VersionStats>>,
}

impl ServiceMetrics {
    /// Count one request to `version`.
    pub fn observe(&self, version: &str, o: Observation) {
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.entry(version.to_string()).or_default().observe(o);
    }

    /// A copy of every version's series.
    pub fn snapshot(&self) -> BTreeMap<String, VersionStats> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A label value escaped for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text (format 0.0.4) for `services`.
pub fn render<'a>(services: impl IntoIterator<Item = (&'a str, &'a ServiceMetrics)>) -> String {
    let all: Vec<(&str, BTreeMap<String, VersionStats>)> =
        services.into_iter().map(|(s, m)| (s, m.snapshot())).collect();
    let mut out = String::new();
    out.push_str(
        "# HELP weir_requests_total Requests the router answered, by service, version and status class.\n",
    );
    out.push_str("# TYPE weir_requests_total counter\n");
    for (service, versions) in &all {
        for (version, s) in versions {
            for (i, n) in s.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "weir_requests_total{{service=\"{}\",version=\"{}\",code=\"{}xx\"}} {n}",
                    label(service),
                    label(version),
                    i + 1
                );
            }
        }
    }
    out.push_str("# HELP weir_upstream_errors_total Requests whose instance could not be reached or failed mid-response (answered 502).\n");
    out.push_str("# TYPE weir_upstream_errors_total counter\n");
    for (service, versions) in &all {
        for (version, s) in versions {
            let _ = writeln!(
                out,
                "weir_upstream_errors_total{{service=\"{}\",version=\"{}\"}} {}",
                label(service),
                label(version),
                s.upstream_errors
            );
        }
    }
    out.push_str(
        "# HELP weir_request_duration_seconds Time from a request's arrival to its response's headers.\n",
    );
    out.push_str("# TYPE weir_request_duration_seconds histogram\n");
    for (service, versions) in &all {
        for (version, s) in versions {
            let (sv, vv) = (label(service), label(version));
            for (i, n) in s.buckets.iter().enumerate() {
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| format!("{b}"));
                let _ = writeln!(
                    out,
                    "weir_request_duration_seconds_bucket{{service=\"{sv}\",version=\"{vv}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "weir_request_duration_seconds_sum{{service=\"{sv}\",version=\"{vv}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "weir_request_duration_seconds_count{{service=\"{sv}\",version=\"{vv}\"}} {}",
                s.requests()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(status: u16, seconds: f64) -> Observation {
        Observation {
            at_ms: 1,
            status,
            seconds,
            upstream_error: status == 502,
        }
    }

    #[test]
    fn counts_classes_buckets_and_keeps_a_bounded_sample() {
        let m = ServiceMetrics::default();
        m.observe("v1", obs(200, 0.003));
        m.observe("v1", obs(503, 0.2));
        m.observe("v1", obs(502, 20.0));
        let s = &m.snapshot()["v1"];
        assert_eq!(s.by_class, [0, 1, 0, 0, 2]);
        assert_eq!(s.upstream_errors, 1);
        assert_eq!(s.buckets[1], 0, "0.003 is above 0.0025");
        assert_eq!(s.buckets[2], 1);
        assert_eq!(s.buckets[BUCKETS.len() - 1], 2, "20 s is past the last bound");
        assert_eq!(s.buckets[BUCKETS.len()], 3, "+Inf counts all");
        for _ in 0..SAMPLE + 10 {
            m.observe("v2", obs(200, 0.001));
        }
        assert_eq!(m.snapshot()["v2"].sample.len(), SAMPLE);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = ServiceMetrics::default();
        m.observe("v\"2", obs(200, 0.004));
        let text = render([("web", &m)]);
        assert!(
            text.contains("weir_requests_total{service=\"web\",version=\"v\\\"2\",code=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("weir_request_duration_seconds_count{service=\"web\",version=\"v\\\"2\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(
                value.parse::<f64>().is_ok(),
                "every sample ends in a number: {line}"
            );
        }
    }
}
