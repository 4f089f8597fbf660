//! The dashboard in a real browser: Debian's chromium, headless, driven
//! over WebDriver against the real `weir serve`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::serve::{GREET, Server, TENANTS, config, git, quickstart_project, repository};
use crate::support::Project;

const LONG: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(20);

fn base(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// Log in with `token` through the login form, starting from `path`.
fn login(b: &Browser, server: &Server, token: &str, path: &str) {
    b.clear_cookies();
    b.go(&format!("{}{path}", base(server)));
    let field = b.find("#token", SHORT);
    assert!(
        b.url().contains("/login?next="),
        "a page without a session goes to the login: {}",
        b.url()
    );
    b.type_into(&field, token);
    b.click(&b.find(".login button[type=submit]", SHORT));
    b.wait_until(
        "the login lands where it was going",
        &format!("return location.pathname === {path:?};"),
        SHORT,
    );
}

fn count(b: &Browser, css: &str) -> usize {
    b.all(css).len()
}

/// Where screenshots for the docs go: `docs/img` when asked for with
/// `WEIR_SCREENSHOTS`, else the test's own directory.
fn shots(p: &Project) -> std::path::PathBuf {
    p.path().to_path_buf()
}

#[test]
fn the_dashboard_follows_the_quickstart_to_its_canary_and_charts_the_rollout() {
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let weir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = git(&weir, &["rev-parse", "HEAD"]);
    let (p, _down) = quickstart_project(&weir);
    let server = Server::start(&p);
    let token = server.token(&["--operator", "--label", "ops"]);
    login(&b, &server, &token, "/runs");

    // A first deploy makes a stable release, so the run watched below
    // has something to canary against.
    let first = server.post(
        "/api/v1/runs",
        Some(&token),
        &json!({"repository": "weir", "commit": head}),
    );
    assert_eq!(first.status, 201, "{first:?}");
    let first = first.json()["id"].as_str().expect("id").to_string();
    let done = server.wait_for(&first, &token, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(done["status"], "succeeded", "{done}");

    // The list is open before the run exists: it must appear by itself.
    let created = server.post(
        "/api/v1/runs",
        Some(&token),
        &json!({"repository": "weir", "commit": head}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();
    let row = b.find(&format!("#runs-rows a[href='/runs/{id}']"), SHORT);
    b.click(&row);
    b.wait_until(
        "the run page opens",
        &format!("return location.pathname === '/runs/{id}';"),
        SHORT,
    );
    assert_eq!(count(&b, "svg.graph .node"), 6, "six stage nodes");
    // Live: the page is not reloaded, yet it reaches the end.
    b.js(
        "window.sameDocument = true; window.logTops = []; \
         setInterval(() => window.logTops.push(Math.round(document.getElementById('log-view').getBoundingClientRect().top + window.scrollY)), 200);",
        json!([]),
    );
    b.wait_until(
        "the run page shows the run succeeded",
        "return document.querySelector('#run-head .badge').textContent.includes('succeeded');",
        LONG,
    );
    assert_eq!(
        b.js("return window.sameDocument === true;", json!([])),
        json!(true),
        "updated in place"
    );
    let tops = b.js("return [...new Set(window.logTops)];", json!([]));
    assert_eq!(
        tops.as_array().map(Vec::len),
        Some(1),
        "the log did not move while the run went on: {tops}"
    );
    let states: Vec<String> = b
        .js(
            "return [...document.querySelectorAll('svg.graph .node')].map(n => n.getAttribute('class'));",
            json!([]),
        )
        .as_array()
        .expect("nodes")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(states.iter().all(|c| c.contains("s-succeeded")), "{states:?}");
    assert_eq!(count(&b, "svg.graph .edge"), 8, "checkout → 4 stages → deploy");

    // A known line of the checkout's log, found with the log's search.
    b.click(&b.find("svg.graph .node[data-stage='checkout']", SHORT));
    b.wait_until(
        "the checkout's log is shown",
        "return document.getElementById('log-stage').value === 'checkout';",
        SHORT,
    );
    let find = b.find("#log-find", SHORT);
    b.type_into(&find, "fetching");
    b.wait_until(
        "the log shows the checkout's fetch",
        "return document.querySelector('#log-view .log-lines').innerText.includes('fetching HEAD from');",
        SHORT,
    );
    b.js(
        "const f = document.getElementById('log-find'); f.value = ''; f.dispatchEvent(new Event('input'));",
        json!([]),
    );
    b.js("document.getElementById('log-stage').value = ''; document.getElementById('log-stage').dispatchEvent(new Event('change'));", json!([]));
    b.js("document.activeElement.blur(); window.scrollTo(0, 0);", json!([]));
    b.save(&shots(&p), "run");

    // The rollout: three steps of traffic, each judged.
    b.click(&b.find(&format!("a[href='/runs/{id}/rollout/deploy']"), SHORT));
    b.find("figure.chart", SHORT);
    let shares = b.js(
        "return [...document.querySelectorAll('figure.chart')[0].querySelectorAll('.pt.canary title')].map(t => t.textContent);",
        json!([]),
    );
    let shares: Vec<&str> = shares
        .as_array()
        .expect("points")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for step in ["20%", "50%", "100%"] {
        assert!(
            shares.iter().any(|s| s.contains(&format!(": {step}"))),
            "traffic step {step}: {shares:?}"
        );
    }
    let analyses = count(&b, "figure.chart:nth-of-type(2) .pt.canary");
    assert!(
        analyses >= 1,
        "the analysis steps on the error-rate chart, saw {analyses}"
    );
    assert_eq!(
        count(&b, "figure.chart:nth-of-type(3) .pt.canary"),
        analyses,
        "and on the p99 chart"
    );
    assert!(
        b.text("#rollout-outcome").contains("promoted"),
        "{}",
        b.text("#rollout")
    );
    b.save(&shots(&p), "rollout");

    b.go(&format!("{}/runs", base(&server)));
    b.find(&format!("#runs-rows a[href='/runs/{id}']"), SHORT);
    b.save(&shots(&p), "runs");

    // The environment it deployed, with its release.
    b.go(&format!("{}/environments", base(&server)));
    assert!(
        b.text("#environments").contains("quickstart-staging"),
        "{}",
        b.text("#environments")
    );

    // The plugins page lists what a pipeline can use, with digests.
    b.go(&format!("{}/plugins", base(&server)));
    let plugins = b.text("table.plugins");
    for name in ["git", "canary-metrics", "deploy"] {
        assert!(plugins.contains(name), "{plugins}");
    }
    assert!(plugins.contains("weir:plugin@"), "{plugins}");

    // The first load of the runs page is small.
    b.go(&format!("{}/runs", base(&server)));
    let bytes = b.js(
        "const n = performance.getEntriesByType('navigation')[0]; \
         return n.transferSize + performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, 0);",
        json!([]),
    );
    println!("first load of /runs: {bytes} bytes transferred (with the browser's cache)");
    let cold = b.js(
        "const n = performance.getEntriesByType('navigation')[0]; \
         return n.decodedBodySize + performance.getEntriesByType('resource').reduce((s, r) => s + r.decodedBodySize, 0);",
        json!([]),
    );
    println!("the runs page and its assets: {cold} bytes uncompressed");
    assert!(
        cold.as_u64().is_some_and(|n| n > 0 && n <= 150 * 1024),
        "first load ≤ 150 KB: {cold}"
    );
}

#[test]
fn a_deploy_is_approved_from_the_page_and_a_tenant_sees_only_its_own() {
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let pipeline = format!(
        "{GREET}\n[environments.production]\napproval = {{ approvers = [\"alice\"], timeout = \"10m\" }}\n\n\
         [stages.ship]\nneeds = [\"greet\"]\nenvironment = \"production\"\nrun = \"echo shipping\"\n"
    );
    let p = Project::new();
    repository(&p, &pipeline);
    p.write("tenants.toml", TENANTS);
    p.write("weir-server.toml", config(""));
    let server = Server::start(&p);
    let alice = server.token(&["--tenant", "acme", "--label", "alice"]);
    let globex = server.token(&["--tenant", "globex"]);
    let created = server.post("/api/v1/runs", Some(&alice), &json!({"repository": "app"}));
    let id = created.json()["id"].as_str().expect("id").to_string();

    login(&b, &server, &alice, "/environments");
    let form = format!("#approval-{id}-ship");
    b.find(&form, LONG);
    // Keyboard only: the reason field, then the Approve button.
    let reason = b.find(&format!("{form} input[name=reason]"), SHORT);
    b.click(&reason);
    b.type_into(&reason, "checked the staging canary");
    b.keys("\u{E004}\u{E007}"); // Tab to Approve, Enter
    b.wait_until(
        "approving goes to the run, which succeeds",
        &format!(
            "return location.pathname === '/runs/{id}' && document.querySelector('#run-head .badge').textContent.includes('succeeded');"
        ),
        LONG,
    );
    let gates = b.text("#run-details");
    assert!(
        gates.contains("approved")
            && gates.contains("by alice")
            && gates.contains("checked the staging canary"),
        "{gates}"
    );

    // A form without the session's CSRF token changes nothing.
    let cookie = b.js("return document.cookie;", json!([]));
    assert_eq!(cookie, json!(""), "the session cookie is HttpOnly");
    let session = b_cookie(&b);
    let second = server.post("/api/v1/runs", Some(&alice), &json!({"repository": "app"}));
    let second = second.json()["id"].as_str().expect("id").to_string();
    server.wait_for(&second, &alice, "its approval", |r| {
        r["approvals"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["decision"] == "pending"))
    });
    let path = format!("/runs/{second}/approvals/ship");
    let headers = |extra: &[(&'static str, String)]| {
        let mut h = vec![
            ("Cookie", format!("weir_session={session}")),
            ("Content-Type", "application/x-www-form-urlencoded".to_string()),
        ];
        h.extend_from_slice(extra);
        h
    };
    let refused = server.request(
        "POST",
        &path,
        None,
        &headers(&[]),
        b"decision=approve&reason=sneaky",
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("CSRF"), "{refused:?}");
    let wrong = server.request(
        "POST",
        &path,
        None,
        &headers(&[]),
        b"decision=approve&reason=sneaky&csrf=0000",
    );
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let csrf = b.js(
        "return document.querySelector('input[name=csrf]').value;",
        json!([]),
    );
    let body = format!(
        "decision=approve&reason=sneaky&csrf={}",
        csrf.as_str().expect("csrf")
    );
    let cross = server.request(
        "POST",
        &path,
        None,
        &headers(&[("Origin", "https://evil.example".to_string())]),
        body.as_bytes(),
    );
    assert_eq!(cross.status, 403, "another site's form: {cross:?}");
    let run = server.get(&format!("/api/v1/runs/{second}"), Some(&alice)).json();
    assert_eq!(
        run["approvals"][0]["decision"], "pending",
        "nothing was decided: {run}"
    );
    // The script's cookie may read the API, never change it.
    let api_post = server.request(
        "POST",
        &format!("/api/v1/runs/{second}/cancel"),
        None,
        &headers(&[]),
        b"",
    );
    assert_eq!(api_post.status, 401, "{api_post:?}");

    // Narrow and dark: readable at 390 px, no sideways scrolling.
    b.resize(390, 844);
    b.go(&format!("{}/runs/{id}", base(&server)));
    b.find("svg.graph", SHORT);
    let overflow = b.js(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "the page scrolls sideways at 390 px by {overflow}"
    );
    b.resize(1280, 900);

    // The first Tab reaches the skip link.
    b.go(&format!("{}/runs", base(&server)));
    b.find("#runs-rows", SHORT);
    b.keys("\u{E004}");
    assert_eq!(
        b.js("return document.activeElement.className;", json!([])),
        json!("skip")
    );

    // Another tenant sees none of it.
    login(&b, &server, &globex, "/runs");
    let rows = b.text("#runs-rows");
    assert!(!rows.contains(&id) && !rows.contains(&second), "{rows}");
    b.go(&format!("{}/runs/{id}", base(&server)));
    assert!(b.text("main").contains("no run"), "{}", b.text("main"));
    b.go(&format!("{}/environments", base(&server)));
    assert!(!b.text("main").contains(&second), "{}", b.text("main"));

    // Logging out ends the session.
    let session = b_cookie(&b);
    b.click(&b.find("form[action='/logout'] button", SHORT));
    b.find("#token", SHORT);
    let after = server.request(
        "GET",
        "/runs",
        None,
        &[("Cookie", format!("weir_session={session}"))],
        b"",
    );
    assert_eq!(
        after.status, 303,
        "the session still works after its logout? {after:?}"
    );
}

/// The session cookie's value, read through WebDriver (the page's script
/// cannot: it is HttpOnly).
fn b_cookie(b: &Browser) -> String {
    b.cookie("weir_session")
        .unwrap_or_else(|| panic!("no session cookie"))
}

#[test]
fn a_run_of_100_stages_and_10_mb_of_log_loads_and_scrolls() {
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    // Ten chains of ten stages; each prints 1,000 lines of 100 bytes.
    let mut pipeline = String::from("[pipeline]\nname = \"wide\"\n");
    for i in 0..100 {
        pipeline.push_str(&format!(
            "\n[stages.s{i:03}]\nrun = 'i=0; while [ $i -lt 1000 ]; do echo \"s{i:03} line $i \\033[32mok\\033[0m {pad}\"; i=$((i+1)); done'\n",
            pad = "x".repeat(84)
        ));
        if i % 10 != 0 {
            pipeline.push_str(&format!("needs = [\"s{:03}\"]\n", i - 1));
        }
    }
    let p = Project::new();
    repository(&p, &pipeline);
    p.write("tenants.toml", TENANTS);
    p.write("weir-server.toml", config(""));
    let server = Server::start(&p);
    let acme = server.token(&["--tenant", "acme"]);
    let id = server
        .post("/api/v1/runs", Some(&acme), &json!({"repository": "app"}))
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let run = server.wait_for(&id, &acme, "its end", |r| {
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    let logged: usize = server.get(&format!("/api/v1/runs/{id}/logs"), Some(&acme)).json()["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["message"].as_str().map_or(0, |m| m.len() + 1))
        .sum();
    assert!(logged > 10_000_000, "the run logged {logged} bytes");

    login(&b, &server, &acme, "/runs");
    b.go(&format!("{}/runs/{id}", base(&server)));
    b.wait_until(
        "the first log lines are drawn",
        "return !!window.weirFirstLog;",
        SHORT,
    );
    let first = b.js("return window.weirFirstLog;", json!([]));
    let paint = b.js(
        "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
        json!([]),
    );
    assert_eq!(count(&b, "svg.graph .node"), 100);
    b.wait_until(
        "every line arrives",
        "return (document.getElementById('log-count').textContent || '').startsWith('100,000 of 100,000');",
        LONG,
    );
    let all = b.js("return performance.now();", json!([]));
    // Scroll to the middle: the lines there are drawn, and only a window
    // of them is in the page.
    let drawn = b.js(
        "const v = document.getElementById('log-view'); v.scrollTop = v.scrollHeight / 2; \
         return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => { \
           const t0 = performance.now(); v.scrollTop += 5000; \
           requestAnimationFrame(() => r([document.querySelectorAll('#log-view .log-lines > span').length, \
             document.querySelector('#log-view .log-lines').innerText.includes('line 5'), performance.now() - t0])); })));",
        json!([]),
    );
    println!(
        "100 stages, 100,000 log lines: first contentful paint {paint} ms, first log lines drawn {first} ms, all lines {all} ms after navigation; a scroll's frame {} ms ({} lines in the page)",
        drawn[2], drawn[0]
    );
    let in_page = drawn[0].as_u64().unwrap_or(0);
    assert!(
        in_page > 0 && in_page < 2_000,
        "a window of lines, not all of them: {drawn}"
    );
    // The lines now in view are drawn: at once on a quiet machine (drawn[1]),
    // a few frames later on a loaded one.
    if drawn[1] != json!(true) {
        b.wait_until(
            "the lines scrolled to are drawn",
            "return document.querySelector('#log-view .log-lines').innerText.includes('line 5');",
            SHORT,
        );
    }
    assert!(
        count(&b, "#log-view .log-lines .a-32") > 0,
        "ANSI green is drawn as colour, not as escape codes"
    );
    let text = b.text("#log-view");
    assert!(
        !text.contains("\u{1b}[") && !text.contains("\\x1b["),
        "no escapes shown as text: {text:.300}"
    );
}
