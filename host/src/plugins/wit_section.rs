//! The WIT package a plugin says it was built against: weir-sdk writes it
//! into a custom section, `weir-wit-package`, of the plugin's core module
//! (`weir:plugin@0.1.0`). weir reads it from the bytes, before compiling
//! anything, so a plugin for another contract is refused at once with both
//! versions named. Components built without the SDK have no such section;
//! their export names say the same later.

/// The custom section's name.
pub const SECTION: &str = "weir-wit-package";

/// The package `bytes` (a component) declares in [`SECTION`], in its own
/// sections or its core modules'; `None` without one, or when the bytes
/// do not parse as far as that (the compiler reports what is wrong).
pub fn declared_package(bytes: &[u8]) -> Option<String> {
    find(bytes, 0)
}

fn find(bytes: &[u8], depth: u8) -> Option<String> {
    let mut i = 8;
    while i < bytes.len() {
        let id = *bytes.get(i)?;
        let (size, start) = leb(bytes, i + 1)?;
        let end = start.checked_add(size)?;
        let body = bytes.get(start..end)?;
        match id {
            0 => {
                let (len, at) = leb(body, 0)?;
                let name = body.get(at..at.checked_add(len)?)?;
                if name == SECTION.as_bytes() {
                    let payload = body.get(at + len..)?;
                    return std::str::from_utf8(payload).ok().map(str::to_string);
                }
            }
            // A core module of this component (not nested further).
            1 if depth == 0 && body.starts_with(b"\0asm") => {
                if let Some(found) = find(body, depth + 1) {
                    return Some(found);
                }
            }
            _ => {}
        }
        i = end;
    }
    None
}

/// `component` with a component-level [`SECTION`] naming `package`
/// appended: what `weir plugin build` adds to Python and JavaScript
/// components, whose tools know nothing of weir.
pub fn with_declaration(mut component: Vec<u8>, package: &str) -> Vec<u8> {
    let mut body = Vec::new();
    push_leb(&mut body, SECTION.len());
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(package.as_bytes());
    component.push(0);
    push_leb(&mut component, body.len());
    component.extend(body);
    component
}

fn push_leb(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// An unsigned LEB128 at `at`: the value and where the next byte is.
fn leb(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut value: usize = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some((value, at));
        }
    }
    None
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
