//! Reading `pipeline.toml`: parse into [`model`], keeping spans, so that
//! every later check can name the file, line and column of what is wrong.
//!
//! This module only parses; the plan module checks meaning (stage names,
//! cycles, plugins) and builds the form the scheduler runs.

pub mod duration;
pub mod model;
pub mod server;
pub mod source;
pub mod tenants;

use std::path::Path;

pub use model::PipelineFile;
pub use source::{ConfigError, InvalidConfig, SourceFile, did_you_mean};

/// A parsed pipeline and the text it came from.
#[derive(Debug)]
pub struct LoadedPipeline {
    /// The file, for error messages.
    pub source: SourceFile,
    /// What it says.
    pub file: PipelineFile,
}

/// Why a pipeline could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(help("check the path; `weir run` takes the pipeline file, e.g. `weir run pipeline.toml`"))]
    Read {
        /// The path given.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PIPELINE_BYTES`].
    #[error("{} is {size} bytes; the limit is {MAX_PIPELINE_BYTES} bytes (limit `pipeline-size`)", path.display())]
    #[diagnostic(help(
        "a pipeline file describes stages; keep data in the workspace and point stages at it"
    ))]
    TooLarge {
        /// The path given.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a valid pipeline.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] InvalidConfig),
}

/// The largest pipeline file weir reads.
pub const MAX_PIPELINE_BYTES: u64 = 16 << 20;

/// Read and parse the pipeline at `path`.
pub fn load(path: &Path) -> Result<LoadedPipeline, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_PIPELINE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, text)
}

/// Parse `text` as the pipeline file at `path`.
pub fn parse(path: &Path, text: String) -> Result<LoadedPipeline, LoadError> {
    let source = SourceFile::new(path, text);
    match toml::from_str::<PipelineFile>(source.text()) {
        Ok(file) => Ok(LoadedPipeline { source, file }),
        Err(err) => Err(InvalidConfig {
            path: path.to_path_buf(),
            errors: vec![toml_error(&source, &err)],
        }
        .into()),
    }
}

/// Turn a TOML or serde error into one that points at the text and says how
/// to fix the common cases.
pub(crate) fn toml_error(source: &SourceFile, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_string();
    let mut error = match err.span() {
        Some(span) => source.error(span, message.clone()),
        None => source.error_whole(message.clone()),
    };
    if let Some(help) = help_for(&message) {
        error = error.help(help);
    }
    error
}

fn help_for(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`')?;
        let names: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        return Some(match did_you_mean(field, names.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "remove `{field}`; the keys allowed here are {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if message.starts_with("missing field `pipeline`") {
        return Some("start the file with a [pipeline] table: [pipeline] then name = \"my-pipeline\"".into());
    }
    if message.starts_with("missing field `name`") {
        return Some("give the pipeline a name: name = \"my-pipeline\"".into());
    }
    if message.starts_with("invalid type") {
        return Some("check the value's type: strings are quoted, lists use [ ], tables use { }".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> ConfigError {
        match parse(Path::new("pipeline.toml"), text.into()) {
            Err(LoadError::Invalid(mut e)) => e.errors.remove(0),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn unknown_key_points_at_it_and_suggests() {
        let e = err_of("[pipeline]\nname = \"x\"\n[stages.a]\nuses = \"noop\"\nnedds = []\n");
        assert_eq!(e.location, "pipeline.toml:5:1");
        assert!(e.message.contains("unknown field `nedds`"), "{}", e.message);
        assert_eq!(e.help.as_deref(), Some("did you mean `needs`?"));
    }

    #[test]
    fn wrong_type_is_located() {
        let e = err_of("[pipeline]\nname = \"x\"\n[stages.a]\nuses = \"noop\"\nretries = \"two\"\n");
        assert_eq!(e.location, "pipeline.toml:5:11");
    }

    #[test]
    fn stages_keep_file_order() {
        let p = parse(
            Path::new("p.toml"),
            "[pipeline]\nname = \"x\"\n[stages.z]\nuses = \"noop\"\n[stages.a]\nuses = \"noop\"\n".into(),
        )
        .unwrap();
        let names: Vec<_> = p.file.stages.keys().map(|k| k.get_ref().as_str()).collect();
        assert_eq!(names, ["z", "a"]);
    }
}
