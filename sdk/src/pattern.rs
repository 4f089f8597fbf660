//! Path patterns, shared by the SDK (workspace files) and the host (stage
//! inputs, branch and tag names): one grammar, [globset]'s, with `*` and
//! `?` within one `/`-separated segment, `**` across any number of them,
//! `[abc]` / `[!a-z]` classes and `{a,b}` alternatives. In a list of
//! patterns ([`Patterns`]) an entry starting with `!` excludes what the
//! entries before it matched, as in GitHub Actions' filters.
//!
//! This file is compiled by both crates (the host includes it with
//! `#[path]` rather than depend on the SDK, which pulls in wit-bindgen);
//! each depends on `globset` itself.

use std::cell::RefCell;
use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};

/// A pattern that does not compile, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pattern `{}` is not valid: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// One pattern, compiled.
pub fn compile(pattern: &str) -> Result<GlobMatcher, PatternError> {
    let trimmed = pattern.trim_start_matches("./");
    GlobBuilder::new(trimmed)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| PatternError {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

/// A list of patterns, compiled once: a path matches when the last entry
/// that matches it is not an exclusion (`!pattern`).
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    entries: Vec<(bool, GlobMatcher)>,
}

impl Patterns {
    /// Compile `patterns`, each as written (`!` first excludes).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let entries = patterns
            .iter()
            .map(|p| {
                let p = p.as_ref();
                match p.strip_prefix('!') {
                    Some(rest) => compile(rest).map(|m| (false, m)),
                    None => compile(p).map(|m| (true, m)),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether `path` (relative, `/`-separated) is wanted.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_start_matches("./");
        self.entries
            .iter()
            .rev()
            .find(|(_, m)| m.is_match(path))
            .is_some_and(|(include, _)| *include)
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Patterns compiled so far on this thread, so that [`matches`] in a loop
/// compiles each pattern once.
const CACHED: usize = 256;

thread_local! {
    static COMPILED: RefCell<HashMap<String, Option<GlobMatcher>>> = RefCell::new(HashMap::new());
}

/// Whether `path` (relative, `/`-separated) matches `pattern`; a pattern
/// that does not compile matches nothing (check it with [`compile`] where
/// a user writes it).
pub fn matches(pattern: &str, path: &str) -> bool {
    let path = path.trim_start_matches("./");
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() >= CACHED {
                cache.clear();
            }
            cache.insert(pattern.to_string(), compile(pattern).ok());
        }
        cache
            .get(pattern)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.is_match(path))
    })
}

#[cfg(test)]
mod tests {
    use super::{Patterns, compile, matches};

    #[test]
    fn patterns() {
        assert!(matches("dist/*", "dist/app"));
        assert!(!matches("dist/*", "dist/sub/app"));
        assert!(matches("dist/**", "dist/sub/app"));
        assert!(matches("**/*.pem", "keys/a/b.pem"));
        assert!(matches("**/*.pem", "b.pem"));
        assert!(matches("./VERSION", "VERSION"));
        assert!(matches("release/*", "release/1.0"));
        assert!(!matches("feature/*", "feature/a/b"));
        assert!(matches("feature/**", "feature/a/b"));
    }

    #[test]
    fn classes_and_alternatives() {
        assert!(matches("src/*.{rs,toml}", "src/lib.toml"));
        assert!(!matches("src/*.{rs,toml}", "src/lib.md"));
        assert!(matches("v[0-9]*", "v2.1"));
        assert!(!matches("v[0-9]*", "vx"));
        assert!(matches("[!.]*", "README"));
        assert!(!matches("[!.]*", ".hidden"));
    }

    #[test]
    fn a_later_exclusion_wins() {
        let p = Patterns::new(&["src/**", "!src/generated/**", "src/generated/keep.rs"]).unwrap();
        assert!(p.matches("src/lib.rs"));
        assert!(!p.matches("src/generated/a.rs"));
        assert!(p.matches("src/generated/keep.rs"));
        assert!(!p.matches("README.md"));
        assert!(!Patterns::default().matches("x"));
    }

    #[test]
    fn a_broken_pattern_is_named() {
        let e = compile("src/[a-").unwrap_err();
        assert_eq!(e.pattern, "src/[a-");
        assert!(e.to_string().contains("not valid"), "{e}");
        assert!(!matches("src/[a-", "src/a"));
    }
}
