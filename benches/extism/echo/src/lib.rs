//! Echoes its input: the least an Extism plugin can do when called.

use extism_pdk::{FnResult, plugin_fn};

/// The input, unchanged.
#[plugin_fn]
pub fn echo(input: String) -> FnResult<String> {
    Ok(input)
}
