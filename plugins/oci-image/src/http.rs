//! One HTTP exchange over `wasi:http`: weir checks every request against
//! the stage's `allow.network` and swaps secret placeholders in header
//! values for their values on the way out.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// Most bytes of a response body read.
pub const MAX_BODY: usize = 512 << 20;

/// A request.
pub struct Request<'a> {
    /// `GET`, `HEAD`, `POST`, `PUT`.
    pub method: &'a str,
    /// Plain HTTP rather than HTTPS.
    pub plain: bool,
    /// `host[:port]`.
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<&'a [u8]>,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (empty for `HEAD`).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send `r` and read its response whole.
pub fn send(r: &Request<'_>) -> Result<Response, String> {
    let url = format!(
        "{}://{}{}",
        if r.plain { "http" } else { "https" },
        r.authority,
        r.path
    );
    let fields = Fields::new();
    for (k, v) in &r.headers {
        fields
            .append(k, v.as_bytes())
            .map_err(|e| format!("{} {url}: header `{k}`: {e:?}", r.method))?;
    }
    if let Some(body) = r.body {
        fields
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|e| format!("{} {url}: {e:?}", r.method))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match r.method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let bad = |what: &str| format!("{} {url}: cannot set the {what}", r.method);
    request.set_method(&method).map_err(|()| bad("method"))?;
    request
        .set_scheme(Some(if r.plain { &Scheme::Http } else { &Scheme::Https }))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(r.authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(r.path))
        .map_err(|()| bad("path"))?;
    let out = request.body().map_err(|()| bad("body"))?;
    let future = outgoing_handler::handle(request, None).map_err(|code| {
        format!(
            "{} {url} was refused: {code:?} (grant the registry with allow = {{ network = [\"{}\"] }})",
            r.method, r.authority
        )
    })?;
    {
        let stream = out.write().map_err(|()| bad("body stream"))?;
        for chunk in r.body.unwrap_or_default().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{} {url}: sending the body failed: {e:?}", r.method))?;
        }
    }
    OutgoingBody::finish(out, None).map_err(|e| format!("{} {url}: {e:?}", r.method))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("{} {url} failed: {code:?}", r.method)),
        Some(Err(())) | None => return Err(format!("{} {url}: no response", r.method)),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let mut body = Vec::new();
    let incoming = response
        .consume()
        .map_err(|()| format!("{} {url}: no body", r.method))?;
    {
        let stream = incoming
            .stream()
            .map_err(|()| format!("{} {url}: no body stream", r.method))?;
        while let Ok(chunk) = stream.blocking_read(64 << 10) {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(format!(
                    "{} {url}: the answer is over {} MiB",
                    r.method,
                    MAX_BODY >> 20
                ));
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
