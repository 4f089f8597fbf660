//! Secrets out of events: every string field, in every form a secret
//! may take in text (as it is, base64, URL-encoded).

use super::Event;

/// `event` with every string's secrets replaced by `***`.
pub(super) fn mask_event(event: Event, masks: &[String]) -> Event {
    fn walk(v: &mut serde_json::Value, masks: &[String]) {
        match v {
            serde_json::Value::String(s) => {
                for m in masks {
                    if s.contains(m.as_str()) {
                        *s = s.replace(m.as_str(), "***");
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, masks)),
            serde_json::Value::Object(o) => {
                let keys: Vec<String> = o.keys().cloned().collect();
                for k in keys {
                    if let Some(mut x) = o.remove(&k) {
                        walk(&mut x, masks);
                        let mut key = serde_json::Value::String(k);
                        walk(&mut key, masks);
                        o.insert(key.as_str().unwrap_or_default().to_string(), x);
                    }
                }
            }
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&event) else {
        return event;
    };
    walk(&mut value, masks);
    serde_json::from_value(value).unwrap_or(event)
}

/// The forms of a secret value masked wherever text leaves weir: the
/// value, its URL encoding, and its base64 encodings at each of the three
/// alignments it can have inside a longer base64 string (the characters
/// that depend on the value alone, so `base64(prefix + value)` is caught).
pub fn masked_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string(), url_encoded(value)];
    let bytes = value.as_bytes();
    if bytes.len() >= 4 {
        for k in 0..3usize {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(bytes);
            let encoded = base64_unpadded(&padded);
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            // Short fragments would mask unrelated text.
            if let Some(fragment) = encoded.get(start..end).filter(|f| f.len() >= 6) {
                forms.push(fragment.to_string());
            }
        }
    }
    forms.retain(|f| !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// Standard base64, no padding.
fn base64_unpadded(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Bytes a URL query keeps as they are: RFC 3986's unreserved characters.
const QUERY_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded as in a URL query (unreserved characters kept).
pub fn url_encoded(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventSink, Level};

    #[test]
    fn a_secret_is_masked_in_its_url_and_base64_forms_too() {
        assert_eq!(url_encoded("a b/c~d_e.f-g+é"), "a%20b%2Fc~d_e.f-g%2B%C3%A9");
        assert_eq!(base64_unpadded(b"hunter2"), "aHVudGVyMg");
        let forms = masked_forms("p@ss word!");
        assert!(forms.contains(&"p%40ss%20word%21".to_string()), "{forms:?}");
        assert!(forms.contains(&"cEBzcyB3b3JkI".to_string()), "{forms:?}");
    }

    #[test]
    fn secrets_are_masked_in_every_string_of_an_event() {
        let (sink, mut rx) = EventSink::masked("r", vec!["hunter2".into(), "a b/c".into()]);
        sink.emit(Event::StageLog {
            stage: "s".into(),
            level: Level::Info,
            message: "token=hunter2 and a%20b%2Fc".into(),
            fields: [("hunter2".to_string(), "x hunter2".to_string())].into(),
        });
        let Event::StageLog { message, fields, .. } = rx.try_recv().unwrap().event else {
            panic!("not a log line")
        };
        assert_eq!(message, "token=*** and ***");
        assert_eq!(fields.get("***").map(String::as_str), Some("x ***"));
    }
}
