//! Ways out of the sandbox and across tenants, each tried as a hostile
//! tenant would (docs/security.md, "How the suite checks each promise").
//! weir runs as root here, as it does on a CI host, with bubblewrap
//! installed: the programs of a sandboxed stage run as uid 65534 in a user
//! namespace of their own.

use std::io::{Read, Write};
use std::path::Path;

use crate::support::{Project, Run};

/// A project with `tenants.toml` beside its pipeline.
fn with_tenants(tenants: &str, pipeline: &str) -> Project {
    let p = Project::new();
    p.write("tenants.toml", tenants);
    p.pipeline(pipeline);
    p
}

fn as_tenant(p: &Project, tenant: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--tenants", "tenants.toml", "--tenant", tenant];
    args.extend_from_slice(extra);
    p.run_json(&args)
}

/// A stage's `sandbox = "none"` is refused under a tenant whose policy
/// does not allow it, at validation and at run time, by file and line; a
/// stage that says nothing runs inside bubblewrap; a tenant that allows
/// `none` lets its stages opt out.
#[test]
fn a_tenant_cannot_turn_bubblewrap_off() {
    let pipeline = "[pipeline]\nname = \"out\"\n\n[stages.s]\nrun = \"id -u\"\nsandbox = \"none\"\n";
    let p = with_tenants("[tenants.acme]\nallow = { exec = [\"sh\"] }\n", pipeline);
    let validated = p.weir(&["validate", "--tenants", "tenants.toml", "--tenant", "acme"]);
    assert_eq!(validated.code, 2, "{validated:?}");
    let expected = "stage `s` asks to run its programs without a sandbox (sandbox = \"none\"); tenant `acme` (tenants.toml) requires sandbox = \"bubblewrap\"";
    assert!(validated.stderr.contains(expected), "{validated:?}");
    assert!(validated.stderr.contains("pipeline.toml:6:11"), "{validated:?}");
    let run = as_tenant(&p, "acme", &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(expected), "{run:?}");
    assert!(run.stdout.is_empty(), "nothing ran: {run:?}");
    assert!(!p.path().join(".weir/weir.db").exists(), "nothing was recorded");

    // Without the opt-out, the same stage runs inside bubblewrap.
    p.pipeline("[pipeline]\nname = \"out\"\n\n[stages.s]\nrun = \"id -u\"\n");
    let run = as_tenant(&p, "acme", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["sandbox"], "bubblewrap", "{run:?}");
    assert!(run.log_messages().iter().any(|l| l == "65534"), "{run:?}");

    // A tenant that allows it lets its stage opt out, and says so.
    p.write(
        "tenants.toml",
        "[tenants.acme]\nallow = { exec = [\"sh\"] }\nsandbox = \"none\"\n",
    );
    p.pipeline(pipeline);
    let run = as_tenant(&p, "acme", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.finished("s")["sandbox"],
        "none (sandbox = \"none\")",
        "{run:?}"
    );

    // An unknown sandbox in the tenants file is located.
    p.write("tenants.toml", "[tenants.acme]\nsandbox = \"chroot\"\n");
    let run = as_tenant(&p, "acme", &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("sandbox `chroot` of tenant `acme` is not a sandbox weir knows"),
        "{run:?}"
    );
}

/// weir's state (history, approvals, the target's control socket) is
/// never inside a workspace: `--workspace .` from the directory that
/// holds `.weir` is refused before anything runs, so a stage cannot
/// approve its own protected deploy by rewriting the history; with
/// `WEIR_STATE_DIR` outside the workspace the same run goes ahead and its
/// stage finds no state to change.
#[test]
fn the_pipeline_cannot_write_weirs_own_state() {
    let p = Project::new();
    // An earlier run leaves a history in ./.weir.
    p.pipeline("[pipeline]\nname = \"earlier\"\n\n[stages.s]\nrun = \"true\"\n");
    std::fs::create_dir_all(p.path().join("ws")).expect("ws");
    let earlier = p.run_json(&["--workspace", "ws"]);
    assert_eq!(earlier.code, 0, "{earlier:?}");
    let db = p.path().join(".weir/weir.db");
    let before = std::fs::read(&db).expect("a history");
    // The attack: approve every protected deploy, from a stage.
    p.write(
        "rewrite.py",
        "import sqlite3\nc = sqlite3.connect('file:.weir/weir.db?mode=rw', uri=True)\nc.execute(\"UPDATE approvals SET decision='approved'\")\nc.commit()\nprint('REWROTE the history')\n",
    );
    p.pipeline(
        "[pipeline]\nname = \"self-approve\"\n\n[stages.s]\nrun = \"python3 rewrite.py\"\nallow = { exec = [\"sh\", \"python3\"] }\n",
    );
    let run = p.run_json(&["--workspace", "."]);
    assert_eq!(run.code, 2, "{run:?}");
    let state = p.path().canonicalize().expect("canonical").join(".weir");
    assert!(
        run.stderr.contains(&format!(
            "weir keeps its state in {}, which is inside the workspace",
            state.display()
        )) && run.stderr.contains("WEIR_STATE_DIR=DIR"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "no stage ran: {run:?}");
    assert_eq!(
        std::fs::read(&db).expect("history"),
        before,
        "the history is untouched"
    );

    // A state directory given inside the workspace is refused the same way.
    let inside = p
        .command(&["run", "pipeline.toml", "--json", "--workspace", "ws"])
        .env("WEIR_STATE_DIR", p.path().join("ws/.state"))
        .output()
        .expect("weir runs");
    assert_eq!(inside.status.code(), Some(2), "{inside:?}");

    // Kept beside the workspace, the run goes ahead, and its stage finds
    // no weir state to rewrite.
    std::fs::remove_dir_all(p.path().join(".weir")).expect("the old state goes");
    let beside = crate::support::state_beside(p.path());
    let run = Run::from(
        p.command(&["run", "pipeline.toml", "--json", "--workspace", "."])
            .env("WEIR_STATE_DIR", &beside)
            .output()
            .expect("weir runs"),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        !run.log_messages().iter().any(|l| l.contains("REWROTE")),
        "{run:?}"
    );
    assert!(
        beside.join("weir.db").is_file(),
        "the history is beside the workspace"
    );
    let _ = std::fs::remove_dir_all(&beside);
}

/// One HTTP/1.1 request on the target's control socket, as the test
/// process (weir's own uid and namespaces): the status line and body.
fn control_call(dir: &Path, request: &str) -> String {
    let mut stream =
        std::os::unix::net::UnixStream::connect(dir.join("control.sock")).expect("the socket answers");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn post_start(token: Option<&str>, body: &str) -> String {
    format!(
        "POST /v1/instances HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\n{}content-length: {}\r\n\r\n{body}",
        token
            .map(|t| format!("x-weir-target-token: {t}\r\n"))
            .unwrap_or_default(),
        body.len()
    )
}

/// The local target's control API is weir's alone. A program inside
/// bubblewrap that is shown the target's directory (and so its socket and
/// token) is refused by peer credentials; a call without the token is
/// refused; and even weir's own calls can start only a release file the
/// target was given, never a program path or a loader variable.
#[test]
fn the_targets_control_api_answers_only_weir() {
    struct Down<'a>(&'a Project);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.weir(&["target", "down"]);
        }
    }
    let p = Project::new();
    let up = p.weir(&["target", "up"]);
    assert_eq!(up.code, 0, "{up:?}");
    let _down = Down(&p);
    let dir = p.path().join(".weir/target").canonicalize().expect("target dir");
    let token = std::fs::read_to_string(dir.join("token")).expect("a token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("token"))
        .expect("token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token is the owner's alone");

    // From inside the sandbox, with the directory granted read-only: the
    // program reads the token (root's files are its own in its user
    // namespace) and asks for a root shell. The target hangs up.
    let escape = format!(
        r#"import socket
s = socket.socket(socket.AF_UNIX)
s.connect("{sock}")
token = open("{token}").read().strip()
body = '{{"service":"pwn","version":"1","release":"x","args":["-c","id > /tmp/pwned"],"env":[],"readiness_path":"/","port":0,"run":null}}'
try:
    s.sendall(("POST /v1/instances HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-weir-target-token: " + token + "\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)) + "\r\n\r\n" + body).encode())
    answer = s.recv(65536)
except OSError:
    answer = b""
print("ANSWER", len(answer), answer[:40])
"#,
        sock = dir.join("control.sock").display(),
        token = dir.join("token").display()
    );
    p.write("ws/escape.py", escape);
    p.pipeline(&format!(
        "[pipeline]\nname = \"pwn\"\n\n[stages.s]\nrun = \"python3 escape.py\"\nallow = {{ exec = [\"sh\", \"python3\"], read = [{:?}] }}\n",
        dir.display().to_string()
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    let logs = run.log_messages();
    assert!(
        logs.iter().any(|l| l.starts_with("ANSWER 0 ")),
        "the target answered a sandboxed program: {run:?}"
    );
    let log = std::fs::read_to_string(dir.join("target.log")).unwrap_or_default();
    assert!(
        log.contains("control connection refused") && log.contains("in another user namespace"),
        "{log}"
    );

    // No token: refused.
    let body = r#"{"service":"web","version":"1","release":"x","args":[],"env":[],"readiness_path":"/","port":0,"run":null}"#;
    let answer = control_call(&dir, &post_start(None, body));
    assert!(
        answer.starts_with("HTTP/1.1 401") && answer.contains("does not carry the target's token"),
        "{answer}"
    );
    // A program path, or a name that leaves the incoming directory.
    for release in ["/bin/sh", "../../../../bin/sh", "missing"] {
        let body = body.replace("\"release\":\"x\"", &format!("\"release\":{release:?}"));
        let answer = control_call(&dir, &post_start(Some(token.trim()), &body));
        assert!(answer.starts_with("HTTP/1.1 400"), "{release}: {answer}");
    }
    // A variable that changes what the program loads.
    std::fs::write(dir.join("incoming/svc"), "#!/bin/sh\nexit 0\n").expect("a release file");
    let body = body
        .replace("\"env\":[]", r#""env":[["LD_PRELOAD","/tmp/evil.so"]]"#)
        .replace("\"x\"", "\"svc\"");
    let answer = control_call(&dir, &post_start(Some(token.trim()), &body));
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("variable `LD_PRELOAD` cannot be set"),
        "{answer}"
    );
    let status = p.weir(&["target", "status"]);
    assert!(!status.stdout.contains("pwn"), "{status:?}");
}
