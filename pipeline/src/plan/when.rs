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

/// Why a stage's `when` does not hold: it is skipped, for this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// The branch matches none of the patterns.
    #[error("branch `{branch}` does not match {}", list(wanted))]
    Branch {
        /// The run's branch.
        branch: String,
        /// The stage's patterns.
        wanted: Vec<String>,
    },
    /// The stage names branches and the run knows none.
    #[error("the branch is unknown (pass --branch) and the stage needs {}", list(.0))]
    NoBranch(Vec<String>),
    /// The environment is not one of the stage's.
    #[error("environment `{environment}` is not {}", list(wanted))]
    Environment {
        /// The run's environment.
        environment: String,
        /// The stage's.
        wanted: Vec<String>,
    },
    /// The stage names environments and the run chose none.
    #[error("no environment was chosen (pass --env) and the stage needs {}", list(.0))]
    NoEnvironment(Vec<String>),
}

impl When {
    /// `Ok` when the stage should run, else why it is skipped.
    pub fn check(&self, facts: &RunFacts) -> Result<(), Skip> {
        if !self.branch.is_empty() {
            match &facts.branch {
                Some(b) if self.branch.iter().any(|p| glob_match(p, b)) => {}
                Some(b) => {
                    return Err(Skip::Branch {
                        branch: b.clone(),
                        wanted: self.branch.clone(),
                    });
                }
                None => return Err(Skip::NoBranch(self.branch.clone())),
            }
        }
        if !self.environment.is_empty() {
            match &facts.environment {
                Some(e) if self.environment.iter().any(|x| x == e) => {}
                Some(e) => {
                    return Err(Skip::Environment {
                        environment: e.clone(),
                        wanted: self.environment.clone(),
                    });
                }
                None => return Err(Skip::NoEnvironment(self.environment.clone())),
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
        assert_eq!(
            w.check(&facts).unwrap_err().to_string(),
            "branch `dev` does not match `main`"
        );
    }
}
