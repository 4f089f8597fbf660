//! DSSE (Dead Simple Signing Envelope) v1: the payload, its type and
//! signatures over `PAE(type, payload)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Which key made it ([`super::keys::key_id`]).
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The payload, base64.
    pub payload: String,
    /// What the payload is.
    pub payload_type: String,
    /// Its signatures (none when the run had no signing key).
    pub signatures: Vec<Signature>,
}

/// Why an envelope does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The envelope carries no signature.
    #[error("the provenance is not signed (the run had no signing key; `weir keys generate` makes one)")]
    Unsigned,
    /// No signature is the key's.
    #[error("no signature in the envelope was made by this key ({key_id}); it was signed by {}", signed_by.join(", "))]
    WrongKey {
        /// The key given.
        key_id: String,
        /// The key ids of the signatures.
        signed_by: Vec<String>,
    },
    /// The signature does not match the payload.
    #[error(
        "the signature does not match the statement: the statement or its signature was changed after signing"
    )]
    BadSignature,
    /// Not base64.
    #[error("the envelope's {0} is not base64")]
    NotBase64(&'static str),
    /// Not the payload type of a statement.
    #[error("the envelope's payloadType is `{0}`, not `{IN_TOTO_PAYLOAD_TYPE}`")]
    PayloadType(String),
}

/// The pre-authentication encoding DSSE signs:
/// `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// `payload`, signed with `key` when there is one.
    pub fn new(payload: &[u8], key: Option<&SigningKey>) -> Self {
        let signatures = key
            .map(|key| {
                let sig = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload));
                vec![Signature {
                    keyid: super::keys::key_id(&key.verifying_key()),
                    sig: STANDARD.encode(sig.to_bytes()),
                }]
            })
            .unwrap_or_default();
        Self {
            payload: STANDARD.encode(payload),
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_string(),
            signatures,
        }
    }

    /// The payload, once a signature by `key` over it holds.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, VerifyError> {
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(VerifyError::PayloadType(self.payload_type.clone()));
        }
        if self.signatures.is_empty() {
            return Err(VerifyError::Unsigned);
        }
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|_| VerifyError::NotBase64("payload"))?;
        let id = super::keys::key_id(key);
        let ours: Vec<&Signature> = self
            .signatures
            .iter()
            .filter(|s| s.keyid.is_empty() || s.keyid == id)
            .collect();
        if ours.is_empty() {
            return Err(VerifyError::WrongKey {
                key_id: id,
                signed_by: self.signatures.iter().map(|s| s.keyid.clone()).collect(),
            });
        }
        let message = pae(&self.payload_type, &payload);
        for s in ours {
            let bytes = STANDARD
                .decode(&s.sig)
                .map_err(|_| VerifyError::NotBase64("signature"))?;
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
                continue;
            };
            if key.verify(&message, &sig).is_ok() {
                return Ok(payload);
            }
        }
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_spec_s_encoding() {
        // The DSSE specification's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_changed_payload_or_another_key_does_not_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let env = Envelope::new(b"{\"a\":1}", Some(&key));
        assert_eq!(env.verify(&key.verifying_key()), Ok(b"{\"a\":1}".to_vec()));
        assert!(matches!(
            env.verify(&other.verifying_key()),
            Err(VerifyError::WrongKey { .. })
        ));
        let mut changed = env.clone();
        changed.payload = STANDARD.encode(b"{\"a\":2}");
        assert_eq!(
            changed.verify(&key.verifying_key()),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            Envelope::new(b"x", None).verify(&key.verifying_key()),
            Err(VerifyError::Unsigned)
        );
    }
}
