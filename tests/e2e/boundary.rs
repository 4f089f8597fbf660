//! The boundary of programs and deployed services, each tried as the
//! hostile probe of the program-boundary issue did (docs/security.md,
//! "How the suite checks each promise"): weir runs as root with
//! bubblewrap installed.

use crate::deploy::{Deployment, get};
use crate::support::{Project, Run};

fn with_tenants(tenants: &str, pipeline: &str) -> Project {
    let p = Project::new();
    p.write("tenants.toml", tenants);
    p.pipeline(pipeline);
    p
}

fn as_tenant(p: &Project, tenant: &str) -> Run {
    p.run_json(&["--tenants", "tenants.toml", "--tenant", tenant])
}

/// A line of the log that starts with `key=`, without it.
fn logged(run: &Run, key: &str) -> String {
    let prefix = format!("{key}=");
    run.log_messages()
        .iter()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no `{key}=` line in {run:?}"))
}

/// Every in-memory filesystem of the sandbox is bounded: `/tmp` and
/// `/dev/shm` by their size (at most the tenant's disk limit), the root
/// and `/dev` are read-only. 200 MiB written to each under a 100 MiB disk
/// limit leaves at most 100 MiB in any of them.
#[test]
fn in_memory_filesystems_are_bounded_by_the_disk_limit() {
    let script = [
        "for d in /tmp /dev/shm / /dev; do head -c 209715200 /dev/zero > $d/fill 2>/dev/null; echo \"$d=$(cat $d/fill 2>/dev/null | wc -c)\"; done",
    ]
    .join("; ");
    let p = with_tenants(
        "[tenants.small]\nallow = { exec = [\"sh\"] }\nlimits = { disk = \"100MiB\" }\n",
        &format!("[pipeline]\nname = \"fill\"\n\n[stages.s]\nrun = {script:?}\n"),
    );
    let run = as_tenant(&p, "small");
    assert_eq!(run.code, 0, "{run:?}");
    for dir in ["/tmp", "/dev/shm"] {
        let bytes: u64 = logged(&run, dir).trim().parse().expect("a byte count");
        assert!(bytes <= 100 << 20, "{dir} held {bytes} bytes: {run:?}");
        assert!(bytes > 0, "{dir} is writable: {run:?}");
    }
    assert_eq!(logged(&run, "/").trim(), "0", "the root is read-only: {run:?}");
    assert_eq!(logged(&run, "/dev").trim(), "0", "/dev is read-only: {run:?}");
}

/// Shared anonymous memory counts against `program-memory`: Python's
/// three 256 MiB shared mappings under a 64 MiB limit are killed by the
/// program's memory cgroup, and the limit is named.
#[test]
fn shared_memory_counts_against_the_program_memory_limit() {
    let script = "import mmap\nmaps = []\nfor _ in range(3):\n    m = mmap.mmap(-1, 256 << 20)\n    for i in range(0, 256 << 20, 4096):\n        m[i] = 1\n    maps.append(m)\nprint('wrote=768MiB')\n";
    let p = with_tenants(
        "[tenants.small]\nallow = { exec = [\"python3\"] }\nlimits = { program-memory = \"64MiB\" }\n",
        &exec_stage(
            "python3",
            &format!("[\"-c\", {script:?}]"),
            "[]",
            "{ exec = [\"python3\"] }",
        ),
    );
    let run = as_tenant(&p, "small");
    let s = run.finished("s");
    assert_eq!(s["status"], "succeeded", "the plugin reports the exit: {run:?}");
    // Killed by SIGKILL (bubblewrap reports its child's as 128 + 9).
    assert!(
        s["outputs"]["signal"] == "9" || s["outputs"]["code"] == "137",
        "{s}"
    );
    assert!(
        !s["outputs"]["stdout"].as_str().unwrap_or("").contains("wrote"),
        "{s}"
    );
    assert!(
        run.log_messages()
            .iter()
            .any(|l| l.starts_with("`python3` used more than 64 MiB of memory")
                && l.ends_with("(limit `program-memory`)")),
        "{run:?}"
    );
}

fn exec_stage(program: &str, args: &str, env: &str, allow: &str) -> String {
    format!(
        "[pipeline]\nname = \"vars\"\n{}\n[stages.s]\nuses = \"exec\"\nallow = {allow}\nwith = {{ program = \"{program}\", args = {args}, env = {env} }}\n",
        crate::support::plugin("exec", crate::guest_paths::EXEC)
    )
}

/// With only git granted, a plugin cannot make git run `sh` through
/// `GIT_ALLOW_PROTOCOL=ext`: it may set only what the stage's
/// `allow.env` lists, a dangerous name there needs the tenant's leave by
/// name, and so does one in the stage's own `env`.
#[test]
fn a_granted_program_cannot_be_made_to_run_another() {
    let attack = "[\"ls-remote\", \"ext::sh -c touch% ../pwned\"]";
    let ext = "[[\"GIT_ALLOW_PROTOCOL\", \"ext\"]]";
    let p = Project::new();
    p.pipeline(&exec_stage("git", attack, ext, "{ exec = [\"git\"] }"));
    let run = p.run_json(&[]);
    let s = run.finished("s");
    assert_eq!(s["status"], "failed", "{run:?}");
    assert!(
        s["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("denied: plugin `exec` may not set `GIT_ALLOW_PROTOCOL` for programs: stage `s` (tenant `default`) does not list it; add allow = { env = [\"GIT_ALLOW_PROTOCOL\"] }"),
        "{s}"
    );
    assert!(!p.path().join("pwned").exists() && !run.workspace().join("../pwned").exists());

    // Listed by the stage, it is still refused under a tenant that does
    // not allow it by name, before anything runs.
    let listed = exec_stage(
        "git",
        attack,
        ext,
        "{ exec = [\"git\"], env = [\"GIT_ALLOW_PROTOCOL\"] }",
    );
    let p = with_tenants("[tenants.acme]\nallow = { exec = [\"git\"] }\n", &listed);
    let run = as_tenant(&p, "acme");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("stage `s` is granted `allow.env = [\"GIT_ALLOW_PROTOCOL\"]` (it can make a program run a command: git reads commands"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "nothing ran: {run:?}");

    // Set by the stage itself, too, located in pipeline.toml.
    p.pipeline(&format!(
        "{}env = {{ RUSTC_WRAPPER = \"sh\" }}\n",
        exec_stage("git", "[\"--version\"]", "[]", "{ exec = [\"git\"] }")
    ));
    let run = as_tenant(&p, "acme");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("stage `s` sets `RUSTC_WRAPPER` for its programs, which tenant `acme` (tenants.toml) does not allow: cargo runs the compiler"),
        "{run:?}"
    );
    assert!(run.stderr.contains("pipeline.toml:10:9"), "{run:?}");

    // An ordinary variable the stage lists reaches the program; the
    // tenant need not name it.
    p.pipeline(&exec_stage(
        "printenv",
        "[\"GREETING\"]",
        "[[\"GREETING\", \"hello\"]]",
        "{ exec = [\"printenv\"], env = [\"GREETING\"] }",
    ));
    p.write(
        "tenants.toml",
        "[tenants.acme]\nallow = { exec = [\"printenv\"] }\n",
    );
    let run = as_tenant(&p, "acme");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["outputs"]["stdout"], "hello\n");
}

/// A tiny HTTP server on the host's loopback, as a target's metrics
/// endpoint would be: answers every request `200 reached`.
fn loopback_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ =
                conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nreached");
        }
    });
    port
}

/// A program in a stage granted only `example.com` has a network of its
/// own: it cannot connect to the host's loopback, does not see the host's
/// listeners in `/proc/net/tcp`, and weir's proxy (its only way out)
/// refuses loopback and the metadata address. Granted by address, the
/// same loopback server is reached through the proxy, and still not
/// directly.
#[test]
fn a_network_grant_opens_only_the_granted_hosts_to_programs() {
    let port = loopback_server();
    let script = format!(
        "import socket, urllib.request, urllib.error\n\
         def get(url):\n    try:\n        return str(urllib.request.urlopen(url, timeout=10).status)\n    except urllib.error.HTTPError as e:\n        return str(e.code) + ':' + e.read().decode()[:200].strip()\n    except Exception as e:\n        return type(e).__name__\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    print('direct=open')\nexcept OSError as e:\n    print('direct=closed')\n\
         print('seen=' + str(':%04X ' % {port} in open('/proc/net/tcp').read()))\n\
         print('loopback=' + get('http://127.0.0.1:{port}/metrics'))\n\
         print('metadata=' + get('http://169.254.169.254/latest/meta-data/'))\n"
    );
    let stage = |network: &str| {
        exec_stage(
            "python3",
            &format!("[\"-c\", {script:?}]"),
            "[]",
            &format!("{{ exec = [\"python3\"], network = [{network:?}] }}"),
        )
    };
    let p = Project::new();
    p.pipeline(&stage("example.com"));
    let run = p.run_json(&[]);
    assert_eq!(run.finished("s")["status"], "succeeded", "{run:?}");
    assert_eq!(logged(&run, "direct"), "closed", "{run:?}");
    assert_eq!(logged(&run, "seen"), "False", "{run:?}");
    let loopback = logged(&run, "loopback");
    assert!(
        loopback.starts_with(&format!(
            "403:weir: network: connection to `127.0.0.1:{port}` refused: stage `s` (tenant `default`) is not granted it"
        )),
        "{loopback}"
    );
    assert!(logged(&run, "metadata").starts_with("403:"), "{run:?}");
    assert!(
        run.log_messages().iter().any(
            |l| l.contains(&format!("connection to `127.0.0.1:{port}` refused"))
                && l.ends_with("(asked by `python3` through the proxy)")
        ),
        "the refusal is logged: {run:?}"
    );

    p.pipeline(&stage(&format!("127.0.0.1:{port}")));
    let run = p.run_json(&[]);
    assert_eq!(logged(&run, "direct"), "closed", "{run:?}");
    assert_eq!(logged(&run, "loopback"), "200", "{run:?}");
    assert!(logged(&run, "metadata").starts_with("403:"), "{run:?}");
}

/// A program given a secret writes it into files that stages keep as
/// artifacts: plainly, and base64-encoded inside a header line. Neither is
/// kept (the stage fails naming the secret); a clean file is, and so is
/// the plain one by a stage that may publish the secret.
#[test]
fn a_secret_written_to_an_artifact_is_not_kept() {
    const SECRET: &str = "hunter2-artifact-s3cret";
    let forge = crate::support::plugin("forge", crate::guest_paths::FORGE);
    let keep = |stage: &str, file: &str, allow: &str| {
        format!(
            "\n[stages.{stage}]\nuses = \"forge\"\nneeds = [\"make\"]\nwith = {{ mode = \"artifacts\", keep = [[\"{file}\", \"{file}\"]] }}\n{allow}"
        )
    };
    let p = Project::new();
    let script = r#"printf 'token=%s\n' "$TOKEN" > plain.txt; printf 'Authorization: Basic %s\n' "$(printf 'ci:%s' "$TOKEN" | base64 -w0)" > header.txt; echo clean > clean.txt"#;
    p.pipeline(&format!(
        "[pipeline]\nname = \"leak\"\n{forge}\n[environments.prod]\nsecrets = [\"TOKEN\"]\n[stages.make]\nenvironment = \"prod\"\nrun = {script:?}\n{}{}{}{}",
        keep("plain", "plain.txt", ""),
        keep("header", "header.txt", ""),
        keep("clean", "clean.txt", ""),
        keep("release", "plain.txt", "allow = { publish = [\"TOKEN\"] }\n"),
    ));
    let run: Run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .output()
        .expect("weir runs")
        .into();
    assert_eq!(run.finished("make")["status"], "succeeded", "{run:?}");
    for (stage, file) in [("plain", "plain.txt"), ("header", "header.txt")] {
        let s = run.finished(stage);
        assert_eq!(s["status"], "failed", "{s}");
        assert_eq!(
            s["error"],
            format!(
                "artifact `{file}` at `{file}` holds the value of secret `TOKEN` (as it is, URL- or base64-encoded), and secret values are never kept; if this artifact must carry it, add allow = {{ publish = [\"TOKEN\"] }} to the stage"
            ),
            "{s}"
        );
    }
    assert_eq!(run.finished("clean")["status"], "succeeded", "{run:?}");
    assert_eq!(run.finished("release")["status"], "succeeded", "{run:?}");
    let run_id = run.of("run_started")[0]["run"]
        .as_str()
        .expect("run id")
        .to_string();
    let stored = crate::escapes::files_under(&p.path().join(".weir/runs").join(&run_id).join("artifacts"));
    let names: Vec<String> = stored
        .iter()
        .map(|f| f.strip_prefix(p.path()).unwrap_or(f).display().to_string())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the clean file and the published one: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("release/plain.txt")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("header")), "{names:?}");
}

/// A deployed service that probes its own boundary: answers `/healthz`
/// with ok and `/probe` with one `key=value` line per attempt.
const PROBE_SERVICE: &str = r#"#!/usr/bin/env python3
import http.server, os, socket
def read(path):
    try:
        open(path, "rb").read(1)
        return "read"
    except FileNotFoundError:
        return "absent"
    except PermissionError:
        return "denied"
    except OSError as e:
        return type(e).__name__
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "written"
    except OSError as e:
        return type(e).__name__
def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "open"
    except OSError:
        return "closed"
def probe():
    return {
        "uid": str(os.getuid()),
        "shadow": read("/etc/shadow"),
        "token": read(os.environ["TOKEN_FILE"]),
        "other": read(os.environ["OTHER_FILE"]),
        "project": str(os.path.exists(os.environ["PROJECT"])),
        "loopback": connect(int(os.environ["HOST_PORT"])),
        "data": write(os.path.join(os.environ["DATA_DIR"], "probe")),
        "release": write("probe"),
        "tmp": write("/tmp/probe"),
        "cwd": os.getcwd(),
    }
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        text = "ok" if self.path == "/healthz" else "".join(k + "=" + v + "\n" for k, v in probe().items())
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// What `runtime = true` hands a service: the attack of the program-
/// boundary issue, a deployed instance that tries the host. It runs as
/// nobody, in the release's directory (read-only), writes only its data
/// dir and `/tmp`, and cannot read `/etc/shadow`, the target's token,
/// another tenant's file or the project, nor connect to a listener on the
/// host's loopback; the router still reaches it.
#[test]
fn a_deployed_instance_is_sandboxed_as_nobody_with_only_its_release_and_data() {
    let port = loopback_server();
    let d = Deployment::new();
    let p = &d.p;
    p.write("ws/svc.py", PROBE_SERVICE);
    let other = p.write("other-tenant/secret.txt", "theirs");
    let token = p.path().join(".weir/target/token");
    let pipeline = format!(
        r#"[pipeline]
name = "probe"

[stages.deploy]
uses = "deploy"
timeout = "2m"
with = {{ service = "web", artifact = "svc.py", version = "v1", readiness-path = "/healthz", env = {{ TOKEN_FILE = {token:?}, OTHER_FILE = {other:?}, PROJECT = {project:?}, HOST_PORT = "{port}" }} }}
strategy = {{ uses = "recreate", with = {{ verify = "500ms" }} }}
allow = {{ runtime = true }}
"#,
        token = token.display().to_string(),
        other = other.display().to_string(),
        project = p.path().display().to_string(),
    );
    p.pipeline(&pipeline);
    let run = d.run();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        token.exists(),
        "the target keeps its token at {}",
        token.display()
    );

    let address = d.address();
    let (code, body) = get(&address, "/probe").expect("the router reaches the instance");
    assert_eq!(code, 200, "{body}");
    let seen: std::collections::BTreeMap<&str, &str> =
        body.lines().filter_map(|l| l.split_once('=')).collect();
    let expect = [
        ("uid", "65534"),
        ("cwd", "/release"),
        ("shadow", "absent"),
        ("token", "absent"),
        ("other", "absent"),
        ("project", "False"),
        ("loopback", "closed"),
        ("data", "written"),
        ("release", "OSError"),
        ("tmp", "written"),
    ];
    for (key, want) in expect {
        assert_eq!(seen.get(key).copied(), Some(want), "{key}: {body}");
    }
}

/// An instance that takes 2 GiB of shared memory while it starts is
/// killed by its memory cgroup, and the deploy fails naming the limit.
#[test]
fn a_deployed_instance_is_held_to_its_memory_limit_by_name() {
    let d = Deployment::new();
    let p = &d.p;
    p.write(
        "ws/hog.py",
        "#!/usr/bin/env python3\nimport mmap\nm = mmap.mmap(-1, 2 << 30)\nfor i in range(0, 2 << 30, 4096):\n    m[i] = 1\n",
    );
    p.pipeline(
        r#"[pipeline]
name = "hog"

[stages.deploy]
uses = "deploy"
timeout = "2m"
with = { service = "hog", artifact = "hog.py", version = "v1", readiness-path = "/healthz" }
strategy = { uses = "recreate", with = { verify = "500ms" } }
allow = { runtime = true }
"#,
    );
    let run = d.run();
    assert_ne!(run.code, 0, "{run:?}");
    let error = run.finished("deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("used more than 1024 MiB of memory") && error.contains("(limit `instance-memory`)"),
        "{error}\n{run:?}"
    );
}
