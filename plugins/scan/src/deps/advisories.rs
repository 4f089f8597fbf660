//! Reading a RustSec-format advisory database: one Markdown file per
//! advisory under `<collection>/<package>/`, whose ```` ```toml ```` block
//! holds the metadata and whose first `# ` heading is the title.

use std::path::Path;

use serde::Deserialize;

use super::ranges::{self, Interval};

/// An advisory, as far as matching and reporting need it.
#[derive(Debug, Clone)]
pub struct Advisory {
    /// `RUSTSEC-2021-0003`.
    pub id: String,
    /// The package it is about.
    pub package: String,
    /// CVE and GHSA ids.
    pub aliases: Vec<String>,
    /// The title.
    pub title: String,
    /// The CVSS vector, if any.
    pub cvss: Option<String>,
    /// `unmaintained`, `unsound` or `notice` for informational advisories.
    pub informational: Option<String>,
    /// Where to read more.
    pub url: Option<String>,
    /// The requirement strings as written, for the message.
    pub patched: Vec<String>,
    /// The unaffected requirement strings as written.
    pub unaffected: Vec<String>,
    /// Versions not affected: patched and unaffected ranges together.
    pub safe: Vec<Interval>,
}

#[derive(Deserialize)]
struct Front {
    advisory: Meta,
    versions: Option<Versions>,
}

#[derive(Deserialize)]
struct Meta {
    id: String,
    package: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    cvss: Option<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
struct Versions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

/// Why an advisory file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// It was withdrawn.
    Withdrawn,
    /// It is about another registry's package of the same name.
    OtherSource,
}

/// Parse one advisory file. `Ok(Err(skip))` for advisories that exist but
/// do not apply; `Err` for files that are not advisories.
pub fn parse(text: &str) -> Result<Result<Advisory, Skip>, String> {
    let start = text.find("```toml").ok_or("no ```toml block")? + "```toml".len();
    let len = text[start..]
        .find("```")
        .ok_or("the ```toml block is not closed")?;
    let front: Front = toml::from_str(&text[start..start + len]).map_err(|e| e.to_string())?;
    if front.advisory.withdrawn.is_some() {
        return Ok(Err(Skip::Withdrawn));
    }
    if let Some(source) = &front.advisory.source
        && source != super::lockfile::CRATES_IO
    {
        return Ok(Err(Skip::OtherSource));
    }
    let versions = front.versions.ok_or("no [versions] table")?;
    let safe = versions
        .patched
        .iter()
        .chain(&versions.unaffected)
        .map(|r| ranges::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let title = text[start + len..]
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(Ok(Advisory {
        id: front.advisory.id,
        package: front.advisory.package,
        aliases: front.advisory.aliases,
        title,
        cvss: front.advisory.cvss,
        informational: front.advisory.informational,
        url: front.advisory.url,
        patched: versions.patched,
        unaffected: versions.unaffected,
        safe,
    }))
}

/// What loading a package's advisories found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Advisories that apply.
    pub advisories: Vec<Advisory>,
    /// Files that could not be read or parsed (path, why).
    pub broken: Vec<(String, String)>,
}

/// The advisories for `package` in `db/<collection>/<package>/`, sorted by
/// id. A package with no directory has none.
pub fn for_package(db: &Path, collection: &str, package: &str) -> Loaded {
    let mut loaded = Loaded::default();
    // Package names never contain `..`; refuse anything that would walk
    // out of the collection.
    if package.is_empty() || package.contains("..") || package.starts_with('/') || package.contains('\\') {
        return loaded;
    }
    let dir = db.join(collection).join(package);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return loaded;
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    for path in paths {
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Err(e) => loaded.broken.push((shown, e.to_string())),
            Ok(text) => match parse(&text) {
                Ok(Ok(a)) if a.package == package => loaded.advisories.push(a),
                Ok(Ok(a)) => loaded
                    .broken
                    .push((shown, format!("it is about `{}`, not `{package}`", a.package))),
                Ok(Err(_skip)) => {}
                Err(why) => loaded.broken.push((shown, why)),
            },
        }
    }
    loaded.advisories.sort_by(|a, b| a.id.cmp(&b.id));
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALLVEC: &str = r#"```toml
[advisory]
id = "RUSTSEC-2021-0003"
package = "smallvec"
aliases = ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"]
cvss = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
date = "2021-01-08"

[versions]
patched = [">= 0.6.14, < 1.0.0", ">= 1.6.1"]
unaffected = ["< 0.6.3"]

[affected]
functions = { "smallvec::SmallVec::insert_many" = [">= 0.6.3, < 0.6.14"] }
```

# Buffer overflow in SmallVec::insert_many

Text.
"#;

    #[test]
    fn parses_front_matter_and_title() {
        let a = parse(SMALLVEC).unwrap().unwrap();
        assert_eq!(a.id, "RUSTSEC-2021-0003");
        assert_eq!(a.title, "Buffer overflow in SmallVec::insert_many");
        assert_eq!(a.aliases.len(), 2);
        assert_eq!(a.safe.len(), 3);
        let withdrawn = SMALLVEC.replace("date = ", "withdrawn = \"2021-02-01\"\ndate = ");
        assert_eq!(parse(&withdrawn).unwrap().unwrap_err(), Skip::Withdrawn);
        assert!(parse("# no front matter").is_err());
    }
}
