//! Deploys for real: the `weir` binary starts the local target process,
//! which runs a small Python HTTP service (one process per instance, on
//! its own port) behind its weighted router; the rollout controller drives
//! the built-in deployer and strategies, and canary-metrics judges real
//! traffic from the built-in load generator (or a second client here).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use std::process::Command;

use crate::support::nap;
use crate::support::{Project, Run, plugin};

/// The service: answers `GET /` with its `VERSION`, `/healthz` with ok;
/// `ERROR_RATE` (0 to 1) makes that share of requests answer 500, spread
/// evenly (by a counter: 0.2 fails every fifth), and `DELAY_MS` slows
/// every request.
const SERVICE: &str = r#"#!/usr/bin/env python3
import http.server, os, threading, time
VERSION = os.environ.get("VERSION", "?")
RATE = float(os.environ.get("ERROR_RATE", "0"))
DELAY = int(os.environ.get("DELAY_MS", "0")) / 1000
lock = threading.Lock()
served = [0]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, "ok")
        with lock:
            served[0] += 1
            n = served[0]
        if DELAY:
            time.sleep(DELAY)
        if int(n * RATE) != int((n - 1) * RATE):
            return self.reply(500, "error from " + VERSION)
        self.reply(200, VERSION)
    def reply(self, code, text):
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A project with the service in `ws/` (the runs' workspace) and a
/// target that is stopped when the test ends, however it ends.
pub(crate) struct Deployment {
    pub(crate) p: Project,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.p.weir(&["target", "down"]);
    }
}

/// How one deploy stage is written.
struct Stage<'a> {
    version: &'a str,
    env: &'a str,
    strategy: &'a str,
    checks: &'a str,
    load: &'a str,
    extra: &'a str,
}

impl Default for Stage<'_> {
    fn default() -> Self {
        Self {
            version: "v1",
            env: "",
            // 50 requests a second, 20% of them for 2 s: about 20 in the
            // first window; the limits leave room for a loaded CI machine
            // (a p99 over 250 ms or a doubled median means a real fault).
            strategy: r#"{ uses = "canary", with = { steps = [20, 50, 100], interval = "2s" } }"#,
            checks: r#"[{ uses = "canary-metrics", with = { max-error-rate = 0.05, max-p99-ms = 250, min-requests = 8, max-latency-increase = 1.0 } }]"#,
            load: "load = { rate = 50 }",
            extra: "",
        }
    }
}

impl Deployment {
    pub(crate) fn new() -> Self {
        let p = Project::new();
        p.write("ws/svc.py", SERVICE);
        Self { p }
    }

    fn deploy(&self, s: Stage<'_>) -> Run {
        self.p.pipeline(&self.text(s));
        self.run()
    }

    /// `weir run --json` in `ws/`.
    pub(crate) fn run(&self) -> Run {
        let ws = self.p.path().join("ws");
        self.p.run_json(&["--workspace", ws.to_str().expect("utf-8")])
    }

    /// The pipeline for one deploy stage.
    fn text(&self, s: Stage<'_>) -> String {
        let env = if s.env.is_empty() {
            format!(r#"{{ VERSION = "{}" }}"#, s.version)
        } else {
            format!(r#"{{ VERSION = "{}", {} }}"#, s.version, s.env)
        };
        format!(
            r#"{extra}
[pipeline]
name = "deploy"

[stages.deploy]
uses = "deploy"
timeout = "2m"
with = {{ service = "web", artifact = "svc.py", version = "{version}", readiness-path = "/healthz", replicas = 2, env = {env} }}
strategy = {strategy}
checks = {checks}
{load}
allow = {{ runtime = true, metrics = ["builtin", "prom"] }}

[providers.prom]
prometheus = "http://127.0.0.1:{prom}"
"#,
            extra = s.extra,
            version = s.version,
            strategy = s.strategy,
            checks = s.checks,
            load = s.load,
            prom = prometheus_port(&self.p),
        )
    }

    pub(crate) fn status(&self) -> Value {
        let r = self.p.weir(&["target", "status", "--json"]);
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str(&r.stdout).expect("status JSON")
    }

    pub(crate) fn service(&self) -> Value {
        self.status()["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["service"] == "web").cloned())
            .expect("service web")
    }

    /// The router address of service `web`.
    pub(crate) fn address(&self) -> String {
        self.service()["address"].as_str().expect("address").to_string()
    }
}

/// The Prometheus port a test wrote into its pipeline (unused by the
/// tests that do not start one).
fn prometheus_port(p: &Project) -> u16 {
    std::fs::read_to_string(p.path().join("prometheus.port"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(9)
}

/// `GET path` on `address`: the status and body, or the I/O error.
pub(crate) fn get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok((status, body))
}

/// Who answers `n` requests, by body.
fn answers(address: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, body) = get(address, "/").expect("the router answers");
        *seen.entry(format!("{status} {body}")).or_insert(0) += 1;
    }
    seen
}

fn rollout(run: &Run, phase: &str) -> Vec<Value> {
    run.of("rollout")
        .into_iter()
        .filter(|e| e["phase"] == phase)
        .collect()
}

fn weights_set(run: &Run) -> Vec<u64> {
    rollout(run, "action")
        .iter()
        .filter_map(|e| {
            let m = e["message"].as_str()?;
            m.strip_prefix("send ")?.split('%').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn canary_promotes_a_good_version_and_rolls_back_bad_slow_and_unobserved_ones() {
    let d = Deployment::new();

    // A first release has nothing to split with: all traffic, judged once.
    let first = d.deploy(Stage::default());
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(weights_set(&first), [100]);
    assert_eq!(rollout(&first, "promoted").len(), 1);
    assert_eq!(d.service()["stable"], "v1");

    // A good version goes through every step, judged after each.
    let good = d.deploy(Stage {
        version: "v2",
        ..Stage::default()
    });
    assert_eq!(good.code, 0, "{good:?}");
    assert_eq!(weights_set(&good), [20, 50, 100]);
    let verdicts: Vec<Value> = rollout(&good, "analysis")
        .iter()
        .map(|e| e["verdict"].clone())
        .collect();
    assert_eq!(verdicts, ["pass", "pass", "pass"]);
    // While v2 had 20%, the comparison against v1 ran on both samples.
    let compared = good.finished("deploy")["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["rule"] == "latency-comparison" && f["fields"]["p-value"].is_string());
    assert!(compared, "{good:?}");
    let summary = good.finished("deploy")["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        summary.contains("promoted web v2 (20% → 50% → 100%; 3 analyses passed)"),
        "{summary}"
    );
    assert_load_adds_up(&summary);
    assert_eq!(
        answers(&d.address(), 20).into_iter().collect::<Vec<_>>(),
        [("200 v2".to_string(), 20)]
    );

    // 20% errors: stopped at the first step and rolled back.
    let bad = d.deploy(Stage {
        version: "v3",
        env: r#"ERROR_RATE = "0.2""#,
        ..Stage::default()
    });
    assert_eq!(bad.code, 1, "{bad:?}");
    let finished = bad.finished("deploy");
    assert_eq!(finished["failure"], "rolled_back", "{bad:?}");
    assert_eq!(weights_set(&bad), [20], "stopped at the first step");
    let error = finished["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("error rate") && error.contains("> 5.0%"),
        "{error}"
    );
    assert!(error.contains("all traffic is back on v2"), "{error}");
    let back = rollout(&bad, "rolled_back");
    assert_eq!(back[0]["weights"], serde_json::json!({"v2": 100}));
    assert!(back[0]["recovery_ms"].as_u64().is_some());
    assert_eq!(
        answers(&d.address(), 50).into_iter().collect::<Vec<_>>(),
        [("200 v2".to_string(), 50)]
    );
    let service = d.service();
    assert_eq!(service["stable"], "v2");
    assert!(
        service["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .all(|i| i["version"] == "v2"),
        "the candidate's instances were stopped: {service}"
    );

    // Slow: caught by the latency check.
    let slow = d.deploy(Stage {
        version: "v4",
        env: r#"DELAY_MS = "300""#,
        // Slow answers arrive late: fewer land in each window.
        checks: r#"[{ uses = "canary-metrics", with = { max-error-rate = 0.05, max-p99-ms = 250, min-requests = 5 } }]"#,
        ..Stage::default()
    });
    assert_eq!(slow.code, 1, "{slow:?}");
    let error = slow.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("p99-latency"), "{error}");
    assert_eq!(d.service()["stable"], "v2");

    // No traffic at all: inconclusive, and a rollback, never a promotion.
    let unseen = d.deploy(Stage {
        version: "v5",
        load: "",
        ..Stage::default()
    });
    assert_eq!(unseen.code, 1, "{unseen:?}");
    assert_eq!(rollout(&unseen, "analysis")[0]["verdict"], "inconclusive");
    assert!(rollout(&unseen, "promoted").is_empty());
    assert_eq!(d.service()["stable"], "v2");

    // The history, and a rollback by hand to the release before v2.
    let releases = d.p.weir(&["releases", "web", "--json"]);
    let releases: Value = serde_json::from_str(&releases.stdout).expect("releases JSON");
    let states: Vec<(String, String)> = releases
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap_or_default().into(),
                r["state"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let expect = |v: &str, s: &str| (v.to_string(), s.to_string());
    assert_eq!(
        states,
        [
            expect("v1", "superseded"),
            expect("v2", "stable"),
            expect("v3", "rolled-back"),
            expect("v4", "rolled-back"),
            expect("v5", "rolled-back")
        ]
    );
    let by_hand = d.p.weir(&["rollback", "web"]);
    assert_eq!(by_hand.code, 0, "{by_hand:?}");
    assert!(
        by_hand.stdout.contains("rolled back from v2 to v1"),
        "{by_hand:?}"
    );
    assert_eq!(
        answers(&d.address(), 10).into_iter().collect::<Vec<_>>(),
        [("200 v1".to_string(), 10)]
    );
}

#[test]
pub fn a_strategy_that_traps_mid_rollout_is_rolled_back_by_the_host() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    let extra = plugin("rogue", crate::guest_paths::ROGUE_STRATEGY);
    let run = d.deploy(Stage {
        version: "v2",
        strategy: r#"{ uses = "rogue" }"#,
        extra: &extra,
        ..Stage::default()
    });
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        weights_set(&run),
        [50],
        "the rogue got half the traffic before it crashed"
    );
    let error = run.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("strategy `rogue`") && error.contains("crashed"),
        "{error}"
    );
    assert!(error.contains("all traffic is back on v1"), "{error}");
    assert_eq!(
        answers(&d.address(), 20).into_iter().collect::<Vec<_>>(),
        [("200 v1".to_string(), 20)]
    );
}

/// A strategy and a deployer are called like any stage's plugin: one
/// that grows past its memory limit is stopped by that limit, named, not
/// reported as a crash, and the rollout is rolled back.
#[test]
fn a_strategy_and_a_deployer_past_their_memory_limit_are_each_reported_as_the_memory_limit() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    let extra = plugin("rogue", crate::guest_paths::ROGUE_STRATEGY);
    let run = d.deploy(Stage {
        version: "v2",
        strategy: r#"{ uses = "rogue", with = { hog = true } }"#,
        extra: &extra,
        ..Stage::default()
    });
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("deploy");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("strategy `rogue`: memory limit hit") && error.contains("(limit `memory`)"),
        "{error}"
    );
    assert!(!error.contains("crashed"), "{error}");
    assert!(error.contains("all traffic is back on v1"), "{error}");

    let extra = plugin("greedy", crate::guest_paths::GREEDY_DEPLOYER);
    let hog = d
        .text(Stage {
            version: "v3",
            env: r#"HOG = "1""#,
            extra: &extra,
            ..Stage::default()
        })
        .replace("uses = \"deploy\"", "uses = \"greedy\"");
    d.p.pipeline(&hog);
    let run = d.run();
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("deployer `greedy`: memory limit hit") && error.contains("(limit `memory`)"),
        "{error}"
    );
    assert!(!error.contains("crashed"), "{error}");
    assert_eq!(d.service()["stable"], "v1");
}

#[test]
fn killing_the_target_mid_rollout_leaves_the_stable_version_serving() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    // A rollout that holds 50% for a while; kill the target once it has.
    let ws = d.p.path().join("ws");
    d.p.write(
        "pipeline.toml",
        r#"[pipeline]
name = "deploy"

[stages.deploy]
uses = "deploy"
timeout = "2m"
with = { service = "web", artifact = "svc.py", version = "v2", readiness-path = "/healthz", env = { VERSION = "v2" } }
strategy = { uses = "canary", with = { steps = [50, 100], interval = "20s" } }
checks = [{ uses = "canary-metrics", with = { min-requests = 1 } }]
allow = { runtime = true, metrics = ["builtin"] }
"#,
    );
    let mut child =
        d.p.command(&[
            "run",
            "pipeline.toml",
            "--json",
            "--workspace",
            ws.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let e: Value = serde_json::from_str(&line.expect("utf-8")).expect("an event");
        if e["event"] == "rollout" && e["message"].as_str().is_some_and(|m| m.starts_with("send 50%")) {
            break;
        }
    }
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let mixed = answers(&d.address(), 20);
    assert!(
        mixed.contains_key("200 v2"),
        "v2 takes half the traffic: {mixed:?}"
    );

    // A second rollout of the same service waits its turn: refused now.
    let second =
        d.p.command(&[
            "run",
            "pipeline.toml",
            "--json",
            "--workspace",
            ws.to_str().expect("utf-8"),
        ])
        .output()
        .expect("weir");
    let said = String::from_utf8_lossy(&second.stdout);
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(said.contains("is rolling out `web` now"), "{said}");

    let pid = d.status()["pid"].as_u64().expect("pid") as i32;
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    while d.p.weir(&["target", "status"]).code == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the target did not die"
        );
        nap(Duration::from_millis(50));
    }
    let up = d.p.weir(&["target", "up"]);
    assert_eq!(up.code, 0, "{up:?}");
    let service = d.service();
    assert_eq!(service["stable"], "v1");
    assert_eq!(service["weights"], serde_json::json!([["v1", 100]]));
    assert_eq!(
        answers(&d.address(), 20).into_iter().collect::<Vec<_>>(),
        [("200 v1".to_string(), 20)]
    );
    let v2 = service["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["version"] == "v2")
        .cloned()
        .expect("v2 is remembered");
    assert_eq!(v2["state"], "rolled-back");
    assert!(
        v2["reason"].as_str().unwrap_or_default().contains("restarted"),
        "{v2}"
    );

    // The interrupted run ends failed, and the service stays on v1.
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
    assert_eq!(d.service()["stable"], "v1");
}

/// A second client sending requests in a loop; what it saw.
pub(crate) struct Client {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Result<(u16, String), String>>>,
}

impl Client {
    pub(crate) fn start(address: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !s.load(Ordering::Relaxed) {
                seen.push(get(&address, "/"));
                nap(Duration::from_millis(5));
            }
            seen
        });
        Self { stop, thread }
    }

    pub(crate) fn finish(self) -> Vec<Result<(u16, String), String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the client thread")
    }
}

#[test]
fn blue_green_switches_under_load_without_failing_a_request_of_the_stable_version() {
    let d = Deployment::new();
    let blue_green =
        r#"{ uses = "blue-green", with = { preview-weight = 30, verify = "1500ms", keep-old = "1500ms" } }"#;
    assert_eq!(d.deploy(Stage::default()).code, 0);
    let client = Client::start(d.address());

    let promoted = d.deploy(Stage {
        version: "v2",
        strategy: blue_green,
        ..Stage::default()
    });
    assert_eq!(promoted.code, 0, "{promoted:?}");
    assert_eq!(weights_set(&promoted), [30, 100]);
    let rolled_back = d.deploy(Stage {
        version: "v3",
        env: r#"ERROR_RATE = "0.2""#,
        strategy: blue_green,
        ..Stage::default()
    });
    assert_eq!(rolled_back.code, 1, "{rolled_back:?}");
    assert_eq!(d.service()["stable"], "v2");
    nap(Duration::from_millis(300));
    let seen = client.finish();

    let connection_errors: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        connection_errors.is_empty(),
        "connection errors: {connection_errors:?}"
    );
    let answered: Vec<&(u16, String)> = seen.iter().filter_map(|r| r.as_ref().ok()).collect();
    let stable_failures: Vec<_> = answered
        .iter()
        .filter(|(status, body)| *status != 200 && !body.contains("v3"))
        .collect();
    assert!(
        stable_failures.is_empty(),
        "failed requests not from the candidate: {stable_failures:?}"
    );
    let by_version = |v: &str| answered.iter().filter(|(_, b)| b.ends_with(v)).count();
    assert!(
        by_version("v1") > 0 && by_version("v2") > 0 && by_version("v3") > 0,
        "{answered:?}"
    );
    // After the rollback every request goes to v2.
    assert_eq!(
        answers(&d.address(), 20).into_iter().collect::<Vec<_>>(),
        [("200 v2".to_string(), 20)]
    );
}

#[test]
fn canary_metrics_reads_a_real_prometheus_scraping_the_router() {
    let Some(prometheus) = which("prometheus") else {
        assert!(
            std::env::var_os("WEIR_REQUIRE_PROMETHEUS").is_none(),
            "WEIR_REQUIRE_PROMETHEUS is set but prometheus is not installed"
        );
        eprintln!("skipped: prometheus is not installed (Debian: apt-get install prometheus)");
        return;
    };
    let d = Deployment::new();
    let metrics_port = free_port();
    let up =
        d.p.weir(&["target", "up", "--metrics-port", &metrics_port.to_string()]);
    assert_eq!(up.code, 0, "{up:?}");
    let port = free_port();
    d.p.write("prometheus.port", port.to_string());
    d.p.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    );
    let mut server = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            d.p.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            d.p.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = Instant::now();
    while get(&format!("127.0.0.1:{port}"), "/-/ready").map(|r| r.0) != Ok(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus never got ready"
        );
        if let Ok(Some(s)) = server.try_wait() {
            panic!("prometheus exited: {s}");
        }
        nap(Duration::from_millis(100));
    }
    let _server = Kill(server);
    let via_prometheus = r#"[{ uses = "canary-metrics", with = { provider = "prom", max-error-rate = 0.05, min-requests = 10 } }]"#;
    let strategy = r#"{ uses = "canary", with = { steps = [50, 100], interval = "6s" } }"#;

    assert_eq!(d.deploy(Stage::default()).code, 0);
    let good = d.deploy(Stage {
        version: "v2",
        strategy,
        checks: via_prometheus,
        ..Stage::default()
    });
    assert_eq!(good.code, 0, "{good:?}");
    let findings = good.finished("deploy")["findings"].clone();
    let rate = findings
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "error-rate")
        .cloned()
        .expect("an error-rate finding");
    let requests: f64 = rate["fields"]["requests"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    assert!(requests >= 10.0, "Prometheus saw the canary's traffic: {rate}");

    let bad = d.deploy(Stage {
        version: "v3",
        env: r#"ERROR_RATE = "0.2""#,
        strategy,
        checks: via_prometheus,
        ..Stage::default()
    });
    assert_eq!(bad.code, 1, "{bad:?}");
    let error = bad.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("error rate"), "{error}");
    assert_eq!(d.service()["stable"], "v2");
}

/// The load generator's line accounts for every request it sent: each in
/// exactly one of ok, 4xx, 5xx or without answer.
fn assert_load_adds_up(summary: &str) {
    let line = summary
        .split("; ")
        .find(|p| p.starts_with("load: "))
        .unwrap_or_else(|| panic!("no load line in {summary}"));
    let number = |word: &str| -> u64 {
        let at = line.find(word).unwrap_or_else(|| panic!("no `{word}` in {line}"));
        line[..at]
            .rsplit([' ', ':'])
            .find(|w| !w.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{word}` in {line}"))
    };
    let sent = number(" requests sent");
    let parts = number(" ok") + number(" 4xx") + number(" 5xx") + number(" without answer");
    assert!(sent > 0, "{line}");
    assert_eq!(sent, parts, "a request is in no bucket: {line}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

#[test]
fn rolling_replaces_instances_in_batches_and_recreate_stops_the_old_set_first() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    let scales = |run: &Run| -> Vec<String> {
        rollout(run, "action")
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.starts_with("scale"))
            .map(str::to_string)
            .collect()
    };
    let ready = |d: &Deployment| -> Vec<String> {
        d.service()["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .filter(|i| i["ready"] == true)
            .map(|i| i["version"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let rolling = r#"{ uses = "rolling", with = { max-surge = 1, interval = "1500ms" } }"#;

    let rolled = d.deploy(Stage {
        version: "v2",
        strategy: rolling,
        ..Stage::default()
    });
    assert_eq!(rolled.code, 0, "{rolled:?}");
    assert_eq!(
        scales(&rolled),
        [
            "scale to 1 candidate and 1 stable instances",
            "scale to 2 candidate and 0 stable instances"
        ]
    );
    assert_eq!(weights_set(&rolled), [] as [u64; 0]);
    let split: Vec<Value> = rollout(&rolled, "action")
        .iter()
        .map(|e| e["weights"].clone())
        .filter(|w| w.is_object())
        .collect();
    assert_eq!(
        split[0],
        serde_json::json!({"v1": 50, "v2": 50}),
        "traffic follows instances"
    );
    assert_eq!(ready(&d), ["v2", "v2"]);

    let recreated = d.deploy(Stage {
        version: "v3",
        strategy: r#"{ uses = "recreate", with = { verify = "1500ms" } }"#,
        ..Stage::default()
    });
    assert_eq!(recreated.code, 0, "{recreated:?}");
    assert_eq!(
        scales(&recreated),
        ["scale to 0 candidate and 0 stable instances"]
    );
    assert_eq!(ready(&d), ["v3", "v3"]);

    // A bad batch: the host puts back the instance the batch drained.
    let bad = d.deploy(Stage {
        version: "v4",
        env: r#"ERROR_RATE = "0.3""#,
        strategy: rolling,
        ..Stage::default()
    });
    assert_eq!(bad.code, 1, "{bad:?}");
    assert_eq!(scales(&bad), ["scale to 1 candidate and 1 stable instances"]);
    assert_eq!(ready(&d), ["v3", "v3"]);
    assert_eq!(d.service()["stable"], "v3");
    assert_eq!(
        answers(&d.address(), 10).into_iter().collect::<Vec<_>>(),
        [("200 v3".to_string(), 10)]
    );
}

#[test]
fn deploy_stages_are_checked_before_anything_runs() {
    let p = Project::new();
    let cases = [
        (
            "[stages.d]\nuses = \"deploy\"\nwith = { service = \"web\", artifact = \"a\" }\n",
            "uses the deployer `deploy` but says no `strategy`",
        ),
        (
            "[stages.d]\nuses = \"noop\"\nchecks = [{ uses = \"canary-metrics\" }]\n",
            "has `checks` but no `strategy`",
        ),
        (
            "[stages.d]\nuses = \"noop\"\nstrategy = { uses = \"canary\" }\n",
            "its `uses` must be a deployer",
        ),
        (
            "[stages.d]\nuses = \"deploy\"\nwith = { service = \"web\", artifact = \"a\" }\nstrategy = { uses = \"scan\" }\n",
            "a strategy must be a strategy",
        ),
        (
            "[stages.d]\nuses = \"deploy\"\nwith = { service = \"web\", artifact = \"a\" }\nstrategy = { uses = \"canary\" }\ncache = true\n",
            "cannot be served from the stage cache",
        ),
        (
            "[stages.d]\nuses = \"deploy\"\nwith = { service = \"web\", artifact = \"a\" }\nstrategy = { uses = \"canary\" }\nallow = { runtime = true, metrics = [\"prom\"] }\n",
            "granted metrics provider `prom`, which is not configured",
        ),
        (
            "[providers.prom]\nprometheus = \"localhost:9090\"\n[stages.d]\nuses = \"noop\"\n",
            "is not an http:// URL",
        ),
        (
            "[stages.d]\nuses = \"deploy\"\nwith = { service = \"web\", artifact = \"a\" }\nstrategy = { uses = \"canary\", with = { step = [10] } }\n",
            "strategy `canary`: `with.step` is not a setting",
        ),
    ];
    for (stage, wanted) in cases {
        p.pipeline(&format!("[pipeline]\nname = \"v\"\n{stage}"));
        let run = p.weir(&["validate", "pipeline.toml"]);
        assert_eq!(run.code, 2, "{stage}\n{run:?}");
        assert!(
            run.stderr.contains(wanted),
            "wanted `{wanted}` for\n{stage}\n{}",
            run.stderr
        );
    }
}

#[test]
pub fn a_deployer_may_touch_only_the_release_its_stage_rolls_out() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    d.p.write("ws/evil.py", SERVICE);
    let extra = plugin("greedy", crate::guest_paths::GREEDY_DEPLOYER);
    let greedy = d
        .text(Stage {
            version: "v2",
            extra: &extra,
            ..Stage::default()
        })
        .replace("uses = \"deploy\"", "uses = \"greedy\"");
    d.p.pipeline(&greedy);
    let run = d.run();
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("other service: Err(HostError::Denied(")
            && error.contains("may touch only that service"),
        "{error}"
    );
    assert!(
        error.contains("other artifact: Err(HostError::Denied(")
            && error.contains("may start only that release"),
        "{error}"
    );
    assert!(error.contains("other weights: Err(HostError::Denied("), "{error}");
    assert!(error.contains("foreign stop: Err(HostError::Denied("), "{error}");
    assert_eq!(d.service()["stable"], "v1");

    // An artifact reached through a symlink is never read.
    std::os::unix::fs::symlink("/etc/passwd", d.p.path().join("ws/link.py")).expect("symlink");
    let linked = d
        .text(Stage {
            version: "v3",
            ..Stage::default()
        })
        .replace("artifact = \"svc.py\"", "artifact = \"link.py\"");
    d.p.pipeline(&linked);
    let run = d.run();
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("reached without symlinks"), "{error}");
    assert_eq!(d.service()["stable"], "v1");
}

/// Services on one target belong to the tenant whose run started them: a
/// run of another tenant cannot deploy over the service of the same name,
/// and the first tenant's release keeps serving.
#[test]
pub fn a_tenant_cannot_deploy_over_another_tenants_service() {
    let d = Deployment::new();
    let tenant = |name: &str| {
        format!(
            "[tenants.{name}]\nroot = \".\"\nallow = {{ runtime = true, metrics = [\"builtin\", \"prom\"] }}\n"
        )
    };
    d.p.write("tenants.toml", format!("{}{}", tenant("acme"), tenant("globex")));
    let run_as = |who: &str, version: &str| {
        d.p.pipeline(&d.text(Stage {
            version,
            strategy: r#"{ uses = "recreate" }"#,
            checks: "[]",
            load: "",
            ..Stage::default()
        }));
        let ws = d.p.path().join("ws");
        d.p.run_json(&[
            "--workspace",
            ws.to_str().expect("utf-8"),
            "--tenants",
            "tenants.toml",
            "--tenant",
            who,
        ])
    };
    let acme = run_as("acme", "v1");
    assert_eq!(acme.code, 0, "{acme:?}");
    assert_eq!(d.service()["tenant"], "acme");

    let globex = run_as("globex", "v2");
    assert_eq!(globex.code, 1, "{globex:?}");
    let error = globex.finished("deploy")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        error.contains("service `web` on this target belongs to tenant `acme`; tenant `globex` may not deploy over, read, promote or roll back it"),
        "{error}"
    );
    // Nothing of globex's reached the service.
    let web = d.service();
    assert_eq!(web["stable"], "v1", "{web}");
    assert!(
        web["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .all(|r| r["version"] == "v1"),
        "{web}"
    );
    assert_eq!(
        answers(&d.address(), 5).into_iter().collect::<Vec<_>>(),
        [("200 v1".to_string(), 5)]
    );

    // A plain stage with the runtime grant (which drives the whole target)
    // reaching for acme's service: globex may not list, weigh or stop it;
    // acme may.
    let id = d.service()["instances"][0]["id"]
        .as_str()
        .expect("an instance of web")
        .to_string();
    let probe = |who: &str, instance: &str| {
        d.p.pipeline(&format!(
            "{}\n[pipeline]\nname = \"probe\"\n\n[stages.probe]\nuses = \"probe\"\n\
             with = {{ service = \"web\", version = \"v1\", instance = \"{instance}\" }}\nallow = {{ runtime = true }}\n",
            crate::support::plugin("probe", crate::guest_paths::RUNTIME_PROBE)
        ));
        let ws = d.p.path().join("ws");
        let run = d.p.run_json(&[
            "--workspace",
            ws.to_str().expect("utf-8"),
            "--tenants",
            "tenants.toml",
            "--tenant",
            who,
        ]);
        assert_eq!(run.code, 0, "{run:?}");
        run.finished("probe")["outputs"].clone()
    };
    let theirs = probe("globex", &id);
    for call in ["instances", "weights", "stop"] {
        let said = theirs[call].as_str().unwrap_or_default();
        assert!(
            said.starts_with("denied: service `web` on this target belongs to tenant `acme`"),
            "globex's {call}: {said}"
        );
    }
    let ours = probe("acme", "");
    assert!(
        ours["instances"].as_str().is_some_and(|s| s.starts_with("ok ")),
        "{ours}"
    );
    assert_eq!(ours["weights"], "ok", "{ours}");
    assert!(
        d.service()["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .any(|i| i["id"] == id.as_str()),
        "acme's instance still runs"
    );
    // acme itself deploys on.
    let again = run_as("acme", "v3");
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(d.service()["stable"], "v3");
}

/// `kill -9` of the controller (the `weir run` process) mid-canary: its
/// lease on the service lapses, and the target itself puts the stable
/// release back and stops the candidate, so the failing version does not
/// keep its share of the traffic.
#[test]
fn a_killed_controller_leaves_no_canary_serving() {
    let d = Deployment::new();
    assert_eq!(d.deploy(Stage::default()).code, 0);
    let ws = d.p.path().join("ws");
    // A version that fails every request, held at 20% for a long while.
    d.p.write(
        "pipeline.toml",
        r#"[pipeline]
name = "deploy"

[stages.deploy]
uses = "deploy"
timeout = "2m"
with = { service = "web", artifact = "svc.py", version = "v2", readiness-path = "/healthz", env = { VERSION = "v2", ERROR_RATE = "1.0" } }
strategy = { uses = "canary", with = { steps = [20, 100], interval = "60s" } }
checks = [{ uses = "canary-metrics", with = { min-requests = 1 } }]
allow = { runtime = true, metrics = ["builtin"] }
"#,
    );
    let mut child =
        d.p.command(&[
            "run",
            "pipeline.toml",
            "--json",
            "--workspace",
            ws.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let e: Value = serde_json::from_str(&line.expect("utf-8")).expect("an event");
        if e["event"] == "rollout" && e["message"].as_str().is_some_and(|m| m.starts_with("send 20%")) {
            break;
        }
    }
    let failing = answers(&d.address(), 50);
    assert!(
        failing.keys().any(|k| !k.starts_with("200")),
        "the candidate fails its share: {failing:?}"
    );

    // kill -9: no chance to roll back.
    let killed_at = Instant::now();
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(lines);
    // Within the lease (2 s) and the target's next look, stable is back.
    let restored = loop {
        let service = d.service();
        if service["weights"] == serde_json::json!([["v1", 100]]) {
            break service;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the target did not take the traffic back: {service}"
        );
        nap(Duration::from_millis(100));
    };
    let took = killed_at.elapsed();
    // From then on, not one request fails.
    let after = answers(&d.address(), 100);
    assert_eq!(
        after.into_iter().collect::<Vec<_>>(),
        [("200 v1".to_string(), 100)],
        "restored {took:?} after the kill"
    );
    let v2 = restored["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["version"] == "v2")
        .cloned()
        .expect("v2 is remembered");
    assert_eq!(v2["state"], "rolled-back", "{v2}");
    assert!(
        v2["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("controller lost: run "),
        "{v2}"
    );
    assert!(
        restored["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .all(|i| i["version"] == "v1"),
        "the candidate is stopped: {restored}"
    );
    // `weir releases` shows it too.
    let releases = d.p.weir(&["releases", "web"]);
    assert!(releases.stdout.contains("controller lost"), "{}", releases.stdout);
}
