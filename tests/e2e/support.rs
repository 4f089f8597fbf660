//! Helpers: a temporary project directory and a way to run `weir` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary directory to run `weir` in.
pub struct Project {
    dir: tempfile::TempDir,
}

/// What a `weir` invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` events, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event line ({e}): {l}")))
            .collect()
    }

    /// The `stage_finished` event of `stage`.
    pub fn finished(&self, stage: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "stage_finished" && e["stage"] == stage)
            .unwrap_or_else(|| panic!("no stage_finished for `{stage}` in:\n{}", self.stdout))
    }

    /// Events of one type.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// The message of every `stage_log` event, in order.
    pub fn log_messages(&self) -> Vec<String> {
        self.of("stage_log")
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    /// The workspace the run used.
    pub fn workspace(&self) -> PathBuf {
        let started = self.of("run_started");
        PathBuf::from(started[0]["workspace"].as_str().expect("workspace is a string"))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The compile cache shared by all tests (keyed by digest, so safe).
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weir-cache")
}

/// The `weir` binary.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// A `[plugins.NAME]` table for a test guest.
pub fn plugin(name: &str, path: &str) -> String {
    format!("[plugins.{name}]\npath = {path:?}\n")
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `contents` to `name` in the project.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Write `pipeline.toml`.
    pub fn pipeline(&self, toml: &str) -> &Self {
        self.write("pipeline.toml", toml);
        self
    }

    /// A `weir` command in the project directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WEIR_CACHE_DIR", shared_cache())
            .env("NO_COLOR", "1")
            .env_remove("WEIR_LOG");
        cmd
    }

    /// Run `weir ARGS` and wait.
    pub fn weir(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("weir runs").into()
    }

    /// `weir run --json` on `pipeline.toml`, plus `extra` arguments.
    pub fn run_json(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", "pipeline.toml", "--json"];
        args.extend_from_slice(extra);
        self.weir(&args)
    }
}

/// Sleep: tests here are synchronous, with no tokio worker to block.
#[expect(
    clippy::disallowed_methods,
    reason = "a plain test thread, not a tokio worker"
)]
pub fn nap(d: std::time::Duration) {
    std::thread::sleep(d);
}
