//! `weir serve --nats` with `weir worker`s: the release binaries over a
//! real `nats-server -js` on 127.0.0.1.
//!
//! ```sh
//! cargo bench --bench workers            # or benches/run.sh workers
//! ```
//!
//! - dispatch: a run queued (the API's answer) → a worker holding its job
//!   (the worker's own log line, same clock), and → the run's
//!   `run_started` on the worker (after its checkout and plan), p50 and
//!   p99 over 40 runs queued one at a time to an idle worker. Goal:
//!   dispatch p99 ≤ 20 ms.
//! - throughput: 40 no-op runs queued at once, to 1, 2 and 4 workers (one
//!   run at a time each): runs per second from the first queued to the
//!   last ended. Goal: growing with workers until the cores are full.
//! - death: a worker `kill -9`ed during a stage → its job held by another
//!   worker, and → the run continuing there (taken up again, recorded),
//!   with `--ack-wait 3s`. Goal: ≤ ack wait + 2 s.
//!
//! Measurements, not assertions: nothing here fails on a slow figure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("no temporary directory: {e}")));
    let root = dir.path();
    let commit = repository(root);
    std::fs::write(
        root.join("weir-server.toml"),
        "[server]\ndata-dir = \"state\"\nrate-limit = 100000\n\n\
         [repositories.app]\nforge = \"github\"\nname = \"acme/app\"\nclone-url = \"repo\"\n\n\
         [repositories.slow]\nforge = \"github\"\nname = \"acme/slow\"\nclone-url = \"repo\"\npipeline = \"slow.toml\"\n",
    )
    .unwrap_or_else(|e| fail(&format!("cannot write the config: {e}")));
    let nats = Nats::start(&root.join("nats"));
    let token = token(root);
    let server = Server::start(root, &nats.url);

    println!("== dispatch: 40 runs queued one at a time to an idle worker");
    let worker = Worker::start(root, &nats.url, "d1");
    // A first run warms the worker's compile cache.
    let first = server.queue(&token, &commit);
    server.wait_ended(&token, &first.0);
    let (mut taken, mut started) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let (id, queued_ms) = server.queue(&token, &commit);
        server.wait_ended(&token, &id);
        let took = worker
            .took(&id)
            .unwrap_or_else(|| fail(&format!("worker d1 did not log taking {id}")));
        taken.push(Duration::from_millis(took.saturating_sub(queued_ms)));
        let run_started = server.event_time(&token, &id, "run_started");
        started.push(Duration::from_millis(run_started.saturating_sub(queued_ms)));
    }
    report("queued → job held by a worker", taken, "p99 ≤ 20 ms");
    report("queued → run_started on it", started, "");
    drop(worker);

    println!("\n== throughput: 40 no-op runs queued at once");
    for n in [1usize, 2, 4] {
        let workers: Vec<Worker> = (0..n)
            .map(|i| Worker::start(root, &nats.url, &format!("t{n}-{i}")))
            .collect();
        let warm = server.queue(&token, &commit);
        server.wait_ended(&token, &warm.0);
        let t0 = Instant::now();
        let ids: Vec<String> = (0..40).map(|_| server.queue(&token, &commit).0).collect();
        for id in &ids {
            server.wait_ended(&token, id);
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "  {:<34} {:>7.1} runs/s  (40 in {secs:.2} s)",
            format!("{n} worker(s)"),
            40.0 / secs
        );
        println!("FIGURE workers_throughput_{n} {:.2} runs/s", 40.0 / secs);
        drop(workers);
    }

    println!("\n== death: kill -9 a worker during a stage (--ack-wait 3s)");
    let mut ack = Vec::new();
    let mut continuing = Vec::new();
    for round in 0..5 {
        let mut a = Worker::start(root, &nats.url, &format!("k{round}a"));
        let (id, _) = server.queue_slow(&token, &commit);
        server.wait_until(&token, &id, |body| {
            body.contains("\"status\":\"running\"") && body.contains("\"worker\":\"")
        });
        let b = Worker::start(root, &nats.url, &format!("k{round}b"));
        nap(Duration::from_millis(300));
        let killed_ms = now_ms();
        a.kill();
        server.wait_until(&token, &id, |body| {
            body.contains(&format!("\"worker\":\"k{round}b\""))
        });
        let moved_ms = now_ms();
        let took = b
            .took(&id)
            .unwrap_or_else(|| fail("the second worker did not log taking the run"));
        ack.push(Duration::from_millis(took.saturating_sub(killed_ms)));
        continuing.push(Duration::from_millis(moved_ms.saturating_sub(killed_ms)));
        server.wait_ended(&token, &id);
    }
    report("killed → job held by another", ack, "≤ ack wait (3 s) + 2 s");
    report(
        "killed → run continuing there",
        continuing,
        "≤ ack wait (3 s) + 2 s",
    );
    drop(server);
}

fn fail(why: &str) -> ! {
    eprintln!("bench workers: {why}");
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
        "  {what:<34} p50 {:>8.1} ms   p99 {:>8.1} ms   {}",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        if goal.is_empty() {
            String::new()
        } else {
            format!("(goal: {goal})")
        }
    );
    let key: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    println!("FIGURE workers_{key}_p99 {:.1} ms", at(0.99).as_secs_f64() * 1e3);
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

/// A repository with a no-op pipeline and, on branch `slow`, one whose
/// stage takes a while.
fn repository(root: &Path) -> String {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap_or_else(|e| fail(&format!("{e}")));
    std::fs::write(
        repo.join("pipeline.toml"),
        "[pipeline]\nname = \"bench\"\n\n[stages.hello]\nrun = \"echo hello\"\n",
    )
    .unwrap_or_else(|e| fail(&format!("{e}")));
    std::fs::write(
        repo.join("slow.toml"),
        "[pipeline]\nname = \"slow\"\n\n[stages.first]\nrun = \"echo first\"\n\n[stages.wait]\nneeds = [\"first\"]\nrun = \"sleep 3\"\n",
    )
    .unwrap_or_else(|e| fail(&format!("{e}")));
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "bench"]);
    git(&repo, &["rev-parse", "HEAD"])
}

fn token(root: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--config",
            "weir-server.toml",
            "token",
            "create",
            "--tenant",
            "default",
        ])
        .current_dir(root)
        .env_remove("WEIR_STATE_DIR")
        .output()
        .unwrap_or_else(|e| fail(&format!("weir: {e}")));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start(store: &Path) -> Nats {
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("nats-server (apt-get install nats-server): {e}")));
        let mut lines = BufReader::new(child.stderr.take().unwrap_or_else(|| fail("no stderr"))).lines();
        let mut port = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port = rest.trim().rsplit(':').next().unwrap_or_default().to_string();
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker whose log lines (at info) are kept, to read when it took
/// each run.
struct Worker {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn start(root: &Path, nats: &str, name: &str) -> Worker {
        let dir: PathBuf = root.join("workers").join(name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["worker", "--nats", nats, "--name", name, "--dir"])
            .arg(&dir)
            .current_dir(root)
            .env("WEIR_LOG", "weir=info")
            .env("NO_COLOR", "1")
            .env_remove("WEIR_STATE_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("weir worker: {e}")));
        let mut out = BufReader::new(child.stdout.take().unwrap_or_else(|| fail("no stdout"))).lines();
        let first = out.next().and_then(Result::ok).unwrap_or_default();
        if !first.contains("taking runs") {
            fail(&format!("weir worker did not start: {first}"));
        }
        std::thread::spawn(move || for _ in out {});
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let err = BufReader::new(child.stderr.take().unwrap_or_else(|| fail("no stderr")));
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        // Let it find the job consumers.
        nap(Duration::from_millis(1500));
        Worker {
            child: Some(child),
            lines,
        }
    }

    /// When it logged taking run `id`, ms since the epoch.
    fn took(&self, id: &str) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|l| l.contains("took a run") && l.contains(id))
                .and_then(|l| log_time(l));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            nap(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `2026-12-07T20:51:02.967338Z …` (after any colour codes) as ms since
/// the epoch.
fn log_time(line: &str) -> Option<u64> {
    let start = line.find("20")?;
    let stamp = line.get(start..start + 26)?;
    let num = |a: usize, b: usize| stamp.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s, micros) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi) * 60 + s) as u64 * 1000 + (micros / 1000) as u64)
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(root: &Path, nats: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "serve",
                "--config",
                "weir-server.toml",
                "--listen",
                "127.0.0.1:0",
                "--nats",
                nats,
                "--ack-wait",
                "3s",
            ])
            .current_dir(root)
            .env_remove("WEIR_STATE_DIR")
            .env_remove("WEIR_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("weir serve: {e}")));
        let mut lines = BufReader::new(child.stdout.take().unwrap_or_else(|| fail("no stdout"))).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| fail(&format!("weir serve did not say where it listens: {first}")))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.request("GET", "/readyz", None, b"").contains("200 OK") {
            if Instant::now() > deadline {
                fail("weir serve never became ready");
            }
            nap(Duration::from_millis(50));
        }
        server
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> String {
        let mut stream = TcpStream::connect(&self.addr).unwrap_or_else(|e| fail(&format!("connect: {e}")));
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
            self.addr,
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    fn queue_with(&self, token: &str, body: String) -> (String, u64) {
        let answer = self.request("POST", "/api/v1/runs", Some(token), body.as_bytes());
        let queued_ms = now_ms();
        let id = answer
            .split("\"id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| fail(&format!("not queued: {answer}")))
            .to_string();
        (id, queued_ms)
    }

    fn queue(&self, token: &str, commit: &str) -> (String, u64) {
        self.queue_with(
            token,
            format!("{{\"repository\":\"app\",\"commit\":\"{commit}\"}}"),
        )
    }

    /// A run of the slow pipeline: the same repository under another
    /// configured name would do too; the pipeline file is per
    /// repository, so the slow one is its own repository entry.
    fn queue_slow(&self, token: &str, commit: &str) -> (String, u64) {
        self.queue_with(
            token,
            format!("{{\"repository\":\"slow\",\"commit\":\"{commit}\"}}"),
        )
    }

    fn wait_until(&self, token: &str, id: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let body = self.request("GET", &format!("/api/v1/runs/{id}"), Some(token), b"");
            if done(&body) {
                return;
            }
            if Instant::now() > deadline {
                fail(&format!("run {id} never got there: {body}"));
            }
            nap(Duration::from_millis(10));
        }
    }

    fn wait_ended(&self, token: &str, id: &str) {
        self.wait_until(token, id, |b| {
            ["succeeded", "failed", "cancelled"]
                .iter()
                .any(|s| b.contains(&format!("\"status\":\"{s}\",\"started_ms\"")))
        });
    }

    fn event_time(&self, token: &str, id: &str, kind: &str) -> u64 {
        let events = self.request("GET", &format!("/api/v1/runs/{id}/events"), Some(token), b"");
        events
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| d.contains(&format!("\"event\":\"{kind}\"")))
            .find_map(|d| {
                d.split("\"time_ms\":")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| fail(&format!("run {id} has no {kind}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "a plain benchmark thread, not a tokio worker"
)]
fn nap(d: Duration) {
    std::thread::sleep(d);
}
