//! One image layer: a POSIX ustar archive of the files, written so that
//! the same files give the same bytes every time (entries sorted by path,
//! parent directories first, owner 0:0, time 0, no user or group names),
//! then gzip-compressed with a fixed header (no name, time 0) and level.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

/// One file in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its absolute path in the image, e.g. `/app/server`.
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A built layer.
pub struct Layer {
    /// The compressed archive (the blob).
    pub blob: Vec<u8>,
    /// `sha256:` of the blob.
    pub digest: String,
    /// `sha256:` of the uncompressed archive (the config's diff id).
    pub diff_id: String,
}

/// Why a path cannot go into a layer.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path == "/" {
        return Err(format!(
            "`{path}`: a path in the image must be absolute and name a file, e.g. \"/app/server\""
        ));
    }
    if path.split('/').any(|p| p == ".." || p == ".")
        || path.contains("//")
        || path.ends_with('/')
        || path.contains('\0')
    {
        return Err(format!(
            "`{path}`: a path in the image may not have `.`, `..` or empty parts"
        ));
    }
    if path.len() > 250 {
        return Err(format!("`{path}` is longer than 250 bytes"));
    }
    Ok(())
}

/// The layer of `entries`.
pub fn build(entries: &[Entry]) -> Result<Layer, String> {
    let tar = archive(entries)?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar)
        .map_err(|e| format!("cannot compress the layer: {e}"))?;
    let blob = gz
        .finish()
        .map_err(|e| format!("cannot compress the layer: {e}"))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    Ok(Layer {
        blob,
        digest,
        diff_id,
    })
}

/// The uncompressed archive.
pub fn archive(entries: &[Entry]) -> Result<Vec<u8>, String> {
    // Every directory on the way to a file, then the files, by path.
    let mut items: BTreeMap<String, Option<&Entry>> = BTreeMap::new();
    for e in entries {
        check_path(&e.path)?;
        let rel = e.path.trim_start_matches('/');
        let mut at = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            at.push_str(part);
            at.push('/');
            items.entry(at.clone()).or_insert(None);
        }
        if items.insert(rel.to_string(), Some(e)).is_some() {
            return Err(format!("`{}` is named twice", e.path));
        }
    }
    // A file may not also be a directory on another file's path.
    for (name, entry) in &items {
        if entry.is_none() && items.get(name.trim_end_matches('/')).is_some_and(Option::is_some) {
            return Err(format!(
                "`/{}` is a file and the directory of another file",
                name.trim_end_matches('/')
            ));
        }
    }
    let mut out = Vec::new();
    for (name, entry) in &items {
        match entry {
            None => out.extend_from_slice(&header(name, 0o755, 0, b'5')?),
            Some(e) => {
                out.extend_from_slice(&header(name, e.mode & 0o777, e.bytes.len() as u64, b'0')?);
                out.extend_from_slice(&e.bytes);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
        }
    }
    // Two empty blocks end the archive.
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

fn octal(field: &mut [u8], value: u64) -> Result<(), String> {
    let text = format!("{value:0width$o}", width = field.len() - 1);
    if text.len() > field.len() - 1 {
        return Err(format!("{value} does not fit a tar header field"));
    }
    field[..text.len()].copy_from_slice(text.as_bytes());
    field[text.len()] = 0;
    Ok(())
}

fn header(name: &str, mode: u32, size: u64, kind: u8) -> Result<[u8; 512], String> {
    let mut h = [0u8; 512];
    // Names over 100 bytes are split at a `/` into prefix and name.
    let (prefix, base) = if name.len() <= 100 {
        ("", name)
    } else {
        let cut = name
            .bytes()
            .take(156)
            .rposition(|b| b == b'/')
            .filter(|&i| name.len() - i - 1 <= 100 && i <= 155)
            .ok_or_else(|| format!("`{name}` is too long for a tar header"))?;
        (&name[..cut], &name[cut + 1..])
    };
    h[..base.len()].copy_from_slice(base.as_bytes());
    octal(&mut h[100..108], u64::from(mode))?;
    octal(&mut h[108..116], 0)?;
    octal(&mut h[116..124], 0)?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], 0)?;
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is taken with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, bytes: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            mode: 0o755,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn the_same_files_give_the_same_layer_whatever_their_order() {
        let a = build(&[entry("/app/server", b"binary"), entry("/etc/app.toml", b"x = 1")]).expect("layer");
        let b = build(&[entry("/etc/app.toml", b"x = 1"), entry("/app/server", b"binary")]).expect("layer");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        let c = build(&[entry("/app/server", b"binary2")]).expect("layer");
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn the_archive_is_ustar_with_parents_first_and_checksums() {
        let tar = archive(&[entry("/app/bin/server", b"hello")]).expect("tar");
        let names: Vec<String> = tar
            .chunks(512)
            .filter(|b| b[257..262] == *b"ustar")
            .map(|b| {
                String::from_utf8_lossy(&b[..100])
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["app/", "app/bin/", "app/bin/server"]);
        let file = &tar[1024..1536];
        let stored = u32::from_str_radix(String::from_utf8_lossy(&file[148..154]).trim(), 8).expect("octal");
        let mut copy = file.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&tar[1536..1541], b"hello");
        assert_eq!(tar.len() % 512, 0);
    }

    #[test]
    fn paths_that_could_escape_or_collide_are_refused() {
        for bad in ["relative", "/", "/a/../b", "/a//b", "/a/"] {
            assert!(build(&[entry(bad, b"")]).is_err(), "{bad}");
        }
        assert!(build(&[entry("/a", b"1"), entry("/a", b"2")]).is_err());
        assert!(build(&[entry("/a", b"1"), entry("/a/b", b"2")]).is_err());
        let long = format!("/{}/{}", "é".repeat(60), "f".repeat(20));
        assert!(build(&[entry(&long, b"x")]).is_ok());
    }
}
