//! `scan`: an analyzer that reads the workspace (and nothing else but an
//! advisory database it is granted) and reports leaked secrets, vulnerable
//! dependencies and risky Dockerfile and CI settings. It runs no program.
//!
//! ```toml
//! [stages.scan]
//! uses = "scan"
//! with = { advisory-db = "/home/me/advisory-db" }
//! allow = { read = ["/home/me/advisory-db"] }
//! gate = { fail-on = "high" }
//! ```
//!
//! Settings (all optional):
//! - `dir`: the directory to scan, relative to the workspace (`.`).
//! - `checks`: which of `secrets`, `dependencies`, `config` to run (all).
//! - `advisory-db`: a RustSec-format advisory database directory (a clone
//!   of `rustsec/advisory-db`). Absolute paths must be granted with
//!   `allow.read`; relative ones are inside the workspace. Without it,
//!   the database `weir advisories fetch` keeps is used when there is one;
//!   else the dependency check is skipped and the summary says so.
//! - `informational`: also report unmaintained/unsound advisories (true).
//! - `exclude`: path patterns not scanned (`**` crosses directories).
//! - `ignore-file`: the suppression file, relative to `dir`
//!   (`.weir-scan-ignore`); its patterns are relative to `dir` too.
//! - `max-file-bytes`: larger files are skipped and counted (1 MiB).
//! - `max-files`: at most this many files are scanned (100 000).

mod deps;
mod risky;
mod secrets;
mod suppress;
mod walk;

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use weir_sdk::{Analysis, Analyzer, Capability, Context, Failure, Finding, Manifest, Plugin, Severity};

use suppress::IgnoreFile;

/// Lock files are read even above `max-file-bytes`, up to this size.
const MAX_LOCKFILE_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default = "here")]
    dir: String,
    #[serde(default = "all_checks")]
    checks: Vec<Check>,
    #[serde(default)]
    advisory_db: Option<String>,
    #[serde(default = "yes")]
    informational: bool,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    ignore_file: Option<String>,
    #[serde(default = "one_mib")]
    max_file_bytes: u64,
    #[serde(default = "max_files")]
    max_files: usize,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Check {
    Secrets,
    Dependencies,
    Config,
}

fn all_checks() -> Vec<Check> {
    vec![Check::Secrets, Check::Dependencies, Check::Config]
}
fn here() -> String {
    ".".into()
}
fn yes() -> bool {
    true
}
fn one_mib() -> u64 {
    1 << 20
}
fn max_files() -> usize {
    100_000
}

struct Scan;

impl Plugin for Scan {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Analyzer, [Capability::Files]);
        m.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{
"dir":{"type":"string"},
"checks":{"type":"array","items":{"enum":["secrets","dependencies","config"]}},
"advisory-db":{"type":"string"},
"informational":{"type":"boolean"},
"exclude":{"type":"array","items":{"type":"string"}},
"ignore-file":{"type":"string"},
"max-file-bytes":{"type":"integer","minimum":1},
"max-files":{"type":"integer","minimum":1}}}"#
                .into(),
        );
        m
    }
}

/// Counts for the summary.
#[derive(Default)]
struct Tally {
    files: usize,
    bytes: u64,
    binary: usize,
    secrets: usize,
    risky: usize,
    suppressed: usize,
}

impl Analyzer for Scan {
    fn analyze(ctx: Context) -> Result<Analysis, Failure> {
        let config: Config = ctx.config()?;
        let root = normalise(Path::new(&config.dir));
        if root.is_absolute() || config.dir.split('/').any(|c| c == "..") {
            return Err(Failure::new(format!(
                "`dir = \"{}\"` must be a directory inside the workspace, written relative to it",
                config.dir
            )));
        }
        let root = if root.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            root
        };
        if !root.is_dir() {
            return Err(Failure::new(format!(
                "`dir = \"{}\"`: no such directory in the workspace",
                config.dir
            )));
        }
        if let Some(name) = &config.ignore_file
            && (Path::new(name).is_absolute() || name.split('/').any(|c| c == ".."))
        {
            return Err(Failure::new(format!(
                "`ignore-file = \"{name}\"` must be a file inside the scanned directory, written relative to it"
            )));
        }
        let ignore_name = root
            .join(
                config
                    .ignore_file
                    .as_deref()
                    .unwrap_or(suppress::DEFAULT_IGNORE_FILE),
            )
            .to_string_lossy()
            .into_owned();
        let ignore_name = ignore_name.strip_prefix("./").unwrap_or(&ignore_name).to_string();
        let ignore_name = ignore_name.as_str();
        let ignore = match std::fs::read_to_string(ignore_name) {
            Ok(text) => IgnoreFile::parse(&text, ignore_name).map_err(Failure::new)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.ignore_file.is_none() => {
                IgnoreFile::default()
            }
            Err(e) => {
                return Err(Failure::new(format!(
                    "cannot read the ignore file `{ignore_name}`: {e}"
                )));
            }
        };
        let db = match (&config.advisory_db, config.checks.contains(&Check::Dependencies)) {
            (Some(p), true) => Some(open_db(p)?),
            _ => None,
        };

        let walked = walk::walk(
            &root,
            &walk::WalkOptions {
                max_file_bytes: config.max_file_bytes,
                max_files: config.max_files,
                exclude: &config.exclude,
            },
        );
        for (dir, why) in &walked.unreadable {
            weir_sdk::log::warn(&format!("cannot read directory {dir}: {why}"));
        }
        for (path, size) in &walked.too_large {
            weir_sdk::log::info(&format!(
                "skipped {path}: {size} bytes is over max-file-bytes = {}",
                config.max_file_bytes
            ));
        }

        let rules = secrets::rules();
        let mut tally = Tally::default();
        let mut findings: Vec<Finding> = Vec::new();
        let total = walked.files.len() as u64;
        for (n, file) in walked.files.iter().enumerate() {
            if n % 500 == 0 {
                weir_sdk::log::progress(n as u64, Some(total), "scanning files");
            }
            if ignore.drops_file(&file.rel) {
                tally.suppressed += 1;
                continue;
            }
            let Ok(bytes) = std::fs::read(&file.path) else {
                continue;
            };
            if walk::looks_binary(&bytes) {
                tally.binary += 1;
                continue;
            }
            tally.files += 1;
            tally.bytes += bytes.len() as u64;
            if config.checks.contains(&Check::Secrets) && !walk::is_lock_file(&file.path) {
                let found = scan_secrets(&rules, file, &bytes, &ignore, &mut tally);
                tally.secrets += found.len();
                findings.extend(found);
            }
            if config.checks.contains(&Check::Config)
                && let Some(kind) = risky::kind_of(&file.rel)
            {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                for f in risky::check(&file.path, kind, &text) {
                    let line = f.line.map_or(0, |l| l as usize);
                    let this = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
                    let previous = line.checked_sub(2).and_then(|i| lines.get(i)).copied();
                    if ignore.drops(&f.rule, &file.rel) || suppress::inline_drops(this, previous, &f.rule) {
                        tally.suppressed += 1;
                    } else {
                        tally.risky += 1;
                        // A message may quote the file (an image name);
                        // whatever in it looks like a secret is redacted.
                        let mut f = f;
                        f.message = secrets::redact_text(&rules, &f.message);
                        findings.push(f);
                    }
                }
            }
        }
        weir_sdk::log::progress(total, Some(total), "scanned files");

        let mut notes = Vec::new();
        if config.checks.contains(&Check::Dependencies) {
            let lockfiles: Vec<String> = walked
                .files
                .iter()
                .map(|c| (c.path.clone(), c.size))
                .chain(walked.too_large.iter().cloned())
                .filter(|(p, _)| !ignore.drops_file(relative_to(p, &root)))
                .filter(|(p, size)| {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    (name == "Cargo.lock" || name == "package-lock.json") && *size <= MAX_LOCKFILE_BYTES
                })
                .map(|(p, _)| p)
                .collect();
            match &db {
                None => notes.push(
                    "dependencies not checked: no advisory database (run `weir advisories fetch` to keep one for every scan, or set `advisory-db` to a clone of rustsec/advisory-db)"
                        .to_string(),
                ),
                Some(_) if lockfiles.is_empty() => notes.push("dependencies: no Cargo.lock or package-lock.json".into()),
                Some(db) => {
                    let report = deps::check(db, &lockfiles, config.informational);
                    for p in &report.problems {
                        weir_sdk::log::warn(p);
                    }
                    let packages: usize = report.lockfiles.iter().map(|(_, n)| n).sum();
                    notes.push(format!(
                        "{} vulnerable dependenc{} among {packages} packages in {} lock file(s)",
                        report.vulnerabilities,
                        if report.vulnerabilities == 1 { "y" } else { "ies" },
                        report.lockfiles.len()
                    ));
                    for f in report.findings {
                        let path = f.path.clone().unwrap_or_default();
                        if ignore.drops(&f.rule, relative_to(&path, &root)) {
                            tally.suppressed += 1;
                        } else {
                            findings.push(f);
                        }
                    }
                }
            }
        }

        let mut summary = format!(
            "{} files ({}), {} secret(s), {} risky setting(s)",
            tally.files,
            size(tally.bytes),
            tally.secrets,
            tally.risky
        );
        for n in notes {
            summary.push_str("; ");
            summary.push_str(&n);
        }
        let mut skipped = Vec::new();
        if !walked.too_large.is_empty() {
            skipped.push(format!(
                "{} over {} (first: {})",
                walked.too_large.len(),
                size(config.max_file_bytes),
                walked.too_large[0].0
            ));
        }
        if tally.binary > 0 {
            skipped.push(format!("{} binary", tally.binary));
        }
        if walked.over_count > 0 {
            skipped.push(format!(
                "{} past max-files = {}",
                walked.over_count, config.max_files
            ));
        }
        if walked.excluded > 0 {
            skipped.push(format!("{} excluded", walked.excluded));
        }
        if !skipped.is_empty() {
            summary.push_str(&format!("; files skipped: {}", skipped.join(", ")));
        }
        if tally.suppressed > 0 {
            summary.push_str(&format!("; {} suppressed", tally.suppressed));
        }
        let mut analysis = Analysis::from_findings(findings, Severity::High);
        analysis.summary = Some(summary);
        Ok(analysis)
    }
}

/// `path` (workspace-relative) relative to the scanned directory `root`.
fn relative_to<'a>(path: &'a str, root: &Path) -> &'a str {
    let base = root.to_string_lossy();
    if base == "." {
        return path;
    }
    path.strip_prefix(base.as_ref())
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(path)
}

fn scan_secrets(
    rules: &secrets::RuleSet,
    file: &walk::Candidate,
    bytes: &[u8],
    ignore: &IgnoreFile,
    tally: &mut Tally,
) -> Vec<Finding> {
    let path = file.path.as_str();
    let hits = secrets::find(rules, bytes);
    if hits.is_empty() {
        return Vec::new();
    }
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let line_text = |index: usize| -> String {
        let start = line_starts[index];
        let end = line_starts.get(index + 1).map_or(bytes.len(), |e| e - 1);
        String::from_utf8_lossy(&bytes[start..end.max(start)]).into_owned()
    };
    let mut out = Vec::new();
    for hit in hits {
        let rule = &rules[hit.rule];
        let index = line_starts.partition_point(|s| *s <= hit.start) - 1;
        let column = String::from_utf8_lossy(&bytes[line_starts[index]..hit.start])
            .chars()
            .count()
            + 1;
        let this = line_text(index);
        let previous = index.checked_sub(1).map(line_text);
        if ignore.drops(rule.id, &file.rel) || suppress::inline_drops(&this, previous.as_deref(), rule.id) {
            tally.suppressed += 1;
            continue;
        }
        out.push(
            Finding::new(
                rule.id,
                rule.severity,
                format!(
                    "{} (`{}`, {} characters): revoke or rotate it, then remove it from the code and its history",
                    capitalise(rule.what),
                    secrets::redacted(&hit),
                    hit.len
                ),
            )
            .at(path, index as u32 + 1, Some(column as u32))
            .field("secret-kind", rule.id),
        );
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// The advisory database directory, as the plugin can open it: relative
/// paths are inside the workspace, absolute ones must be granted.
fn open_db(configured: &str) -> Result<PathBuf, Failure> {
    if !configured.starts_with('/') && configured.split('/').any(|c| c == "..") {
        return Err(Failure::new(format!(
            "`advisory-db = \"{configured}\"`: a relative path must stay inside the workspace; write an absolute path (and grant it with `allow.read`)"
        )));
    }
    let path = normalise(Path::new(configured));
    match std::fs::metadata(path.join("crates")) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) | Err(_) if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) => Err(Failure::new(format!(
            "`{configured}` is not a RustSec advisory database: it has no `crates/` directory (clone https://github.com/rustsec/advisory-db)"
        ))),
        _ if path.is_absolute() => Err(Failure::new(format!(
            "cannot read the advisory database `{configured}`: it does not exist or is not granted; add `allow = {{ read = [\"{configured}\"] }}` to the stage"
        ))),
        _ => Err(Failure::new(format!(
            "cannot read the advisory database `{configured}` in the workspace: it does not exist"
        ))),
    }
}

/// `a/b/../c` → `a/c`, lexically (the plugin sees only what it was given,
/// so a `..` must be resolved before the path reaches WASI).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

weir_sdk::export_analyzer!(Scan);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_resolves_parent_dirs() {
        assert_eq!(
            normalise(Path::new("/work/main/examples/x/../../../shared/db")),
            PathBuf::from("/work/shared/db")
        );
        assert_eq!(normalise(Path::new("./db")), PathBuf::from("db"));
    }

    #[test]
    fn secret_findings_are_redacted_and_placed() {
        let rules = secrets::rules();
        let text = "a\n  aws = \"AKIAZ3MHQ7RX2WLKE5TN\"\nb = 'ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T' # weir:ignore\n";
        let mut tally = Tally::default();
        let file = walk::Candidate {
            path: "app/conf.py".into(),
            rel: "conf.py".into(),
            size: 0,
        };
        let found = scan_secrets(&rules, &file, text.as_bytes(), &IgnoreFile::default(), &mut tally);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, "aws-access-key-id");
        assert_eq!(found[0].path.as_deref(), Some("app/conf.py"));
        assert_eq!((found[0].line, found[0].column), (Some(2), Some(10)));
        assert!(
            !found[0].message.contains("Z3MHQ7RX2WLKE5TN"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("AKIA…"), "{}", found[0].message);
        assert_eq!(tally.suppressed, 1);
    }
}
