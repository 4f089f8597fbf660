//! Tries every way out of the workspace it knows; succeeds only if all fail.
//! With `with = { granted = "/abs/dir" }` (a directory the stage grants
//! with `allow.read`) it also reads `readable.txt` there, which must work,
//! and tries to write into it and to read beside it, which must not.

use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Escape;

impl Plugin for Escape {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [weir_sdk::Capability::Files])
    }
}

fn attempt(path: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("READ {} bytes", bytes.len()),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

/// Listing `/` is fine only if it shows the workspace itself (the preopen
/// answers for `/`), never the host's root.
fn write(path: &str) -> String {
    match std::fs::write(path, "planted") {
        Ok(()) => "WROTE".to_string(),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

fn list(path: &str) -> String {
    match std::fs::read_dir(path) {
        Ok(entries) => format!("READ {} entries", entries.count()),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

fn list_root() -> String {
    let names = |dir: &str| -> Result<Vec<String>, std::io::Error> {
        let mut v: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        v.sort();
        Ok(v)
    };
    match (names("/"), names(".")) {
        (Err(e), _) => format!("denied ({:?})", e.kind()),
        (Ok(root), Ok(here)) if root == here => "denied (the root is the workspace)".to_string(),
        (Ok(root), _) => format!("READ the host root: {}", root.join(" ")),
    }
}

impl Stage for Escape {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let config: serde_json::Value = ctx.config()?;
        let mut attempts = vec![
            ("dotdot", attempt("../secret.txt")),
            ("absolute", attempt("/etc/passwd")),
            ("planted_symlink", attempt("planted-link/secret.txt")),
            // A trailing slash makes a path resolve a symlink or `..` as a
            // directory; neither may lead out.
            ("symlink_trailing_slash", list("planted-link/")),
            ("dotdot_trailing_slash", list("sub/../../")),
            ("list_root", list_root()),
        ];
        let mut out = StageOutput::new();
        if let Some(dir) = config.get("granted").and_then(|g| g.as_str()) {
            out = out.output("granted_read", attempt(&format!("{dir}/readable.txt")));
            attempts.push(("granted_write", write(&format!("{dir}/planted.txt"))));
            attempts.push(("granted_sibling", attempt(&format!("{dir}/../secret.txt"))));
        }
        let mut escaped = Vec::new();
        for (name, result) in attempts {
            if !result.starts_with("denied") {
                escaped.push(format!("{name}: {result}"));
            }
            out = out.output(name, result);
        }
        if escaped.is_empty() {
            Ok(out)
        } else {
            Err(Failure::new(format!(
                "escaped the workspace: {}",
                escaped.join("; ")
            )))
        }
    }
}

weir_sdk::export_stage!(Escape);
