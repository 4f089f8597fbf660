//! The run's secret values, looked for in a file as it is kept.
//!
//! Each secret is looked for in every form logs mask
//! ([`crate::events::masked_forms`]: the value, its URL encoding, its
//! base64 encodings at each alignment), across the chunks the file is read
//! in. The stage's `allow.publish` names the secrets its artifacts may
//! carry.

/// One secret looked for.
#[derive(Debug, Clone)]
pub struct Watched {
    name: String,
    forms: Vec<Vec<u8>>,
}

impl Watched {
    /// Secret `name` with `value`, in all its masked forms.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            forms: crate::events::masked_forms(value)
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        }
    }
}

/// A scan of one file for the secrets it may not hold.
pub struct SecretScan<'a> {
    watched: Vec<&'a Watched>,
    /// Whether `allow.publish` let some secret through.
    exempted: bool,
    /// The end of what was read, that could begin a form.
    tail: Vec<u8>,
    keep: usize,
    found: Option<String>,
}

impl<'a> SecretScan<'a> {
    /// A scan for every one of `all` but those `publish` names.
    pub fn new(all: &'a [Watched], publish: &[String]) -> Self {
        let watched: Vec<&Watched> = all.iter().filter(|w| !publish.contains(&w.name)).collect();
        let keep = watched
            .iter()
            .flat_map(|w| w.forms.iter().map(Vec::len))
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        Self {
            exempted: watched.len() < all.len(),
            watched,
            tail: Vec::new(),
            keep,
            found: None,
        }
    }

    /// Look at the next `chunk` of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.found.is_some() || self.watched.is_empty() {
            return;
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        self.found = self
            .watched
            .iter()
            .find(|w| w.forms.iter().any(|f| memchr::memmem::find(&window, f).is_some()))
            .map(|w| w.name.clone());
        let from = window.len().saturating_sub(self.keep);
        self.tail = window.split_off(from);
    }

    /// The secret found so far, if any.
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// Whether some secret was not looked for (the stage may publish it).
    pub fn exempted(&self) -> bool {
        self.exempted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_found_split_across_chunks_and_encoded() {
        let all = [Watched::new("TOKEN", "s3cr3t-v4lue")];
        let mut scan = SecretScan::new(&all, &[]);
        scan.feed(b"prefix s3cr");
        assert_eq!(scan.found(), None);
        scan.feed(b"3t-v4lue suffix");
        assert_eq!(scan.found(), Some("TOKEN"));

        let mut scan = SecretScan::new(&all, &[]);
        let encoded = crate::events::masked_forms("s3cr3t-v4lue")
            .into_iter()
            .find(|f| f != "s3cr3t-v4lue" && f.len() > 6)
            .unwrap();
        scan.feed(format!("auth: {encoded}").as_bytes());
        assert_eq!(scan.found(), Some("TOKEN"));

        let mut scan = SecretScan::new(&all, &["TOKEN".into()]);
        scan.feed(b"s3cr3t-v4lue");
        assert_eq!(scan.found(), None);
        assert!(scan.exempted());
    }
}
