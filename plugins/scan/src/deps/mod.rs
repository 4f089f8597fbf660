//! Vulnerable dependencies: every package pinned by a `Cargo.lock` (or a
//! `package-lock.json`) matched against an offline RustSec-format advisory
//! database, the way `cargo audit --no-fetch` matches it.
//!
//! - A vulnerability (an advisory that is neither informational nor
//!   withdrawn) is a finding whose rule is the advisory id; its severity is
//!   the CVSS rating (v3 or v4), or `high` when the advisory has no score.
//! - Informational advisories are findings too, lower: `unsound` is
//!   medium, `unmaintained` low, `notice` info.
//! - `[affected] os/arch` limits are not applied (as `cargo audit` without
//!   `--target-os`); advisories in `rust/` (the toolchain) are not matched.

pub mod advisories;
pub mod cvss;
pub mod lockfile;
pub mod ranges;

use std::path::Path;

use weir_sdk::{Finding, Severity};

use lockfile::{Ecosystem, Package};

/// What the dependency check found.
#[derive(Debug, Default)]
pub struct Report {
    /// One per vulnerable (or flagged) package and advisory.
    pub findings: Vec<Finding>,
    /// Lock files read (path, packages).
    pub lockfiles: Vec<(String, usize)>,
    /// Vulnerabilities found (not counting informational advisories).
    pub vulnerabilities: usize,
    /// Problems worth a line: unreadable lock files or advisory files.
    pub problems: Vec<String>,
}

/// Match the packages of `lockfiles` (workspace paths) against `db`.
pub fn check(db: &Path, lockfiles: &[String], informational: bool) -> Report {
    let mut report = Report::default();
    for path in lockfiles {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                report.problems.push(format!("cannot read {path}: {e}"));
                continue;
            }
        };
        let (ecosystem, packages) = if path.ends_with("Cargo.lock") {
            (Ecosystem::Crates, lockfile::cargo_lock(&text))
        } else {
            match lockfile::package_lock(&text) {
                Ok(p) => (Ecosystem::Npm, p),
                Err(e) => {
                    report.problems.push(format!("{path} is {e}"));
                    continue;
                }
            }
        };
        report.lockfiles.push((path.clone(), packages.len()));
        for package in &packages {
            let Ok(version) = semver::Version::parse(&package.version) else {
                // The version is not repeated: a git or file reference can
                // carry credentials.
                report.problems.push(format!(
                    "{path}:{}: `{}` has a version that is not semver; not checked",
                    package.line, package.name
                ));
                continue;
            };
            let loaded = advisories::for_package(db, ecosystem.dir(), &package.name);
            for (file, why) in loaded.broken {
                report
                    .problems
                    .push(format!("advisory {file} was not used: {why}"));
            }
            for advisory in loaded.advisories {
                if !ranges::is_vulnerable(&version, &advisory.safe) {
                    continue;
                }
                let kind = match advisory.informational.as_deref() {
                    None => "vulnerability",
                    Some(k @ ("unmaintained" | "unsound" | "notice")) if informational => k,
                    // Other informational kinds are not reported, as in
                    // `cargo audit`.
                    Some(_) => continue,
                };
                if kind == "vulnerability" {
                    report.vulnerabilities += 1;
                }
                report.findings.push(finding(path, package, &advisory, kind));
            }
        }
    }
    report
}

fn finding(path: &str, package: &Package, a: &advisories::Advisory, kind: &str) -> Finding {
    let score = a.cvss.as_deref().and_then(cvss::base_score);
    let severity = match kind {
        "vulnerability" => match score.map(cvss::rating) {
            Some("critical") => Severity::Critical,
            Some("high") | None => Severity::High,
            Some("medium") => Severity::Medium,
            Some(_) => Severity::Low,
        },
        "unsound" => Severity::Medium,
        "unmaintained" => Severity::Low,
        _ => Severity::Info,
    };
    let ids = std::iter::once(a.id.as_str())
        .chain(a.aliases.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = if a.patched.is_empty() {
        "no fixed version: replace the dependency".to_string()
    } else {
        format!("upgrade to {}", a.patched.join(" or "))
    };
    let what = match kind {
        "vulnerability" => "is vulnerable",
        "unmaintained" => "is unmaintained",
        "unsound" => "is unsound",
        _ => "has a notice",
    };
    let mut f = Finding::new(
        a.id.clone(),
        severity,
        format!(
            "{} {} {what}: {} ({ids}); {fix}",
            package.name, package.version, a.title
        ),
    )
    .at(path, package.line, None)
    .field("kind", kind)
    .field("advisory", a.id.clone())
    .field("package", package.name.clone())
    .field("version", package.version.clone())
    .field("patched", a.patched.join("; "))
    .field("title", a.title.clone());
    if !a.aliases.is_empty() {
        f = f.field("aliases", a.aliases.join(", "));
    }
    if !a.unaffected.is_empty() {
        f = f.field("unaffected", a.unaffected.join("; "));
    }
    if let Some(url) = &a.url {
        f = f.field("url", url.clone());
    }
    if let Some(v) = &a.cvss {
        f = f.field("cvss", v.clone());
        match score {
            Some(s) => f = f.field("cvss-score", format!("{s:.1}")),
            None => f = f.field("cvss-score", "not computed (not a complete CVSS vector)"),
        }
    }
    f
}
