//! Outgoing HTTP from plugins (`wasi:http`): only to granted hosts, checked
//! after name resolution, redirects checked again, secrets only in headers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::guest_paths as g;
use crate::support::{Project, Run, plugin};

const SECRET: &str = "tok-Very-Secret-9";

/// A loopback HTTP server answering `/hello` with 200, `/echo` with the
/// request's `authorization` in its body and its `x-echo` header, `/to-hello` with a
/// redirect to `/hello`, and `/to-metadata` with a redirect to the cloud
/// metadata address; it keeps every request head it read.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut head = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    head.push_str(&line);
                    line.clear();
                }
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                kept.lock().expect("lock").push(head.clone());
                let authorization = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or_default()
                    .to_string();
                let echoed = format!("you sent {authorization}, twice: {authorization}");
                let (status, extra, body) = if path.starts_with("/hello") {
                    ("200 OK", String::new(), "hello from the test server")
                } else if path.starts_with("/echo") {
                    ("200 OK", format!("x-echo: {authorization}\r\n"), echoed.as_str())
                } else if path.starts_with("/to-hello") {
                    (
                        "302 Found",
                        format!("location: http://127.0.0.1:{port}/hello\r\n"),
                        "",
                    )
                } else if path.starts_with("/to-metadata") {
                    (
                        "302 Found",
                        "location: http://169.254.169.254/latest/meta-data/\r\n".to_string(),
                        "",
                    )
                } else {
                    ("404 Not Found", String::new(), "")
                };
                let mut out = &stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen }
    }

    fn heads(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

fn fetch_with(p: &Project, url: &str, allow: &str, secret: bool) -> Run {
    let secret = if secret { ", secret = \"TOKEN\"" } else { "" };
    p.pipeline(&format!(
        "[pipeline]\nname = \"net\"\n{}\n[stages.s]\nuses = \"fetch\"\nwith = {{ url = \"{url}\"{secret} }}\nallow = {allow}\n",
        plugin("fetch", g::FETCH)
    ));
    p.command(&["run", "pipeline.toml", "--json"])
        .env("WEIR_SECRET_TOKEN", SECRET)
        .output()
        .expect("weir runs")
        .into()
}

fn warnings(run: &Run) -> Vec<String> {
    run.of("stage_log")
        .iter()
        .filter(|e| e["level"] == "warn")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// A granted host is reached, following a redirect; the secret goes out in
/// the header only, and comes back nowhere.
#[test]
pub fn fetch() {
    let server = Server::start();
    let p = Project::new();
    let url = format!("http://127.0.0.1:{}/to-hello", server.port);
    let allow = format!(
        "{{ network = [\"127.0.0.1:{}\"], secrets = [\"TOKEN\"] }}",
        server.port
    );
    let run = fetch_with(&p, &url, &allow, true);
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["status"], "200", "{run:?}");
    assert_eq!(out["body"], "hello from the test server");
    let heads = server.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    // The header carried the value; the URL carried only the placeholder.
    assert!(
        heads[0].contains(&format!("authorization: Bearer {SECRET}")),
        "{}",
        heads[0]
    );
    assert!(heads[0].contains("?token=weir-secret:"), "{}", heads[0]);
    assert!(
        !heads[0].split("\r\n").next().unwrap_or("").contains(SECRET),
        "the value went into the URL"
    );
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "the value leaked"
    );
}

/// A granted host that echoes the request's headers back hands the
/// plugin only a mask of the secret: in the response's headers and body,
/// as the plugin itself reads them (reversed, past the log's masking).
#[test]
fn a_host_that_echoes_a_secret_hands_back_only_a_mask() {
    let server = Server::start();
    let p = Project::new();
    let url = format!("http://127.0.0.1:{}/echo", server.port);
    let allow = format!(
        "{{ network = [\"127.0.0.1:{}\"], secrets = [\"TOKEN\"] }}",
        server.port
    );
    let run = fetch_with(&p, &url, &allow, true);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        server.heads()[0].contains(&format!("authorization: Bearer {SECRET}")),
        "the value went out"
    );
    let out = &run.finished("s")["outputs"];
    let reversed: String = SECRET.chars().rev().collect();
    let stars = "*".repeat(SECRET.len());
    for key in ["body-reversed", "echo-reversed"] {
        let got = out[key].as_str().unwrap_or_default();
        assert!(
            !got.contains(&reversed),
            "{key}: the plugin read the value: {got}"
        );
        assert!(got.contains(&stars), "{key}: {got}");
    }
    assert_eq!(
        out["body"],
        format!("you sent Bearer {stars}, twice: Bearer {stars}"),
        "the body keeps its length"
    );
}

#[test]
fn hosts_not_granted_are_refused_by_name_and_redirects_are_checked_again() {
    let server = Server::start();
    let p = Project::new();
    let url = format!("http://127.0.0.1:{}/hello", server.port);
    // No network grant at all: weir's HTTP client is not linked into the
    // Store, and a stand-in refuses.
    let run = fetch_with(&p, &url, "{}", false);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.finished("s")["outputs"]["error"],
        "ErrorCode::HttpRequestDenied"
    );
    assert_eq!(
        warnings(&run),
        [
            "wasi:http/outgoing-handler#handle refused: the stage grants none of it; grant it with allow = { network = [\"HOST\"] }, so it is not linked into stage `s` (tenant `default`)"
        ]
    );
    // Another host granted, not this one.
    let run = fetch_with(&p, &url, "{ network = [\"example.com\"] }", false);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.finished("s")["outputs"]["error"],
        "ErrorCode::HttpRequestDenied"
    );
    assert_eq!(
        warnings(&run),
        [format!(
            "network: request to `127.0.0.1:{}` refused: stage `s` (tenant `default`) is not granted it; grant it with allow = {{ network = [\"127.0.0.1\"] }} (within the tenant's policy)",
            server.port
        )]
    );
    // Granted, but its redirect to the metadata address is a new request,
    // refused like any other.
    let url = format!("http://127.0.0.1:{}/to-metadata", server.port);
    let run = fetch_with(
        &p,
        &url,
        &format!("{{ network = [\"127.0.0.1:{}\"] }}", server.port),
        false,
    );
    let out = &run.finished("s")["outputs"];
    assert_eq!(out["error"], "ErrorCode::HttpRequestDenied", "{run:?}");
    assert!(
        out["visited"]
            .as_str()
            .unwrap_or("")
            .ends_with("http://169.254.169.254/latest/meta-data/")
    );
    assert_eq!(
        warnings(&run),
        [
            "network: request to `169.254.169.254:80` refused: stage `s` (tenant `default`) is not granted it; grant it with allow = { network = [\"169.254.169.254\"] } (within the tenant's policy)"
        ]
    );
    assert_eq!(
        server.heads().len(),
        1,
        "only the granted request reached the server"
    );
}

/// `2130706433` is 127.0.0.1 written as one number: the resolver accepts
/// it, and the grant does not name loopback, so it is refused after
/// resolution.
#[test]
fn a_granted_name_that_resolves_to_loopback_is_refused() {
    let server = Server::start();
    let p = Project::new();
    let url = format!("http://2130706433:{}/hello", server.port);
    let run = fetch_with(
        &p,
        &url,
        &format!("{{ network = [\"2130706433:{}\"] }}", server.port),
        false,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.finished("s")["outputs"]["error"],
        "ErrorCode::DestinationIpProhibited"
    );
    assert_eq!(
        warnings(&run),
        [
            "network: request to `2130706433` refused: it resolves to 127.0.0.1, a loopback address, which stage `s` (tenant `default`) may reach only when its grant names that address (allow.network = [\"127.0.0.1\"])"
        ]
    );
    assert!(server.heads().is_empty(), "nothing reached the server");
}
