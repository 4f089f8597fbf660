//! A client of the OCI distribution API (`/v2/`): blobs checked, mounted
//! or uploaded whole, manifests read and written, with the registry's own
//! auth: `Basic` with a credential, or `Bearer` with a token from the
//! registry's token service (asked with that credential, or none).

use crate::http::{self, Request, Response};

/// The manifest media types asked for when reading one.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// An image reference: `host[:port]/repository[:tag][@sha256:hex]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `path/name`.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any.
    pub digest: Option<String>,
}

impl Reference {
    /// Read `text`; what is wrong with it, for a person.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not an image reference ({why}); write REGISTRY/REPOSITORY[:TAG], e.g. \"127.0.0.1:5000/web:1.0\""
            )
        };
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("a digest is sha256:HEX"))?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad("a digest is sha256: and 64 lower-case hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| bad("no registry"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(
                "the part before the first `/` must be a registry host, with a `.` or a port",
            ));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            });
        if !repo_ok {
            return Err(bad(
                "a repository is lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                || t.starts_with(['.', '-']))
        {
            return Err(bad("a tag is up to 128 letters, digits, `.`, `_`, `-`"));
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Whether the registry is this machine.
    pub fn loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

/// A session with one registry.
pub struct Registry {
    /// `host[:port]`.
    pub authority: String,
    /// Plain HTTP.
    pub plain: bool,
    /// The credential for `Basic` (a secret's placeholder: base64 of
    /// `user:password`).
    pub basic: Option<String>,
    /// A token to send as `Bearer` from the start.
    pub token: Option<String>,
    /// What the registry's last challenge made us send.
    authorization: Option<String>,
    /// Requests made (for the summary).
    pub requests: u32,
}

impl Registry {
    /// A session with `authority`.
    pub fn new(authority: &str, plain: bool, basic: Option<String>, token: Option<String>) -> Self {
        let authorization = token.as_ref().map(|t| format!("Bearer {t}"));
        Self {
            authority: authority.to_string(),
            plain,
            basic,
            token,
            authorization,
            requests: 0,
        }
    }

    /// Send one request, answering one auth challenge if the registry
    /// makes it.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let mut answered = false;
        loop {
            let mut h: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(a) = &self.authorization {
                h.push(("authorization".into(), a.clone()));
            }
            self.requests += 1;
            let r = http::send(&Request {
                method,
                plain: self.plain,
                authority: &self.authority,
                path,
                headers: h,
                body,
            })?;
            if r.status != 401 || answered {
                if r.status == 401 {
                    return Err(format!(
                        "{method} {path}: the registry {} refused the credentials (401){}",
                        self.authority,
                        if self.basic.is_none() && self.token.is_none() {
                            "; it wants them: give `auth` (a secret holding base64 of USER:PASSWORD) or `token`"
                        } else {
                            ""
                        }
                    ));
                }
                return Ok(r);
            }
            answered = true;
            let challenge = r.header("www-authenticate").unwrap_or_default().to_string();
            self.authorization = Some(self.answer(&challenge)?);
        }
    }

    /// The `Authorization` value that answers `challenge`.
    fn answer(&mut self, challenge: &str) -> Result<String, String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match &self.basic {
                Some(b) => Ok(format!("Basic {b}")),
                None => Err(format!(
                    "the registry {} asks for a user and password (Basic): give `auth`, a secret holding base64 of USER:PASSWORD (the `auth` of ~/.docker/config.json)",
                    self.authority
                )),
            },
            "bearer" => {
                let params = parse_params(params);
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let realm = get("realm").ok_or_else(|| {
                    format!(
                        "the registry {} asked for a token without saying where from",
                        self.authority
                    )
                })?;
                let (plain, rest) = if let Some(r) = realm.strip_prefix("https://") {
                    (false, r)
                } else if let Some(r) = realm.strip_prefix("http://") {
                    // The credential goes in the clear only where the
                    // registry itself is spoken to in the clear.
                    if !self.plain {
                        return Err(format!(
                            "the registry {} sends its token service to plain HTTP ({realm}); weir sends a credential there only over HTTPS",
                            self.authority
                        ));
                    }
                    (true, r)
                } else {
                    return Err(format!("the token service `{realm}` is not an http(s) URL"));
                };
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let mut query = Vec::new();
                for k in ["service", "scope"] {
                    if let Some(v) = get(k) {
                        query.push(format!("{k}={}", encode(v)));
                    }
                }
                let path = format!("{}?{}", if path.is_empty() { "/" } else { path }, query.join("&"));
                let mut headers = Vec::new();
                if let Some(b) = &self.basic {
                    headers.push(("authorization".to_string(), format!("Basic {b}")));
                }
                self.requests += 1;
                let r = http::send(&Request {
                    method: "GET",
                    plain,
                    authority,
                    path: &path,
                    headers,
                    body: None,
                })?;
                if r.status != 200 {
                    return Err(format!("the token service {realm} answered {}", r.status));
                }
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .map_err(|e| format!("the token service {realm} answered no JSON: {e}"))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| format!("the token service {realm} gave no token"))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(format!(
                "the registry {} asks for `{scheme}` auth, which weir does not speak",
                self.authority
            )),
        }
    }

    /// Whether blob `digest` is in `repository`.
    pub fn has_blob(&mut self, repository: &str, digest: &str) -> Result<bool, String> {
        let r = self.send("HEAD", &format!("/v2/{repository}/blobs/{digest}"), &[], None)?;
        Ok(r.status == 200)
    }

    /// Make blob `digest` of repository `from` (same registry) part of
    /// `repository` without sending it; false when the registry would not.
    pub fn mount(&mut self, repository: &str, digest: &str, from: &str) -> Result<bool, String> {
        if self.has_blob(repository, digest)? {
            return Ok(true);
        }
        let start = format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}");
        let r = self.send("POST", &start, &[], Some(&[]))?;
        Ok(r.status == 201)
    }

    /// Put blob `bytes` (whose digest is `digest`) into `repository`,
    /// unless it is there. Whether it was sent.
    pub fn put_blob(&mut self, repository: &str, digest: &str, bytes: &[u8]) -> Result<bool, String> {
        if self.has_blob(repository, digest)? {
            return Ok(false);
        }
        let r = self.send(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            Some(&[]),
        )?;
        if r.status != 202 {
            return Err(refused("starting an upload", &r));
        }
        let location = r
            .header("location")
            .ok_or("the registry gave no upload location")?;
        let (plain, authority, path) = self.locate(location)?;
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}digest={digest}");
        let (was_plain, was) = (self.plain, self.authority.clone());
        self.plain = plain;
        self.authority = authority;
        let put = self.send(
            "PUT",
            &path,
            &[("content-type", "application/octet-stream")],
            Some(bytes),
        );
        self.plain = was_plain;
        self.authority = was;
        let put = put?;
        if put.status != 201 {
            return Err(refused(&format!("uploading {digest}"), &put));
        }
        Ok(true)
    }

    /// An upload location as (plain, authority, path): relative to this
    /// registry, or absolute on the same one.
    fn locate(&self, location: &str) -> Result<(bool, String, String), String> {
        for (prefix, plain) in [("http://", true), ("https://", false)] {
            if let Some(rest) = location.strip_prefix(prefix) {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                if plain && !self.plain {
                    return Err(format!(
                        "the registry {} sent the upload to plain HTTP; weir keeps to HTTPS with it",
                        self.authority
                    ));
                }
                if authority != self.authority {
                    return Err(format!(
                        "the registry {} sent the upload to another host ({authority}); weir uploads only to the registry it was given",
                        self.authority
                    ));
                }
                return Ok((plain, authority.to_string(), path.to_string()));
            }
        }
        if location.starts_with('/') {
            return Ok((self.plain, self.authority.clone(), location.to_string()));
        }
        Err(format!("the upload location `{location}` is not a URL"))
    }

    /// Put a manifest under `reference` (a tag or its digest); the digest
    /// the registry says it has.
    pub fn put_manifest(
        &mut self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, String> {
        let r = self.send(
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("content-type", media_type)],
            Some(bytes),
        )?;
        if r.status != 201 && r.status != 200 {
            return Err(refused("putting the manifest", &r));
        }
        Ok(r.header("docker-content-digest").map(str::to_string))
    }

    /// A manifest (or index): its media type and bytes.
    pub fn manifest(&mut self, repository: &str, reference: &str) -> Result<(String, Vec<u8>), String> {
        let r = self.send(
            "GET",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("accept", ACCEPT)],
            None,
        )?;
        if r.status != 200 {
            return Err(refused(
                &format!("reading the manifest {repository}:{reference}"),
                &r,
            ));
        }
        let media = r.header("content-type").unwrap_or_default().to_string();
        Ok((media, r.body))
    }

    /// A blob, checked against its digest.
    pub fn blob(&mut self, repository: &str, digest: &str) -> Result<Vec<u8>, String> {
        let r = self.send("GET", &format!("/v2/{repository}/blobs/{digest}"), &[], None)?;
        if r.status != 200 {
            return Err(refused(&format!("reading blob {digest}"), &r));
        }
        crate::image::check_digest(digest, &r.body)?;
        Ok(r.body)
    }
}

fn refused(what: &str, r: &Response) -> String {
    let said = String::from_utf8_lossy(&r.body);
    let said: String = said.chars().take(300).collect();
    format!("{what}: the registry answered {} {}", r.status, said.trim())
}

/// `key="value"` pairs of a challenge.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_as_the_distribution_spec_writes_them() {
        let r = Reference::parse("127.0.0.1:5000/team/web:1.0").expect("ref");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/web", Some("1.0"))
        );
        assert!(r.loopback());
        let d = format!("ghcr.io/acme/web@sha256:{}", "a".repeat(64));
        let r = Reference::parse(&d).expect("ref");
        assert_eq!(r.tag, None);
        assert!(r.digest.is_some());
        assert!(!r.loopback());
        for bad in [
            "web",
            "web:1.0",
            "127.0.0.1:5000/Web",
            "127.0.0.1:5000/web@sha256:abc",
            "127.0.0.1:5000/-web",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_challenges_are_split_into_their_parameters() {
        let p = parse_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:web:pull,push""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[2], ("scope".into(), "repository:web:pull,push".into()));
        assert_eq!(
            encode("repository:web:pull,push"),
            "repository%3Aweb%3Apull%2Cpush"
        );
    }
}
