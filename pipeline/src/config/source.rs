//! The text of a configuration file and errors that point into it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A configuration file's path and text, kept so every error can quote it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    path: PathBuf,
    name: String,
    text: Arc<String>,
}

impl SourceFile {
    /// Wrap `text` read from `path`.
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            text: Arc::new(text),
        }
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |nl| before[nl + 1..].chars().count())
            + 1;
        (line, col)
    }

    /// An error at `span` of this file.
    pub fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            message: message.into(),
            location: format!("{}:{line}:{column}", self.name),
            source_code: NamedSource::new(self.name.clone(), self.text.clone()),
            span: Some(SourceSpan::from(span.start..span.end.max(span.start))),
            label: String::from("here"),
            help: None,
        }
    }

    /// An error about the file as a whole.
    pub fn error_whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            location: self.name.clone(),
            source_code: NamedSource::new(self.name.clone(), self.text.clone()),
            span: None,
            label: String::new(),
            help: None,
        }
    }
}

/// One problem in a configuration file, with where it is and how to fix it.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{location}: {message}")]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
    /// `file:line:column`.
    pub location: String,
    #[source_code]
    source_code: NamedSource<Arc<String>>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

impl ConfigError {
    /// Set the label shown under the offending text.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Say how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one file, reported together.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} is not a valid pipeline ({} {})", path.display(), errors.len(), if errors.len() == 1 { "problem" } else { "problems" })]
pub struct InvalidConfig {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    #[related]
    pub errors: Vec<ConfigError>,
}

/// The closest of `candidates` to `word`, if it is close enough to be a
/// likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent swaps, the
/// most common typo (`biuld`).
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new(Path::new("p.toml"), "a = 1\nbb = 2\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        assert_eq!(f.line_col(9), (2, 4));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("biuld", ["build", "test"]), Some("build"));
        assert_eq!(did_you_mean("deploy", ["build", "test"]), None);
    }
}
