//! Tries every way out of the workspace it knows; succeeds only if all fail.

use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};

struct Escape;

impl Plugin for Escape {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage)
    }
}

fn attempt(path: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("READ {} bytes", bytes.len()),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

impl Stage for Escape {
    fn run(_ctx: Context) -> Result<StageOutput, Failure> {
        let attempts = [
            ("dotdot", attempt("../secret.txt")),
            ("absolute", attempt("/etc/passwd")),
            ("planted_symlink", attempt("planted-link/secret.txt")),
            ("list_root", match std::fs::read_dir("/") {
                Ok(_) => "READ the root directory".to_string(),
                Err(e) => format!("denied ({:?})", e.kind()),
            }),
        ];
        let mut out = StageOutput::new();
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
            Err(Failure::new(format!("escaped the workspace: {}", escaped.join("; "))))
        }
    }
}

weir_sdk::export_stage!(Escape);
