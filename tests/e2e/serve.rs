//! `weir serve`, driven over HTTP: the real binary on an ephemeral port
//! of 127.0.0.1, a real git repository as the forge's, real runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Project, nap};

/// The tenants the tests' server knows, each allowed the programs the
/// test pipelines run.
pub(crate) const TENANTS: &str = r#"
[tenants.acme]
allow = { exec = ["git", "sh", "sleep", "cat"] }
# Metered, so /metrics counts its fuel.
limits = { fuel = 100_000_000_000 }

[tenants.globex]
allow = { exec = ["git", "sh", "sleep", "cat"] }
"#;

/// A pipeline that checks the repository out and reads a file of it.
pub(crate) const GREET: &str = r#"
[pipeline]
name = "svc"

[stages.checkout]
uses = "git"
with = { repo = "${{ pipeline.dir }}", ref = "HEAD", depth = 1 }
allow = { exec = ["git"], read = ["."] }

[stages.greet]
needs = ["checkout"]
run = "cat src/greeting.txt"
"#;

pub(crate) const SECRET: &str = "s3cret-for-the-hook";

/// The token the server posts commit statuses with.
const STATUS_TOKEN: &str = "forge-status-token";

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository `repo` in the project with `pipeline` committed on
/// `main`; returns the commit.
pub(crate) fn repository(p: &Project, pipeline: &str) -> String {
    p.write("repo/pipeline.toml", pipeline);
    p.write("repo/greeting.txt", "hello from the repository\n");
    let dir = p.path().join("repo");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "first"]);
    git(&dir, &["rev-parse", "HEAD"])
}

/// The server's configuration: repository `app` of tenant acme, `other`
/// of tenant globex, both the project's repository.
pub(crate) fn config(extra_server: &str) -> String {
    format!(
        r#"
[server]
data-dir = "state"
tenants = "tenants.toml"
{extra_server}

[repositories.app]
forge = "github"
name = "acme/app"
clone-url = "repo"
secret-env = "APP_SECRET"
tenant = "acme"

[repositories.other]
forge = "gitea"
name = "globex/other"
clone-url = "repo"
secret-env = "APP_SECRET"
tenant = "globex"
"#
    )
}

/// A running `weir serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    pub(crate) dir: PathBuf,
}

impl Server {
    pub(crate) fn start(p: &Project) -> Server {
        Self::start_in(p.path())
    }

    pub(crate) fn start_in(dir: &Path) -> Server {
        Self::start_with(dir, &[], &[])
    }

    /// With more arguments (`--nats URL`) and variables (tenants' secrets).
    pub(crate) fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = std::process::Command::new(crate::support::weir_bin())
            .args(["serve", "--config", "weir-server.toml", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env("APP_SECRET", SECRET)
            .env("APP_STATUS_TOKEN", STATUS_TOKEN)
            .env("WEIR_CACHE_DIR", crate::support::shared_cache())
            .env("NO_COLOR", "1")
            .env_remove("WEIR_LOG")
            .env_remove("WEIR_STATE_DIR")
            .env_remove("WEIR_TENANTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("weir serve did not say where it listens: {first:?}"))
            .to_string();
        // Keep reading its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = Server {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.get("/readyz", None).status == 200 {
                return;
            }
            nap(Duration::from_millis(50));
        }
        panic!("weir serve never became ready");
    }

    /// `kill -9`: no chance to record anything.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn token(&self, args: &[&str]) -> String {
        let mut all = vec!["serve", "--config", "weir-server.toml", "token", "create"];
        all.extend_from_slice(args);
        let out = std::process::Command::new(crate::support::weir_bin())
            .args(&all)
            .current_dir(&self.dir)
            .env_remove("WEIR_STATE_DIR")
            .output()
            .expect("weir serve token create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Answer {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body).expect("write body");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Answer::parse(&raw)
    }

    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.request("GET", path, token, &[], b"")
    }

    pub(crate) fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.request(
            "POST",
            path,
            token,
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
        )
    }

    /// A GitHub-shaped delivery of `event`, signed with `secret`.
    fn github(&self, event: &str, delivery: &str, payload: &Value, secret: Option<&str>) -> Answer {
        let body = payload.to_string();
        let mut headers = vec![
            ("X-GitHub-Event", event.to_string()),
            ("X-GitHub-Delivery", delivery.to_string()),
            ("Content-Type", "application/json".into()),
        ];
        if let Some(secret) = secret {
            headers.push((
                "X-Hub-Signature-256",
                format!("sha256={}", hmac(secret, body.as_bytes())),
            ));
        }
        self.request("POST", "/api/v1/hooks/github", None, &headers, body.as_bytes())
    }

    /// Every event of run `id` after `after`, following the live stream
    /// to its end.
    pub(crate) fn events(&self, id: &str, token: &str, after: Option<u64>) -> Vec<(u64, String, Value)> {
        let headers: Vec<(&str, String)> = after
            .map(|a| ("Last-Event-ID", a.to_string()))
            .into_iter()
            .collect();
        let answer = self.request(
            "GET",
            &format!("/api/v1/runs/{id}/events"),
            Some(token),
            &headers,
            b"",
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{answer:?}"
        );
        let mut out = Vec::new();
        for block in answer.body.split("\n\n") {
            let (mut seq, mut kind, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                    seq = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if let Some(seq) = seq {
                out.push((seq, kind, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
        out
    }

    /// Poll run `id` until `done` holds of it.
    pub(crate) fn wait_for(&self, id: &str, token: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let run = self.get(&format!("/api/v1/runs/{id}"), Some(token));
            if run.status == 200 && done(&run.json()) {
                return run.json();
            }
            assert!(Instant::now() < deadline, "run {id} never got to {what}: {run:?}");
            nap(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hmac(secret: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    // HMAC-SHA256 by its definition (RFC 2104), so the test does not use
    // the code it checks.
    let mut key = secret.as_bytes().to_vec();
    key.resize(64, 0);
    let pad = |b: u8| key.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// An HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(rest) } else { rest.to_string() };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// A problem document (RFC 9457) with `status`.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
        p
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}\n{}", self.status, self.headers, self.body)
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A project with the repository, the tenants and the server's file.
pub(crate) fn project(pipeline: &str, extra_server: &str) -> (Project, String) {
    let p = Project::new();
    let commit = repository(&p, pipeline);
    p.write("tenants.toml", TENANTS);
    p.write("weir-server.toml", config(extra_server));
    (p, commit)
}

fn push(commit: &str) -> Value {
    json!({"ref": "refs/heads/main", "after": commit, "repository": {"full_name": "acme/app"}})
}

#[test]
fn a_signed_push_queues_one_run_and_a_bad_or_repeated_delivery_none() {
    let (p, commit) = project(GREET, "");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);

    let bad = server.github("push", "d-bad", &push(&commit), Some("not-the-secret"));
    bad.problem(401);
    let unsigned = server.github("push", "d-unsigned", &push(&commit), None);
    unsigned.problem(401);

    let first = server.github("push", "d-1", &push(&commit), Some(SECRET));
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.json()["status"], "queued");
    let id = first.json()["run"].as_str().expect("a run").to_string();
    let again = server.github("push", "d-1", &push(&commit), Some(SECRET));
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json(), json!({"status": "duplicate", "run": id}));

    let ping = server.github(
        "ping",
        "d-ping",
        &json!({"zen": "hi", "repository": {"full_name": "acme/app"}}),
        Some(SECRET),
    );
    assert_eq!((ping.status, ping.json()["status"].clone()), (200, json!("pong")));

    // One run, of the pushed commit and branch, and it succeeds.
    let list = server.get("/api/v1/runs", Some(&acme)).json();
    let runs = list["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{list}");
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (
            run["commit"].as_str(),
            run["branch"].as_str(),
            run["trigger"].as_str()
        ),
        (Some(commit.as_str()), Some("main"), Some("push"))
    );
    let logs = server
        .get(&format!("/api/v1/runs/{id}/logs?stage=greet"), Some(&acme))
        .json();
    assert_eq!(logs["lines"][0]["message"], "hello from the repository", "{logs}");
}

#[test]
fn a_run_is_followed_over_sse_and_resumed_from_last_event_id_without_gaps() {
    let (p, commit) = project(GREET, "");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let created = server.post(
        "/api/v1/runs",
        Some(&acme),
        &json!({"repository": "app", "ref": "main"}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/runs/{id}").as_str())
    );
    assert_eq!(created.json()["commit"], commit);

    // Followed live from the start, the stream ends with the run.
    let all = server.events(&id, &acme, None);
    let ids: Vec<u64> = all.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids are the run's event positions"
    );
    let (_, kind, last) = all.last().expect("events");
    assert_eq!(
        (kind.as_str(), last["status"].as_str()),
        ("run_finished", Some("succeeded")),
        "{all:?}"
    );
    assert_eq!(all[0].1, "run_started");
    let greet = all
        .iter()
        .find(|(_, kind, e)| kind == "stage_finished" && e["stage"] == "greet")
        .expect("greet finished");
    assert!(
        greet.2["usage"]["peak_memory_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "what the guest used is in its event: {}",
        greet.2
    );
    assert_eq!(all[0].2["run"], id.as_str());

    // Reconnecting after event 3 gives exactly the rest.
    let rest = server.events(&id, &acme, Some(3));
    assert_eq!(rest.first().map(|e| e.0), Some(4));
    assert_eq!(rest.len(), all.len() - 3);
    for (a, b) in rest.iter().zip(&all[3..]) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.2, b.2);
    }
    let done = server.get(&format!("/api/v1/runs/{id}"), Some(&acme)).json();
    assert_eq!(done["stages"][1]["name"], "greet");
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(2), "{done}");
}

#[test]
fn a_tenants_token_cannot_see_another_tenants_run() {
    let (p, _) = project(GREET, "");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let globex = server.token(&["--tenant", "globex"]);
    let operator = server.token(&["--operator"]);
    let created = server.post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}));
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();

    let missing = server
        .get("/api/v1/runs/20200101-000000-000000", Some(&globex))
        .problem(404);
    for path in [
        format!("/api/v1/runs/{id}"),
        format!("/api/v1/runs/{id}/logs"),
        format!("/api/v1/runs/{id}/events"),
    ] {
        let hidden = server.get(&path, Some(&globex)).problem(404);
        assert_eq!(hidden["title"], missing["title"], "{hidden}");
    }
    server
        .post(&format!("/api/v1/runs/{id}/cancel"), Some(&globex), &json!({}))
        .problem(404);
    server
        .post(&format!("/api/v1/runs/{id}/rerun"), Some(&globex), &json!({}))
        .problem(404);
    // Nor start one of its repositories, nor list its runs.
    server
        .post("/api/v1/runs", Some(&globex), &json!({"repository": "app"}))
        .problem(404);
    server.get("/api/v1/runs?tenant=acme", Some(&globex)).problem(404);
    let listed = server.get("/api/v1/runs", Some(&globex)).json();
    assert_eq!(listed["runs"], json!([]), "{listed}");

    // Its own tenant and the operator see it.
    assert_eq!(server.get(&format!("/api/v1/runs/{id}"), Some(&acme)).status, 200);
    let all = server.get("/api/v1/runs", Some(&operator)).json();
    assert!(
        all["runs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["id"] == id.as_str())),
        "{all}"
    );
    // No token, or a revoked one: 401.
    server.get("/api/v1/runs", None).problem(401);
    server.get("/api/v1/runs", Some("weir_0000")).problem(401);
    server.wait_for(&id, &acme, "its end", |r| r["status"] == "succeeded");
}

#[test]
fn cancel_stops_a_running_stage_within_its_grace() {
    let pipeline = "[pipeline]\nname = \"slow\"\n\n[stages.wait]\nrun = \"sleep 120\"\n";
    let (p, _) = project(pipeline, "");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let created = server.post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}));
    let id = created.json()["id"].as_str().expect("id").to_string();
    server.wait_for(&id, &acme, "its stage running", |r| {
        r["stages"][0]["status"] == "running"
    });
    let asked = Instant::now();
    let cancel = server.post(&format!("/api/v1/runs/{id}/cancel"), Some(&acme), &json!({}));
    assert_eq!(
        (cancel.status, cancel.json()["status"].clone()),
        (202, json!("cancelling")),
        "{cancel:?}"
    );
    let run = server.wait_for(&id, &acme, "cancelled", |r| r["status"] == "cancelled");
    assert_eq!(run["stages"][0]["status"], "cancelled", "{run}");
    // Well within the stage's two minutes: the grace period is seconds.
    assert!(asked.elapsed() < Duration::from_secs(60), "{:?}", asked.elapsed());
    // An ended run cannot be cancelled again.
    server
        .post(&format!("/api/v1/runs/{id}/cancel"), Some(&acme), &json!({}))
        .problem(409);
}

#[test]
fn kill_9_of_the_server_mid_run_leaves_no_run_stuck() {
    // One run at a time: the first is mid-stage when the server dies, the
    // second still queued.
    let pipeline = "[pipeline]\nname = \"two\"\n\n[stages.first]\nrun = \"echo first\"\n\n[stages.second]\nneeds = [\"first\"]\nrun = \"sleep 4; echo second\"\n";
    let (p, _) = project(pipeline, "concurrency = 1");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let a = server
        .post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}))
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let b = server
        .post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}))
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    server.wait_for(&a, &acme, "its second stage running", |r| {
        r["stages"][1]["status"] == "running"
    });
    assert_eq!(
        server.get(&format!("/api/v1/runs/{b}"), Some(&acme)).json()["status"],
        "queued"
    );
    let dir = server.dir.clone();
    server.kill9();

    let server = Server::start_in(&dir);
    // The interrupted run is resumed: its first stage keeps its result,
    // its second runs again; the queued one runs after it.
    let run = server.wait_for(&a, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running" | "interrupted"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        !run["stages"][0]["reused"].is_null(),
        "the first stage is not run again: {run}"
    );
    let run = server.wait_for(&b, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running" | "interrupted"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    let stuck = server.get("/api/v1/runs?status=running", Some(&acme)).json();
    assert_eq!(stuck["runs"], json!([]), "{stuck}");
}

#[test]
fn bad_requests_get_a_problem_that_names_the_field_and_change_nothing() {
    let (p, _) = project(
        GREET,
        "rate-limit = 20\nmax-body = 4096\nrequest-timeout = \"2s\"",
    );
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let flood = server.token(&["--tenant", "acme"]);

    let malformed = server.request("POST", "/api/v1/runs", Some(&acme), &[], b"{\"repository\": ");
    malformed.problem(400);
    let wrong = server.post("/api/v1/runs", Some(&acme), &json!({"repository": 7}));
    assert_eq!(wrong.problem(400)["field"], "repository");
    let unknown = server.post(
        "/api/v1/runs",
        Some(&acme),
        &json!({"repository": "app", "branch": "x"}),
    );
    assert_eq!(unknown.problem(400)["field"], "branch");
    let no_repo = server.post("/api/v1/runs", Some(&acme), &json!({"repository": "nope"}));
    assert_eq!(no_repo.problem(404)["field"], "repository");
    let no_ref = server.post(
        "/api/v1/runs",
        Some(&acme),
        &json!({"repository": "app", "ref": "no-such-branch"}),
    );
    assert_eq!(no_ref.problem(404)["field"], "ref");
    let huge = vec![b' '; 8192];
    server
        .request("POST", "/api/v1/runs", Some(&acme), &[], &huge)
        .problem(413);
    assert_eq!(
        server.get("/api/v1/runs?limit=0", Some(&acme)).problem(400)["field"],
        "limit"
    );
    assert_eq!(
        server.get("/api/v1/runs?colour=red", Some(&acme)).problem(400)["field"],
        "colour"
    );
    assert_eq!(
        server.get("/api/v1/runs?status=done", Some(&acme)).problem(400)["field"],
        "status"
    );
    server.get("/api/v1/runs/nope", Some(&acme)).problem(404);
    server.get("/api/v1/nothing-here", Some(&acme)).problem(404);
    server
        .request("DELETE", "/api/v1/runs", Some(&acme), &[], b"")
        .problem(405);
    // Nothing was queued by any of it.
    assert_eq!(server.get("/api/v1/runs", Some(&acme)).json()["runs"], json!([]));

    // A token over its rate waits, and says how long; others do not.
    let answers: Vec<Answer> = (0..60)
        .map(|_| server.get("/api/v1/runs?limit=1", Some(&flood)))
        .collect();
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("some request over the rate is refused");
    limited.problem(429);
    assert!(
        limited
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{limited:?}"
    );
    assert_eq!(server.get("/api/v1/runs", Some(&acme)).status, 200);

    // A client that never finishes its request is let go.
    let mut slow = TcpStream::connect(&server.addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "held for {:?}",
        started.elapsed()
    );
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn a_pull_request_from_a_fork_runs_without_its_deploys() {
    let pipeline = format!(
        "{GREET}\n[environments.staging]\nvariables = {{ LEVEL = \"debug\" }}\n\n[stages.ship]\nneeds = [\"greet\"]\nenvironment = \"staging\"\nrun = \"echo shipping\"\n\n\
         [stages.lang]\nneeds = [\"greet\"]\ninherit-env = [\"LANG\"]\nrun = \"echo lang\"\n"
    );
    let (p, commit) = project(&pipeline, "");
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let pr = |head: &str| {
        json!({"action": "opened", "number": 1, "repository": {"full_name": "acme/app"}, "pull_request": {
            "head": {"sha": commit, "ref": "main", "repo": {"full_name": head}},
            "base": {"ref": "main", "repo": {"full_name": "acme/app"}}}})
    };
    // The pull request's head, where the forge keeps it.
    git(
        &p.path().join("repo"),
        &["update-ref", "refs/pull/1/head", &commit],
    );
    let fork = server.github("pull_request", "pr-fork", &pr("mallory/app"), Some(SECRET));
    assert_eq!(fork.status, 202, "{fork:?}");
    let id = fork.json()["run"].as_str().expect("run").to_string();
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(stages, ["checkout", "greet"], "{run}");
    assert!(
        run["reason"].as_str().is_some_and(|r| r.contains("ship")),
        "{run}"
    );
    assert_eq!(
        run["branch"],
        Value::Null,
        "a fork's `main` is not the repository's"
    );

    // The same pull request from a branch of the repository runs it all.
    let inside = server.github("pull_request", "pr-inside", &pr("acme/app"), Some(SECRET));
    let id = inside.json()["run"].as_str().expect("run").to_string();
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["stages"].as_array().map(Vec::len), Some(4), "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[test]
fn the_api_describes_itself_in_openapi_3_1() {
    let (p, _) = project(GREET, "");
    let server = Server::start(&p);
    let doc = server.get("/api/v1/openapi.json", None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["paths"]["/api/v1/runs"]["post"].is_object());
    // After a run, /metrics has its figures: runs by state, stage
    // durations, and the tenant's use of the sandbox.
    let acme = server.token(&["--tenant", "acme"]);
    let id = server
        .post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}))
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    server.wait_for(&id, &acme, "its end", |r| r["status"] == "succeeded");
    let operator = server.token(&["--operator"]);
    let metrics = server.get("/metrics", Some(&operator));
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let value = |name: &str| -> f64 {
        metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{}", metrics.body))
    };
    assert_eq!(value("weir_queue_depth"), 0.0);
    assert_eq!(value("weir_runs{status=\"succeeded\"}"), 1.0);
    assert_eq!(value("weir_tenant_stages_total{tenant=\"acme\"}"), 2.0);
    assert_eq!(
        value("weir_stage_duration_seconds_count{status=\"succeeded\"}"),
        2.0
    );
    assert!(
        value("weir_tenant_peak_memory_bytes{tenant=\"acme\"}") > 0.0,
        "{}",
        metrics.body
    );
    assert!(
        value("weir_tenant_fuel_total{tenant=\"acme\"}") > 0.0,
        "{}",
        metrics.body
    );
    server.get("/metrics", Some(&acme)).problem(404);
}

#[test]
fn a_deploy_waits_for_its_approver_and_artifacts_download_with_their_digest() {
    let pipeline = format!(
        "{GREET}\n[environments.production]\napproval = {{ approvers = [\"alice\"], timeout = \"10m\" }}\n\n\
         [stages.build]\nuses = \"build\"\nneeds = [\"checkout\"]\nallow = {{ exec = [\"make\"] }}\nwith = {{ dir = \"src\", artifacts = [\"dist/*.txt\"] }}\n\n\
         [stages.ship]\nneeds = [\"build\"]\nenvironment = \"production\"\nrun = \"echo shipping\"\n"
    );
    let p = Project::new();
    p.write(
        "repo/Makefile",
        "dist/app.txt:\n\tmkdir -p dist && echo built by make > dist/app.txt\n",
    );
    repository(&p, &pipeline);
    p.write("tenants.toml", TENANTS.replace("\"cat\"]", "\"cat\", \"make\"]"));
    p.write("weir-server.toml", config(""));
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let alice = server.token(&["--tenant", "acme", "--label", "alice"]);
    let bob = server.token(&["--tenant", "acme", "--label", "bob"]);
    let globex = server.token(&["--tenant", "globex"]);
    let id = server
        .post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}))
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = server.get("/api/v1/approvals", Some(&acme)).json();
        if waiting["approvals"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["run"] == id.as_str() && a["stage"] == "ship"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the deploy never waited: {waiting}");
        nap(Duration::from_millis(100));
    }
    assert_eq!(
        server.get("/api/v1/approvals", Some(&globex)).json()["approvals"],
        json!([])
    );
    let path = format!("/api/v1/runs/{id}/approvals/ship");
    server
        .post(
            &path,
            Some(&bob),
            &json!({"decision": "approve", "reason": "lgtm"}),
        )
        .problem(403);
    assert_eq!(
        server
            .post(&path, Some(&alice), &json!({"decision": "reject"}))
            .problem(400)["field"],
        "reason"
    );
    assert_eq!(
        server
            .post(
                &path,
                Some(&alice),
                &json!({"decision": "reject", "reason": "  "})
            )
            .problem(400)["field"],
        "reason"
    );
    assert_eq!(
        server
            .post(&path, Some(&alice), &json!({"decision": "maybe", "reason": "x"}))
            .problem(400)["field"],
        "decision"
    );
    server
        .post(
            &path,
            Some(&globex),
            &json!({"decision": "approve", "reason": "lgtm"}),
        )
        .problem(404);
    let approved = server.post(
        &path,
        Some(&alice),
        &json!({"decision": "approve", "reason": "checked the canary"}),
    );
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(
        (
            approved.json()["decision"].clone(),
            approved.json()["decided_by"].clone()
        ),
        (json!("approved"), json!("alice"))
    );
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["approvals"][0]["decided_by"], "alice", "{run}");

    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(b"built by make\n")
    };
    let listed = server
        .get(&format!("/api/v1/runs/{id}/artifacts"), Some(&acme))
        .json();
    let artifact = &listed["artifacts"][0];
    assert_eq!(
        (artifact["stage"].as_str(), artifact["sha256"].as_str()),
        (Some("build"), Some(hex::encode(digest).as_str())),
        "{listed}"
    );
    assert!(
        artifact.get("stored").is_none(),
        "host paths stay on the host: {listed}"
    );
    let name = artifact["name"].as_str().expect("name");
    let got = server.get(&format!("/api/v1/runs/{id}/artifacts/build/{name}"), Some(&acme));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, "built by make\n");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    assert_eq!(
        got.header("repr-digest"),
        Some(format!("sha-256=:{b64}:").as_str())
    );
    server
        .get(
            &format!("/api/v1/runs/{id}/artifacts/build/{name}"),
            Some(&globex),
        )
        .problem(404);
    server
        .get(&format!("/api/v1/runs/{id}/artifacts/build/nope"), Some(&acme))
        .problem(404);
}

#[test]
fn the_quickstart_queued_over_the_api_is_followed_over_sse_to_a_deploy() {
    let weir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = git(&weir, &["rev-parse", "HEAD"]);
    let (p, _down) = quickstart_project(&weir);
    let server = Server::start(&p);
    let token = server.token(&["--operator"]);
    let created = server.post(
        "/api/v1/runs",
        Some(&token),
        &json!({"repository": "weir", "commit": head}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();
    let events = server.events(&id, &token, None);
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e.1 == "stage_finished")
        .map(|e| &e.2)
        .collect();
    let (_, kind, last) = events.last().expect("events");
    assert_eq!(
        (kind.as_str(), last["status"].as_str()),
        ("run_finished", Some("succeeded")),
        "{finished:?}"
    );
    let checkout = finished
        .iter()
        .find(|e| e["stage"] == "checkout")
        .expect("checkout");
    assert_eq!(checkout["outputs"]["sha"], head.as_str());
    let deploy = finished.iter().find(|e| e["stage"] == "deploy").expect("deploy");
    let version = deploy["outputs"]["version"].as_str().expect("version");

    // What it deployed is an environment of the API, serving that version.
    let envs = server.get("/api/v1/environments", Some(&token)).json();
    let staging = envs["environments"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["service"] == "quickstart-staging"))
        .unwrap_or_else(|| panic!("no quickstart-staging: {envs}"));
    assert_eq!(
        (staging["environment"].as_str(), staging["last_run"].as_str()),
        (Some("staging"), Some(id.as_str()))
    );
    let service = server
        .get("/api/v1/environments/quickstart-staging", Some(&token))
        .json();
    assert_eq!(service["current"], version, "{service}");
    assert_eq!(service["releases"][0]["run"], id.as_str(), "{service}");
}

/// A forge's status API on loopback: keeps each request's head and body,
/// answers 201.
/// Requests a receiver got: (head, body).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn forge() -> (String, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
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
                .expect("lock")
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let _ =
                stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (url, seen)
}

#[test]
fn commit_statuses_go_back_to_the_forge_as_the_run_goes() {
    let (url, seen) = forge();
    let (p, commit) = project(GREET, "public-url = \"https://ci.example.com\"");
    let config = std::fs::read_to_string(p.path().join("weir-server.toml")).expect("config");
    p.write(
        "weir-server.toml",
        config.replacen(
            "tenant = \"acme\"\n",
            &format!("tenant = \"acme\"\napi-url = \"{url}\"\nstatus-token-env = \"APP_STATUS_TOKEN\"\n"),
            1,
        ),
    );
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let queued = server.github("push", "d-status", &push(&commit), Some(SECRET));
    let id = queued.json()["run"].as_str().expect("run").to_string();
    server.wait_for(&id, &acme, "its end", |r| r["status"] == "succeeded");
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").len() < 2 && Instant::now() < deadline {
        nap(Duration::from_millis(50));
    }
    let seen = seen.lock().expect("lock").clone();
    let states: Vec<String> = seen
        .iter()
        .map(|(head, body)| {
            assert!(
                head.starts_with(&format!("POST /repos/acme/app/statuses/{commit} ")),
                "{head}"
            );
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("authorization: bearer {STATUS_TOKEN}")),
                "{head}"
            );
            let body: Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(body["context"], "weir");
            assert_eq!(
                body["target_url"],
                format!("https://ci.example.com/api/v1/runs/{id}")
            );
            body["state"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(states, ["pending", "success"], "{seen:?}");
}

#[test]
fn a_run_cannot_read_the_servers_secrets_or_the_hosts_files() {
    let (p, first) = project(GREET, "");
    let repo = p.path().join("repo");
    // A stage that copies the server's webhook secret out of its
    // environment is refused before it runs.
    p.write(
        "repo/pipeline.toml",
        format!("{GREET}\n[stages.leak]\ninherit-env = [\"APP_SECRET\"]\nrun = \"echo $APP_SECRET\"\n"),
    );
    git(&repo, &["commit", "-qam", "leak"]);
    let leak = git(&repo, &["rev-parse", "HEAD"]);
    // A pipeline.toml that is a link to a file of the host's.
    p.write(
        "outside.toml",
        "[pipeline]\nname = \"host file\"\nsecret = \"do-not-show\"\n",
    );
    std::fs::remove_file(repo.join("pipeline.toml")).expect("rm");
    std::os::unix::fs::symlink(p.path().join("outside.toml"), repo.join("pipeline.toml")).expect("symlink");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "link"]);
    let link = git(&repo, &["rev-parse", "HEAD"]);

    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let run_of = |commit: &str| {
        let id = server
            .post(
                "/api/v1/runs",
                Some(&acme),
                &json!({"repository": "app", "commit": commit}),
            )
            .json()["id"]
            .as_str()
            .expect("id")
            .to_string();
        server.wait_for(&id, &acme, "its end", |r| {
            !matches!(r["status"].as_str(), Some("queued" | "running"))
        })
    };
    let run = run_of(&leak);
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("inherits `APP_SECRET`"), "{run}");
    assert!(!reason.contains(SECRET));
    let run = run_of(&link);
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("leads out of the repository"), "{run}");
    assert!(!reason.contains("do-not-show"), "{run}");
    // The first commit still runs, and its checkout keeps no clone URL.
    assert_eq!(run_of(&first)["status"], "succeeded");
}

#[test]
fn a_tenant_at_its_max_runs_waits_and_other_tenants_go_ahead() {
    let pipeline = "[pipeline]\nname = \"slow\"\n\n[stages.wait]\nrun = \"sleep 2\"\n";
    let (p, _) = project(pipeline, "concurrency = 3");
    p.write(
        "tenants.toml",
        TENANTS.replace("[tenants.acme]\n", "[tenants.acme]\nmax-runs = 1\n"),
    );
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let globex = server.token(&["--tenant", "globex"]);
    let queue = |token: &str, repository: &str| {
        server
            .post("/api/v1/runs", Some(token), &json!({"repository": repository}))
            .json()["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let a1 = queue(&acme, "app");
    let a2 = queue(&acme, "app");
    let g = queue(&globex, "other");
    let done = |id: &str, token: &str| {
        server.wait_for(id, token, "its end", |r| {
            !matches!(r["status"].as_str(), Some("queued" | "running"))
        })
    };
    let (a1, a2, g) = (done(&a1, &acme), done(&a2, &acme), done(&g, &globex));
    for run in [&a1, &a2, &g] {
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let start = |r: &Value| r["started_ms"].as_i64().expect("started");
    let end = |r: &Value| start(r) + r["duration_ms"].as_i64().expect("duration");
    // acme's second run started only once its first had ended; globex's
    // did not wait for acme's.
    assert!(start(&a2) >= end(&a1) - 50, "a1 {a1}\na2 {a2}");
    assert!(start(&g) < end(&a1), "a1 {a1}\ng {g}");
}

/// Stops the target of a test's state directory when dropped, so a
/// deployed service does not outlive its test.
pub(crate) struct TargetDown(PathBuf);

impl Drop for TargetDown {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::support::weir_bin())
            .args(["target", "down"])
            .env("WEIR_STATE_DIR", &self.0)
            .output();
    }
}

/// A server's project whose one repository, `weir`, is this repository
/// (at `weir`), running the quickstart.
pub(crate) fn quickstart_project(weir: &Path) -> (Project, TargetDown) {
    let p = Project::new();
    p.write(
        "weir-server.toml",
        format!(
            "[server]\ndata-dir = \"state\"\n\n[repositories.weir]\nforge = \"github\"\nname = \"weir/weir\"\nclone-url = {:?}\npipeline = \"examples/quickstart/pipeline.toml\"\n",
            weir.display().to_string()
        ),
    );
    let down = TargetDown(p.path().join("state"));
    (p, down)
}

/// Runs `weir serve` starts get finite limits where their tenant sets
/// none, and a tenant that sets one to "unlimited" keeps the server from
/// starting unless the operator allows it.
#[test]
fn a_shared_host_runs_every_tenant_under_finite_limits() {
    let pipeline = "[pipeline]\nname = \"limits\"\n\n[stages.data]\nrun = \"ulimit -d\"\n";
    let (p, commit) = project(pipeline, "");
    // `weir run` on one's own machine: no program-memory limit unless set.
    let plain = p.weir(&["run", "repo/pipeline.toml", "--json"]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(
        plain.log_messages().iter().any(|m| m == "unlimited"),
        "{:?}",
        plain.log_messages()
    );
    // Served: the service's 4 GiB per program (RLIMIT_DATA, in KiB).
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let id = server
        .post(
            "/api/v1/runs",
            Some(&acme),
            &json!({"repository": "app", "commit": commit}),
        )
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    let logs = server
        .get(&format!("/api/v1/runs/{id}/logs?stage=data"), Some(&acme))
        .json();
    assert_eq!(logs["lines"][0]["message"], (4u64 << 20).to_string(), "{logs}");
    drop(server);

    // "unlimited" on purpose: refused at start, naming the tenant and key…
    p.write(
        "tenants.toml",
        format!("{TENANTS}\n[tenants.initech]\nlimits = {{ disk = \"unlimited\" }}\n"),
    );
    let refused = p
        .command(&["serve", "--config", "weir-server.toml", "--listen", "127.0.0.1:0"])
        .env_remove("WEIR_STATE_DIR")
        .env_remove("WEIR_TENANTS")
        .output()
        .expect("weir serve");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("tenant `initech` sets limits.disk = \"unlimited\"")
            && stderr.contains("allow-unlimited = true"),
        "{stderr}"
    );
    // …and started when the operator says so.
    p.write("weir-server.toml", config("allow-unlimited = true"));
    let server = Server::start(&p);
    assert_eq!(server.get("/readyz", None).status, 200);
}
