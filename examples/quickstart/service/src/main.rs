//! A small HTTP service with only the standard library: `GET /version`
//! answers its name and version as JSON, `GET /healthz` answers `ok`, and
//! `GET /` a greeting. It listens on `$PORT` (default 8080) at `$HOST`
//! (default 127.0.0.1; a container image sets 0.0.0.0), one thread per
//! connection.
//!
//! A fault can be built in, so the quickstart's canary has something to
//! catch: build with `QUICKSTART_FAULT=errors` and one request in five
//! answers 500; with `QUICKSTART_FAULT=slow` every request takes 300 ms
//! longer. `FAULT` at run time does the same without a rebuild. Health
//! checks are never affected: a faulty build starts fine and fails only
//! under traffic, as real regressions do.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An HTTP response: status line code, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// A fault built in (or set at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behaves.
    None,
    /// Every fifth request answers 500.
    Errors,
    /// Every request takes 300 ms longer.
    Slow,
}

impl Fault {
    /// `errors`, `slow`, anything else is none.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "errors" => Fault::Errors,
            "slow" => Fault::Slow,
            _ => Fault::None,
        }
    }

    /// The run-time `FAULT`, else the build's `QUICKSTART_FAULT`.
    pub fn configured() -> Self {
        match std::env::var("FAULT") {
            Ok(f) => Fault::parse(&f),
            Err(_) => Fault::parse(option_env!("QUICKSTART_FAULT").unwrap_or("")),
        }
    }
}

/// Route one request line (`GET /version HTTP/1.1`), the `n`th request
/// served, to its response.
pub fn handle(request_line: &str, fault: Fault, n: u64) -> Response {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if path == "/healthz" && method == "GET" {
        return Response { status: 200, content_type: "text/plain", body: "ok".into() };
    }
    if fault == Fault::Errors && n % 5 == 4 {
        return Response { status: 500, content_type: "text/plain", body: "injected error\n".into() };
    }
    match (method, path) {
        ("GET", "/version") => Response {
            status: 200,
            content_type: "application/json",
            body: format!(
                "{{\"name\":\"{}\",\"version\":\"{}\"}}",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION")
            ),
        },
        ("GET", "/") => Response { status: 200, content_type: "text/plain", body: "hello from the quickstart\n".into() },
        ("GET", _) => Response { status: 404, content_type: "text/plain", body: "not found".into() },
        _ => Response { status: 405, content_type: "text/plain", body: "method not allowed".into() },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Method Not Allowed",
    }
}

fn serve(mut stream: TcpStream, fault: Fault, n: u64) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    if fault == Fault::Slow && !line.contains("/healthz") {
        #[allow(clippy::disallowed_methods, reason = "one thread per connection; the delay is the fault")]
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = handle(line.trim_end(), fault, n);
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        r.body
    )
}

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let listener = TcpListener::bind((host.as_str(), port.parse::<u16>().unwrap_or(8080)))?;
    let fault = Fault::configured();
    eprintln!("listening on {} (fault: {fault:?})", listener.local_addr()?);
    static SERVED: AtomicU64 = AtomicU64::new(0);
    for stream in listener.incoming().flatten() {
        let n = SERVED.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, fault, n) {
                eprintln!("request failed: {e}");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reports_name_and_version() {
        let r = handle("GET /version HTTP/1.1", Fault::None, 0);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "{\"name\":\"quickstart-service\",\"version\":\"1.0.0\"}");
    }

    #[test]
    fn health_is_ok_even_with_a_fault() {
        for n in 0..10 {
            assert_eq!(handle("GET /healthz HTTP/1.1", Fault::Errors, n).body, "ok");
        }
    }

    #[test]
    fn the_error_fault_fails_one_request_in_five() {
        let failed = (0..100).filter(|n| handle("GET / HTTP/1.1", Fault::Errors, *n).status == 500).count();
        assert_eq!(failed, 20);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(handle("GET /nope HTTP/1.1", Fault::None, 0).status, 404);
    }

    #[test]
    fn only_get_is_allowed() {
        assert_eq!(handle("POST /version HTTP/1.1", Fault::None, 0).status, 405);
    }
}
