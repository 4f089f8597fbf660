//! Fetches the URL its config names through `wasi:http`, following up to
//! five redirects (each is a new request, which the host checks again),
//! optionally with `Authorization: Bearer <secret placeholder>` and the
//! placeholder in the query string too. Returns the status, body and the
//! URLs it visited, or the error code the host answered; the body and the
//! `x-echo` response header also reversed, as it got them.

use serde::Deserialize;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
use weir_sdk::{Capability, Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    url: String,
    #[serde(default)]
    secret: Option<String>,
}

struct Fetch;

impl Plugin for Fetch {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Network, Capability::Secrets])
    }
}

/// `http://authority/path?query` → (authority, path-with-query).
fn split(url: &str) -> Result<(String, String), Failure> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Failure::new(format!("only http:// URLs: {url}")))?;
    Ok(match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    })
}

enum Got {
    Response {
        status: u16,
        location: Option<String>,
        body: String,
        echo: String,
    },
    Error(String),
}

fn get(url: &str, authorization: Option<&str>) -> Result<Got, Failure> {
    let (authority, path) = split(url)?;
    let headers = Fields::new();
    if let Some(value) = authorization {
        headers
            .append("authorization", value.as_bytes())
            .map_err(|e| Failure::new(format!("header: {e:?}")))?;
    }
    let request = OutgoingRequest::new(headers);
    let bad = |what: &str| Failure::new(format!("cannot set the {what}"));
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| bad("path"))?;
    let future = match outgoing_handler::handle(request, None) {
        Ok(f) => f,
        Err(code) => return Ok(Got::Error(format!("{code:?}"))),
    };
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Ok(Got::Error(format!("{code:?}"))),
        Some(Err(())) | None => return Err(Failure::new("the response future was not ready")),
    };
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let echo = response
        .headers()
        .get("x-echo")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let body = response.consume().map_err(|()| Failure::new("no body"))?;
    let stream = body.stream().map_err(|()| Failure::new("no body stream"))?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 << 10) {
        bytes.extend_from_slice(&chunk);
    }
    Ok(Got::Response {
        status,
        location,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        echo,
    })
}

impl Stage for Fetch {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let secret = match &c.secret {
            Some(name) => Some(weir_sdk::secrets::open(name).map_err(|e| Failure::new(format!("{e:?}")))?),
            None => None,
        };
        let placeholder = secret.as_ref().map(|s| s.placeholder());
        let authorization = placeholder.as_ref().map(|p| format!("Bearer {p}"));
        let mut url = c.url.clone();
        if let Some(p) = &placeholder {
            url = format!("{url}?token={p}");
        }
        let mut visited = vec![url.clone()];
        for _ in 0..5 {
            match get(&url, authorization.as_deref())? {
                Got::Error(code) => {
                    return Ok(StageOutput::new()
                        .output("error", code)
                        .output("visited", visited.join(" ")));
                }
                Got::Response {
                    status,
                    location: Some(next),
                    ..
                } if (300..400).contains(&status) => {
                    visited.push(next.clone());
                    url = next;
                }
                Got::Response {
                    status, body, echo, ..
                } => {
                    // Reversed, the log's masking does not know them: what
                    // the plugin itself got.
                    let reversed = |s: &str| s.chars().rev().collect::<String>();
                    return Ok(StageOutput::new()
                        .output("status", status.to_string())
                        .output("body-reversed", reversed(&body))
                        .output("echo-reversed", reversed(&echo))
                        .output("body", body)
                        .output("visited", visited.join(" ")));
                }
            }
        }
        Err(Failure::new("more than five redirects"))
    }
}

weir_sdk::export_stage!(Fetch);
