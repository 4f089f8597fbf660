//! Which workspace files are scanned: everything under the workspace but
//! version-control and state directories, vendored code, build output,
//! binaries and files over the size limit. What is left out is counted, so
//! the summary can say so.

use std::path::Path;

use weir_sdk::glob::matches;

/// Directories never entered: version control, weir's state, vendored
/// third-party code and build output.
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".weir",
    "node_modules",
    "vendor",
    "third_party",
    "third-party",
    "bower_components",
    ".venv",
    "venv",
    "__pycache__",
    "target",
    ".tox",
    ".mypy_cache",
];

/// Extensions of files that are not text.
const BINARY_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "ico", "webp", "tif", "tiff", "pdf", "zip", "gz", "tgz", "bz2", "xz",
    "zst", "7z", "rar", "tar", "jar", "war", "class", "wasm", "so", "dylib", "dll", "exe", "o", "a", "rlib",
    "lib", "bin", "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "mov", "avi", "ogg", "wav", "flac",
    "sqlite", "db", "pyc", "pyo", "psd",
];

/// How many leading bytes are looked at to tell a binary file (one with a
/// NUL byte) from text.
const SNIFF_BYTES: usize = 8000;

/// One file to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Path relative to the workspace, `/`-separated: what findings show
    /// and what is opened.
    pub path: String,
    /// Path relative to the scanned directory: what `exclude`, the ignore
    /// file and the file-kind rules match.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
}

/// What the walk found and what it left out.
#[derive(Debug, Default)]
pub struct Walk {
    /// Files to scan, sorted by path.
    pub files: Vec<Candidate>,
    /// Files over the size limit (path, size).
    pub too_large: Vec<(String, u64)>,
    /// Files left out by `exclude` patterns or the ignore file.
    pub excluded: usize,
    /// Files left out because they stop at the file-count limit.
    pub over_count: usize,
    /// Directories that could not be read (path, why).
    pub unreadable: Vec<(String, String)>,
}

/// Limits and filters for the walk.
pub struct WalkOptions<'a> {
    /// Files bigger than this are left out.
    pub max_file_bytes: u64,
    /// At most this many files are scanned.
    pub max_files: usize,
    /// Patterns of paths left out.
    pub exclude: &'a [String],
}

/// Walk `root`, a directory inside the workspace (the plugin's current
/// directory); `.` is the whole workspace.
pub fn walk(root: &Path, options: &WalkOptions<'_>) -> Walk {
    let mut out = Walk::default();
    visit(root, "", options, &mut out);
    let base = root.to_string_lossy().trim_end_matches('/').to_string();
    if base != "." && !base.is_empty() {
        for c in &mut out.files {
            c.path = format!("{base}/{}", c.rel);
        }
        for (p, _) in &mut out.too_large {
            *p = format!("{base}/{p}");
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.too_large.sort();
    out
}

fn visit(dir: &Path, prefix: &str, options: &WalkOptions<'_>, out: &mut Walk) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.unreadable.push((display(prefix), e.to_string()));
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        // Symlinks are not followed: they may point out of the workspace or
        // loop, and their targets are scanned where they live.
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if SKIPPED_DIRS.contains(&name.as_str()) {
                continue;
            }
            if options
                .exclude
                .iter()
                .any(|p| matches(p, &rel) || matches(p, &format!("{rel}/")))
            {
                continue;
            }
            visit(&entry.path(), &rel, options, out);
        } else if kind.is_file() {
            if options.exclude.iter().any(|p| matches(p, &rel)) {
                out.excluded += 1;
                continue;
            }
            if has_binary_extension(&name) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if size > options.max_file_bytes {
                out.too_large.push((rel, size));
                continue;
            }
            if out.files.len() >= options.max_files {
                out.over_count += 1;
                continue;
            }
            out.files.push(Candidate {
                path: rel.clone(),
                rel,
                size,
            });
        }
    }
}

fn display(prefix: &str) -> String {
    if prefix.is_empty() {
        ".".into()
    } else {
        prefix.into()
    }
}

fn has_binary_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| BINARY_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Whether `bytes` look like a binary file (a NUL byte near the start).
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(SNIFF_BYTES)].contains(&0)
}

/// Machine-written files full of hashes and checksums, which the secret
/// rules would misread; the dependency check reads the lock files itself.
pub fn is_lock_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "Cargo.lock"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "go.sum"
            | "poetry.lock"
            | "Pipfile.lock"
            | "Gemfile.lock"
            | "composer.lock"
            | "flake.lock"
            | "uv.lock"
    ) || name.ends_with(".min.js")
        || name.ends_with(".min.css")
        || name.ends_with(".map")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_lock_files_are_recognised() {
        assert!(looks_binary(b"abc\0def"));
        assert!(!looks_binary(b"plain text\n"));
        assert!(has_binary_extension("logo.PNG"));
        assert!(!has_binary_extension("Dockerfile"));
        assert!(is_lock_file("app/Cargo.lock"));
        assert!(is_lock_file("web/dist/app.min.js"));
        assert!(!is_lock_file("src/lock.rs"));
    }

    #[test]
    fn walk_skips_vendored_dirs_and_large_files() {
        let root = std::env::temp_dir().join(format!("weir-scan-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("vendor/x")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("fixtures")).unwrap();
        std::fs::write(root.join("vendor/x/a.rs"), "x").unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(root.join("src/big.txt"), vec![b'a'; 100]).unwrap();
        std::fs::write(root.join("fixtures/f.txt"), "x").unwrap();
        let exclude = vec!["fixtures/**".to_string()];
        let w = walk(
            &root,
            &WalkOptions {
                max_file_bytes: 50,
                max_files: 10,
                exclude: &exclude,
            },
        );
        let paths: Vec<&str> = w.files.iter().map(|c| c.rel.as_str()).collect();
        assert_eq!(paths, ["src/main.rs"]);
        assert_eq!(w.too_large, [(format!("{}/src/big.txt", root.display()), 100)]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
