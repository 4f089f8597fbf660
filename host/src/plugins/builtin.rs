//! The plugins embedded in the `weir` binary (built from `plugins/` by
//! `host/build.rs`).

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Names of the built-in plugins, sorted.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}

/// The component bytes of built-in `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
