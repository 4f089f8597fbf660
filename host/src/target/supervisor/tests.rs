use super::*;
use http_body_util::BodyExt;

/// A Python HTTP server answering its VERSION on every path.
fn spec(dir: &std::path::Path, version: &str) -> InstanceSpec {
    InstanceSpec {
            service: "web".into(),
            version: version.into(),
            program: PathBuf::from("python3"),
            args: vec![
                "-c".into(),
                r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["VERSION"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#
                .into(),
            ],
            env: vec![("VERSION".into(), version.into())],
            dir: dir.to_path_buf(),
            data_dir: dir.join("data"),
            readiness_path: "/healthz".into(),
            log: None,
            container: None,
        }
}

async fn get(port: u16) -> Option<String> {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let r = client
        .get(format!("http://127.0.0.1:{port}/").parse().ok()?)
        .await
        .ok()?;
    let ok = r.status().is_success();
    let body = r.into_body().collect().await.ok()?.to_bytes();
    ok.then(|| String::from_utf8_lossy(&body).into_owned())
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_when_ready_restarts_a_crash_and_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(Timing {
        ready_within: Duration::from_secs(20),
        stop_grace: Duration::from_secs(2),
        max_restarts: 3,
    });
    let instance = sup.start(spec(dir.path(), "v1")).await.expect("ready");
    assert_eq!(get(instance.port).await.as_deref(), Some("v1"));
    let router = sup.router("web");
    router.set_weights(&[("v1".into(), 100)]);
    assert_eq!(sup.instances("web").len(), 1);

    // Killed from outside: it is restarted on the same port.
    let first = sup.pid(&instance.id).unwrap();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(first as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while (sup.pid(&instance.id) == Some(first) || get(instance.port).await.is_none())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(instance.port).await.as_deref(), Some("v1"), "restarted");
    assert_eq!(sup.instances("web")[0].restarts, 1);

    let second = sup.pid(&instance.id).unwrap();
    assert!(sup.stop(&instance.id).await);
    assert!(!alive(second), "the process is gone");
    assert!(sup.instances("web").is_empty());
    assert!(router.weights().contains_key("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_exits_or_never_gets_ready_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(Timing {
        ready_within: Duration::from_millis(800),
        ..Timing::default()
    });
    let mut exits = spec(dir.path(), "bad");
    exits.args = vec!["-c".into(), "import sys; sys.exit(3)".into()];
    let e = sup.start(exits).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("exited before it was ready (exit status: 3)"),
        "{e}"
    );

    let mut sleeps = spec(dir.path(), "slow");
    sleeps.args = vec!["-c".into(), "import time; time.sleep(30)".into()];
    let e = sup.start(sleeps).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("was not ready within 0 s: GET /healthz never answered 2xx"),
        "{e}"
    );
}
