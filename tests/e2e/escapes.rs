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
    // Bubblewrap hides what others may not read: the directory (0700),
    // the socket and the token. Opened to all, as by an operator's
    // mistake, the peer check still holds on its own.
    for (name, mode) in [("control.sock", 0o666), ("token", 0o644), ("", 0o755)] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    // ... and the directories above it (a temporary directory is 0700).
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");

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

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// A stage keeps `d/secret.txt` as an artifact, many times over, while a
/// program in another stage swaps the directory `d` with a symlink to a
/// host directory (`renameat2(RENAME_EXCHANGE)`, atomically, in a loop).
/// Whatever the timing, no stored artifact is ever the host's file: each
/// copy is read beneath the workspace without following a symlink.
#[test]
fn artifacts_are_never_copied_through_a_swapped_symlink() {
    let p = Project::new();
    let outside = p.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(outside.join("secret.txt"), "HOST-SECRET-42").expect("host file");
    std::fs::create_dir_all(p.path().join("ws/d")).expect("ws");
    std::fs::write(p.path().join("ws/d/secret.txt"), "decoy").expect("decoy");
    std::os::unix::fs::symlink(outside.canonicalize().expect("abs"), p.path().join("ws/l")).expect("link");
    p.write(
        "ws/race.py",
        "import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\nend = time.time() + 6\nn = 0\nwhile time.time() < end:\n    libc.renameat2(-100, b'd', -100, b'l', 2)\n    n += 1\nprint('swapped', n, 'times')\n",
    );
    let keep: Vec<String> = (0..400)
        .map(|i| format!("[\"a{i}\", \"d/secret.txt\"]"))
        .collect();
    p.pipeline(&format!(
        "[pipeline]\nname = \"race\"\n{}\n[stages.racer]\nrun = \"python3 race.py\"\nallow = {{ exec = [\"sh\", \"python3\"] }}\n\n[stages.keep]\nuses = \"forge\"\nretries = 4\nwith = {{ mode = \"artifacts\", hold-ms = 300, keep = [{}] }}\n",
        crate::support::plugin("forge", crate::guest_paths::FORGE),
        keep.join(", ")
    ));
    let run = p.run_json(&["--workspace", "ws", "--jobs", "2"]);
    assert!(
        run.log_messages().iter().any(|l| l.starts_with("swapped ")),
        "the racer ran: {run:?}"
    );
    let attempts = run.of("stage_finished");
    assert!(!attempts.is_empty(), "{run:?}");
    for file in files_under(&p.path().join(".weir/runs")) {
        let text = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("HOST-SECRET-42"),
            "{} holds the host's file",
            file.display()
        );
    }
    let done = run.finished("keep");
    for a in done["artifacts"].as_array().into_iter().flatten() {
        assert_eq!(a["size"], 5, "only the decoy is ever kept: {a}");
    }
    if done["status"] == "failed" {
        let error = done["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("cannot be read beneath the workspace") && error.contains("without symlinks"),
            "{error}"
        );
    }
}

/// A copy keeps its source's restrictions, and a stage whose artifacts
/// cannot all be kept keeps none of them.
#[test]
fn artifacts_keep_their_modes_and_a_failed_stage_keeps_none() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    p.write("ws/private.key", "k");
    std::fs::set_permissions(
        p.path().join("ws/private.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    p.write("ws/public.txt", "p");
    let forge = crate::support::plugin("forge", crate::guest_paths::FORGE);
    p.pipeline(&format!(
        "[pipeline]\nname = \"modes\"\n{forge}\n[stages.keep]\nuses = \"forge\"\nwith = {{ mode = \"artifacts\", keep = [[\"key\", \"private.key\"], [\"pub\", \"public.txt\"]] }}\n"
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stored = |name: &str| {
        let done = run.finished("keep");
        let a = done["artifacts"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["name"] == name).cloned())
            .unwrap_or_else(|| panic!("artifact {name}: {done}"));
        std::path::PathBuf::from(a["stored"].as_str().expect("stored"))
    };
    let mode = |path: &Path| std::fs::metadata(path).expect("stored").permissions().mode() & 0o777;
    assert_eq!(mode(&stored("key")), 0o600);
    assert_eq!(mode(&stored("pub")), 0o644);
    let dir = stored("key").parent().expect("stage dir").to_path_buf();
    assert_eq!(mode(&dir), 0o700, "the store is weir's alone");

    p.pipeline(&format!(
        "[pipeline]\nname = \"modes\"\n{forge}\n[stages.keep]\nuses = \"forge\"\nwith = {{ mode = \"artifacts\", keep = [[\"pub\", \"public.txt\"], [\"gone\", \"missing.txt\"]] }}\n"
    ));
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("keep");
    assert!(
        done["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("artifact `gone` at `missing.txt` cannot be read beneath the workspace"),
        "{done}"
    );
    let run_id = run.of("run_started")[0]["run"]
        .as_str()
        .expect("run id")
        .to_string();
    let kept = files_under(&p.path().join(".weir/runs").join(&run_id).join("artifacts"));
    assert!(kept.is_empty(), "the failed stage's copies are gone: {kept:?}");
}

/// One 40 MiB file and a hundred hard links to it are stored once; what
/// a run stores counts against its tenant's disk limit, and past it the
/// stage fails by that limit's name, keeping nothing.
#[test]
fn artifacts_count_against_the_tenants_disk_limit() {
    let forge = crate::support::plugin("forge", crate::guest_paths::FORGE);
    let links: Vec<String> = std::iter::once("[\"big\", \"big\"]".to_string())
        .chain((1..=100).map(|i| format!("[\"l{i}\", \"l{i}\"]")))
        .collect();
    let keep = |stage: &str, needs: &str, list: &str| {
        format!(
            "\n[stages.{stage}]\nuses = \"forge\"\nneeds = [\"{needs}\"]\nwith = {{ mode = \"artifacts\", keep = [{list}] }}\n"
        )
    };
    let pipeline = format!(
        "[pipeline]\nname = \"links\"\n{forge}\n[stages.make]\nrun = \"head -c 41943040 /dev/zero > big && for i in $(seq 100); do ln big l$i; done\"\n{}\n[stages.touch1]\nneeds = [\"keep1\"]\nrun = \"touch big\"\n{}\n[stages.touch2]\nneeds = [\"keep2\"]\nrun = \"touch big\"\n{}",
        keep("keep1", "make", &links.join(", ")),
        keep("keep2", "touch1", "[\"big\", \"big\"]"),
        keep("keep3", "touch2", "[\"big\", \"big\"], [\"l1\", \"l1\"]"),
    );
    let p = with_tenants(
        "[tenants.small]\nallow = { exec = [\"sh\"] }\nlimits = { disk = \"100MiB\" }\n",
        &pipeline,
    );
    let run = as_tenant(&p, "small", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let first = run.finished("keep1");
    assert_eq!(first["status"], "succeeded", "{first}");
    let kept = first["artifacts"].as_array().expect("artifacts");
    assert_eq!(kept.len(), 101);
    assert!(
        kept.iter().all(|a| a["stored"] == kept[0]["stored"]),
        "a hundred hard links are one stored file"
    );
    assert_eq!(run.finished("keep2")["status"], "succeeded");
    let third = run.finished("keep3");
    assert_eq!(third["failure"], "limit", "{third}");
    assert_eq!(
        third["error"],
        "artifact `big` at `big` is 40 MiB, and the run's artifacts already take 80 MiB: the limit is 100 MiB (limit `disk`)"
    );
    let run_id = run.of("run_started")[0]["run"]
        .as_str()
        .expect("run id")
        .to_string();
    let stored: u64 = files_under(&p.path().join(".weir/runs").join(&run_id).join("artifacts"))
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert_eq!(stored, 80 << 20, "two copies, none for the failed stage");
}

/// Three stages that each hold thousands of open files cannot take all
/// of weir's descriptors: each Store's share is bounded by what the live
/// Stores leave, the stage that asks for more than its share is stopped
/// by the `descriptors` limit, and a later stage still starts its
/// program.
#[test]
fn stages_cannot_take_all_of_weirs_file_descriptors() {
    let forge = crate::support::plugin("forge", crate::guest_paths::FORGE);
    let hold = |name: &str| {
        format!(
            "\n[stages.{name}]\nuses = \"forge\"\nwith = {{ mode = \"hold-handles\", count = 7000, hold-ms = 5000 }}\n"
        )
    };
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"fds\"\n{forge}{}{}{}\n[stages.wait]\nuses = \"forge\"\nwith = {{ mode = \"sleep\", hold-ms = 2500 }}\n\n[stages.later]\nneeds = [\"wait\"]\nrun = \"echo started\"\n",
        hold("h1"),
        hold("h2"),
        hold("h3")
    ));
    let run = p.run_json(&["--jobs", "5"]);
    let later = run.finished("later");
    assert_eq!(later["status"], "succeeded", "{run:?}");
    assert!(run.log_messages().iter().any(|l| l == "started"), "{run:?}");
    let mut stopped = 0;
    for h in ["h1", "h2", "h3"] {
        let done = run.finished(h);
        if done["status"] == "succeeded" {
            assert_eq!(done["outputs"]["held"], "7000", "{done}");
        } else {
            let error = done["error"].as_str().unwrap_or_default();
            assert_eq!(done["failure"], "limit", "{done}");
            assert!(
                error.starts_with("descriptor limit hit: the plugin held more than ")
                    && error.contains("(limit `descriptors`)"),
                "{error}"
            );
            stopped += 1;
        }
    }
    assert!(
        stopped >= 1,
        "21,000 descriptors do not fit beside weir's own: {run:?}"
    );
}

/// Inside bubblewrap, as the user weir runs as (root here, for whom
/// root's files are the program's own), a walk of everything the program
/// can see finds no file the host keeps from other users: no shadow
/// files or their backups, no private keys, nothing 0600 or 0640.
#[test]
fn the_sandbox_shows_no_file_the_host_keeps_private() {
    let p = Project::new();
    p.write(
        "ws/walk.py",
        r#"import os, stat
skip = {"/proc", "/dev", "/sys", "/tmp", os.getcwd()}
found = 0
for top, dirs, files in os.walk("/", onerror=lambda e: print("UNREADABLE", e.filename)):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
    for name in dirs + files:
        path = os.path.join(top, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            continue
        if stat.S_ISDIR(st.st_mode):
            private = st.st_mode & 0o005 != 0o005
        else:
            private = st.st_mode & 0o004 == 0
        if private:
            print("PRIVATE", path, oct(st.st_mode & 0o777))
        found += 1
for leak in ["/etc/shadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/sudoers"]:
    try:
        print("READ", leak, len(open(leak, "rb").read()))
    except OSError as e:
        print("NO", leak, e.errno)
print("WALKED", found)
"#,
    );
    p.pipeline(
        "[pipeline]\nname = \"walk\"\n\n[stages.s]\nrun = \"python3 walk.py\"\nallow = { exec = [\"sh\", \"python3\"] }\nsandbox = \"bubblewrap\"\ntimeout = \"5m\"\n",
    );
    let run = p.run_json(&["--workspace", "ws"]);
    assert_eq!(run.code, 0, "{run:?}");
    let logs = run.log_messages();
    let walked: u64 = logs
        .iter()
        .find_map(|l| l.strip_prefix("WALKED "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the walk finished: {logs:?}"));
    assert!(walked > 1000, "the system directories are there: {walked}");
    let private: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with("PRIVATE") || l.starts_with("UNREADABLE"))
        .collect();
    assert!(
        private.is_empty(),
        "the sandbox shows what the host keeps private: {private:?}"
    );
    // What the host has of these is not there, or is empty.
    for l in logs.iter().filter(|l| l.starts_with("READ ")) {
        assert!(l.ends_with(" 0"), "{l}");
    }
    // The programs still work: the walk ran python3 from /usr.
}
