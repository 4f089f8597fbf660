//! The replay tape: every call an analyzer makes to a weir host import
//! (`process`, `metrics`, `secrets`) with the answer it got, recorded
//! during a run; during `weir replay`, the same calls are answered from the
//! tape instead of the world, so an analyzer can be re-run offline.
//!
//! Secrets are never written down: a secret's value is recorded as
//! redacted, and replay refuses to make one up.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bindings::host::weir::plugin::types::HostError;

/// Most calls one attempt's tape keeps (limit `replay-calls`).
pub const MAX_CALLS: usize = 10_000;

/// Most bytes of requests and answers one attempt's tape keeps (limit
/// `replay-calls`); calls past either limit are counted, not kept, and the
/// record is marked incomplete.
pub const MAX_BYTES: usize = 64 << 20;

/// One call and its answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Call {
    /// `process.run`, `metrics.query-range`, `secrets.get`.
    pub import: String,
    /// The arguments.
    pub request: Value,
    /// `{"ok": ...}` or `{"error": {"kind": ..., "message": ...}}`.
    pub answer: Value,
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Off,
    Recording {
        calls: Vec<Call>,
        dropped: usize,
        bytes: usize,
    },
    Replaying {
        calls: Vec<Call>,
        used: Vec<bool>,
        unmatched: Vec<String>,
    },
}

/// A tape shared by the imports of one Store and the executor.
#[derive(Debug, Clone, Default)]
pub struct Tape(Arc<Mutex<Mode>>);

/// What a replay did with its tape.
#[derive(Debug, Clone, Default)]
pub struct ReplayUse {
    /// Calls answered from the tape.
    pub answered: usize,
    /// Recorded calls the plugin did not make.
    pub unused: usize,
    /// Calls the tape had no answer for.
    pub unmatched: Vec<String>,
}

impl Tape {
    /// A tape that records.
    pub fn recording() -> Self {
        Self(Arc::new(Mutex::new(Mode::Recording {
            calls: Vec::new(),
            dropped: 0,
            bytes: 0,
        })))
    }

    /// A tape that answers from `calls`.
    pub fn replaying(calls: Vec<Call>) -> Self {
        let used = vec![false; calls.len()];
        Self(Arc::new(Mutex::new(Mode::Replaying {
            calls,
            used,
            unmatched: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In replay, the recorded answer to this call (or an error saying
    /// there is none); `None` when not replaying.
    pub fn answer(&self, import: &str, request: &Value) -> Option<Value> {
        let mut mode = self.lock();
        let Mode::Replaying {
            calls,
            used,
            unmatched,
        } = &mut *mode
        else {
            return None;
        };
        let found = calls
            .iter()
            .enumerate()
            .position(|(i, c)| !used[i] && c.import == import && c.request == *request);
        Some(match found {
            Some(i) => {
                used[i] = true;
                calls[i].answer.clone()
            }
            None => {
                let shown = crate::events::fit(&request.to_string(), 200);
                unmatched.push(format!("{import} {shown}"));
                error_answer(&HostError::Unavailable(format!(
                    "replay: the recorded run made no such `{import}` call ({shown}), so there is no answer to give"
                )))
            }
        })
    }

    /// Record a call (when recording).
    pub fn record(&self, import: &str, request: Value, answer: Value) {
        if let Mode::Recording {
            calls,
            dropped,
            bytes,
        } = &mut *self.lock()
        {
            let size = request.to_string().len() + answer.to_string().len();
            if calls.len() >= MAX_CALLS || *bytes + size > MAX_BYTES {
                *dropped += 1;
            } else {
                *bytes += size;
                calls.push(Call {
                    import: import.to_string(),
                    request,
                    answer,
                });
            }
        }
    }

    /// The recorded calls, and how many were over the limit.
    pub fn take_recorded(&self) -> (Vec<Call>, usize) {
        match std::mem::take(&mut *self.lock()) {
            Mode::Recording { calls, dropped, .. } => (calls, dropped),
            _ => (Vec::new(), 0),
        }
    }

    /// How a replay used the tape.
    pub fn replay_use(&self) -> ReplayUse {
        match &*self.lock() {
            Mode::Replaying { used, unmatched, .. } => ReplayUse {
                answered: used.iter().filter(|u| **u).count(),
                unused: used.iter().filter(|u| !**u).count(),
                unmatched: unmatched.clone(),
            },
            _ => ReplayUse::default(),
        }
    }
}

/// A host error as recorded.
pub fn error_answer(e: &HostError) -> Value {
    let (kind, message) = match e {
        HostError::Denied(m) => ("denied", m),
        HostError::Unavailable(m) => ("unavailable", m),
        HostError::Invalid(m) => ("invalid", m),
        HostError::Limit(m) => ("limit", m),
        HostError::Failed(m) => ("failed", m),
    };
    json!({ "error": { "kind": kind, "message": message } })
}

/// A recorded answer back as a host error, if it is one.
pub fn error_of(answer: &Value) -> Option<HostError> {
    let e = answer.get("error")?;
    let message = e["message"].as_str().unwrap_or_default().to_string();
    Some(match e["kind"].as_str().unwrap_or_default() {
        "denied" => HostError::Denied(message),
        "invalid" => HostError::Invalid(message),
        "limit" => HostError::Limit(message),
        "failed" => HostError::Failed(message),
        _ => HostError::Unavailable(message),
    })
}

/// Bytes as JSON: a string when they are UTF-8, else hex.
pub fn bytes(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => json!({ "utf8": s }),
        Err(_) => json!({ "hex": hex::encode(b) }),
    }
}

/// [`bytes`] back.
pub fn bytes_of(v: &Value) -> Vec<u8> {
    if let Some(s) = v.get("utf8").and_then(Value::as_str) {
        return s.as_bytes().to_vec();
    }
    v.get("hex")
        .and_then(Value::as_str)
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_then_answers_each_call_once() {
        let tape = Tape::recording();
        tape.record("process.run", json!({"p": 1}), json!({"ok": 1}));
        tape.record("process.run", json!({"p": 1}), json!({"ok": 2}));
        let (calls, dropped) = tape.take_recorded();
        assert_eq!((calls.len(), dropped), (2, 0));
        let replay = Tape::replaying(calls);
        assert_eq!(
            replay.answer("process.run", &json!({"p": 1})),
            Some(json!({"ok": 1}))
        );
        assert_eq!(
            replay.answer("process.run", &json!({"p": 1})),
            Some(json!({"ok": 2}))
        );
        let none = replay.answer("process.run", &json!({"p": 1})).unwrap();
        assert!(error_of(&none).is_some());
        let used = replay.replay_use();
        assert_eq!((used.answered, used.unused, used.unmatched.len()), (2, 0, 1));
        assert_eq!(Tape::default().answer("x", &json!(null)), None);
    }

    #[test]
    fn bytes_round_trip() {
        for b in [&b"text"[..], &[0xff, 0, 1][..]] {
            assert_eq!(bytes_of(&bytes(b)), b);
        }
    }
}
