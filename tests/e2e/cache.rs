//! The stage cache: an unchanged stage is served from an earlier run, a
//! changed input misses (and says what changed), processes opt in,
//! artifacts come back, and a stage whose writes could not be restored is
//! never cached.

use crate::guest_paths as g;
use crate::support::{Project, Run, plugin};

fn id(run: &Run) -> String {
    run.events()[0]["run"].as_str().expect("run id").to_string()
}

fn cache_event(run: &Run, stage: &str) -> serde_json::Value {
    run.of("stage_cache")
        .into_iter()
        .find(|e| e["stage"] == stage)
        .unwrap_or_else(|| panic!("no stage_cache for `{stage}`: {run:?}"))
}

fn started(run: &Run, stage: &str) -> bool {
    run.of("stage_started").iter().any(|e| e["stage"] == stage)
}

#[test]
fn an_unchanged_stage_is_served_from_cache_and_a_changed_input_misses() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"cached\"\n\n[stages.sum]\nuses = \"checksum\"\nwith = { paths = [\"input.txt\"] }\ninputs = [\"input.txt\"]\n",
    );
    p.write("ws/input.txt", "one");
    let first = p.run_json(&["--workspace", "ws"]);
    assert_eq!(first.code, 0, "{first:?}");
    let miss = cache_event(&first, "sum");
    assert_eq!(miss["status"], "miss");
    assert_eq!(miss["reasons"][0], "no entry for this stage yet");
    assert!(started(&first, "sum"));
    let key = miss["key"].as_str().expect("a key").to_string();
    assert_eq!(key.len(), 64);

    // Same plugin, config, upstream outputs and input files: a hit.
    let second = p.run_json(&["--workspace", "ws"]);
    assert_eq!(second.code, 0, "{second:?}");
    let hit = cache_event(&second, "sum");
    assert_eq!(hit["status"], "hit", "{hit}");
    assert_eq!(hit["key"], key.as_str());
    assert!(!started(&second, "sum"), "a hit does not run the plugin");
    let done = second.finished("sum");
    assert_eq!(done["reused"]["from"], "cache");
    assert_eq!(done["reused"]["run"], id(&first).as_str());
    assert_eq!(done["outputs"], first.finished("sum")["outputs"]);
    let shown = p.weir(&["runs", "show", &id(&second)]);
    assert!(shown.stdout.contains("cached"), "{shown:?}");

    // A file the stage did not declare does not matter...
    p.write("ws/other.txt", "noise");
    let third = p.run_json(&["--workspace", "ws"]);
    assert_eq!(cache_event(&third, "sum")["status"], "hit");

    // ...a declared one does, and the miss says which.
    p.write("ws/input.txt", "two");
    let fourth = p.run_json(&["--workspace", "ws"]);
    assert_eq!(fourth.code, 0, "{fourth:?}");
    let miss = cache_event(&fourth, "sum");
    assert_eq!(miss["status"], "miss");
    assert_ne!(miss["key"], key.as_str());
    assert!(
        miss["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r == "file `input.txt` changed"),
        "{miss}"
    );
    assert!(started(&fourth, "sum"));
    assert_ne!(
        fourth.finished("sum")["outputs"]["digest"],
        first.finished("sum")["outputs"]["digest"]
    );
}

#[test]
fn explain_cache_shows_keys_and_why_stages_are_not_cached() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"explained\"\n
[stages.shell]\nrun = \"echo hi\"\n
[stages.opted]\nrun = \"echo opted\"\ncache = true\n
[stages.never]\nuses = \"noop\"\ncache = false\n",
    );
    let first = p.weir(&["run", "pipeline.toml", "--explain-cache"]);
    assert_eq!(first.code, 0, "{first:?}");
    let out = &first.stdout;
    assert!(out.contains("Stage cache"), "{out}");
    assert!(
        out.contains("plugin `run` declares `process`, so its result may depend on more than its inputs; `cache = true` opts the stage in"),
        "{out}"
    );
    assert!(out.contains("the stage says `cache = false`"), "{out}");
    assert!(out.contains("key ") && out.contains("files "), "{out}");

    let second = p.run_json(&[]);
    assert_eq!(cache_event(&second, "shell")["status"], "off");
    assert_eq!(cache_event(&second, "never")["status"], "off");
    let opted = cache_event(&second, "opted");
    assert_eq!(
        opted["status"], "hit",
        "cache = true opts a process stage in: {opted}"
    );
    for part in [
        "plugin", "config", "env", "upstream", "files", "grants", "gate", "tenant",
    ] {
        assert!(opted["parts"][part].is_string(), "part `{part}` in {opted}");
    }
    // Entries never cross tenants.
    p.write("tenants.toml", "[tenants.other]\nallow = { exec = [\"sh\"] }\n");
    let other = p.run_json(&["--tenants", "tenants.toml", "--tenant", "other"]);
    assert_eq!(cache_event(&other, "opted")["status"], "miss");
}

#[test]
fn artifacts_come_back_and_unrestorable_writes_are_not_cached() {
    let p = Project::new();
    p.pipeline(&format!(
        "[pipeline]\nname = \"files\"\n{}
[stages.sums]\nuses = \"checksum\"\nwith = {{ paths = [\"in/*\"], write = \"SUMS\" }}\ninputs = [\"in\"]\n
[stages.rec]\nuses = \"record\"\nneeds = [\"sums\"]\n",
        plugin("record", g::RECORD)
    ));
    p.write("ws/in/a", "a");
    let first = p.run_json(&["--workspace", "ws"]);
    assert_eq!(first.code, 0, "{first:?}");
    let written = std::fs::read_to_string(p.path().join("ws/SUMS")).expect("SUMS");
    // `record` writes trace.log and rec.out without returning them as
    // artifacts: a hit could not put them back, so it is not cached. (It
    // runs after `sums`: weir cannot tell which of two stages running at
    // once wrote a file, so neither would be cached.)
    assert!(
        first.of("stage_log").iter().any(|e| e["stage"] == "rec"
            && e["message"].as_str().is_some_and(
                |m| m.starts_with("not cached: 2 file(s) changed") && m.contains("rec.out, trace.log")
            )),
        "{first:?}"
    );

    std::fs::remove_file(p.path().join("ws/SUMS")).expect("rm");
    let second = p.run_json(&["--workspace", "ws"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(cache_event(&second, "sums")["status"], "hit");
    assert_eq!(cache_event(&second, "rec")["status"], "miss");
    assert!(started(&second, "rec"));
    // The artifact is back in the workspace and in this run's store.
    assert_eq!(
        std::fs::read_to_string(p.path().join("ws/SUMS")).expect("restored"),
        written
    );
    let kept = &second.finished("sums")["artifacts"][0];
    let stored = kept["stored"].as_str().expect("stored");
    assert!(
        stored.contains(&format!("/runs/{}/artifacts/sums/", id(&second))),
        "{stored}"
    );
    assert_eq!(std::fs::read_to_string(stored).expect("stored copy"), written);
    assert_eq!(kept["sha256"], first.finished("sums")["artifacts"][0]["sha256"]);

    // Pruning the run that produced an entry removes the entry with it.
    let pruned = p.weir(&["runs", "prune", "--keep", "0"]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    let third = p.run_json(&["--workspace", "ws"]);
    assert_eq!(cache_event(&third, "sums")["status"], "miss");
}

#[test]
fn a_hit_never_writes_through_a_symlink_planted_in_the_workspace() {
    let p = Project::new();
    p.pipeline(
        "[pipeline]\nname = \"planted\"\n\n[stages.sums]\nuses = \"checksum\"\nwith = { paths = [\"in/*\"], write = \"out/SUMS\" }\ninputs = [\"in\"]\n",
    );
    p.write("ws/in/a", "a");
    let first = p.run_json(&["--workspace", "ws"]);
    assert_eq!(first.code, 0, "{first:?}");
    // Something in the workspace swaps `out/` for a link to a host directory.
    let outside = p.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::remove_dir_all(p.path().join("ws/out")).expect("rm");
    std::os::unix::fs::symlink(&outside, p.path().join("ws/out")).expect("symlink");
    let second = p.run_json(&["--workspace", "ws"]);
    let check = cache_event(&second, "sums");
    assert_eq!(check["status"], "miss", "{second:?}");
    assert!(
        check["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("cannot be put back at `out/SUMS`") && r.contains("symlink")),
        "{check}"
    );
    assert!(
        std::fs::read_dir(&outside).expect("outside").next().is_none(),
        "nothing was written outside the workspace"
    );
}
