//! Environments: values laid over stages, protected environments with
//! approvals that survive a restart, concurrency groups, webhooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Project;

#[expect(
    clippy::disallowed_methods,
    reason = "a plain test thread, not a tokio worker"
)]
fn nap(d: Duration) {
    std::thread::sleep(d);
}

const ENVIRONMENTS: &str = r#"
[pipeline]
name = "envs"
environment = "staging"

[environments.staging]
variables = { LEVEL = "debug" }

[environments.production]
variables = { LEVEL = "info" }
secrets = ["TOKEN"]
branches = ["main"]
approval = { approvers = ["alice"], timeout = "APPROVAL_TIMEOUT" }

[stages.build]
run = "echo building"
"#;

/// A pipeline whose `ship` stage targets `environment`.
fn pipeline(environment: &str, timeout: &str) -> String {
    format!(
        "{}\n[stages.ship]\nneeds = [\"build\"]\nenvironment = \"{environment}\"\nrun = \"echo level=$LEVEL token=$TOKEN\"\n",
        ENVIRONMENTS.replace("APPROVAL_TIMEOUT", timeout)
    )
}

/// `weir run --json ARGS` in the background, with its events read as they come.
struct Background {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(p: &Project, args: &[&str]) -> Self {
        let mut all = vec!["run", "pipeline.toml", "--json"];
        all.extend_from_slice(args);
        let mut child = p
            .command(&all)
            .env("WEIR_SECRET_TOKEN", "hunter2")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir starts");
        let out = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(v);
                }
            }
        });
        Self {
            child,
            events,
            reader: Some(reader),
        }
    }

    /// Wait (up to a minute) for an event matching `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.events.lock().expect("events").iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in {:?}",
                self.events.lock().expect("events")
            );
            nap(Duration::from_millis(50));
        }
    }

    fn run_id(&self) -> String {
        self.wait_for("run_started", |e| e["event"] == "run_started")["run"]
            .as_str()
            .expect("run id")
            .to_string()
    }

    /// Wait for the process to end: its exit code and every event.
    fn finish(mut self) -> (i32, Vec<Value>) {
        let code = self.child.wait().expect("weir ends").code().unwrap_or(-1);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let events = self.events.lock().expect("events").clone();
        (code, events)
    }
}

fn finished<'a>(events: &'a [Value], stage: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
        .unwrap_or_else(|| panic!("no stage_finished for {stage} in {events:?}"))
}

#[test]
fn each_environment_lays_its_own_values_over_the_stage() {
    let p = Project::new();
    p.pipeline(&pipeline("staging", "1h"));
    let staging = p.run_json(&[]);
    assert_eq!(staging.code, 0, "{staging:?}");
    let line = |run: &crate::support::Run| {
        run.of("stage_log")
            .into_iter()
            .find(|e| e["stage"] == "ship")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(line(&staging).as_deref(), Some("level=debug token="));

    // Production needs its secret, named exactly, before anything runs.
    p.pipeline(&pipeline("production", "1h"));
    let v = p.weir(&["validate", "--env", "production"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(
        v.stderr
            .contains("environment `production` needs secret `TOKEN`, which is not in the secret source: export WEIR_SECRET_TOKEN="),
        "{v:?}"
    );
    let missing = p.run_json(&["--env", "production", "--branch", "main"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stdout.is_empty(), "nothing ran: {missing:?}");

    // With it, the value is given to the stage and masked wherever it shows.
    let shown = p
        .command(&["env", "show", "production"])
        .env("WEIR_SECRET_TOKEN", "hunter2")
        .output()
        .expect("weir");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("variables.TOKEN = \"***\""), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // A tenant's secrets come from its own source.
    p.write("acme-secrets.toml", "TOKEN = \"from-acme\"\n");
    p.write(
        "tenants.toml",
        "[tenants.acme]\nsecrets = { file = \"acme-secrets.toml\" }\n",
    );
    let acme = p.weir(&[
        "env",
        "show",
        "production",
        "--tenants",
        "tenants.toml",
        "--tenant",
        "acme",
    ]);
    assert_eq!(acme.code, 0, "{acme:?}");
    assert!(acme.stdout.contains("variables.TOKEN = \"***\""), "{acme:?}");
    let unknown = p.weir(&[
        "env",
        "show",
        "production",
        "--tenants",
        "tenants.toml",
        "--tenant",
        "nobody",
    ]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    let diff = p.weir(&["env", "diff", "staging", "production"]);
    assert!(
        diff.stdout
            .contains("- variables.LEVEL = \"debug\"\n+ variables.LEVEL = \"info\""),
        "{diff:?}"
    );

    // A branch production does not take is refused up front, by name.
    let feature = p
        .command(&[
            "run",
            "pipeline.toml",
            "--json",
            "--env",
            "production",
            "--branch",
            "feature/x",
        ])
        .env("WEIR_SECRET_TOKEN", "hunter2")
        .output()
        .expect("weir");
    assert_eq!(feature.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&feature.stderr).contains(
            "stage `ship` deploys to environment `production`, which accepts branches main; this run builds branch `feature/x`"
        ),
        "{feature:?}"
    );
}

#[test]
fn an_approval_waits_survives_a_restart_and_resumes() {
    let p = Project::new();
    p.pipeline(&pipeline("production", "1h"));
    let run = Background::start(&p, &["--branch", "main"]);
    let id = run.run_id();
    let waiting = run.wait_for("stage_waiting", |e| e["event"] == "stage_waiting");
    assert_eq!(waiting["stage"], "ship");
    assert_eq!(waiting["approval"]["environment"], "production");
    assert_eq!(waiting["approval"]["approvers"], serde_json::json!(["alice"]));
    assert!(
        !run.events
            .lock()
            .expect("events")
            .iter()
            .any(|e| e["event"] == "stage_started" && e["stage"] == "ship")
    );

    // weir goes away while it waits; the request stays.
    let mut run = run;
    run.child.kill().expect("SIGKILL");
    let _ = run.finish();
    let shown: Value = serde_json::from_str(&p.weir(&["runs", "show", &id, "--json"]).stdout).expect("json");
    assert_eq!(shown["status"], "interrupted");

    // Only an approver may approve; the decision is recorded for the resume.
    let wrong = p.weir(&["approve", &id, "--as", "mallory"]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("`mallory` may not approve deploys to `production`; its approvers are alice"),
        "{wrong:?}"
    );
    let ok = p.weir(&["approve", &id, "--as", "alice"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout
            .contains(&format!("`weir run --resume {id}` continues it")),
        "{ok:?}"
    );

    let resumed = p
        .command(&["run", "--resume", &id, "--json"])
        .env("WEIR_SECRET_TOKEN", "hunter2")
        .output()
        .expect("weir");
    let resumed = crate::support::Run::from(resumed);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let decided = &resumed.of("approval_decided")[0];
    assert_eq!(decided["decision"], "approved");
    assert_eq!(decided["by"], "alice");
    assert_eq!(resumed.finished("build")["reused"]["from"], "resume");
    let log = resumed.of("stage_log");
    assert!(
        log.iter().any(|e| e["message"] == "level=info token=***"),
        "{resumed:?}"
    );
    assert!(!resumed.stdout.contains("hunter2"), "the secret never shows");

    let report = p.weir(&["runs", "report", &id]);
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report.stdout.lines().nth(1).expect("json path")).expect("read"),
    )
    .expect("report JSON");
    assert_eq!(json["approvals"][0]["decision"], "approved");
    assert_eq!(json["approvals"][0]["decided_by"], "alice");
    assert_eq!(
        json["environment"], "staging",
        "the run's own environment is the default"
    );
}

#[test]
fn a_rejection_or_a_timeout_fails_the_stage_with_the_reason() {
    let p = Project::new();
    p.pipeline(&pipeline("production", "1h"));
    let run = Background::start(&p, &["--branch", "main"]);
    let id = run.run_id();
    run.wait_for("stage_waiting", |e| e["event"] == "stage_waiting");
    let no = p.weir(&["reject", &id, "--as", "alice", "--reason", "not on a Friday"]);
    assert_eq!(no.code, 0, "{no:?}");
    let (code, events) = run.finish();
    assert_eq!(code, 1);
    let ship = finished(&events, "ship");
    assert_eq!(ship["failure"], "approval", "{ship}");
    assert_eq!(
        ship["error"],
        "the deploy to `production` was rejected by alice: not on a Friday"
    );
    let report = p.weir(&["runs", "report", &id]);
    let md = std::fs::read_to_string(report.stdout.lines().next().expect("md path")).expect("report.md");
    assert!(
        md.contains("| ship | production | rejected | alice | not on a Friday |"),
        "{md}"
    );

    p.pipeline(&pipeline("production", "1s"));
    let timed = p
        .command(&["run", "pipeline.toml", "--json", "--branch", "main"])
        .env("WEIR_SECRET_TOKEN", "hunter2")
        .output()
        .expect("weir");
    assert_eq!(timed.status.code(), Some(1));
    let out = String::from_utf8_lossy(&timed.stdout);
    assert!(
        out.contains("no one approved the deploy to `production` within 1s (its approval timeout)"),
        "{out}"
    );
}

#[test]
fn deploys_to_one_environment_never_overlap() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"c\"\n[environments.staging]\n[stages.ship]\nenvironment = \"staging\"\nrun = \"sleep 1\"\n",
    );
    let a = Background::start(&p, &[]);
    let a_id = a.run_id();
    a.wait_for("ship to start", |e| e["event"] == "stage_started");
    let b = Background::start(&p, &[]);
    let waiting = b.wait_for("stage_waiting", |e| e["event"] == "stage_waiting");
    assert_eq!(waiting["group"], "environment/staging");
    assert_eq!(
        waiting["message"],
        format!("waiting for concurrency group `environment/staging`, held by stage `ship` of run {a_id}")
    );
    let (ca, ea) = a.finish();
    let (cb, eb) = b.finish();
    assert_eq!((ca, cb), (0, 0));
    let time = |events: &[Value], kind: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind)
            .and_then(|e| e["time_ms"].as_u64())
            .expect("time")
    };
    assert!(
        time(&eb, "stage_started") >= time(&ea, "stage_finished"),
        "b started before a finished: {ea:?} {eb:?}"
    );
}

#[test]
fn cancel_in_progress_cancels_the_older_run() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"c\"\nconcurrency = \"deploy-web\"\ncancel-in-progress = true\n[stages.slow]\nrun = \"if [ -n \\\"$QUICK\\\" ]; then echo quick; else sleep 60; fi\"\ninherit-env = [\"QUICK\"]\n",
    );
    let a = Background::start(&p, &[]);
    a.wait_for("slow to start", |e| e["event"] == "stage_started");
    let b = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("QUICK", "1")
        .output()
        .expect("weir");
    assert_eq!(b.status.code(), Some(0), "{b:?}");
    let (code, events) = a.finish();
    assert_eq!(code, 130, "{events:?}");
    assert_eq!(finished(&events, "slow")["status"], "cancelled");
}

/// Requests a receiver got: (head, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver on loopback that answers 500 to the first `failures`
/// requests, then 200; it keeps each request's headers and body.
fn receiver(failures: usize) -> (String, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            keep.lock()
                .expect("seen")
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let status = if n < failures {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

fn hmac(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(block.map(|b| b ^ 0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

#[test]
fn a_webhook_that_fails_twice_gets_the_event_on_the_third_try_signed() {
    let (url, seen) = receiver(2);
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"n\"\n[notify]\nwebhooks = [{{ url = \"{url}\", events = [\"run-succeeded\"], secret = \"HOOK_KEY\" }}]\n[stages.a]\nuses = \"noop\"\n"
    ));
    let run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_HOOK_KEY", "k3y")
        .output()
        .expect("weir");
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let (head, body) = &seen[2];
    assert_eq!(seen[0].1, *body, "every attempt sends the same delivery");
    let signature = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-weir-signature-256: ")
                .map(str::to_string)
        })
        .expect("signed");
    assert_eq!(
        signature.trim(),
        format!("sha256={}", hmac(b"k3y", body.as_bytes()))
    );
    let payload: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(payload["event"], "run-succeeded");
    assert_eq!(payload["pipeline"], "n");
    assert_eq!(payload["detail"]["status"], "succeeded");

    // The run did not wait for the receiver: its events ended first.
    let id = payload["run"].as_str().expect("run");
    let report = p.weir(&["runs", "report", id]);
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report.stdout.lines().nth(1).expect("path")).expect("read"),
    )
    .expect("json");
    assert_eq!(json["notifications"][0]["attempts"], 3);
    assert_eq!(json["notifications"][0]["delivered"], true);

    // A webhook secret that is not there stops the run before it starts.
    let missing = p.run_json(&[]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains(&format!("webhook {url} needs secret `HOOK_KEY`")),
        "{missing:?}"
    );
}
