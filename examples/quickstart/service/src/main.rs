//! A small HTTP service with only the standard library: `GET /version`
//! answers its name and version as JSON, `GET /healthz` answers `ok`.
//! It listens on `$PORT` (default 8080).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

/// An HTTP response: status line code, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Route one request line (`GET /version HTTP/1.1`) to its response.
pub fn handle(request_line: &str) -> Response {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
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
        ("GET", "/healthz") => Response { status: 200, content_type: "text/plain", body: "ok".into() },
        ("GET", _) => Response { status: 404, content_type: "text/plain", body: "not found".into() },
        _ => Response { status: 405, content_type: "text/plain", body: "method not allowed".into() },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    }
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    let r = handle(line.trim_end());
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
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap_or(8080)))?;
    eprintln!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming().flatten() {
        if let Err(e) = serve(stream) {
            eprintln!("request failed: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reports_name_and_version() {
        let r = handle("GET /version HTTP/1.1");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "{\"name\":\"quickstart-service\",\"version\":\"1.0.0\"}");
    }

    #[test]
    fn health_is_ok() {
        assert_eq!(handle("GET /healthz HTTP/1.1").body, "ok");
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(handle("GET /nope HTTP/1.1").status, 404);
    }

    #[test]
    fn only_get_is_allowed() {
        assert_eq!(handle("POST /version HTTP/1.1").status, 405);
    }
}
