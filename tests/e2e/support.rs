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

/// `cmd` without the wrapper .ci/run lints the test build with (clippy
/// as rustc), so the cargo builds tests start (of plugin scaffolds) are
/// the same as anywhere else.
pub fn without_build_wrappers(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
}

/// Where weir keeps its state for runs whose workspace is `dir` itself
/// (`--workspace .`): beside it, since the state directory may never be
/// inside a workspace (`WEIR_STATE_DIR`).
pub fn state_beside(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "weir".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.weir-state"))
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
            // The advisory database `weir advisories fetch` keeps: none,
            // unless a test fetches one.
            .env("WEIR_DATA_DIR", self.dir.path().join(".weir-data"))
            .env("NO_COLOR", "1")
            .env_remove("WEIR_LOG");
        without_build_wrappers(&mut cmd);
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

/// LEB128, unsigned, as the WebAssembly binary format writes sizes.
fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(contents.len() as u64, out);
    out.extend_from_slice(contents);
}

/// What an extra core module declares; no Rust guest can declare these.
#[derive(Default)]
pub struct CoreModule {
    /// Memories, each this many 64 KiB pages.
    pub memories: Vec<u32>,
    /// A funcref table with this many elements, if any.
    pub table: Option<u32>,
    /// Elements its start function adds to that table with `table.grow`.
    pub grow_table_by: Option<u32>,
}

impl CoreModule {
    /// The module's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        if self.grow_table_by.is_some() {
            section(1, &[1, 0x60, 0, 0], &mut m); // type 0: [] -> []
            section(3, &[1, 0], &mut m); // func 0: type 0
        }
        if let Some(elements) = self.table {
            let mut t = vec![1, 0x70, 0x00];
            leb(elements.into(), &mut t);
            section(4, &t, &mut m);
        }
        if !self.memories.is_empty() {
            let mut s = Vec::new();
            leb(self.memories.len() as u64, &mut s);
            for pages in &self.memories {
                s.push(0x00);
                leb((*pages).into(), &mut s);
            }
            section(5, &s, &mut m);
        }
        if let Some(by) = self.grow_table_by {
            section(8, &[0], &mut m); // start: func 0
            // ref.null func; i32.const BY; table.grow 0; drop; end
            let mut body = vec![0, 0xd0, 0x70, 0x41];
            let mut n = i64::from(by);
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0) {
                    body.push(byte);
                    break;
                }
                body.push(byte | 0x80);
            }
            body.extend_from_slice(&[0xfc, 0x0f, 0x00, 0x1a, 0x0b]);
            let mut code = vec![1];
            leb(body.len() as u64, &mut code);
            code.extend_from_slice(&body);
            section(10, &code, &mut m);
        }
        m
    }
}

/// `component` (a built guest) with `modules` added and instantiated
/// beside its own core instances: the same plugin, with more memories or
/// tables.
pub fn with_core_modules(component: &[u8], added: &[CoreModule]) -> Vec<u8> {
    // The new module's index is the number of core modules before it: one
    // per top-level core module section (id 1).
    let mut modules = 0;
    let mut i = 8;
    while i < component.len() {
        let id = component[i];
        let (mut size, mut shift, mut j) = (0usize, 0, i + 1);
        loop {
            let b = component[j];
            j += 1;
            size |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        if id == 1 {
            modules += 1;
        }
        i = j + size;
    }
    let mut out = component.to_vec();
    for module in added {
        section(1, &module.encode(), &mut out);
        let mut instance = vec![1, 0x00];
        leb(modules, &mut instance);
        instance.push(0); // no arguments
        section(2, &instance, &mut out);
        modules += 1;
    }
    out
}

/// Whether an outside tool a test checks weir's output with is here:
/// `check` is a command that succeeds when it is. With
/// `WEIR_REPORT_TESTS=require` (what `.ci/run` sets, after installing the
/// tools) a missing tool fails the test, naming `install`; otherwise the
/// test says it skipped that check.
pub fn outside_tool(what: &str, check: &[&str], install: &str) -> bool {
    let here = Command::new(check[0])
        .args(&check[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !here {
        assert!(
            !std::env::var("WEIR_REPORT_TESTS").is_ok_and(|v| v == "require"),
            "WEIR_REPORT_TESTS=require, but {what} is missing: {install}"
        );
        eprintln!("skipping the {what} check: {what} is missing ({install})");
    }
    here
}

/// `path` is valid against junit-10.xsd (Jenkins' xunit schema), checked
/// by xmllint.
pub fn assert_valid_junit(path: &std::path::Path) {
    if !outside_tool(
        "xmllint",
        &["xmllint", "--version"],
        "apt-get install libxml2-utils",
    ) {
        return;
    }
    let xsd = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/junit/junit-10.xsd");
    let check = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
        .expect("xmllint");
    assert!(
        check.status.success(),
        "{} is not valid against junit-10.xsd: {}",
        path.display(),
        String::from_utf8_lossy(&check.stderr)
    );
}
