//! What a component's bytes, imports and exports say before it runs:
//! its header, the packages it imports, the kind its exports make it.

use super::*;

pub(super) fn read_limited(name: &str, path: &Path) -> Result<Vec<u8>, PluginError> {
    let read_err = |source| PluginError::Read {
        name: name.into(),
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len() as usize;
    if size > MAX_PLUGIN_BYTES {
        return Err(PluginError::TooLarge {
            name: name.into(),
            source_label: path.display().to_string(),
            size,
            limit: MAX_PLUGIN_BYTES,
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Why `bytes` is obviously not a component, if it is not.
pub(super) fn header_problem(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Some("it does not start with the WebAssembly magic bytes (is this the right file?)".into());
    }
    // Bytes 4..8: version and layer. Layer 1 is a component, 0 a module.
    if bytes[6..8] == [0, 0] {
        return Some(
            "it is a core WebAssembly module, not a component; build for wasm32-wasip2 (not wasm32-unknown-unknown or wasm32-wasip1)"
                .into(),
        );
    }
    None
}

/// The limit a compile error from the pooling allocator's checks names:
/// these run when a component is compiled, before any Store exists.
pub(super) fn pool_limit(reason: &str) -> Option<&'static str> {
    if !reason.contains("pooling allocator") {
        return None;
    }
    Some(
        if reason.contains("memories count") || reason.contains("linear memories") {
            "memories"
        } else if reason.contains("tables count")
            || (reason.contains("contains") && reason.contains("tables"))
        {
            "table-count"
        } else if reason.contains("table index") {
            "tables"
        } else if reason.contains("memory index") {
            "memory"
        } else {
            "instances"
        },
    )
}

/// Functions that fail for the imports of `component` weir does not offer
/// (`unoffered`), so `weir plugin inspect` can call describe() on a plugin
/// weir would not run. Only those names: the linker's own interfaces are
/// matched by semver (`@0.2.9` by `@0.2.12`), which a stand-in under the
/// exact name would shadow.
pub(super) fn stub_unoffered(
    linker: &mut Linker<StageState>,
    component: &Component,
    unoffered: &[&String],
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = component.engine();
    for (name, item) in component.component_type().imports(engine) {
        if !unoffered.iter().any(|u| u.as_str() == name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let what = name.to_string();
                linker.root().func_new(name, move |_, _, _, _| {
                    wasmtime::bail!("`{what}` is not offered by weir")
                })?;
            }
            ComponentItem::ComponentInstance(instance) => {
                let mut stubs = linker.instance(name)?;
                for (function, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(_) = item.ty {
                        let what = format!("{name}#{function}");
                        stubs.func_new(function, move |_, _, _, _| {
                            wasmtime::bail!("`{what}` is not offered by weir")
                        })?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The names of `component`'s imports and exports.
pub(super) fn import_and_export_names(component: &Component) -> (Vec<String>, Vec<String>) {
    let engine = component.engine();
    let ty = component.component_type();
    (
        ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    )
}

/// Why a plugin whose SDK declared `package` cannot load here, if so.
pub(super) fn unsupported_package(package: &str) -> Option<String> {
    let version = package
        .strip_prefix(kind::PACKAGE)
        .and_then(|v| v.strip_prefix('@'));
    (!version.is_some_and(kind::compatible)).then(|| {
        format!(
            "was built with a weir-sdk for {package}, but this weir supports {}@{}; rebuild it against a matching weir-sdk (its `{}` section says which it used; for Python and JavaScript, the project's wit/deps/weir-plugin)",
            kind::PACKAGE,
            kind::VERSION,
            wit_section::SECTION
        )
    })
}

/// Why a component's exports make it no one kind of plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// None of weir's interfaces.
    #[error(
        "exports none of weir's plugin interfaces (it exports: {}); build it with weir-sdk and one of its export_* macros",
        list_or_nothing(.0)
    )]
    None(Vec<String>),
    /// Several kinds at once.
    #[error("exports more than one plugin kind ({}); a plugin is exactly one kind", .0.join(", "))]
    Many(Vec<String>),
    /// A contract version this weir does not speak.
    #[error(
        "was built for {0}, but this weir supports {package}@{version}; rebuild it against a matching weir-sdk",
        package = kind::PACKAGE,
        version = kind::VERSION
    )]
    Version(String),
    /// A kind without `describe()`.
    #[error(
        "does not export {}/plugin, so it has no describe(); build it with weir-sdk",
        kind::PACKAGE
    )]
    NoDescribe,
}

/// The one kind `exports` make a plugin, or why they make none.
pub(super) fn kind_of(exports: &[String]) -> Result<(PluginKind, Contract), KindError> {
    match kind::exported_kind(exports.iter().map(String::as_str)) {
        kind::ExportedKind::One(k, contract) => Ok((k, contract)),
        kind::ExportedKind::None => Err(KindError::None(exports.to_vec())),
        kind::ExportedKind::Many(kinds) => {
            Err(KindError::Many(kinds.iter().map(|k| k.to_string()).collect()))
        }
        kind::ExportedKind::Version(found) => Err(KindError::Version(found.to_string())),
        kind::ExportedKind::NoDescribe => Err(KindError::NoDescribe),
    }
}

pub(super) fn kind_mismatch(exported: PluginKind, declared: PluginKind) -> String {
    format!(
        "exports the `{}` interface but its manifest says it is a `{}`",
        kind_name(exported),
        kind_name(declared)
    )
}

pub(super) fn list_or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}
