//! The packages a lock file pins, with the line each is declared on.

/// crates.io as `Cargo.lock` records it (also when fetched over the sparse
/// protocol).
pub const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
/// crates.io's sparse index, written by cargo for an explicitly sparse
/// crates.io source.
const CRATES_IO_SPARSE: &str = "sparse+https://index.crates.io/";

/// Which advisory collection a package is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    /// crates.io (`crates/` in the database).
    Crates,
    /// The npm registry (`npm/` in the database).
    Npm,
}

impl Ecosystem {
    /// The database directory holding this ecosystem's advisories.
    pub fn dir(self) -> &'static str {
        match self {
            Ecosystem::Crates => "crates",
            Ecosystem::Npm => "npm",
        }
    }
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its version as written.
    pub version: String,
    /// 1-based line of its entry in the lock file.
    pub line: u32,
}

/// Packages of a `Cargo.lock` that come from crates.io (path, git and
/// other registries' packages are not in the advisory database).
pub fn cargo_lock(text: &str) -> Vec<Package> {
    /// A `[[package]]` table being read.
    #[derive(Default)]
    struct Entry {
        name: Option<String>,
        version: Option<String>,
        source: Option<String>,
        line: u32,
    }
    let mut out = Vec::new();
    let mut current: Option<Entry> = None;
    let mut flush = |entry: Option<Entry>| {
        if let Some(Entry {
            name: Some(name),
            version: Some(version),
            source: Some(source),
            line,
        }) = entry
            && (source == CRATES_IO || source == CRATES_IO_SPARSE)
        {
            out.push(Package { name, version, line });
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            flush(current.take());
            if line == "[[package]]" {
                current = Some(Entry {
                    line: i as u32 + 1,
                    ..Entry::default()
                });
            }
            continue;
        }
        let Some(entry) = current.as_mut() else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "name" => {
                entry.name = Some(value);
                entry.line = i as u32 + 1;
            }
            "version" => entry.version = Some(value),
            "source" => entry.source = Some(value),
            _ => {}
        }
    }
    flush(current.take());
    out
}

/// Packages of a `package-lock.json` (lockfile versions 1, 2 and 3) that
/// come from the registry; linked and bundled local packages are left out.
pub fn package_lock(text: &str) -> Result<Vec<Package>, String> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = Vec::new();
    let lines = key_lines(text);
    let line_of = |key: &str| lines.get(key).copied().unwrap_or(1);
    if let Some(packages) = doc.get("packages").and_then(|p| p.as_object()) {
        for (key, entry) in packages {
            // "" is the project itself; "node_modules/a/node_modules/b" is b.
            let Some(name) = key
                .rsplit("node_modules/")
                .next()
                .filter(|n| !n.is_empty() && key.contains("node_modules/"))
            else {
                continue;
            };
            if entry.get("link").and_then(|l| l.as_bool()) == Some(true) {
                continue;
            }
            let name = entry.get("name").and_then(|n| n.as_str()).unwrap_or(name);
            if let Some(version) = entry.get("version").and_then(|v| v.as_str()) {
                out.push(Package {
                    name: name.to_string(),
                    version: version.to_string(),
                    line: line_of(key),
                });
            }
        }
    } else if let Some(deps) = doc.get("dependencies").and_then(|d| d.as_object()) {
        v1_dependencies(&line_of, deps, &mut out);
    }
    Ok(out)
}

fn v1_dependencies(
    line_of: &dyn Fn(&str) -> u32,
    deps: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<Package>,
) {
    for (name, entry) in deps {
        if let Some(version) = entry.get("version").and_then(|v| v.as_str())
            && !version.starts_with("file:")
            && !version.starts_with("link:")
        {
            out.push(Package {
                name: name.clone(),
                version: version.to_string(),
                line: line_of(name),
            });
        }
        if let Some(nested) = entry.get("dependencies").and_then(|d| d.as_object()) {
            v1_dependencies(line_of, nested, out);
        }
    }
}

/// 1-based line of the first `"KEY": {` of each key in a JSON text, found
/// in one pass (a lock file can hold tens of thousands of packages).
fn key_lines(text: &str) -> std::collections::HashMap<&str, u32> {
    let mut lines = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('"') else { continue };
        let Some((key, after)) = rest.split_once('"') else {
            continue;
        };
        let value = after.trim_start().strip_prefix(':').map(str::trim_start);
        if value.is_some_and(|v| v.starts_with('{')) {
            lines.entry(key).or_insert(i as u32 + 1);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lock_keeps_crates_io_packages_with_lines() {
        let text = r#"version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["smallvec"]

[[package]]
name = "smallvec"
version = "1.6.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"

[[package]]
name = "forked"
version = "1.0.0"
source = "git+https://example.com/forked#abc"
"#;
        assert_eq!(
            cargo_lock(text),
            [Package {
                name: "smallvec".into(),
                version: "1.6.0".into(),
                line: 9
            }]
        );
    }

    #[test]
    fn package_lock_v3_and_v1() {
        let v3 = r#"{
  "lockfileVersion": 3,
  "packages": {
    "": { "name": "web" },
    "node_modules/lodash": { "version": "4.17.20" },
    "node_modules/a/node_modules/@scope/b": { "version": "1.0.0" },
    "node_modules/local": { "link": true, "resolved": "../local" }
  }
}"#;
        let p = package_lock(v3).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str(), p[0].line),
            ("@scope/b", "1.0.0", 6)
        );
        assert_eq!((p[1].name.as_str(), p[1].line), ("lodash", 5));
        let v1 = r#"{"lockfileVersion": 1, "dependencies": {"minimist": {"version": "1.2.0", "dependencies": {"x": {"version": "2.0.0"}}}}}"#;
        let p = package_lock(v1).unwrap();
        assert_eq!(p.len(), 2);
        assert!(package_lock("{").is_err());
    }
}
