//! `weir serve`'s figures: the real server (the release binary) on
//! 127.0.0.1, driven over HTTP like any client.
//!
//! ```sh
//! cargo bench --bench serve              # or benches/run.sh serve
//! ```
//!
//! - list-runs: `GET /api/v1/runs` (a page of 50, newest first; filtered
//!   by status; by tenant; a deep page by cursor) with 10,000 runs in the
//!   history, p50 and p99 over 1,000 requests each. Goal: p99 ≤ 10 ms.
//! - webhook to stage: a signed GitHub push received → its run's first
//!   stage started (the checkout of the commit, the plan, the tenant
//!   check and the history included), p50 and p99 over 30 pushes, one at
//!   a time. Goal: ≤ 50 ms.
//! - queueing: signed pushes accepted (each queued in SQLite, deliveries
//!   de-duplicated) per second, one client, one at a time.
//!
//! Measurements, not assertions: nothing here fails on a slow figure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir::store::Store;
use weir::store::serving::QueuedRun;

const SECRET: &str = "bench-secret";
const RUNS: usize = 10_000;

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("no temporary directory: {e}")));
    let root = dir.path();
    let commit = repository(root);
    std::fs::write(
        root.join("weir-server.toml"),
        "[server]\ndata-dir = \"state\"\nconcurrency = 2\nrate-limit = 100000\n\n\
         [repositories.app]\nforge = \"github\"\nname = \"acme/app\"\nclone-url = \"repo\"\nsecret-env = \"BENCH_SECRET\"\n",
    )
    .unwrap_or_else(|e| fail(&format!("cannot write the config: {e}")));
    println!("== seeding {RUNS} runs into the history");
    seed(&root.join("state"), &commit);
    let token = token(root);
    let server = Server::start(root);

    println!("\n== list-runs with {RUNS} runs in the history (1,000 requests each)");
    let mut first_page = String::new();
    for (what, path) in [
        ("newest 50", "/api/v1/runs?limit=50".to_string()),
        ("status=failed", "/api/v1/runs?status=failed&limit=50".to_string()),
        ("tenant=t7", "/api/v1/runs?tenant=t7&limit=50".to_string()),
    ] {
        let times = (0..1000)
            .map(|_| {
                let started = Instant::now();
                let body = server.request("GET", &path, Some(&token), &[], b"");
                if first_page.is_empty() {
                    first_page = body;
                }
                started.elapsed()
            })
            .collect::<Vec<_>>();
        report(&format!("list-runs {what}"), times, "p99 ≤ 10 ms");
    }
    // A deep page: the cursor of the 100th page of 50.
    let deep = cursor_after(&server, &token, 100);
    let times = (0..1000)
        .map(|_| {
            let started = Instant::now();
            server.request(
                "GET",
                &format!("/api/v1/runs?limit=50&cursor={deep}"),
                Some(&token),
                &[],
                b"",
            );
            started.elapsed()
        })
        .collect::<Vec<_>>();
    report("list-runs page 101 (cursor)", times, "p99 ≤ 10 ms");

    println!("\n== webhook received → first stage started (30 pushes, one at a time)");
    let mut times = Vec::new();
    for n in 0..30 {
        let sent_ms = now_ms();
        let answer = server.push(&commit, &format!("lat-{n}"));
        let run = answer
            .split("\"run\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| fail(&format!("the push queued no run: {answer}")))
            .to_string();
        let events = server.request(
            "GET",
            &format!("/api/v1/runs/{run}/events"),
            Some(&token),
            &[],
            b"",
        );
        let started_ms = events
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| d.contains("\"event\":\"stage_started\""))
            .find_map(|d| {
                d.split("\"time_ms\":")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| fail(&format!("run {run} started no stage: {events}")));
        times.push(Duration::from_millis(started_ms.saturating_sub(sent_ms)));
    }
    report("webhook → stage started", times, "≤ 50 ms");

    println!("\n== queueing: signed pushes accepted, one client");
    let n = 500;
    let started = Instant::now();
    for i in 0..n {
        server.push(&commit, &format!("rate-{i}"));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {:<34} {:>9.0} runs/s  ({n} in {secs:.2} s)",
        "pushes queued",
        n as f64 / secs
    );
    drop(server);
}

fn fail(why: &str) -> ! {
    eprintln!("bench serve: {why}");
    std::process::exit(1);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn report(what: &str, mut times: Vec<Duration>, goal: &str) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "  {what:<34} p50 {:>7.2} ms   p99 {:>7.2} ms   (goal: {goal})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=b", "-c", "user.email=b@example.com"])
        .args(args)
        .output()
        .unwrap_or_else(|e| fail(&format!("git: {e}")));
    if !out.status.success() {
        fail(&format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository whose pipeline is one quick stage.
fn repository(root: &Path) -> String {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap_or_else(|e| fail(&format!("{e}")));
    std::fs::write(
        repo.join("pipeline.toml"),
        "[pipeline]\nname = \"bench\"\n\n[stages.hello]\nrun = \"echo hello\"\n",
    )
    .unwrap_or_else(|e| fail(&format!("{e}")));
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "bench"]);
    git(&repo, &["rev-parse", "HEAD"])
}

/// 10,000 finished runs of 20 tenants, a tenth of them failed.
fn seed(state: &Path, commit: &str) {
    let mut store = Store::open(state).unwrap_or_else(|e| fail(&e.to_string()));
    let started = Instant::now();
    for i in 0..RUNS {
        let id = format!("20261201-{:06}-{:06x}", i / 60, i);
        let run = QueuedRun {
            id: id.clone(),
            tenant: format!("t{}", i % 20),
            repository: "app".into(),
            branch: Some("main".into()),
            commit: commit.into(),
            trigger: "push".into(),
            job: format!("{{\"repository\":\"app\",\"commit\":\"{commit}\"}}"),
        };
        store.enqueue(&run, None).unwrap_or_else(|e| fail(&e.to_string()));
        let (status, why) = if i % 10 == 3 {
            ("failed", "a stage failed")
        } else {
            ("succeeded", "")
        };
        store
            .end_run(&id, status, why)
            .unwrap_or_else(|e| fail(&e.to_string()));
    }
    println!("  seeded in {:.1} s", started.elapsed().as_secs_f64());
}

fn token(root: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--config",
            "weir-server.toml",
            "token",
            "create",
            "--operator",
        ])
        .current_dir(root)
        .env_remove("WEIR_STATE_DIR")
        .output()
        .unwrap_or_else(|e| fail(&format!("weir: {e}")));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cursor after `pages` pages of 50.
fn cursor_after(server: &Server, token: &str, pages: usize) -> String {
    let mut cursor = String::new();
    for _ in 0..pages {
        let path = if cursor.is_empty() {
            "/api/v1/runs?limit=50".to_string()
        } else {
            format!("/api/v1/runs?limit=50&cursor={cursor}")
        };
        let body = server.request("GET", &path, Some(token), &[], b"");
        cursor = body
            .split("\"next_cursor\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| fail(&format!("no next page: {body}")))
            .to_string();
    }
    cursor
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(root: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--config", "weir-server.toml", "--listen", "127.0.0.1:0"])
            .current_dir(root)
            .env("BENCH_SECRET", SECRET)
            .env_remove("WEIR_STATE_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("weir serve: {e}")));
        let stdout = child.stdout.take().unwrap_or_else(|| fail("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| fail(&format!("weir serve said {first:?}")))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server
            .request("GET", "/readyz", None, &[], b"")
            .starts_with("ready")
        {
            if Instant::now() > deadline {
                fail("weir serve never became ready");
            }
        }
        server
    }

    /// The body of a request's answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> String {
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
        let Ok(mut stream) = TcpStream::connect(&self.addr) else {
            return String::new();
        };
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// A signed GitHub push of `commit`; the answer's body.
    fn push(&self, commit: &str, delivery: &str) -> String {
        let body = format!(
            "{{\"ref\":\"refs/heads/main\",\"after\":\"{commit}\",\"repository\":{{\"full_name\":\"acme/app\"}}}}"
        );
        let mac = hex::encode(weir::notify::hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
        self.request(
            "POST",
            "/api/v1/hooks/github",
            None,
            &[
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", delivery.into()),
                ("X-Hub-Signature-256", format!("sha256={mac}")),
                ("Content-Type", "application/json".into()),
            ],
            body.as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
