//! The `secrets` import: secrets held by handle.
//!
//! `open` checks the manifest and the stage's grant, reads the value from
//! the tenant's secret source and keeps it host-side; the plugin gets a
//! handle whose placeholder it passes to the two consumers, which swap the
//! value in as it leaves: a program's environment ([`super::process`]) and
//! an outgoing HTTP request's headers ([`super::http`]). Program output
//! that carries a value comes back masked.

use std::sync::{Arc, Mutex};

use wasmtime::component::{Resource, ResourceTable};

use super::tape::{self, Tape};
use crate::bindings::host::weir::plugin::secrets::{Host, HostSecret};
use crate::bindings::host::weir::plugin::types::HostError;
use crate::config::tenants::SecretSource;

/// Most secrets one Store may hold open at once (limit `secret-handles`).
pub const MAX_OPEN: usize = 64;

pub use crate::bindings::SecretHandle;

/// The secrets a Store opened: placeholder → value, shared with the
/// consumers.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    inner: Arc<Mutex<Vec<(String, String)>>>,
}

impl Opened {
    fn add(&self, placeholder: String, value: String) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((placeholder, value));
    }

    /// A new placeholder standing for `value` in this Store.
    pub fn hold(&self, value: String) -> String {
        let p = placeholder();
        self.add(p.clone(), value);
        p
    }

    /// `text` with every placeholder replaced by its value.
    pub fn substitute(&self, text: &str) -> String {
        let opened = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for (placeholder, value) in opened.iter() {
            if out.contains(placeholder.as_str()) {
                out = out.replace(placeholder.as_str(), value);
            }
        }
        out
    }

    /// Whether `text` carries any placeholder.
    pub fn carries_placeholder(&self, text: &str) -> bool {
        let opened = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        opened.iter().any(|(p, _)| text.contains(p.as_str()))
    }

    /// `bytes` with every opened value (and its encoded forms) replaced by
    /// `***`: what a program printed, before the plugin sees it.
    pub fn mask(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = bytes;
        for form in self.forms() {
            out = replace_bytes(&out, form.as_bytes(), b"***");
        }
        out
    }

    /// [`Opened::mask`] for bytes that were cut short: a value the cut
    /// split in two would match no masked form, so an end that is the
    /// start of one is dropped too. Otherwise whoever places the cut (a
    /// plugin padding a program's environment) could read a value a byte
    /// at a time.
    pub fn mask_cut(&self, bytes: Vec<u8>) -> Vec<u8> {
        let forms = self.forms();
        let mut out = bytes;
        for form in &forms {
            out = replace_bytes(&out, form.as_bytes(), b"***");
        }
        let partial = forms
            .iter()
            .filter_map(|f| (1..f.len()).rev().find(|&k| out.ends_with(&f.as_bytes()[..k])))
            .max();
        if let Some(k) = partial {
            out.truncate(out.len() - k);
        }
        out
    }

    /// Every masked form of every value, longest first.
    fn forms(&self) -> Vec<String> {
        let opened = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut forms: Vec<String> = opened
            .iter()
            .flat_map(|(_, v)| crate::events::masked_forms(v))
            .collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms
    }
}

impl Opened {
    /// A masker for a stream (an HTTP response) that may carry an opened
    /// value, split anywhere across its chunks.
    pub fn stream_mask(&self) -> StreamMask {
        StreamMask {
            forms: self.forms().into_iter().map(String::into_bytes).collect(),
            carry: Vec::new(),
        }
    }

    /// Whether any secret is open.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Masks a byte stream chunk by chunk: every opened value (and its
/// encoded forms) becomes as many `*`, so lengths (and an HTTP body's
/// `Content-Length`) stay as they were. An end of a chunk that could be
/// the start of a value is held back until the next chunk says.
#[derive(Debug)]
pub struct StreamMask {
    forms: Vec<Vec<u8>>,
    carry: Vec<u8>,
}

impl StreamMask {
    /// What of `chunk` (after what was held back) can be passed on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        for form in &self.forms {
            buf = replace_bytes(&buf, form, &vec![b'*'; form.len()]);
        }
        let held = self
            .forms
            .iter()
            .filter_map(|f| (1..f.len()).rev().find(|&k| buf.ends_with(&f[..k])))
            .max()
            .unwrap_or(0);
        self.carry = buf.split_off(buf.len() - held);
        buf
    }

    /// What was held back, at the stream's end: not a whole value.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// `bytes` masked whole (a header value).
    pub fn mask_all(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for form in &self.forms {
            out = replace_bytes(&out, form, &vec![b'*'; form.len()]);
        }
        out
    }
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Per-Store state of the `secrets` import.
pub struct SecretsCtx {
    /// The stage, for messages.
    pub stage: String,
    /// The tenant, for messages.
    pub tenant: String,
    /// The plugin, for messages.
    pub plugin: String,
    /// Whether the manifest declares `secrets`.
    pub declared: bool,
    /// The secrets the stage is granted.
    pub granted: Vec<String>,
    /// The tenant's secret source.
    pub source: SecretSource,
    /// What this Store opened.
    pub opened: Opened,
    /// The handles.
    pub table: ResourceTable,
    /// Replay: `open` is recorded (never a value).
    pub tape: Tape,
}

impl super::Gated for SecretsCtx {
    const GATE: super::Gate = super::Gate {
        interface: "weir:plugin/secrets",
        capability: crate::bindings::types::Capability::Secrets,
        declared_as: "secrets",
        grant_hint: "allow = { secrets = [\"NAME\"] }",
    };

    fn granted(grants: &crate::plan::Grants) -> bool {
        !grants.secrets.is_empty()
    }

    fn new(facts: &super::Facts<'_>) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_OPEN);
        Self {
            stage: facts.stage.to_string(),
            tenant: facts.tenant.to_string(),
            plugin: facts.plugin.to_string(),
            declared: facts.declares(Self::GATE.capability),
            granted: facts.grants.secrets.clone(),
            source: facts.secret_source.clone(),
            opened: facts.opened.clone(),
            table,
            tape: facts.tape.clone(),
        }
    }

    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static,
    {
        crate::bindings::host::weir::plugin::secrets::add_to_linker::<_, wasmtime::component::HasSelf<Self>>(
            linker, get,
        )
    }
}

impl SecretsCtx {
    fn who(&self) -> String {
        format!("stage `{}` (tenant `{}`)", self.stage, self.tenant)
    }

    fn check(&self, name: &str) -> Result<String, HostError> {
        if !self.declared {
            return Err(HostError::Denied(format!(
                "secrets:open `{name}` refused: plugin `{}` does not declare the `secrets` capability in its manifest, so {} cannot open secrets through it",
                self.plugin,
                self.who()
            )));
        }
        if !self.granted.iter().any(|g| g == name) {
            return Err(HostError::Denied(format!(
                "secrets:open `{name}` refused: {} is not granted secret `{name}`; add it to the stage's allow = {{ secrets = [...] }} (within the tenant's policy)",
                self.who()
            )));
        }
        self.source.get(name).ok_or_else(|| {
            HostError::Failed(format!(
                "secret `{name}` is not in the secret source of tenant `{}`: {}",
                self.tenant,
                self.source.how_to_add(name)
            ))
        })
    }
}

/// A fresh placeholder: unguessable, so a plugin cannot name a secret it
/// did not open.
fn placeholder() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock and a counter, still
        // unique per Store (guessing one only ever yields this Store's own
        // secrets, which it opened).
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = crate::events::now_ms() ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        bytes[..8].copy_from_slice(&t.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("weir-secret:{hex}")
}

impl Host for SecretsCtx {
    async fn open(&mut self, name: String) -> Result<Resource<SecretHandle>, HostError> {
        let request = serde_json::json!({ "name": name });
        let replayed = self.tape.answer("secrets.open", &request);
        let value = match replayed {
            // Replay never has values: the recorded run's consumers were
            // recorded too, so the handle only needs to exist.
            Some(answer) => match tape::error_of(&answer) {
                Some(e) => return Err(e),
                None => String::new(),
            },
            None => {
                let checked = self.check(&name);
                let answer = match &checked {
                    Ok(_) => serde_json::json!({ "ok": true }),
                    Err(e) => tape::error_answer(e),
                };
                self.tape.record("secrets.open", request, answer);
                match checked {
                    Ok(v) => v,
                    Err(e) => return Err(e),
                }
            }
        };
        let placeholder = placeholder();
        let handle = SecretHandle {
            name,
            placeholder: placeholder.clone(),
        };
        match self.table.push(handle) {
            Ok(r) => {
                self.opened.add(placeholder, value);
                Ok(r)
            }
            Err(_) => Err(HostError::Limit(format!(
                "secret handle limit hit: {} holds {MAX_OPEN} open secrets (limit `secret-handles`); drop handles it no longer needs",
                self.who()
            ))),
        }
    }
}

impl HostSecret for SecretsCtx {
    // The component model checks every handle the guest passes, so the
    // lookups below only fail if the host lost a handle it handed out.
    async fn name(&mut self, secret: Resource<SecretHandle>) -> String {
        self.table
            .get(&secret)
            .map(|h| h.name.clone())
            .unwrap_or_default()
    }

    async fn placeholder(&mut self, secret: Resource<SecretHandle>) -> String {
        self.table
            .get(&secret)
            .map(|h| h.placeholder.clone())
            .unwrap_or_default()
    }

    async fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_swap_in_and_are_masked_in_every_form() {
        let o = Opened::default();
        o.add("weir-secret:abc".into(), "hunter2!".into());
        assert_eq!(o.substitute("Bearer weir-secret:abc"), "Bearer hunter2!");
        assert!(o.carries_placeholder("x weir-secret:abc"));
        assert_eq!(o.mask(b"got hunter2! ok".to_vec()), b"got *** ok");
        assert_eq!(o.mask(b"url hunter2%21".to_vec()), b"url ***");
        // The last character before `=` also depends on padding bits.
        assert_eq!(o.mask(b"b64 aHVudGVyMiE=".to_vec()), b"b64 ***E=");
    }

    #[test]
    fn a_cut_inside_a_value_reveals_none_of_it() {
        let o = Opened::default();
        o.hold("hunter2!".into());
        // Wherever a cut falls, nothing of the value is left at the end.
        let full = b"TOKEN=hunter2!".to_vec();
        for at in "TOKEN=".len()..full.len() {
            let shown = o.mask_cut(full[..at].to_vec());
            assert_eq!(shown, b"TOKEN=", "cut at {at}");
        }
        assert_eq!(o.mask_cut(b"x hunter2! TOKEN=hun".to_vec()), b"x *** TOKEN=");
        // An end that starts no value stays.
        assert_eq!(o.mask_cut(b"plain text".to_vec()), b"plain text");
    }

    #[test]
    fn a_stream_is_masked_wherever_its_chunks_split_a_value() {
        let o = Opened::default();
        o.hold("hunter2!".into());
        let body = b"{\"authorization\": \"Bearer hunter2!\"} and hunter2%21 again";
        for size in 1..body.len() {
            let mut m = o.stream_mask();
            let mut out = Vec::new();
            for chunk in body.chunks(size) {
                out.extend(m.push(chunk));
            }
            out.extend(m.finish());
            assert_eq!(out.len(), body.len(), "lengths stay");
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains("hunter2"), "chunks of {size}: {text}");
            assert!(
                text.starts_with("{\"authorization\": \"Bearer ********\"}"),
                "{text}"
            );
        }
        assert_eq!(o.stream_mask().mask_all(b"x-echo: hunter2!"), b"x-echo: ********");
    }
}
