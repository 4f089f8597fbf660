//! Tenants: policies that bound what pipelines grant, a workspace per run
//! under the tenant's root, limits from the policy, secrets held by handle
//! and kept inside their tenant, and one tenant's hostility never reaching
//! another's run.

use std::path::Path;

use crate::guest_paths as g;
use crate::support::{Project, Run, plugin};

const SECRET: &str = "s3cret-Value-42";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A project with `tenants.toml` beside its pipeline.
fn with_tenants(tenants: &str, pipeline: &str) -> Project {
    let p = Project::new();
    p.write("tenants.toml", tenants);
    p.pipeline(pipeline);
    p
}

fn run_as(p: &Project, tenant: &str) -> Run {
    p.run_json(&["--tenants", "tenants.toml", "--tenant", tenant])
}

fn exfiltrate_pipeline(allow: &str) -> String {
    format!(
        "[pipeline]\nname = \"leak\"\n{}\n[stages.s]\nuses = \"exfiltrate\"\nwith = {{ secret = \"TOKEN\" }}\n{allow}\n",
        plugin("exfiltrate", g::EXFILTRATE)
    )
}

/// Every way the guest tries to get a secret's value out ends in `***`;
/// the program it hands the handle to gets the real value.
#[test]
pub fn exfiltrate() {
    let p = Project::new();
    p.pipeline(&exfiltrate_pipeline(
        "allow = { secrets = [\"TOKEN\"], exec = [\"sh\"], env = [\"TOKEN\"] }",
    ));
    let run: Run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .output()
        .expect("weir runs")
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["name"], "TOKEN");
    let placeholder = out["placeholder"].as_str().expect("placeholder");
    assert!(
        placeholder.starts_with("weir-secret:") && placeholder.len() > 40,
        "{placeholder}"
    );
    // The program saw the value (its digest matches) ...
    assert_eq!(out["sha256"], sha256_hex(SECRET));
    // ... but printed in the clear, in base64, or written to a file and
    // read back, it reaches no output.
    assert_eq!(out["echoed"], "***");
    assert_eq!(out["file"], "***");
    let b64 = out["base64"].as_str().expect("base64");
    assert!(b64.contains("***"), "{b64}");
    for form in ["czNjcmV0LVZhbHVlLTQy", SECRET] {
        assert!(!run.stdout.contains(form), "`{form}` leaked into the events");
        assert!(!run.stderr.contains(form), "`{form}` leaked into stderr");
    }
    let history = std::fs::read(p.path().join(".weir/weir.db")).expect("history");
    assert!(
        !history.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the value is in the run history"
    );
}

#[test]
fn a_secret_not_granted_cannot_be_opened() {
    let p = Project::new();
    p.pipeline(&exfiltrate_pipeline("allow = { exec = [\"sh\"] }"));
    let run: Run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .output()
        .expect("weir runs")
        .into();
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "denied: weir:plugin/secrets#open `TOKEN` refused: the stage grants none of it; grant it with allow = { secrets = [\"NAME\"] }, so it is not linked into stage `s` (tenant `default`)"
    );
    assert!(
        run.log_messages()
            .iter()
            .any(|m| m.contains("weir:plugin/secrets#open `TOKEN` refused")),
        "the refusal is in the stage log too: {run:?}"
    );

    // Granted another secret, `secrets` is linked and checks the name.
    p.pipeline(&exfiltrate_pipeline(
        "allow = { exec = [\"sh\"], secrets = [\"OTHER\"] }",
    ));
    let run: Run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .env("WEIR_SECRET_OTHER", "other")
        .output()
        .expect("weir runs")
        .into();
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "denied: secrets:open `TOKEN` refused: stage `s` (tenant `default`) is not granted secret `TOKEN`; add it to the stage's allow = { secrets = [...] } (within the tenant's policy)"
    );
}

#[test]
fn a_tenant_cannot_reach_another_tenants_secret_or_root() {
    let p = with_tenants(
        r#"
[tenants.acme]
root = "acme"
allow = { exec = ["sh"], secrets = ["TOKEN"] }
secrets = { file = "acme-secrets.toml" }

[tenants.globex]
root = "globex"
allow = { exec = ["sh"], secrets = ["TOKEN"] }
secrets = { file = "globex-secrets.toml" }
"#,
        &exfiltrate_pipeline("allow = { secrets = [\"TOKEN\"], exec = [\"sh\"], env = [\"TOKEN\"] }"),
    );
    p.write("acme-secrets.toml", "OTHER = \"x\"\n");
    p.write("globex-secrets.toml", format!("TOKEN = \"{SECRET}\"\n"));
    let run = run_as(&p, "acme");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.finished("s")["error"],
        "failed: secret `TOKEN` is not in the secret source of tenant `acme`: add TOKEN = \"...\" to acme-secrets.toml"
    );
    // The same pipeline as globex gets globex's secret.
    let run = run_as(&p, "globex");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.finished("s")["outputs"]["sha256"], sha256_hex(SECRET));

    // Reading globex's root from acme's pipeline is refused before anything runs.
    std::fs::create_dir_all(p.path().join("globex")).expect("globex root");
    p.pipeline("[pipeline]\nname = \"peek\"\n[stages.s]\nrun = \"ls\"\nallow = { read = [\"globex\"] }\n");
    let run = run_as(&p, "acme");
    assert_eq!(run.code, 2, "{run:?}");
    let globex = p.path().join("globex").canonicalize().expect("globex root");
    assert!(
        run.stderr.contains(&format!(
            "stage `s` is granted `allow.read = [\"{}\"]`, which tenant `acme` (tenants.toml) does not allow",
            globex.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn grants_beyond_the_tenant_are_refused_at_validation_by_name() {
    let p = with_tenants(
        "[tenants.acme]\nallow = { exec = [\"cargo\"], network = [\"*.crates.io\"] }\nlimits = { timeout = \"5m\" }\n",
        r#"[pipeline]
name = "greedy"
[stages.build]
uses = "run"
timeout = "1h"
allow = { exec = ["cargo", "curl"], network = ["static.crates.io", "evil.example"], secrets = ["AWS_KEY"], runtime = true }
"#,
    );
    for args in [
        vec![
            "validate",
            "pipeline.toml",
            "--tenants",
            "tenants.toml",
            "--tenant",
            "acme",
        ],
        vec![
            "run",
            "pipeline.toml",
            "--tenants",
            "tenants.toml",
            "--tenant",
            "acme",
        ],
    ] {
        let run = p.weir(&args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr
                .contains("pipeline.toml asks for more than tenant `acme` allows (5 problems)"),
            "{}",
            run.stderr
        );
        for grant in [
            "stage `build` may run for 1h; tenant `acme` (tenants.toml) allows at most 5m per stage (limit `timeout`)",
            "stage `build` is granted `allow.exec = [\"curl\"]`, which tenant `acme` (tenants.toml) does not allow",
            "stage `build` is granted `allow.network = [\"evil.example\"]`",
            "stage `build` is granted `allow.secrets = [\"AWS_KEY\"]`",
            "stage `build` is granted `allow.runtime = true`",
        ] {
            assert!(
                run.stderr.contains(grant),
                "missing `{grant}` in:\n{}",
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("`allow.exec = [\"cargo\"]`"),
            "cargo is allowed"
        );
        assert!(
            !run.stderr.contains("`allow.network = [\"static.crates.io\"]`"),
            "*.crates.io allows it"
        );
    }
    assert!(!p.path().join(".weir/runs").exists(), "nothing ran");
}

#[test]
fn without_a_tenants_file_only_the_default_tenant_exists() {
    let p = Project::new();
    p.pipeline("[pipeline]\nname = \"x\"\n[stages.s]\nuses = \"noop\"\n");
    let run = p.weir(&["run", "pipeline.toml", "--tenant", "acme"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--tenant acme needs a tenants file, and none is configured"),
        "{}",
        run.stderr
    );
    p.write("tenants.toml", "[tenants.acme]\n");
    let run = p.weir(&["run", "pipeline.toml", "--tenants", "tenants.toml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("tenant `default` is not defined in tenants.toml"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("its tenants are `acme`; pass --tenant NAME"),
        "{}",
        run.stderr
    );
}

#[test]
fn each_run_gets_its_own_workspace_under_its_tenants_root() {
    let p = with_tenants(
        "[tenants.acme]\nroot = \"roots/acme\"\nallow = { exec = [\"sh\"] }\n",
        "[pipeline]\nname = \"ws\"\n[stages.s]\nrun = \"pwd; echo hi > mine.txt\"\n",
    );
    let first = run_as(&p, "acme");
    let second = run_as(&p, "acme");
    assert_eq!((first.code, second.code), (0, 0), "{first:?}\n{second:?}");
    let root = p
        .path()
        .join("roots/acme/runs")
        .canonicalize()
        .expect("acme root");
    let (a, b) = (first.workspace(), second.workspace());
    assert_ne!(a, b, "each run has its own workspace");
    for ws in [&a, &b] {
        assert!(
            ws.starts_with(&root),
            "{} is not under {}",
            ws.display(),
            root.display()
        );
        assert!(ws.join("mine.txt").is_file());
    }
    // A workspace outside the root is refused.
    let outside = p.path().join("elsewhere");
    let run = p.weir(&[
        "run",
        "pipeline.toml",
        "--tenants",
        "tenants.toml",
        "--tenant",
        "acme",
        "--workspace",
        outside.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("is outside the root of tenant `acme`"),
        "{}",
        run.stderr
    );
}

fn one_guest(name: &str, path: &str, extra: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n{}\n[stages.s]\nuses = \"{name}\"\n{extra}\n",
        plugin(name, path)
    )
}

#[test]
fn the_tenants_memory_and_cpu_limits_stop_plugins_by_name() {
    let p = with_tenants(
        "[tenants.small]\nlimits = { memory = \"32MiB\", fuel = 50_000_000 }\n",
        &one_guest("hog", g::HOG, ""),
    );
    let run = run_as(&p, "small");
    assert_eq!(run.code, 1, "{run:?}");
    let error = run.finished("s")["error"].as_str().expect("error").to_string();
    assert!(
        error.starts_with("memory limit hit") && error.contains("the limit is 32 MiB (limit `memory`)"),
        "{error}"
    );
    // A loop with a one-hour timeout stops at its CPU budget instead.
    p.pipeline(&one_guest("spin", g::SPIN, "timeout = \"1h\""));
    let run = run_as(&p, "small");
    assert_eq!(run.code, 1, "{run:?}");
    let done = run.finished("s");
    assert_eq!(done["failure"], "limit");
    assert_eq!(
        done["error"],
        "CPU limit hit: the plugin executed its whole budget of 50000000 fuel (wasm instructions) (limit `fuel`); stage `s` was stopped"
    );
}

#[test]
fn a_tenants_max_runs_queues_its_next_run() {
    let p = with_tenants(
        "[tenants.acme]\nmax-runs = 1\nallow = { exec = [\"sh\"] }\n",
        "[pipeline]\nname = \"slow\"\n[stages.s]\nrun = \"sleep 2\"\n",
    );
    let args = [
        "run",
        "pipeline.toml",
        "--json",
        "--tenants",
        "tenants.toml",
        "--tenant",
        "acme",
    ];
    let first = p
        .command(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("first run");
    crate::support::nap(std::time::Duration::from_millis(700));
    let second = p.weir(&args);
    let mut first = first;
    assert!(first.wait().expect("first run ends").success());
    assert_eq!(second.code, 0, "{second:?}");
    let waiting = second.of("run_waiting");
    assert_eq!(waiting.len(), 1, "{second:?}");
    let message = waiting[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("tenant `acme` runs at most 1 run(s) at once (limit `max-runs`): waiting for concurrency group `tenant/runs`, held by run "),
        "{message}"
    );
}

/// Tenant A floods, spins and allocates while tenant B runs a normal
/// pipeline: B succeeds with the same results as when it runs alone.
#[test]
fn a_hostile_tenant_does_not_reach_another_tenants_run() {
    let p = Project::new();
    p.write(
        "tenants.toml",
        "[tenants.hostile]\nroot = \"hostile\"\nlimits = { memory = \"64MiB\", timeout = \"20s\" }\n\n[tenants.calm]\nroot = \"calm\"\nallow = { exec = [\"sh\"] }\n",
    );
    p.write(
        "hostile.toml",
        format!(
            "[pipeline]\nname = \"hostile\"\n{}{}{}\n[stages.spin]\nuses = \"spin\"\ntimeout = \"4s\"\n[stages.hog]\nuses = \"hog\"\n[stages.flood]\nuses = \"flood\"\nwith = {{ mode = \"lines\" }}\n",
            plugin("spin", g::SPIN),
            plugin("hog", g::HOG),
            plugin("flood", g::FLOOD)
        ),
    );
    p.write(
        "calm.toml",
        "[pipeline]\nname = \"calm\"\n[stages.write]\nrun = \"echo calm > calm.txt && sha256sum calm.txt\"\n[stages.check]\nuses = \"checksum\"\ncache = false\nneeds = [\"write\"]\nwith = { paths = [\"calm.txt\"] }\n",
    );
    let calm = |p: &Project| -> Run {
        p.weir(&[
            "run",
            "calm.toml",
            "--json",
            "--tenants",
            "tenants.toml",
            "--tenant",
            "calm",
        ])
    };
    let alone = calm(&p);
    assert_eq!(alone.code, 0, "{alone:?}");
    let hostile = p
        .command(&[
            "run",
            "hostile.toml",
            "--json",
            "--tenants",
            "tenants.toml",
            "--tenant",
            "hostile",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("hostile run");
    crate::support::nap(std::time::Duration::from_millis(300));
    let together = calm(&p);
    let hostile = hostile.wait_with_output().expect("hostile run ends");
    assert_eq!(
        hostile.status.code(),
        Some(1),
        "the hostile run fails on its own limits"
    );
    assert_eq!(together.code, 0, "{together:?}");
    for stage in ["write", "check"] {
        let (a, b) = (alone.finished(stage), together.finished(stage));
        assert_eq!(a["status"], b["status"], "{stage}");
        assert_eq!(a["outputs"], b["outputs"], "{stage}: results differ under load");
    }
    assert!(!Path::new(&together.workspace()).starts_with(p.path().join("hostile")));
}

#[test]
fn a_tenants_max_stages_holds_its_other_stages_back() {
    let p = with_tenants(
        "[tenants.acme]\nmax-stages = 1\nallow = { exec = [\"sh\"] }\n",
        "[pipeline]\nname = \"two\"\n[stages.a]\nrun = \"sleep 1\"\n[stages.b]\nrun = \"sleep 1\"\n",
    );
    let run = run_as(&p, "acme");
    assert_eq!(run.code, 0, "{run:?}");
    let waiting = run.of("stage_waiting");
    assert_eq!(waiting.len(), 1, "{run:?}");
    let message = waiting[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "tenant `acme` runs at most 1 stage(s) at once (limit `max-stages`): waiting for concurrency group `tenant/stages`, held by stage `"
        ) && message.ends_with("` of this run"),
        "{message}"
    );
}

/// A memory hog run by a stage stays inside the tenant's program memory
/// limit (RLIMIT_DATA per process).
#[test]
fn a_tenants_program_memory_limit_holds_memory_hogs() {
    let p = with_tenants(
        "[tenants.small]\nallow = { exec = [\"sh\", \"python3\"] }\nlimits = { program-memory = \"64MiB\" }\n",
        "[pipeline]\nname = \"hog\"\n[stages.hog]\nrun = \"python3 -c 'x = bytearray(512 << 20)' || echo refused\"\n",
    );
    let run = run_as(&p, "small");
    assert_eq!(run.code, 0, "{run:?}");
    let logs = run.log_messages();
    assert!(logs.iter().any(|l| l.contains("MemoryError")), "{logs:?}");
    assert!(logs.iter().any(|l| l == "refused"), "{logs:?}");
}

/// Live processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// Fork bombs in programs stay inside the tenant's `limits.processes` (a
/// pids cgroup per program, which holds for root too), and nothing they
/// started outlives the stage.
#[test]
fn a_tenants_process_limit_holds_fork_bombs_and_leaves_no_orphans() {
    let forker = format!("weir-forker-{}", std::process::id());
    let bomb = format!("weir-bomb-{}", std::process::id());
    // The forker forks until it is refused; every child leaves the
    // process group (setsid), closes its output and sleeps, orphaned when
    // the forker exits. The bomb is the classic one, ended only by the
    // stage's timeout. Both run outside bubblewrap, whose PID namespace
    // would otherwise end them with the program: here only the cgroup
    // holds them.
    let pipeline = format!(
        "[pipeline]\nname = \"bombs\"\n[stages.forker]\nsandbox = \"none\"\nrun = '''\npython3 - {forker} <<'EOF'\nimport os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        print('refused after', n, 'forks, errno', e.errno)\n        break\n    if pid == 0:\n        os.setsid()\n        for fd in (0, 1, 2):\n            os.close(fd)\n        time.sleep(600)\n        os._exit(0)\n    n += 1\nEOF\n'''\n[stages.bomb]\nneeds = [\"forker\"]\nsandbox = \"none\"\ntimeout = \"3s\"\nrun = \": {bomb}; b() {{ b | b & }}; b; sleep 1\"\n"
    );
    let p = with_tenants(
        "[tenants.small]\nallow = { exec = [\"sh\", \"python3\"] }\nlimits = { processes = 16 }\nsandbox = \"none\"\n",
        &pipeline,
    );
    let run = run_as(&p, "small");

    let logs = run.log_messages();
    let refused = logs
        .iter()
        .find_map(|l| l.strip_prefix("refused after "))
        .unwrap_or_else(|| panic!("the forker was refused: {logs:?}"));
    let forks: u32 = refused
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(forks < 16, "{forks} forks under a limit of 16");
    assert!(refused.ends_with("errno 11"), "EAGAIN: {refused}");
    for stage in ["forker", "bomb"] {
        assert!(
            run.of("stage_log").iter().any(|e| e["stage"] == stage
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("`sh` hit its limit of 16 processes at once: ")
                        && m.ends_with(" fork(s) refused (limit `processes`)"))),
            "stage `{stage}` reports the limit by name: {logs:?}"
        );
    }
    assert_eq!(run.finished("forker")["status"], "succeeded", "{run:?}");
    // Refused forks end dash's bomb on its own; either way the stage ends.
    run.finished("bomb");
    for marker in [&forker, &bomb] {
        assert_eq!(
            processes_with(marker),
            Vec::<String>::new(),
            "orphans of {marker}"
        );
    }
}

/// A plugin writing through WASI and a program writing with `head` both
/// stop at the tenant's disk limit, named, and the run goes on to report.
#[test]
fn a_tenants_disk_limit_stops_what_fills_the_workspace() {
    let tenants =
        "[tenants.small]\nallow = { exec = [\"sh\", \"head\", \"sleep\"] }\nlimits = { disk = \"32MiB\" }\n";
    let stages = [
        (
            "plugin",
            format!(
                "{}\n[stages.plugin]\nuses = \"forge\"\nwith = {{ mode = \"fill-disk\" }}\ntimeout = \"60s\"\n",
                plugin("forge", g::FORGE)
            ),
        ),
        (
            "program",
            "[stages.program]\nrun = \"head -c 400000000 /dev/zero > big.bin; sleep 30\"\ntimeout = \"60s\"\n".to_string(),
        ),
    ];
    for (stage, table) in stages {
        let p = with_tenants(tenants, &format!("[pipeline]\nname = \"fill\"\n{table}"));
        let run = run_as(&p, "small");
        assert_eq!(run.code, 1, "{run:?}");
        let done = run.finished(stage);
        assert_eq!(done["failure"], "limit", "{run:?}");
        let error = done["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("disk limit hit: the run's workspace takes ")
                && error.ends_with(&format!(
                    " on disk, the limit is 32 MiB (limit `disk`); stage `{stage}` was stopped"
                )),
            "{error}"
        );
    }
}

/// An environment's secrets are handles too: the plugin's own environment
/// holds a placeholder, while the programs of the stage get the value.
#[test]
fn an_environments_secrets_reach_plugins_as_placeholders_and_programs_as_values() {
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"env-secrets\"\n{}\n[environments.prod]\nsecrets = [\"TOKEN\"]\n[stages.plugin]\nuses = \"record\"\nenvironment = \"prod\"\n[stages.program]\nenvironment = \"prod\"\nrun = \"printf %s \\\"$TOKEN\\\" | sha256sum\"\n",
        plugin("record", g::RECORD)
    ));
    let run: Run = p
        .command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .output()
        .expect("weir runs")
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    let env = run.finished("plugin")["outputs"]["env"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        env.split(',').any(|v| v.starts_with("TOKEN=weir-secret:")),
        "the plugin sees a placeholder, not the value (which would show as ***): {env}"
    );
    let digest = sha256_hex(SECRET);
    assert!(
        run.log_messages().iter().any(|m| m.starts_with(&digest)),
        "the program got the value: {run:?}"
    );
    assert!(!run.stdout.contains(SECRET), "the value never shows");
}
