//! A small W3C WebDriver client for the dashboard's tests: Debian's
//! `chromedriver` driving Debian's `chromium`, headless, with a fresh
//! profile. No test framework's own browser download (it does not work on
//! these machines).
//!
//! The tests need both programs. `.ci/run` installs them and sets
//! `WEIR_BROWSER_TESTS=require`, so there a missing one fails the test;
//! elsewhere a test without them says so and passes over the browser part.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::nap;

/// The element reference key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless chromium behind its driver, closed when dropped.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub(crate) struct Element(String);

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

impl Browser {
    /// Start one, `width` by `height`; `None` when chromium or its driver
    /// is not installed and the run does not require them.
    pub(crate) fn start(width: u32, height: u32) -> Option<Browser> {
        let required = std::env::var("WEIR_BROWSER_TESTS").is_ok_and(|v| v == "require");
        let (Some(driver), Some(chromium)) = (
            which("chromedriver"),
            which("chromium").or_else(|| which("chromium-browser")),
        ) else {
            assert!(
                !required,
                "WEIR_BROWSER_TESTS=require, but chromium or chromedriver is missing: apt-get install chromium chromium-driver"
            );
            eprintln!("skipping the browser part: install chromium and chromium-driver to run it");
            return None;
        };
        let mut child = Command::new(driver)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut port = None;
        for line in lines.by_ref().take(20) {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.split("successfully on port ").nth(1) {
                port = rest.trim().trim_end_matches('.').parse().ok();
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let port: u16 = port.expect("chromedriver says its port");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver: child,
            port,
            session: String::new(),
            _profile: profile,
        };
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", b._profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let created = loop {
            let r = b.call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
                }}})),
            );
            if r.is_ok() || Instant::now() > deadline {
                break r;
            }
            nap(Duration::from_millis(200));
        };
        let created = created.expect("a browser session");
        b.session = created["sessionId"].as_str().expect("sessionId").to_string();
        b.resize(width, height);
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| json!(e.to_string()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .map_err(|e| json!(e.to_string()))?;
        stream
            .write_all(body.as_bytes())
            .map_err(|e| json!(e.to_string()))?;
        // chromedriver may keep the connection open whatever the request
        // says: read the head, then exactly Content-Length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        let mut want: Option<usize> = None;
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                if want.is_none() {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    want = Some(end + 4 + length.unwrap_or(usize::MAX / 2));
                }
                if want.is_some_and(|w| raw.len() >= w) {
                    break;
                }
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        let answer = crate::serve::Answer::parse(&raw);
        let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        if answer.status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    /// Set the window's size.
    pub(crate) fn resize(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Open `url` and wait for it to load.
    pub(crate) fn go(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// The page's URL now.
    pub(crate) fn url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Run `script` (a function body; `arguments` holds `args`) and
    /// return its value.
    pub(crate) fn js(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Every element matching `css`.
    pub(crate) fn all(&self, css: &str) -> Vec<Element> {
        self.must(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_string())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The first element matching `css`, waiting up to `within` for it.
    pub(crate) fn find(&self, css: &str, within: Duration) -> Element {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.all(css).into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no `{css}` on {} within {within:?}:\n{}",
                self.url(),
                self.text("body")
            );
            nap(Duration::from_millis(100));
        }
    }

    /// Wait until `check` (a script returning a boolean) holds.
    pub(crate) fn wait_until(&self, what: &str, check: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.js(check, json!([])) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} on {}:\n{}",
                self.url(),
                self.text("body")
            );
            nap(Duration::from_millis(150));
        }
    }

    /// The visible text of the first `css` element ("" when none).
    pub(crate) fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Type `text` into element `e`.
    pub(crate) fn type_into(&self, e: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// Click element `e`.
    pub(crate) fn click(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Press keys (WebDriver key codes, e.g. "\u{E004}" for Tab) on the
    /// focused element.
    pub(crate) fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.must(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// A PNG of the viewport.
    pub(crate) fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.must("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("a PNG")
    }

    /// Save a screenshot as `name`.png in `WEIR_SCREENSHOTS` (when set)
    /// and in the test's `dir`.
    pub(crate) fn save(&self, dir: &std::path::Path, name: &str) {
        let png = self.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(dir.join(format!("{name}.png")), &png).expect("write the screenshot");
        if let Some(to) = std::env::var_os("WEIR_SCREENSHOTS") {
            // Relative to the repository, not to the test's directory.
            let to = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(to);
            std::fs::create_dir_all(&to).expect("screenshots dir");
            std::fs::write(to.join(format!("{name}.png")), &png).expect("write the screenshot");
        }
    }

    /// The value of cookie `name`, HttpOnly or not.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        let full = format!("/session/{}/cookie/{name}", self.session);
        self.call("GET", &full, None)
            .ok()
            .and_then(|c| c["value"].as_str().map(str::to_string))
    }

    /// Forget every cookie (a new person at the same browser).
    pub(crate) fn clear_cookies(&self) {
        self.must("DELETE", "/cookie", None);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
