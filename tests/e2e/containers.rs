//! Container releases for real: the quickstart service built as a static
//! binary, packaged by the `oci-image` stage, pushed to Debian's
//! `docker-registry` (started by scripts/registry.sh on a loopback port)
//! and run by the `container` deployer as podman containers behind the
//! target's router. Skipped, saying why, where podman or the registry is
//! missing, unless `WEIR_PODMAN_TESTS=require` (as in .ci/run).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::{Client, Deployment, get};
use crate::support::{Project, Run, nap};

/// Whether podman and the registry can run here; why not, when not.
fn usable() -> Result<(), String> {
    for (program, package) in [("podman", "podman"), ("docker-registry", "docker-registry")] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "{program} is not installed (Debian: apt-get install {package})"
            ));
        }
    }
    let info = Command::new("podman")
        .arg("info")
        .output()
        .map_err(|e| e.to_string())?;
    if !info.status.success() {
        return Err(format!(
            "podman cannot run here: {}",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    Ok(())
}

/// False (and says why) where these tests cannot run.
fn can_run(test: &str) -> bool {
    match usable() {
        Ok(()) => true,
        Err(why) if std::env::var("WEIR_PODMAN_TESTS").as_deref() == Ok("require") => {
            panic!("{test}: WEIR_PODMAN_TESTS=require, but {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A registry from scripts/registry.sh, stopped when dropped.
struct Registry {
    dir: tempfile::TempDir,
    address: String,
}

impl Registry {
    fn start(htpasswd: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(repo().join("scripts/registry.sh"));
        cmd.args(["start", &free_port().to_string()]).arg(dir.path());
        if let Some(h) = htpasswd {
            cmd.env("REGISTRY_HTPASSWD", h);
        }
        let out = cmd.output().expect("scripts/registry.sh runs");
        assert!(out.status.success(), "the registry did not start: {out:?}");
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Self { dir, address }
    }

    /// `GET /v2/REPO/manifests/TAG`: the digest the registry holds it as.
    fn digest_of(&self, repository: &str, tag: &str, authorization: Option<&str>) -> String {
        let mut s = TcpStream::connect(&self.address).expect("the registry answers");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "HEAD /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n{auth}Connection: close\r\n\r\n",
            self.address
        )
        .expect("write");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no digest in {text:?}"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/registry.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The quickstart service as a static binary, built once per test run:
/// as it is, and with `QUICKSTART_FAULT=errors` built in.
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let build = |fault: &str| {
            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("quickstart-static{fault}"));
            let mut cmd = Command::new(env!("CARGO"));
            crate::support::without_build_wrappers(&mut cmd);
            let out = cmd
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                    "--target-dir",
                ])
                .arg(&target)
                .current_dir(repo().join("examples/quickstart/service"))
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .env("QUICKSTART_FAULT", fault)
                .output()
                .expect("cargo runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            target.join("x86_64-unknown-linux-gnu/release/quickstart-service")
        };
        (build(""), build("errors"))
    })
}

/// A pipeline that packages `ws/service` as an image in `registry` and,
/// with `deploy`, rolls it out as containers of service `web`.
fn pipeline(registry: &str, version: &str, deploy: Option<&str>) -> String {
    let mut text = format!(
        r#"[pipeline]
name = "containers"

[stages.image]
uses = "oci-image"
with = {{ image = "{registry}/web:{version}", files = [{{ from = "service", to = "/bin/service" }}], entrypoint = ["/bin/service"], env = {{ HOST = "0.0.0.0", PORT = "8080" }}, port = 8080, labels = {{ "org.opencontainers.image.version" = "{version}" }} }}
allow = {{ network = ["{registry}"] }}
"#
    );
    if let Some(strategy) = deploy {
        text.push_str(&format!(
            r#"
[stages.deploy]
uses = "container"
needs = ["image"]
timeout = "3m"
with = {{ service = "web", image = "${{{{ stages.image.outputs.image }}}}", version = "{version}", port = 8080, readiness-path = "/healthz", replicas = 2, memory = "64MiB", cpus = 0.5, pids = 64 }}
strategy = {strategy}
checks = [{{ uses = "canary-metrics", with = {{ max-error-rate = 0.05, max-p99-ms = 250, min-requests = 8 }} }}]
load = {{ rate = 50 }}
allow = {{ runtime = true, metrics = ["builtin"], network = ["{registry}"] }}
"#
        ));
    }
    text
}

const CANARY: &str = r#"{ uses = "canary", with = { steps = [20, 50, 100], interval = "2s" } }"#;

/// Put `binary` in the workspace as `service`, write the pipeline, run.
fn release(d: &Deployment, binary: &Path, text: &str) -> Run {
    std::fs::create_dir_all(d.p.path().join("ws")).expect("ws");
    std::fs::copy(binary, d.p.path().join("ws/service")).expect("copy the binary");
    d.p.pipeline(text);
    d.run()
}

fn output(run: &Run, stage: &str, name: &str) -> String {
    run.finished(stage)["outputs"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no output {name} of {stage}: {run:?}"))
        .to_string()
}

/// The running containers of `d`'s target (of `version`), by podman.
fn containers(d: &Deployment, version: Option<&str>) -> Vec<String> {
    let label = d.status()["container_label"]
        .as_str()
        .expect("container_label")
        .to_string();
    let mut args = vec![
        "ps".to_string(),
        "--format={{.Names}}".into(),
        format!("--filter=label={label}"),
    ];
    if let Some(v) = version {
        args.push(format!("--filter=label=weir.version={v}"));
    }
    let out = Command::new("podman").args(&args).output().expect("podman ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `podman inspect` of a container, as JSON.
fn inspect(name: &str) -> Value {
    let out = Command::new("podman")
        .args(["inspect", name])
        .output()
        .expect("podman inspect");
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v[0].clone()
}

#[test]
fn the_example_builds_pushes_and_canaries_the_quickstart_as_podman_containers() {
    if !can_run("the_example_builds_pushes_and_canaries_the_quickstart_as_podman_containers") {
        return;
    }
    let registry = Registry::start(None);
    let d = Deployment::new();
    // The example as it is, with the test's registry and this checkout.
    let example =
        std::fs::read_to_string(repo().join("examples/containers/pipeline.toml")).expect("the example");
    let repo_dir = repo().canonicalize().expect("the repository");
    let text = example
        .replace("127.0.0.1:5000", &registry.address)
        .replace("${{ pipeline.dir }}/../..", &repo_dir.display().to_string())
        .replace(
            r#"read = ["../.."]"#,
            &format!("read = [{:?}]", repo_dir.display().to_string()),
        );
    d.p.pipeline(&text);
    let run =
        d.p.run_json(&["--workspace", d.p.path().join("ws").to_str().expect("utf-8")]);
    assert_eq!(run.code, 0, "{run:?}");

    // What weir printed is what the registry holds, by its API and by skopeo.
    let digest = output(&run, "image", "digest");
    assert_eq!(registry.digest_of("quickstart", "latest", None), digest);
    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/quickstart:latest", registry.address),
        ])
        .output();
    if let Some(out) = skopeo.ok().filter(|o| o.status.success()) {
        let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
        assert_eq!(v["Digest"], digest.as_str());
        assert_eq!(v["Env"], serde_json::json!(["HOST=0.0.0.0", "PORT=8080"]));
    } else if std::env::var("WEIR_PODMAN_TESTS").as_deref() == Ok("require") {
        panic!("skopeo inspect failed: install skopeo");
    }
    let image = output(&run, "image", "image");
    assert_eq!(image, format!("{}/quickstart@{digest}", registry.address));

    // Two containers with the example's limits, serving through the router.
    let status = d.p.weir(&["target", "status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).expect("status");
    let service = status["services"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["service"] == "quickstart-containers")
                .cloned()
        })
        .expect("the service");
    assert_eq!(
        service["instances"].as_array().map(Vec::len),
        Some(2),
        "{service}"
    );
    let names = containers(&d, None);
    assert_eq!(names.len(), 2, "{names:?}");
    let c = inspect(&names[0]);
    assert_eq!(c["HostConfig"]["Memory"], 64 << 20, "{}", c["HostConfig"]);
    assert_eq!(c["HostConfig"]["NanoCpus"], 500_000_000u64);
    assert_eq!(c["HostConfig"]["PidsLimit"], 64);
    // No network but its loopback, nobody, no capabilities, read-only.
    assert_eq!(c["HostConfig"]["NetworkMode"], "none", "{}", c["HostConfig"]);
    assert_eq!(c["Config"]["User"], "65534:65534");
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(
        c["HostConfig"]["CapDrop"].as_array().map(Vec::is_empty),
        Some(false)
    );
    assert_eq!(c["ImageDigest"], digest.as_str());
    let address = service["address"].as_str().expect("address");
    assert_eq!(
        get(address, "/"),
        Ok((200, "hello from the quickstart".to_string()))
    );

    // The release history records the image.
    let releases = d.p.weir(&["releases", "quickstart-containers", "--json"]);
    let releases: Value = serde_json::from_str(&releases.stdout).expect("releases");
    assert_eq!(releases[0]["launch"]["container"]["image"], image.as_str());
    let shown = d.p.weir(&["releases", "quickstart-containers"]);
    assert!(shown.stdout.contains(&format!("image {image}")), "{shown:?}");
}

#[test]
fn a_canary_of_containers_fails_no_stable_request_and_a_faulty_image_rolls_back_at_once() {
    if !can_run("a_canary_of_containers_fails_no_stable_request_and_a_faulty_image_rolls_back_at_once") {
        return;
    }
    let (good, faulty) = binaries();
    let registry = Registry::start(None);
    let d = Deployment::new();
    let first = release(&d, good, &pipeline(&registry.address, "v1", Some(CANARY)));
    assert_eq!(first.code, 0, "{first:?}");
    let load = Client::start(d.address());

    // A good image goes through every step.
    let second = release(&d, good, &pipeline(&registry.address, "v2", Some(CANARY)));
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(d.service()["stable"], "v2");
    // The same binary and settings, pushed again: the same digest.
    let again = release(&d, good, &pipeline(&registry.address, "v2", None));
    assert_eq!(
        output(&again, "image", "digest"),
        output(&second, "image", "digest")
    );

    // The faulty build: caught at the first step and rolled back.
    let third = release(&d, faulty, &pipeline(&registry.address, "v3", Some(CANARY)));
    assert_eq!(third.code, 1, "{third:?}");
    assert_eq!(third.finished("deploy")["failure"], "rolled_back", "{third:?}");
    let back: Vec<Value> = third
        .of("rollout")
        .into_iter()
        .filter(|e| e["phase"] == "rolled_back")
        .collect();
    assert_eq!(back[0]["weights"], serde_json::json!({"v2": 100}));
    let recovery = back[0]["recovery_ms"].as_u64().expect("recovery_ms");
    assert!(
        recovery <= 100,
        "traffic was back on v2 {recovery} ms after the failed check"
    );
    nap(Duration::from_millis(300));
    let seen = load.finish();

    let errors: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "requests without an answer: {errors:?}");
    // Only the faulty build answers "injected error": every other
    // failure would be the stable version's.
    let stable_failures: Vec<&(u16, String)> = seen
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|(status, body)| *status != 200 && body != "injected error")
        .collect();
    assert!(
        stable_failures.is_empty(),
        "failed requests not from the candidate: {stable_failures:?}"
    );
    let injected = seen
        .iter()
        .filter(|r| matches!(r, Ok((500, b)) if b == "injected error"))
        .count();
    assert!(injected > 0, "the faulty image took traffic before the rollback");
    for _ in 0..50 {
        assert_eq!(
            get(&d.address(), "/"),
            Ok((200, "hello from the quickstart".to_string()))
        );
    }
    assert_eq!(
        containers(&d, Some("v3")),
        Vec::<String>::new(),
        "the candidate's containers are gone"
    );
    assert_eq!(containers(&d, Some("v2")).len(), 2);
    assert_eq!(
        containers(&d, Some("v1")),
        Vec::<String>::new(),
        "the superseded containers are gone"
    );

    // A rollback by hand restores v1's image, by digest.
    let by_hand = d.p.weir(&["rollback", "web"]);
    assert_eq!(by_hand.code, 0, "{by_hand:?}");
    let v1 = containers(&d, Some("v1"));
    assert_eq!(v1.len(), 2, "{v1:?}");
    assert_eq!(
        inspect(&v1[0])["ImageDigest"],
        output(&first, "image", "digest").as_str()
    );
}

#[test]
fn killing_weir_mid_rollout_leaves_the_stable_containers_serving() {
    if !can_run("killing_weir_mid_rollout_leaves_the_stable_containers_serving") {
        return;
    }
    let (good, _) = binaries();
    let registry = Registry::start(None);
    let d = Deployment::new();
    assert_eq!(
        release(&d, good, &pipeline(&registry.address, "v1", Some(CANARY))).code,
        0
    );

    // v2 holds 50% for a long while; weir is killed there.
    let slow = r#"{ uses = "canary", with = { steps = [50, 100], interval = "60s" } }"#;
    std::fs::copy(good, d.p.path().join("ws/service")).expect("copy");
    d.p.pipeline(&pipeline(&registry.address, "v2", Some(slow)));
    let ws = d.p.path().join("ws");
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
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let e: Value = serde_json::from_str(&line.expect("utf-8")).expect("an event");
        if e["event"] == "rollout" && e["message"].as_str().is_some_and(|m| m.starts_with("send 50%")) {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = child.wait();
    drop(lines);

    // The target still serves, the stable containers among what it runs.
    for _ in 0..20 {
        assert_eq!(
            get(&d.address(), "/"),
            Ok((200, "hello from the quickstart".to_string()))
        );
    }
    let web = d.service();
    assert_eq!(web["stable"], "v1");
    let stable_ready = web["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["version"] == "v1" && i["ready"] == true)
        .count();
    assert_eq!(stable_ready, 2, "{web}");
    assert_eq!(containers(&d, Some("v1")).len(), 2);

    // The target itself killed too: a new one removes what the dead one
    // left and puts v1's containers back with all the traffic.
    let pid = d.p.weir(&["target", "status", "--json"]);
    let pid: Value = serde_json::from_str(&pid.stdout).expect("status");
    let pid = pid["pid"].as_u64().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill")
            .success()
    );
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
    let web = d.service();
    assert_eq!(web["stable"], "v1");
    assert_eq!(web["weights"], serde_json::json!([["v1", 100]]));
    for _ in 0..20 {
        assert_eq!(
            get(&d.address(), "/"),
            Ok((200, "hello from the quickstart".to_string()))
        );
    }
    assert_eq!(
        containers(&d, None).len(),
        2,
        "only v1's two containers run: {:?}",
        containers(&d, None)
    );
}

#[test]
fn a_registry_that_wants_a_login_gets_the_secret_and_a_missing_one_is_named() {
    if !can_run("a_registry_that_wants_a_login_gets_the_secret_and_a_missing_one_is_named") {
        return;
    }
    let (good, _) = binaries();
    let p = Project::new();
    // bcrypt of "s3cret-pw", as htpasswd -B writes it.
    let htpasswd = p.write(
        "htpasswd",
        "weir:$2b$05$abcdefghijklmnopqrstuuzSvhclVSvY9ufOheOOhcPviTPFJlqIC\n",
    );
    let registry = Registry::start(Some(&htpasswd));
    let d = Deployment { p };
    let plain = pipeline(&registry.address, "v1", None);

    let refused = release(&d, good, &plain);
    assert_eq!(refused.code, 1, "{refused:?}");
    let error = refused.finished("image")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("asks for a user and password") && error.contains("`auth`"),
        "{error}"
    );

    let with_auth = plain
        .replace("port = 8080,", "port = 8080, auth = \"REGISTRY_AUTH\",")
        .replace(
            "allow = { network",
            "allow = { secrets = [\"REGISTRY_AUTH\"], network",
        );
    d.p.pipeline(&with_auth);
    let credential = "d2VpcjpzM2NyZXQtcHc="; // base64("weir:s3cret-pw")
    let ws = d.p.path().join("ws");
    let pushed: Run =
        d.p.command(&[
            "run",
            "pipeline.toml",
            "--json",
            "--workspace",
            ws.to_str().expect("utf-8"),
        ])
        .env("WEIR_SECRET_REGISTRY_AUTH", credential)
        .output()
        .expect("weir")
        .into();
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let digest = output(&pushed, "image", "digest");
    assert_eq!(
        registry.digest_of("web", "v1", Some(&format!("Basic {credential}"))),
        digest
    );
    assert!(
        !pushed.stdout.contains(credential),
        "the credential leaked into the events"
    );
}
