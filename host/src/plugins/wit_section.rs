//! The WIT package a plugin says it was built against: weir-sdk writes it
//! into a custom section, `weir-wit-package`, of the plugin's core module
//! (`weir:plugin@0.1.0`). weir reads it from the bytes, before compiling
//! anything, so a plugin for another contract is refused at once with both
//! versions named. Components built without the SDK have no such section;
//! their export names say the same later. Sections are read with
//! wasmparser and written with wasm-encoder, the versions wasmtime uses.

/// The custom section's name.
pub const SECTION: &str = "weir-wit-package";

/// The package `bytes` (a component) declares in [`SECTION`], in its own
/// sections or its core modules'; `None` without one, or when the bytes
/// do not parse as far as that (the compiler reports what is wrong).
pub fn declared_package(bytes: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        // Past a malformed section nothing further can be read.
        if let wasmparser::Payload::CustomSection(section) = payload.ok()?
            && section.name() == SECTION
        {
            return std::str::from_utf8(section.data()).ok().map(str::to_string);
        }
    }
    None
}

/// `component` with a component-level [`SECTION`] naming `package`
/// appended: what `weir plugin build` adds to Python and JavaScript
/// components, whose tools know nothing of weir.
pub fn with_declaration(mut component: Vec<u8>, package: &str) -> Vec<u8> {
    use wasm_encoder::ComponentSection;
    wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: package.as_bytes().into(),
    }
    .append_to_component(&mut component);
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![id, body.len() as u8];
        s.extend_from_slice(body);
        s
    }

    #[test]
    fn a_declaration_added_is_found_again() {
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        let declared = with_declaration(component, "weir:plugin@0.1.0");
        assert_eq!(declared_package(&declared).as_deref(), Some("weir:plugin@0.1.0"));
    }

    #[test]
    fn the_package_is_found_in_a_core_module() {
        let mut custom = vec![SECTION.len() as u8];
        custom.extend_from_slice(SECTION.as_bytes());
        custom.extend_from_slice(b"weir:plugin@0.1.0");
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend(section(0, &custom));
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.extend(section(1, &module));
        assert_eq!(declared_package(&component).as_deref(), Some("weir:plugin@0.1.0"));
        assert_eq!(declared_package(b"\0asm\x0d\0\x01\0"), None);
        // Truncated: no answer, no panic.
        assert_eq!(declared_package(&component[..component.len() - 3]), None);
        assert_eq!(
            declared_package(b"\0asm\x0d\0\x01\0\x01\xff\xff\xff\xff\xff\xff"),
            None
        );
    }
}
