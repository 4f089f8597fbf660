//! `when` conditions: run a stage only on some branches or environments.

/// What a run knows about itself, for `when`.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// The branch being built, if known.
    pub branch: Option<String>,
    /// The environment the run targets, if any.
    pub environment: Option<String>,
}

/// A stage's conditions; all present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    /// Branch patterns: `*` within a `/`-separated part, `**` across parts.
    pub branch: Vec<String>,
    /// Environment names.
    pub environment: Vec<String>,
}

impl When {
    /// `Ok` when the stage should run, else why it is skipped.
    pub fn check(&self, facts: &RunFacts) -> Result<(), String> {
        if !self.branch.is_empty() {
            match &facts.branch {
                Some(b) if self.branch.iter().any(|p| glob_match(p, b)) => {}
                Some(b) => {
                    return Err(format!("branch `{b}` does not match {}", list(&self.branch)));
                }
                None => {
                    return Err(format!(
                        "the branch is unknown (pass --branch) and the stage needs {}",
                        list(&self.branch)
                    ));
                }
            }
        }
        if !self.environment.is_empty() {
            match &facts.environment {
                Some(e) if self.environment.iter().any(|x| x == e) => {}
                Some(e) => {
                    return Err(format!("environment `{e}` is not {}", list(&self.environment)));
                }
                None => {
                    return Err(format!(
                        "no environment was chosen (pass --env) and the stage needs {}",
                        list(&self.environment)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Branch patterns match like GitHub Actions' branch filters.
pub use crate::globs::pattern;

use pattern::matches as glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_globs() {
        assert!(glob_match("main", "main"));
        assert!(glob_match("release/*", "release/1.2"));
        assert!(!glob_match("release/*", "main"));
        assert!(!glob_match("release/*", "release/1/hotfix"));
        assert!(glob_match("release/**", "release/1/hotfix"));
    }

    #[test]
    fn explains_skips() {
        let w = When {
            branch: vec!["main".into()],
            environment: vec![],
        };
        let facts = RunFacts {
            branch: Some("dev".into()),
            environment: None,
        };
        assert_eq!(w.check(&facts).unwrap_err(), "branch `dev` does not match `main`");
    }
}
