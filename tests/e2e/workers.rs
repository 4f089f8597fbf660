//! `weir serve --nats` with `weir worker`s, over a real `nats-server -js`
//! (Debian's package): runs spread over workers, a worker killed mid-run,
//! NATS restarted mid-run, the server killed mid-run, cancels, labels,
//! tenants and secrets.
//!
//! `.ci/run` installs nats-server and sets `WEIR_NATS_TESTS=require`, so
//! there a missing one fails; elsewhere a test without it says so and
//! passes over.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Server, TENANTS, config, git};
use crate::support::{Project, nap};

/// A `nats-server -js` on an ephemeral port of 127.0.0.1, its store in a
/// directory of the test's; killed when dropped.
pub(crate) struct Nats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// `--user` and `--pass` it requires, if any.
    auth: Option<(String, String)>,
}

impl Nats {
    /// Start one; `None` when nats-server is not installed and the run
    /// does not require it.
    pub(crate) fn start(store: &Path) -> Option<Nats> {
        Self::start_with(store, None)
    }

    /// One that lets only `user` with `password` in.
    pub(crate) fn start_with(store: &Path, auth: Option<(&str, &str)>) -> Option<Nats> {
        let required = std::env::var("WEIR_NATS_TESTS").is_ok_and(|v| v == "require");
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()));
        if !found {
            assert!(
                !required,
                "WEIR_NATS_TESTS=require, but nats-server is missing: apt-get install nats-server"
            );
            eprintln!("skipping: install nats-server to run the workers' tests");
            return None;
        }
        let mut nats = Nats {
            child: None,
            port: 0,
            store: store.to_path_buf(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        nats.launch("-1");
        Some(nats)
    }

    fn launch(&mut self, port: &str) {
        let mut command = Command::new("nats-server");
        command
            .args(["-js", "-a", "127.0.0.1", "-p", port, "-sd"])
            .arg(&self.store);
        if let Some((user, pass)) = &self.auth {
            command.args(["--user", user, "--pass", pass]);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut port = 0;
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if line.contains("Server is ready") {
                break;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
        }
        assert!(port != 0, "nats-server did not say its port");
        std::thread::spawn(move || for _ in lines {});
        self.port = port;
        self.child = Some(child);
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9` it, then start it again on the same port and store.
    fn restart(&mut self, down: Duration) {
        self.kill();
        nap(down);
        let port = self.port.to_string();
        self.launch(&port);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `weir worker`, killed when dropped.
pub(crate) struct Worker {
    child: Option<Child>,
    pub(crate) name: String,
}

impl Worker {
    pub(crate) fn start(p: &Project, nats: &Nats, name: &str, args: &[&str]) -> Worker {
        Self::start_with(p, nats, name, args, &[])
    }

    pub(crate) fn start_with(
        p: &Project,
        nats: &Nats,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let mut child = Command::new(crate::support::weir_bin())
            .args(["worker", "--nats", &nats.url(), "--name", name, "--dir"])
            .arg(p.path().join("workers").join(name))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(p.path())
            .env("WEIR_CACHE_DIR", crate::support::shared_cache())
            .env("NO_COLOR", "1")
            .env_remove("WEIR_LOG")
            .env_remove("WEIR_STATE_DIR")
            .env_remove("WEIR_TENANTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir worker starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            first.contains("taking runs"),
            "weir worker did not start: {first:?}"
        );
        std::thread::spawn(move || for _ in lines {});
        Worker {
            child: Some(child),
            name: name.to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for it to exit.
    fn drain(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child
            .take()
            .expect("running")
            .wait()
            .expect("the worker exits")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A project with a repository holding `pipeline`, the test tenants (and
/// `extra` in the tenants file), and a server configuration.
fn project(pipeline: &str, extra_tenants: &str) -> (Project, String) {
    let p = Project::new();
    p.write("repo/pipeline.toml", pipeline);
    p.write("repo/greeting.txt", "hello from the repository\n");
    let dir = p.path().join("repo");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "first"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    p.write("tenants.toml", format!("{TENANTS}\n{extra_tenants}"));
    p.write("weir-server.toml", config(""));
    (p, commit)
}

fn serve(p: &Project, nats: &Nats, ack_wait: &str, env: &[(&str, &str)]) -> Server {
    Server::start_with(p.path(), &["--nats", &nats.url(), "--ack-wait", ack_wait], env)
}

fn queue(server: &Server, token: &str, repository: &str, commit: &str) -> String {
    let queued = server.post(
        "/api/v1/runs",
        Some(token),
        &json!({"repository": repository, "commit": commit}),
    );
    assert_eq!(queued.status, 201, "{queued:?}");
    queued.json()["id"].as_str().expect("an id").to_string()
}

fn stage<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Per stage, the statuses of its attempts, in order.
fn attempts(run: &Value) -> BTreeMap<String, Vec<String>> {
    let mut by = BTreeMap::<String, Vec<String>>::new();
    for a in run["attempts"].as_array().into_iter().flatten() {
        by.entry(a["stage"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(a["status"].as_str().unwrap_or_default().to_string());
    }
    by
}

fn log_lines(server: &Server, token: &str, id: &str, stage: &str) -> Vec<String> {
    let logs = server.get(&format!("/api/v1/runs/{id}/logs?stage={stage}"), Some(token));
    assert_eq!(logs.status, 200, "{logs:?}");
    logs.json()["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn ended(run: &Value) -> bool {
    !matches!(run["status"].as_str(), Some("queued" | "running"))
}

const QUICK: &str = r#"
[pipeline]
name = "quick"

[stages.hello]
run = "echo hello from the repository"
"#;

#[test]
fn thirty_runs_spread_over_the_workers_and_all_succeed_in_order() {
    let (p, commit) = project(QUICK, "");
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "10s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let _workers: Vec<Worker> = (1..=3)
        .map(|i| Worker::start(&p, &nats, &format!("w{i}"), &["--concurrency", "2"]))
        .collect();
    let ids: Vec<String> = (0..30).map(|_| queue(&server, &acme, "app", &commit)).collect();
    let mut by_worker = BTreeMap::<String, usize>::new();
    for id in &ids {
        let run = server.wait_for(id, &acme, "its end", ended);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(stage(&run, "hello")["status"], "succeeded", "{run}");
        *by_worker
            .entry(run["worker"].as_str().unwrap_or("none").to_string())
            .or_default() += 1;
        assert_eq!(
            log_lines(&server, &acme, id, "hello"),
            ["hello from the repository"],
            "{id}"
        );
        // Every event reached the history once, in order.
        let events = server.events(id, &acme, None);
        let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "stage_finished").count(),
            1,
            "{kinds:?}"
        );
    }
    eprintln!("runs per worker: {by_worker:?}");
    assert!(
        by_worker.len() >= 2,
        "the runs went to one worker only: {by_worker:?}"
    );
    assert!(!by_worker.contains_key("none"), "{by_worker:?}");

    let metrics = server.get("/metrics", Some(&server.token(&["--operator"])));
    assert!(
        metrics.body.contains("weir_worker_up{worker=\"w1\""),
        "{}",
        metrics.body
    );
    let listed = Command::new(crate::support::weir_bin())
        .args(["workers", "list", "--nats", &nats.url()])
        .output()
        .expect("weir workers list");
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for w in ["w1", "w2", "w3"] {
        assert!(
            listed.lines().any(|l| l.starts_with(w) && l.contains("running")),
            "{listed}"
        );
    }
}

/// A build that leaves a file, and a slow stage that needs it.
const TWO_STAGES: &str = r#"
[pipeline]
name = "two"

[stages.build]
run = "echo built > out.txt"

[stages.slow]
needs = ["build"]
run = "cat out.txt; sleep 4; echo slept"
"#;

#[test]
fn a_killed_worker_s_run_continues_on_another_and_finished_stages_do_not_run_again() {
    let (p, commit) = project(TWO_STAGES, "");
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "3s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let mut workers = [
        Worker::start(&p, &nats, "w1", &[]),
        Worker::start(&p, &nats, "w2", &[]),
    ];
    let id = queue(&server, &acme, "app", &commit);
    let running = server.wait_for(&id, &acme, "its slow stage", |r| {
        stage(r, "slow")["status"] == "running" && r["worker"].is_string()
    });
    let first = running["worker"].as_str().expect("a worker").to_string();
    // Killed once the first attempt has read the file (its line reached
    // the server), so that attempt's line is there to count below.
    let waiting = Instant::now();
    while !log_lines(&server, &acme, &id, "slow")
        .iter()
        .any(|l| l == "built")
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the slow stage never said `built`"
        );
        nap(Duration::from_millis(20));
    }
    let victim = workers.iter_mut().find(|w| w.name == first).expect("the worker");
    victim.kill9();
    let killed = Instant::now();
    let moved = server.wait_for(&id, &acme, "another worker", |r| {
        r["worker"].as_str().is_some_and(|w| w != first)
    });
    eprintln!(
        "worker {first} killed; the run continued on {} after {} ms",
        moved["worker"],
        killed.elapsed().as_millis()
    );
    let run = server.wait_for(&id, &acme, "its end", ended);
    assert_eq!(run["status"], "succeeded", "{run}");
    let tries = attempts(&run);
    assert_eq!(
        tries["build"],
        ["succeeded"],
        "the finished stage ran again: {tries:?}"
    );
    assert_eq!(tries["slow"], ["interrupted", "succeeded"], "{tries:?}");
    // Its file came back with the workspace: the second attempt read it.
    let lines = log_lines(&server, &acme, &id, "slow");
    assert_eq!(lines.iter().filter(|l| *l == "built").count(), 2, "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("slept"), "{lines:?}");
}

/// Thirty lines over about six seconds.
const CHATTY: &str = r#"
[pipeline]
name = "chatty"

[stages.talk]
run = "i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo line-$i; sleep 0.2; done"
"#;

fn thirty_lines() -> Vec<String> {
    (1..=30).map(|i| format!("line-{i}")).collect()
}

#[test]
fn nats_restarting_mid_run_loses_nothing() {
    let (p, commit) = project(CHATTY, "");
    let Some(mut nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "15s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let _worker = Worker::start(&p, &nats, "w1", &[]);
    let id = queue(&server, &acme, "app", &commit);
    server.wait_for(&id, &acme, "its first lines", |r| {
        stage(r, "talk")["status"] == "running"
    });
    nap(Duration::from_millis(800));
    nats.restart(Duration::from_millis(1500));
    let run = server.wait_for(&id, &acme, "its end", ended);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(log_lines(&server, &acme, &id, "talk"), thirty_lines());
    assert_eq!(attempts(&run)["talk"], ["succeeded"], "the run was not run twice");
}

#[test]
fn the_server_killed_mid_run_catches_up_on_return_and_no_run_sticks() {
    let (p, commit) = project(CHATTY, "");
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "10s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let _workers = [
        Worker::start(&p, &nats, "w1", &["--concurrency", "2"]),
        Worker::start(&p, &nats, "w2", &["--concurrency", "2"]),
    ];
    let ids: Vec<String> = (0..3).map(|_| queue(&server, &acme, "app", &commit)).collect();
    for id in &ids {
        server.wait_for(id, &acme, "running", |r| r["status"] != "queued");
    }
    server.kill9();
    // The runs go on and end while the server is away.
    nap(Duration::from_secs(8));
    let server = serve(&p, &nats, "10s", &[]);
    for id in &ids {
        let run = server.wait_for(id, &acme, "its end", ended);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(log_lines(&server, &acme, id, "talk"), thirty_lines(), "{id}");
        let events = server.events(id, &acme, None);
        assert_eq!(events.last().map(|(_, k, _)| k.as_str()), Some("run_finished"));
        let seqs: Vec<u64> = events.iter().map(|(s, _, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "events out of order: {seqs:?}"
        );
        let logged = events.iter().filter(|(_, k, _)| k == "stage_log").count();
        assert_eq!(logged, 30, "every line once: {id}");
    }
}

#[test]
fn a_cancel_reaches_the_worker_and_leaves_no_process_behind() {
    let (p, commit) = project(
        r#"
[pipeline]
name = "long"

[stages.wait]
run = "echo waiting; sleep 301.5"
"#,
        "",
    );
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "10s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let _worker = Worker::start(&p, &nats, "w1", &[]);
    let id = queue(&server, &acme, "app", &commit);
    server.wait_for(&id, &acme, "its stage to run", |r| {
        stage(r, "wait")["status"] == "running"
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sleeping() {
        assert!(Instant::now() < deadline, "the stage's `sleep` never started");
        nap(Duration::from_millis(100));
    }
    let asked = Instant::now();
    let cancelled = server.post(&format!("/api/v1/runs/{id}/cancel"), Some(&acme), &json!({}));
    assert_eq!(cancelled.status, 202, "{cancelled:?}");
    assert_eq!(cancelled.json()["status"], "cancelling");
    let run = server.wait_for(&id, &acme, "its end", ended);
    let took = asked.elapsed();
    assert_eq!(run["status"], "cancelled", "{run}");
    // The grace period (5 s) and two more.
    assert!(took <= Duration::from_secs(7), "cancelled after {took:?}");
    eprintln!("cancelled on the worker in {} ms", took.as_millis());
    assert!(!sleeping(), "the stage's process outlived the cancel");
}

/// Whether a process of the cancel test's stage is alive.
fn sleeping() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains("301.5"))
}

#[test]
fn labels_tenants_and_secrets_go_only_where_they_are_meant_to() {
    let (p, commit) = project(
        r#"
[pipeline]
name = "labelled"
runs-on = ["podman"]
environment = "prod"

[environments.prod]
secrets = ["DEPLOY_TOKEN"]

[stages.check]
# The pipeline must not hold the value itself (the test looks for it in
# NATS' files): its first eight characters and its length.
run = 'case "$DEPLOY_TOKEN" in tok-7f3a??) echo got-the-secret ;; *) exit 1 ;; esac'
environment = "prod"
"#,
        "",
    );
    // Acme's secrets come from the server's environment.
    let tenants = std::fs::read_to_string(p.path().join("tenants.toml")).expect("tenants");
    let tenants = tenants.replace(
        "[tenants.acme]\n",
        "[tenants.acme]\nsecrets = { env-prefix = \"ACME_\" }\n",
    );
    let tenants = tenants.replace(
        "allow = { exec = [\"git\", \"sh\", \"sleep\", \"cat\"] }\n# Metered",
        "allow = { exec = [\"git\", \"sh\", \"sleep\", \"cat\", \"test\"], secrets = [\"DEPLOY_TOKEN\"] }\n# Metered",
    );
    p.write("tenants.toml", &tenants);
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "10s", &[("ACME_DEPLOY_TOKEN", "tok-7f3a9c")]);
    let acme = server.token(&["--tenant", "acme"]);
    let globex = server.token(&["--tenant", "globex"]);
    // Globex's worker has the label but serves only globex; the plain
    // worker serves everyone but lacks the label.
    let _globex_only = Worker::start(
        &p,
        &nats,
        "globex-podman",
        &["--tenant", "globex", "--labels", "podman"],
    );
    let _plain = Worker::start(&p, &nats, "plain", &[]);
    let id = queue(&server, &acme, "app", &commit);
    let waiting = server.wait_for(&id, &acme, "a reason to wait", |r| {
        r["reason"].as_str().is_some_and(|s| s.contains("podman"))
    });
    assert_eq!(waiting["status"], "queued", "{waiting}");
    nap(Duration::from_secs(3));
    let still = server.get(&format!("/api/v1/runs/{id}"), Some(&acme)).json();
    assert_eq!(
        still["status"], "queued",
        "a worker without the label or of another tenant took it: {still}"
    );

    let _acme_podman = Worker::start(
        &p,
        &nats,
        "acme-podman",
        &["--tenant", "acme", "--labels", "podman"],
    );
    let run = server.wait_for(&id, &acme, "its end", ended);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["worker"], "acme-podman", "{run}");
    assert_eq!(log_lines(&server, &acme, &id, "check"), ["got-the-secret"]);

    // Globex's run of the same commit has no such secret and no podman
    // worker of its own but globex-podman.
    let other = queue(&server, &globex, "other", &commit);
    let run = server.wait_for(&other, &globex, "its end", ended);
    assert_eq!(run["worker"], "globex-podman", "{run}");
    assert_eq!(run["status"], "failed", "globex got acme's secret? {run}");

    // The secret crossed NATS as an answer to one request, never into a
    // stream: JetStream's files do not hold it.
    let mut files = vec![p.path().join("nats")];
    let mut leaked = BTreeSet::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(10).any(|w| w == b"tok-7f3a9c")) {
            leaked.insert(path.display().to_string());
        }
    }
    assert!(leaked.is_empty(), "the secret is in NATS' store: {leaked:?}");
}

#[test]
fn sigterm_drains_a_worker_it_finishes_its_run_and_takes_no_new_one() {
    let (p, commit) = project(CHATTY, "");
    // This NATS wants a user and password; so does everyone here.
    let Some(nats) = Nats::start_with(&p.path().join("nats"), Some(("weir", "pw-4d1c"))) else {
        return;
    };
    let login: &[&str] = &["--nats-user", "weir"];
    let password = [("WEIR_NATS_PASSWORD", "pw-4d1c")];
    let refused = Command::new(crate::support::weir_bin())
        .args(["worker", "--nats", &nats.url(), "--dir"])
        .arg(p.path().join("workers/refused"))
        .output()
        .expect("weir worker");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a worker without credentials got in"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("cannot connect to NATS"), "{said}");
    let server = Server::start_with(
        p.path(),
        &["--nats", &nats.url(), "--ack-wait", "10s", "--nats-user", "weir"],
        &password,
    );
    let acme = server.token(&["--tenant", "acme"]);
    let mut worker = Worker::start_with(&p, &nats, "w1", login, &password);
    let first = queue(&server, &acme, "app", &commit);
    server.wait_for(&first, &acme, "running", |r| {
        stage(r, "talk")["status"] == "running"
    });
    let second = queue(&server, &acme, "app", &commit);
    let status = worker.drain();
    assert!(status.success(), "{status:?}");
    let run = server.get(&format!("/api/v1/runs/{first}"), Some(&acme)).json();
    let run = if ended(&run) {
        run
    } else {
        server.wait_for(&first, &acme, "its end", ended)
    };
    assert_eq!(
        run["status"], "succeeded",
        "the draining worker did not finish its run: {run}"
    );
    let waiting = server.get(&format!("/api/v1/runs/{second}"), Some(&acme)).json();
    assert_eq!(
        waiting["status"], "queued",
        "the draining worker took a new run: {waiting}"
    );
    let _next = Worker::start_with(&p, &nats, "w2", login, &password);
    let run = server.wait_for(&second, &acme, "its end", ended);
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[test]
fn an_approval_given_on_the_server_reaches_the_worker_and_artifacts_come_back() {
    let (p, commit) = project(
        r#"
[pipeline]
name = "ship"

[environments.production]
approval = { approvers = ["alice"], timeout = "10m" }

[stages.checkout]
uses = "git"
with = { repo = "${{ pipeline.dir }}", ref = "HEAD", depth = 1 }
allow = { exec = ["git"], read = ["."] }

[stages.build]
uses = "build"
needs = ["checkout"]
allow = { exec = ["make"] }
with = { dir = "src", artifacts = ["dist/*.txt"] }

[stages.ship]
needs = ["build"]
environment = "production"
run = "cat src/dist/app.txt"
"#,
        "",
    );
    p.write("tenants.toml", TENANTS.replace("\"cat\"]", "\"cat\", \"make\"]"));
    p.write(
        "repo/Makefile",
        "dist/app.txt:\n\tmkdir -p dist && echo built by make > dist/app.txt\n",
    );
    let dir = p.path().join("repo");
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "make"]);
    let commit = {
        let _ = commit;
        git(&dir, &["rev-parse", "HEAD"])
    };
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = serve(&p, &nats, "10s", &[]);
    let acme = server.token(&["--tenant", "acme"]);
    let alice = server.token(&["--tenant", "acme", "--label", "alice"]);
    let _worker = Worker::start(&p, &nats, "w1", &[]);
    let id = queue(&server, &acme, "app", &commit);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = server.get("/api/v1/approvals", Some(&acme)).json();
        if waiting["approvals"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["run"] == id.as_str() && a["stage"] == "ship"))
        {
            break;
        }
        let run = server.get(&format!("/api/v1/runs/{id}"), Some(&acme)).json();
        assert!(!ended(&run), "the run ended before it waited: {run}");
        assert!(Instant::now() < deadline, "the deploy never waited: {waiting}");
        nap(Duration::from_millis(100));
    }
    let decided = server.post(
        &format!("/api/v1/runs/{id}/approvals/ship"),
        Some(&alice),
        &json!({"decision": "approve", "reason": "lgtm"}),
    );
    assert_eq!(decided.status, 200, "{decided:?}");
    let run = server.wait_for(&id, &acme, "its end", ended);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(log_lines(&server, &acme, &id, "ship"), ["built by make"]);
    // The artifact the worker kept is the server's now, and downloads.
    let artifacts = stage(&run, "build")["artifacts"].clone();
    let name = artifacts[0]["name"].as_str().expect("an artifact").to_string();
    let got = server.get(&format!("/api/v1/runs/{id}/artifacts/build/{name}"), Some(&acme));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, "built by make\n");
}

#[test]
fn a_run_whose_workers_keep_dying_ends_failed_with_the_reason_never_stuck() {
    let (p, commit) = project(
        r#"
[pipeline]
name = "doomed"

[stages.wait]
run = "echo started; sleep 60"
"#,
        "",
    );
    let Some(nats) = Nats::start(&p.path().join("nats")) else {
        return;
    };
    let server = Server::start_with(
        p.path(),
        &["--nats", &nats.url(), "--ack-wait", "2s", "--max-deliveries", "2"],
        &[],
    );
    let acme = server.token(&["--tenant", "acme"]);
    let id = queue(&server, &acme, "app", &commit);
    for n in 1..=2 {
        let mut worker = Worker::start(&p, &nats, &format!("doomed-{n}"), &[]);
        let name = format!("doomed-{n}");
        server.wait_for(&id, &acme, "its stage on this worker", |r| {
            r["worker"] == name.as_str() && stage(r, "wait")["status"] == "running"
        });
        worker.kill9();
    }
    let _last = Worker::start(&p, &nats, "survivor", &[]);
    let run = server.wait_for(&id, &acme, "its end", ended);
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("handed to workers 2 times"), "{reason}");
    assert_eq!(attempts(&run)["wait"], ["interrupted", "interrupted"], "{run}");
}
