//! The only way out of a sandboxed program's network namespace: an HTTP
//! proxy weir runs, listening on the namespace's `127.0.0.1:3128` (a
//! socket made there, see [`crate::netns`]) and connecting from the host.
//!
//! A program granted `allow.network` gets `HTTP_PROXY`, `HTTPS_PROXY`
//! (and their lower-case forms, and `ALL_PROXY`) pointing at it; curl,
//! git, cargo, pip, npm and Python's urllib all honour them. Each request
//! is checked as a plugin's HTTP request is ([`super::http`]): the host
//! and port against the stage's grants, then every address the name
//! resolves to (loopback, link-local and metadata addresses only when the
//! grant names the address), and the connection goes to a checked
//! address. `CONNECT host:port` (HTTPS, or any TCP protocol) becomes a
//! tunnel; a plain `GET http://host/…` is passed on with
//! `Connection: close`, so one connection carries one request to one
//! checked host. A refused request is answered `403` with the reason, and
//! the reason is logged with the stage and tenant.
//!
//! Nothing else leaves the namespace: no route, no DNS (the proxy
//! resolves), no other listener of the host.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{CONNECT_TIMEOUT, Lookup, Refusal, checked_addresses};
use crate::plan::tenancy::{host_allowed, split_port};

/// The port the proxy listens on inside a program's namespace.
pub const PROXY_PORT: u16 = 3128;
/// Connections one program may hold open through the proxy at once
/// (limit `proxy-connections`).
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head the proxy reads.
const HEAD_LIMIT: usize = 32 << 10;
/// Longest wait for a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the proxy of one program allows, and where its refusals go.
pub struct Egress {
    /// The stage's `allow.network`.
    pub granted: Vec<String>,
    /// "stage `s` (tenant `t`)", for messages.
    pub who: String,
    /// The program, for messages.
    pub program: String,
    /// Logs a refusal.
    pub refused: Box<dyn Fn(String) + Send + Sync>,
}

/// The variables that send a program's traffic through the proxy.
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, url.clone()))
    .collect()
}

/// Serve the proxy on `listener` until the returned task is aborted
/// (dropping a [`Serving`] does that, and ends every connection).
pub fn serve(listener: std::net::TcpListener, egress: Egress) -> io::Result<Serving> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let egress = Arc::new(egress);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        let mut warned = false;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            if connections.len() >= MAX_CONNECTIONS {
                if !warned {
                    warned = true;
                    (egress.refused)(format!(
                        "network: `{}` opened more than {MAX_CONNECTIONS} connections through the proxy at once; further ones are closed (limit `proxy-connections`)",
                        egress.program
                    ));
                }
                drop(client);
                continue;
            }
            let egress = egress.clone();
            connections.spawn(async move {
                let _ = handle(client, &egress).await;
            });
        }
    });
    Ok(Serving(task))
}

/// A running proxy; dropping it stops it and its connections.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request head, as the program sent it.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes read past the head (a body, or a TLS hello).
    rest: Vec<u8>,
}

async fn read_head(client: &mut TcpStream) -> Result<Head, (u16, String)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(HEAD_TIMEOUT, client.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return Err((408, "no complete request head arrived".into())),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err((400, e.to_string())),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Ok(Head {
                    method: request.method.unwrap_or("GET").to_string(),
                    target: request.path.unwrap_or("/").to_string(),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => {}
            Ok(httparse::Status::Partial) => {
                return Err((431, format!("the request head is larger than {HEAD_LIMIT} bytes")));
            }
            Err(e) => return Err((400, format!("not an HTTP proxy request: {e}"))),
        }
    }
}

async fn handle(mut client: TcpStream, egress: &Egress) -> io::Result<()> {
    let head = match read_head(&mut client).await {
        Ok(head) => head,
        Err((status, why)) => return answer(&mut client, status, &why).await,
    };
    let connect = head.method.eq_ignore_ascii_case("CONNECT");
    let (host, port, path) = match destination(&head, connect) {
        Ok(d) => d,
        Err(why) => return answer(&mut client, 400, &why.to_string()).await,
    };
    let mut upstream = match reach(&host, port, egress).await {
        Ok(stream) => stream,
        Err((status, why)) => {
            (egress.refused)(format!("{why} (asked by `{}` through the proxy)", egress.program));
            return answer(&mut client, status, &why).await;
        }
    };
    if connect {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        let mut out = format!("{} {path} HTTP/1.1\r\n", head.method).into_bytes();
        let mut has_host = false;
        for (name, value) in &head.headers {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("proxy-") || lower == "connection" || lower == "keep-alive" {
                continue;
            }
            has_host |= lower == "host";
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !has_host {
            out.extend_from_slice(format!("Host: {host}:{port}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        upstream.write_all(&out).await?;
    }
    upstream.write_all(&head.rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Why a proxy request names no destination it can reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadTarget {
    /// `CONNECT` without a port.
    #[error("CONNECT needs host:port, got `{0}`")]
    ConnectTarget(String),
    /// Not a URL.
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    /// `https://` and others: those go through CONNECT.
    #[error("the proxy takes http:// URLs and CONNECT (for https://), not `{0}`")]
    Scheme(String),
    /// A URL with no host.
    #[error("`{0}` has no host")]
    NoHost(String),
}

/// Host, port and (for plain HTTP) the origin-form path of a request.
fn destination(head: &Head, connect: bool) -> Result<(String, u16, String), BadTarget> {
    let target = || head.target.clone();
    if connect {
        let (host, port) = split_port(&head.target);
        let port = port
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| BadTarget::ConnectTarget(target()))?;
        return Ok((host.to_string(), port, String::new()));
    }
    let uri: http::Uri = head.target.parse().map_err(|_| BadTarget::NotAUrl(target()))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return Err(BadTarget::Scheme(target()));
    }
    let host = uri
        .host()
        .ok_or_else(|| BadTarget::NoHost(target()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((host, uri.port_u16().unwrap_or(80), path))
}

/// A connection to `host:port` if the grants allow it, else the status
/// and reason to answer with.
async fn reach(host: &str, port: u16, egress: &Egress) -> Result<TcpStream, (u16, String)> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let entry = egress
        .granted
        .iter()
        .find(|entry| host_allowed(entry, &target))
        .ok_or_else(|| {
            (
                403,
                format!(
                    "network: connection to `{target}` refused: {} is not granted it; grant it with allow = {{ network = [\"{host}\"] }} (within the tenant's policy)",
                    egress.who
                ),
            )
        })?;
    let addresses = checked_addresses(entry, host, port, &egress.who)
        .await
        .map_err(|e| match e {
            Lookup::Refused(Refusal::Denied(m) | Refusal::Prohibited(m)) => (403, m),
            Lookup::Timeout => (504, format!("network: looking up `{host}` timed out")),
            Lookup::Failed(e) => (502, format!("network: cannot look up `{host}`: {e}")),
            Lookup::NotFound => (502, format!("network: `{host}` has no address")),
        })?;
    let mut last = String::new();
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err((502, format!("network: cannot connect to `{target}`: {last}")))
}

async fn answer(client: &mut TcpStream, status: u16, why: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        504 => "Gateway Timeout",
        _ => "Bad Gateway",
    };
    let body = format!("weir: {why}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str) -> Head {
        Head {
            method: method.into(),
            target: target.into(),
            headers: vec![],
            rest: vec![],
        }
    }

    #[test]
    fn destinations_are_read_from_connect_and_absolute_urls() {
        assert_eq!(
            destination(&head("CONNECT", "example.com:443"), true).unwrap(),
            ("example.com".into(), 443, String::new())
        );
        assert_eq!(
            destination(&head("GET", "http://example.com/a?b"), false).unwrap(),
            ("example.com".into(), 80, "/a?b".into())
        );
        assert_eq!(
            destination(&head("GET", "http://[::1]:8080/"), false).unwrap(),
            ("::1".into(), 8080, "/".into())
        );
        assert!(destination(&head("CONNECT", "example.com"), true).is_err());
        assert!(destination(&head("GET", "/relative"), false).is_err());
        assert!(destination(&head("GET", "https://example.com/"), false).is_err());
    }
}
