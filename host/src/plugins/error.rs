//! Why a plugin could not be loaded.

use super::*;

/// Why a plugin could not be loaded. Each names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin `{name}` from {}: {source}", path.display())]
    Read {
        /// The `uses` name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No such built-in.
    #[error("there is no built-in plugin `{0}`")]
    UnknownBuiltin(String),
    /// Bigger than [`MAX_PLUGIN_BYTES`].
    #[error(
        "plugin `{name}` ({source_label}) is {size} bytes; the limit is {limit} bytes (limit `plugin-size`)"
    )]
    TooLarge {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Compiling took longer than [`MAX_COMPILE_TIME`].
    #[error(
        "plugin `{name}` ({source_label}) took longer than {}s to compile and was refused (limit `compile-time`)",
        limit.as_secs()
    )]
    CompileTime {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The pinned digest does not match.
    #[error(
        "plugin `{name}` ({source_label}) has sha256 {actual}, but the pipeline pins {expected}; refusing to run it"
    )]
    DigestMismatch {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// Pinned.
        expected: String,
        /// Found.
        actual: String,
    },
    /// Not a component, or not a valid one.
    #[error("plugin `{name}` ({source_label}) is not a valid WebAssembly component: {reason}")]
    Malformed {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What is wrong.
        reason: String,
    },
    /// It declares more memories, tables or elements than a Store may
    /// have.
    #[error(
        "plugin `{name}` ({source_label}) asks for more than a plugin may have: {reason} (limit `{limit}`)"
    )]
    Exceeds {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What it asks for.
        reason: String,
        /// The limit's name.
        limit: &'static str,
    },
    /// The exports do not make it a weir plugin of one kind.
    #[error("plugin `{name}` ({source_label}) {reason}")]
    Kind {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What is wrong.
        reason: String,
    },
    /// It needs an import weir does not provide.
    #[error("plugin `{name}` ({source_label}) cannot be linked: {reason}")]
    Link {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// `describe()` trapped, timed out or returned nonsense.
    #[error("plugin `{name}` ({source_label}): describe() failed: {reason}")]
    Describe {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What happened.
        reason: String,
    },
}
