//! SLSA v1 provenance for every run that produces artifacts: an in-toto
//! Statement v1 whose subjects are the run's artifacts, signed as a DSSE
//! envelope with weir's ed25519 key, written to
//! `reports/provenance.intoto.jsonl` when the run finishes.
//!
//! - [`statement`]: what the statement says (subjects, build definition,
//!   run details), learnt from the plan and the run's events.
//! - [`dsse`]: the envelope, its pre-authentication encoding, signing and
//!   verifying.
//! - [`keys`]: generating, finding and reading keys; the signing key must
//!   never be readable by a stage ([`keys::exposed_to`]).
//!
//! docs/security.md says which SLSA build level this reaches, and why.

pub mod dsse;
pub mod keys;
pub mod statement;

/// The run's provenance file, in its reports directory.
pub const PROVENANCE_FILE: &str = "provenance.intoto.jsonl";

use std::path::{Path, PathBuf};

/// What writing a run's provenance came to.
#[derive(Debug)]
pub enum Written {
    /// Signed with the key whose id this is.
    Signed(PathBuf, String),
    /// Written unsigned: there is no signing key.
    Unsigned(PathBuf),
    /// The run made no artifacts: nothing to describe.
    Nothing,
}

/// Write `collector`'s statement into `reports` as a DSSE envelope, signed
/// with the key at `key` when that file exists.
pub fn write(
    collector: &statement::Collector,
    reports: &Path,
    key: Option<&Path>,
) -> Result<Written, String> {
    if !collector.has_subjects() {
        return Ok(Written::Nothing);
    }
    let signing = match key.filter(|k| k.exists()) {
        Some(k) => Some(keys::load_signing(k).map_err(|e| format!("cannot sign provenance: {e}"))?),
        None => None,
    };
    let payload = serde_json::to_vec(&collector.statement()).map_err(|e| e.to_string())?;
    let envelope = dsse::Envelope::new(&payload, signing.as_ref());
    let mut line = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
    line.push('\n');
    std::fs::create_dir_all(reports)
        .map_err(|e| format!("cannot write provenance in {}: {e}", reports.display()))?;
    let path = reports.join(PROVENANCE_FILE);
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, line)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(match signing {
        Some(k) => Written::Signed(path, keys::key_id(&k.verifying_key())),
        None => Written::Unsigned(path),
    })
}

/// What `weir verify` established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The subject the artifact is.
    pub subject: String,
    /// Its sha256.
    pub sha256: String,
    /// The run that made it.
    pub run: String,
    /// The pipeline.
    pub pipeline: String,
    /// Commits it was built from.
    pub commits: Vec<String>,
    /// The builder.
    pub builder: String,
    /// The key that signed it.
    pub key_id: String,
}

/// Why an artifact does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The provenance file is not an envelope.
    #[error("{} is not a DSSE envelope: {detail}", path.display())]
    NotEnvelope {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The key.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The signature.
    #[error(transparent)]
    Signature(#[from] dsse::VerifyError),
    /// The signed payload is not SLSA provenance.
    #[error("the signed statement is not SLSA v1 provenance: {0}")]
    NotProvenance(String),
    /// The artifact is not among the subjects.
    #[error("{} (sha256 {sha256}) is not what this provenance describes: it was changed, or is another file; the provenance names {}", path.display(), subjects.join(", "))]
    NotASubject {
        /// The artifact.
        path: PathBuf,
        /// Its digest.
        sha256: String,
        /// What the provenance names.
        subjects: Vec<String>,
    },
}

/// Check that `artifact` is a subject of the provenance in `provenance`,
/// signed by the public key in `key`.
pub fn verify(artifact: &Path, provenance: &Path, key: &Path) -> Result<Verified, VerifyFailure> {
    use sha2::Digest as _;
    let verifying = keys::load_public(key)?;
    let text = std::fs::read_to_string(provenance).map_err(|source| VerifyFailure::Read {
        path: provenance.to_path_buf(),
        source,
    })?;
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let envelope: dsse::Envelope = serde_json::from_str(line).map_err(|e| VerifyFailure::NotEnvelope {
        path: provenance.to_path_buf(),
        detail: e.to_string(),
    })?;
    let payload = envelope.verify(&verifying)?;
    let statement: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| VerifyFailure::NotProvenance(e.to_string()))?;
    if statement["_type"] != statement::STATEMENT_TYPE {
        return Err(VerifyFailure::NotProvenance(format!(
            "`_type` is {}",
            statement["_type"]
        )));
    }
    if statement["predicateType"] != statement::PREDICATE_TYPE {
        return Err(VerifyFailure::NotProvenance(format!(
            "`predicateType` is {}",
            statement["predicateType"]
        )));
    }
    let mut file = std::fs::File::open(artifact).map_err(|source| VerifyFailure::Read {
        path: artifact.to_path_buf(),
        source,
    })?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| VerifyFailure::Read {
        path: artifact.to_path_buf(),
        source,
    })?;
    let sha256 = hex::encode(hasher.finalize());
    let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
    let Some(subject) = subjects.iter().find(|s| s["digest"]["sha256"] == sha256.as_str()) else {
        return Err(VerifyFailure::NotASubject {
            path: artifact.to_path_buf(),
            sha256,
            subjects: subjects
                .iter()
                .map(|s| {
                    format!(
                        "{} (sha256 {})",
                        s["name"].as_str().unwrap_or("?"),
                        s["digest"]["sha256"].as_str().unwrap_or("?")
                    )
                })
                .collect(),
        });
    };
    let predicate = &statement["predicate"];
    let str_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    Ok(Verified {
        subject: str_of(&subject["name"]),
        sha256,
        run: str_of(&predicate["runDetails"]["metadata"]["invocationId"]),
        pipeline: str_of(&predicate["buildDefinition"]["externalParameters"]["pipeline"]["name"]),
        commits: predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["digest"]["gitCommit"].as_str().map(String::from))
            .collect(),
        builder: str_of(&predicate["runDetails"]["builder"]["id"]),
        key_id: keys::key_id(&verifying),
    })
}
