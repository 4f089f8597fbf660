//! weir's signing keys: ed25519, the private key as PKCS#8 PEM (mode
//! 0600), the public key as SubjectPublicKeyInfo PEM, the form `openssl`,
//! cosign and securesystemslib read.
//!
//! The signing key is `$WEIR_SIGNING_KEY`, else
//! `DATA_DIR/keys/weir-signing.key` (`weir keys generate` writes there).
//! Only the host reads it, when a run ends; a pipeline whose workspace or
//! `allow.read` would let a stage's programs read it is refused.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Names the signing key's file.
pub const SIGNING_KEY_ENV: &str = "WEIR_SIGNING_KEY";
/// The private key's file name in a keys directory.
pub const PRIVATE_FILE: &str = "weir-signing.key";
/// The public key's file name in a keys directory.
pub const PUBLIC_FILE: &str = "weir-signing.pub";

/// A key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is there already.
    #[error("{} exists; keep it, or pass --force to replace it (runs signed with the old key then verify only with the old public key)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Not a key of the expected form.
    #[error("{} is not an ed25519 {what} in PEM ({detail})", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Private or public key.
        what: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// Others can read the private key.
    #[error("{} can be read by other users (mode {mode:03o}); run `chmod 600 {}`", path.display(), path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No randomness.
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
    /// No place for keys.
    #[error("weir has no data directory for keys: set WEIR_DATA_DIR=DIR, or pass --out DIR")]
    NoDataDir,
}

/// The hex sha256 of the raw public key: the `keyid` of signatures.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Where keys are kept by default: `DATA_DIR/keys`.
pub fn default_dir() -> Option<PathBuf> {
    crate::advisories::data_dir().map(|d| d.join("keys"))
}

/// The signing key's path, whether or not the file exists.
pub fn signing_key_path() -> Option<PathBuf> {
    match std::env::var_os(SIGNING_KEY_ENV).filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            Some(std::path::absolute(&p).unwrap_or(p))
        }
        None => default_dir().map(|d| d.join(PRIVATE_FILE)),
    }
}

/// A new key pair in `dir`; returns the private and public files.
pub fn generate(dir: &Path, force: bool) -> Result<(PathBuf, PathBuf, VerifyingKey), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let private = dir.join(PRIVATE_FILE);
    let public = dir.join(PUBLIC_FILE);
    if !force && private.exists() {
        return Err(KeyError::Exists { path: private });
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Format {
        path: private.clone(),
        what: "private key",
        detail: e.to_string(),
    })?;
    // Written beside, readable by the owner alone from the first byte, then
    // moved in.
    let tmp = dir.join(format!(".{PRIVATE_FILE}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(pem.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &private).map_err(io(&private))?;
    let verifying = key.verifying_key();
    let public_pem = verifying
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format {
            path: public.clone(),
            what: "public key",
            detail: e.to_string(),
        })?;
    std::fs::write(&public, public_pem).map_err(io(&public))?;
    Ok((private, public, verifying))
}

/// Read the signing key at `path`; it must be readable by its owner alone.
pub fn load_signing(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        what: "private key (PKCS#8)",
        detail: e.to_string(),
    })
}

/// Read a public key (SubjectPublicKeyInfo PEM) at `path`.
pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        what: "public key",
        detail: e.to_string(),
    })
}

/// The first of `reads` (or `workspace`) through which a stage's programs
/// could read `key`.
pub fn exposed_to<'a>(key: &Path, reads: impl IntoIterator<Item = &'a Path>) -> Option<&'a Path> {
    let key = key.canonicalize().unwrap_or_else(|_| key.to_path_buf());
    reads.into_iter().find(|r| {
        let r = r.canonicalize().unwrap_or_else(|_| r.to_path_buf());
        key.starts_with(&r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_and_the_private_one_is_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let (private, public, verifying) = generate(dir.path(), false).expect("generate");
        let mode = std::fs::metadata(&private).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            load_signing(&private).expect("private").verifying_key(),
            verifying
        );
        assert_eq!(load_public(&public).expect("public"), verifying);
        assert!(matches!(
            generate(dir.path(), false),
            Err(KeyError::Exists { .. })
        ));
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_signing(&private),
            Err(KeyError::TooOpen { mode: 0o644, .. })
        ));
        assert!(matches!(
            load_signing(&public),
            Err(KeyError::TooOpen { .. }) | Err(KeyError::Format { .. })
        ));
    }

    #[test]
    fn a_read_grant_above_the_key_exposes_it() {
        let key = Path::new("/home/me/.local/share/weir/keys/weir-signing.key");
        let home = Path::new("/home/me");
        let other = Path::new("/home/me/src");
        assert_eq!(exposed_to(key, [other, home]), Some(home));
        assert_eq!(exposed_to(key, [other]), None);
    }
}
