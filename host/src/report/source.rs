//! Where the repository sits in the workspace, so reports can name files
//! the way the repository does (`src/lib.rs`, not `checkout/src/lib.rs`).
//!
//! The checkout is the stage whose outputs carry a commit (`sha`) and the
//! folder it checked out into (`dir`): the built-in `git` stage, or any
//! plugin that reports the same two outputs. Without one, the workspace is
//! the repository (`weir run --workspace .` in a clone).

use crate::events::Event;

/// The repository's folder in the workspace, learnt from events.
#[derive(Debug, Default, Clone)]
pub struct SourceRoot {
    dir: Option<String>,
}

impl SourceRoot {
    /// Take note of `event`.
    pub fn observe(&mut self, event: &Event) {
        if let Event::StageFinished { outputs, .. } = event
            && outputs.contains_key("sha")
            && let Some(dir) = outputs.get("dir")
            && self.dir.is_none()
        {
            let dir = normalize(dir);
            self.dir = (!dir.is_empty()).then_some(dir);
        }
    }

    /// The checkout's folder, relative to the workspace, if a stage
    /// checked one out.
    pub fn dir(&self) -> Option<&str> {
        self.dir.as_deref()
    }

    /// `path` (relative to the workspace) relative to the repository, or
    /// `None` when it lies outside the checkout.
    pub fn relative(&self, path: &str) -> Option<String> {
        let path = normalize(path);
        match &self.dir {
            None => Some(path),
            Some(dir) if path == *dir => Some(String::new()),
            Some(dir) => path
                .strip_prefix(dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .map(String::from),
        }
    }
}

/// `./a//b/` → `a/b`.
pub fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn checkout(dir: &str) -> Event {
        Event::StageFinished {
            stage: "checkout".into(),
            plugin: None,
            status: crate::events::StageStatus::Succeeded,
            failure: None,
            attempts: 1,
            duration_ms: 1,
            outputs: BTreeMap::from([
                ("sha".to_string(), "abc".to_string()),
                ("dir".to_string(), dir.to_string()),
            ]),
            artifacts: vec![],
            summary: None,
            error: None,
            details: None,
            analysis: None,
            findings: vec![],
            tests: None,
            sandbox: None,
            cases: vec![],
            usage: None,
            reused: None,
        }
    }

    #[test]
    fn paths_become_relative_to_the_checkout() {
        let mut root = SourceRoot::default();
        assert_eq!(root.relative("./src/lib.rs").as_deref(), Some("src/lib.rs"));
        root.observe(&checkout("./src/"));
        assert_eq!(root.dir(), Some("src"));
        assert_eq!(root.relative("src/Cargo.lock").as_deref(), Some("Cargo.lock"));
        assert_eq!(root.relative("src/src/main.rs").as_deref(), Some("src/main.rs"));
        assert_eq!(root.relative("srcx/a"), None, "a sibling is outside");
        assert_eq!(root.relative("reports/a.xml"), None);
        root.observe(&checkout("other"));
        assert_eq!(root.dir(), Some("src"), "the first checkout is the repository");
    }
}
