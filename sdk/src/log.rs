//! Log lines and progress, shown live in `weir run` and kept with the run.
//!
//! ```no_run
//! weir_sdk::log::info("compiling");
//! weir_sdk::log::with_fields(weir_sdk::log::Level::Warn, "slow test", &[("name", "io"), ("ms", "812")]);
//! weir_sdk::log::progress(3, Some(10), "files hashed");
//! ```

use crate::wit::weir::plugin::log as host;
pub use crate::wit::weir::plugin::log::Level;

/// Log `message` at `level` with structured fields.
pub fn with_fields(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host::write(level, message, &fields);
}

/// Log at debug level (shown with `weir run -v`).
pub fn debug(message: &str) {
    host::write(Level::Debug, message, &[]);
}

/// Log normal progress.
pub fn info(message: &str) {
    host::write(Level::Info, message, &[]);
}

/// Log something that looks wrong.
pub fn warn(message: &str) {
    host::write(Level::Warn, message, &[]);
}

/// Log a failure.
pub fn error(message: &str) {
    host::write(Level::Error, message, &[]);
}

/// Report `done` of `total` units of work.
pub fn progress(done: u64, total: Option<u64>, message: &str) {
    host::progress(done, total, message);
}
