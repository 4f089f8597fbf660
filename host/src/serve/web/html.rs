//! Writing HTML: escaping, the page around every view, and the small
//! formats (durations, times, statuses) the views share.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Viewer;

/// `text` with HTML's special characters escaped: safe as element text
/// and inside a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a URL's path segment or query value.
pub fn url_encode(text: &str) -> String {
    // Everything but RFC 3986's unreserved characters.
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Runs and a run's pages.
    Runs,
    /// Environments and approvals.
    Environments,
    /// Plugins.
    Plugins,
    /// Tenants (operators).
    Tenants,
    /// None (login, errors).
    None,
}

/// A whole page: `body` inside the navigation, for `viewer`.
pub fn page(title: &str, section: Section, viewer: Option<&Viewer>, body: &str) -> Response {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let link = |href: &str, name: &str, s: Section| {
            let current = if s == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{current}>{name}</a>")
        };
        nav.push_str(&link("/runs", "Runs", Section::Runs));
        nav.push_str(&link("/environments", "Environments", Section::Environments));
        nav.push_str(&link("/plugins", "Plugins", Section::Plugins));
        if v.caller.tenant.is_none() {
            nav.push_str(&link("/tenants", "Tenants", Section::Tenants));
        }
        let who = match (&v.caller.tenant, &v.caller.label) {
            (Some(t), Some(l)) => format!("{} · {}", esc(t), esc(l)),
            (Some(t), None) => esc(t),
            (None, Some(l)) => format!("operator · {}", esc(l)),
            (None, None) => "operator".to_string(),
        };
        let _ = write!(
            nav,
            "<span class=\"who\">{who}</span><form method=\"post\" action=\"/logout\" class=\"inline\">{}<button type=\"submit\">Log out</button></form>",
            csrf_field(v)
        );
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · weir</title>\
         <link rel=\"stylesheet\" href=\"{css}\">\
         <script src=\"{js}\" defer></script></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/runs\">weir</a><nav aria-label=\"Main\">{nav}</nav></header>\
         <main id=\"main\" tabindex=\"-1\">{body}</main></body></html>\n",
        title = esc(title),
        css = super::assets::url("app.css"),
        js = super::assets::url("app.js"),
    );
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(h);
    r
}

/// What every page answers with: no framing, no sniffing, scripts and
/// styles only from the server itself.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A page that says why something was refused or failed, and what to do.
pub fn refusal(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<section class=\"refusal\"><h1>{}</h1><p>{}</p><p><a href=\"/runs\">Back to the runs</a></p></section>",
        esc(title),
        esc(detail)
    );
    let mut r = page(title, Section::None, None, &body);
    *r.status_mut() = status;
    r
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(viewer: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&viewer.csrf)
    )
}

/// A duration for people: `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 10 m`.
pub fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{} m {:02} s", ms / 60_000, (ms / 1000) % 60),
        ms => format!("{} h {:02} m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A time as UTC `2026-12-07 15:04:05`, in a `<time>` element.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::report::style::civil_from_days(days);
    let iso = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    );
    format!(
        "<time datetime=\"{iso}\">{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}</time>",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// A status as a badge: its word and a shape, so colour is not the only
/// sign.
pub fn status(status: &str) -> String {
    let mark = match status {
        "succeeded" | "approved" | "pass" | "passed" => "✓",
        "failed" | "rejected" | "fail" | "interrupted" | "timed_out" => "✗",
        "running" | "waiting" => "●",
        "cancelled" | "skipped" => "⊘",
        "queued" | "pending" => "○",
        _ => "·",
    };
    format!(
        "<span class=\"badge s-{cls}\"><span aria-hidden=\"true\">{mark}</span> {word}</span>",
        cls = esc(status),
        word = esc(status)
    )
}

/// A byte count for people.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A large count with thin groups: `12 345 678`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert!(time(0).contains("1970-01-01 00:00:00"));
        // 2026-12-07 15:21:33 UTC
        assert!(
            time(1_796_656_893_000).contains("2026-12-07 15:21:33"),
            "{}",
            time(1_796_656_893_000)
        );
        assert!(time(951_782_400_000).contains("2000-02-29"), "a leap day");
    }

    #[test]
    fn durations_bytes_and_counts_read_well() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 m 05 s");
        assert_eq!(duration(7_800_000), "2 h 10 m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(count(12_345_678), "12\u{202f}345\u{202f}678");
    }
}
