//! Outgoing HTTP (`wasi:http`), only to the hosts a stage is granted.
//!
//! Every request is checked as it leaves, in this order:
//!
//! 1. the plugin's manifest declares `network`;
//! 2. the URL's host (and port) matches the stage's `allow.network`;
//! 3. the host is resolved here, once, and every address it resolves to is
//!    checked: loopback, link-local (cloud metadata lives there),
//!    unspecified, multicast and known metadata addresses are refused
//!    unless the grant names that address itself (`127.0.0.1:8080`,
//!    `localhost`), so a granted name that resolves to them (DNS rebinding)
//!    is refused;
//! 4. the connection goes to the checked address, not to a second lookup.
//!
//! wasi:http does not follow redirects: a plugin that follows one sends a
//! new request, checked again from step 1. Secret placeholders in header
//! values become values here (and only here, after the checks), and the
//! response comes back with every value the Store opened masked, in its
//! headers and its body (as many `*`, so `Content-Length` holds), split
//! across chunks or not: a host that echoes headers hands back `****`. Connecting
//! and waiting for the response have timeouts; the stage's own timeout
//! bounds the rest. A refusal is logged with the capability, stage and
//! tenant, and the plugin gets `HTTP-request-denied` or
//! `destination-IP-prohibited`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::log::{LogBudget, emit_line};
use super::secrets::Opened;
use crate::events::{EventSink, Level};
use crate::plan::tenancy::{host_allowed, split_port};

/// Longest wait for a name lookup.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a connection (and TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a response's head.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of header fields a plugin may build (limit `http-fields`).
pub const FIELD_SIZE_LIMIT: usize = 64 << 10;

/// Per-Store gate for outgoing requests.
#[derive(Clone)]
pub struct HttpGate {
    /// The stage, for messages.
    pub stage: String,
    /// The tenant, for messages.
    pub tenant: String,
    /// The plugin, for messages.
    pub plugin: String,
    /// Whether the manifest declares `network`.
    pub declared: bool,
    /// `allow.network`.
    pub granted: Vec<String>,
    /// Secrets the Store opened (placeholders in headers become values).
    pub secrets: Opened,
    /// Refusals are logged here.
    pub sink: EventSink,
    /// The stage's log budget.
    pub budget: LogBudget,
}

/// Why a request did not leave.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not declared or not granted.
    Denied(String),
    /// Granted, but resolves to an address that is refused.
    Prohibited(String),
}

impl super::Gated for HttpGate {
    const GATE: super::Gate = super::Gate {
        interface: "wasi:http/outgoing-handler",
        capability: crate::bindings::types::Capability::Network,
        declared_as: "network",
        grant_hint: "allow = { network = [\"HOST\"] }",
    };

    fn granted(grants: &crate::plan::Grants) -> bool {
        !grants.network.is_empty()
    }

    fn new(facts: &super::Facts<'_>) -> Self {
        Self {
            stage: facts.stage.to_string(),
            tenant: facts.tenant.to_string(),
            plugin: facts.plugin.to_string(),
            declared: facts.declares(Self::GATE.capability),
            granted: facts.grants.network.clone(),
            secrets: facts.opened.clone(),
            sink: facts.sink.clone(),
            budget: facts.budget.clone(),
        }
    }

    /// The outgoing handler reaches the gate through the Store's
    /// `wasi:http` view (its hooks), not through `get`.
    fn add_to_linker<T>(
        linker: &mut wasmtime::component::Linker<T>,
        _get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()>
    where
        T: wasmtime_wasi_http::WasiHttpView + Send + 'static,
    {
        wasmtime_wasi_http::p2::bindings::http::outgoing_handler::add_to_linker::<
            _,
            wasmtime_wasi_http::WasiHttp,
        >(linker, T::http)
    }
}

impl HttpGate {
    fn who(&self) -> String {
        format!("stage `{}` (tenant `{}`)", self.stage, self.tenant)
    }

    /// Steps 1 and 2: the grant entry that allows `host:port`.
    pub fn grant_for(&self, host: &str, port: u16) -> Result<String, Refusal> {
        if !self.declared {
            return Err(Refusal::Denied(format!(
                "network: request to `{host}` refused: plugin `{}` does not declare the `network` capability in its manifest, so {} cannot make HTTP requests through it",
                self.plugin,
                self.who()
            )));
        }
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        self.granted
            .iter()
            .find(|entry| host_allowed(entry, &target))
            .cloned()
            .ok_or_else(|| {
                Refusal::Denied(format!(
                    "network: request to `{target}` refused: {} is not granted it; grant it with allow = {{ network = [\"{host}\"] }} (within the tenant's policy)",
                    self.who()
                ))
            })
    }

    fn refuse(&self, refusal: &Refusal) -> HttpError {
        let (message, error) = match refusal {
            Refusal::Denied(m) => (m, HttpError::HttpRequestDenied),
            Refusal::Prohibited(m) => (m, HttpError::DestinationIpProhibited),
        };
        emit_line(
            &self.sink,
            &self.budget,
            &self.stage,
            Level::Warn,
            message,
            Default::default(),
        );
        error
    }

    async fn send(
        self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<
        (
            http::Response<WasiBody>,
            Box<dyn Future<Output = Result<(), HttpError>> + Send>,
        ),
        HttpError,
    > {
        let uri = request.uri().clone();
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let entry = self.grant_for(&host, port).map_err(|r| self.refuse(&r))?;
        let addresses = checked_addresses(&entry, &host, port, &self.who())
            .await
            .map_err(|e| match e {
                Lookup::Refused(r) => self.refuse(&r),
                Lookup::Timeout => HttpError::DnsTimeout,
                Lookup::Failed(e) => HttpError::DnsError {
                    rcode: Some(e),
                    info_code: None,
                },
                Lookup::NotFound => HttpError::DestinationNotFound,
            })?;
        let address = addresses[0];

        // Placeholders become values only now, for a granted host.
        let mut carried = false;
        for value in request.headers_mut().values_mut() {
            if let Ok(text) = value.to_str()
                && self.secrets.carries_placeholder(text)
            {
                carried = true;
                *value = http::HeaderValue::from_str(&self.secrets.substitute(text)).map_err(|_| {
                    HttpError::HttpRequestHeaderSize {
                        field_name: None,
                        field_size: None,
                    }
                })?;
            }
        }
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;

        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT));
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(FIRST_BYTE_TIMEOUT, |t| t.min(FIRST_BYTE_TIMEOUT));
        let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
                _ => HttpError::Connect(e),
            })?;
        let (mut sender, connection) = if tls {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let stream = tokio::time::timeout(
                connect_timeout,
                tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
            )
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            (sender, tokio::spawn(conn))
        } else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            (sender, tokio::spawn(conn))
        };
        let response = tokio::time::timeout(first_byte, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)??;
        let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
            match connection.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(HttpError::from(e)),
                Err(_) => Err(HttpError::ConnectionTerminated),
            }
        });
        // The response comes back masked: a host that echoes the request's
        // headers must not hand the plugin a value it only held by handle.
        let secrets = self.secrets.clone();
        let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
        // Only a request that carried a value can be answered with it.
        if !carried || secrets.is_empty() {
            return Ok((response, io));
        }
        let mask = secrets.stream_mask();
        let (mut head, body) = response.into_parts();
        mask_headers(&mut head.headers, &mask);
        let body = MaskedBody {
            inner: body,
            mask,
            trailers: None,
            done: false,
        };
        Ok((http::Response::from_parts(head, body.boxed_unsync()), io))
    }
}

/// Every header value with the opened values masked (as many `*`); a
/// value that no longer is a valid header is dropped.
fn mask_headers(headers: &mut http::HeaderMap, mask: &super::secrets::StreamMask) {
    for value in headers.values_mut() {
        let masked = mask.mask_all(value.as_bytes());
        if masked != value.as_bytes() {
            *value = http::HeaderValue::from_bytes(&masked).unwrap_or(http::HeaderValue::from_static("***"));
        }
    }
}

/// A response body with the Store's opened values masked as it streams.
struct MaskedBody {
    inner: WasiBody,
    mask: super::secrets::StreamMask,
    /// Trailers that came while body bytes were still held back.
    trailers: Option<hyper::body::Frame<bytes::Bytes>>,
    done: bool,
}

impl hyper::body::Body for MaskedBody {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use hyper::body::Frame;
        use std::task::Poll;
        loop {
            if self.done {
                // What was held back (not a whole value), then trailers.
                let rest = self.mask.finish();
                if !rest.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(rest.into()))));
                }
                return Poll::Ready(self.trailers.take().map(Ok));
            }
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.mask.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                        }
                    }
                    Err(mut frame) => {
                        if let Some(trailers) = frame.trailers_mut() {
                            mask_headers(trailers, &self.mask);
                        }
                        self.trailers = Some(frame);
                        self.done = true;
                    }
                },
            }
        }
    }
}

/// Why a granted host cannot be reached.
#[derive(Debug)]
pub enum Lookup {
    /// It resolves to an address its grant does not name.
    Refused(Refusal),
    /// The name lookup took longer than [`DNS_TIMEOUT`].
    Timeout,
    /// The name lookup failed.
    Failed(String),
    /// The name has no address.
    NotFound,
}

/// Step 3, for plugins' requests and programs' proxy alike: the addresses
/// `host:port` resolves to, each checked against grant `entry` (`who`
/// names the stage in the refusal). The caller connects to one of these,
/// never to a second lookup.
pub async fn checked_addresses(
    entry: &str,
    host: &str,
    port: u16,
    who: &str,
) -> Result<Vec<SocketAddr>, Lookup> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Lookup::Timeout)?
            .map_err(|e| Lookup::Failed(e.to_string()))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(Lookup::NotFound);
    }
    for a in &addresses {
        if let Some(kind) = special(a.ip())
            && !names(entry, a.ip())
        {
            return Err(Lookup::Refused(Refusal::Prohibited(format!(
                "network: request to `{host}` refused: it resolves to {}, a {kind} address, which {who} may reach only when its grant names that address (allow.network = [\"{}\"])",
                a.ip(),
                a.ip()
            ))));
        }
    }
    Ok(addresses)
}

/// What kind of address a plugin may not reach by name, if `ip` is one.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("unroutable")
            } else if o == [100, 100, 100, 200] || o == [192, 0, 0, 192] {
                Some("cloud metadata")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local (cloud metadata)")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("unroutable")
            } else if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

/// Whether grant `entry` names `ip` itself (or `localhost` for loopback).
fn names(entry: &str, ip: IpAddr) -> bool {
    let (name, _) = split_port(entry);
    match name.parse::<IpAddr>() {
        Ok(named) => named == ip,
        Err(_) => name.eq_ignore_ascii_case("localhost") && ip.is_loopback(),
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        Box::new(self.clone().send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_named_and_only_a_literal_grant_reaches_them() {
        assert_eq!(special("127.0.0.1".parse().unwrap()), Some("loopback"));
        assert_eq!(
            special("169.254.169.254".parse().unwrap()),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(
            special("::ffff:169.254.169.254".parse().unwrap()),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(special("fd00:ec2::254".parse().unwrap()), Some("cloud metadata"));
        assert_eq!(special("::1".parse().unwrap()), Some("loopback"));
        assert_eq!(special("93.184.216.34".parse().unwrap()), None);
        assert!(names("127.0.0.1:8080", "127.0.0.1".parse().unwrap()));
        assert!(names("localhost", "127.0.0.1".parse().unwrap()));
        assert!(names("[::1]:80", "::1".parse().unwrap()));
        assert!(!names("example.com", "127.0.0.1".parse().unwrap()));
        assert!(!names("127.0.0.2", "127.0.0.1".parse().unwrap()));
    }
}
