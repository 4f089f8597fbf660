//! Leaked secrets: typed tokens (cloud keys, GitHub/GitLab/Slack/Stripe
//! tokens, …), private key blocks, JWTs, passwords in URLs, and secrets
//! assigned to names that say so. What matched is never put in a finding:
//! at most a prefix that names the token type (`ghp_`, `AKIA`) is shown.

use aho_corasick::AhoCorasick;
use regex::bytes::Regex;
use weir_sdk::Severity;

/// A secret rule.
pub struct Rule {
    /// Stable id, e.g. `github-token`.
    pub id: &'static str,
    /// What the secret is, for messages: "a GitHub token".
    pub what: &'static str,
    /// How bad a leak is.
    pub severity: Severity,
    /// The pattern; its last capture group (or the whole match) is the
    /// secret, and a group named `name` is the name it is assigned to.
    regex: Regex,
    /// Leading characters of the secret that only name its type and may be
    /// shown (`ghp_` is 4).
    public_prefix: usize,
    /// The characters around the secret must not continue it.
    bounded: bool,
    /// A further check on the secret and the bytes after the match.
    check: Check,
}

/// Extra checks that keep decoys out.
#[derive(Clone, Copy)]
enum Check {
    None,
    /// Not a placeholder, and random enough (bits per character).
    Random(f64),
    /// A value assigned to a secret-sounding name: not a placeholder, at
    /// least 3 bits per character, and at least two kinds of character
    /// (lower, upper, digit, symbol other than `-_.`), so identifiers such
    /// as `my-app-secret` are not taken for secrets.
    Keyword,
    /// Not the documented AWS example key.
    NotAwsExample,
    /// A JWT whose header decodes to JSON with `alg`.
    Jwt,
    /// A private key header followed by a key body.
    KeyBody,
    /// Basic credentials that decode to `user:password`.
    BasicAuth,
}

/// A secret found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule's index in [`rules`].
    pub rule: usize,
    /// Byte offset of the secret in the file.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
    /// The shown prefix (may be empty) and the secret's length in
    /// characters, for the redacted message.
    pub shown: String,
    /// Its length in characters.
    pub len: usize,
}

macro_rules! rule {
    ($id:literal, $what:literal, $sev:ident, $re:literal, $prefix:literal, $bounded:literal, $check:expr) => {
        ($id, $what, Severity::$sev, $re, $prefix, $bounded, $check)
    };
}

/// The rules, and a prefilter that finds in one pass over a file which
/// rules can match at all: each rule has anchor strings (a token prefix,
/// a keyword) one of which every match contains, so a rule whose anchors
/// are absent is not run. Most files contain few anchors, which is what
/// makes 31 rules cost about one pass.
pub struct RuleSet {
    rules: Vec<Rule>,
    prefilter: AhoCorasick,
    /// For each anchor pattern, the rules it enables.
    owners: Vec<Vec<usize>>,
}

impl std::ops::Index<usize> for RuleSet {
    type Output = Rule;
    fn index(&self, i: usize) -> &Rule {
        &self.rules[i]
    }
}

/// Keywords every `generic-secret` match contains (case-insensitively).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "accesskey",
    "access_key",
    "access-key",
    "authkey",
    "auth_key",
    "auth-key",
    "privatekey",
    "private_key",
    "private-key",
    "credential",
];

/// Strings (matched ignoring ASCII case) one of which every match of rule
/// `id` contains.
fn anchors(id: &str) -> &'static [&'static str] {
    match id {
        "gcp-service-account-key" => &["private_key"],
        "private-key" => &["private key"],
        "aws-access-key-id" => &["akia", "asia", "abia", "acca"],
        "aws-secret-access-key" => &["aws"],
        "gcp-api-key" => &["aiza"],
        "github-token" => &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        "github-fine-grained-token" => &["github_pat_"],
        "gitlab-token" => &[
            "glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glft-", "glimt-", "glagent-",
        ],
        "slack-token" => &["xox"],
        "slack-webhook" => &["hooks.slack.com"],
        "stripe-key" => &["k_live_"],
        "openai-api-key" => &["t3blbkfj"],
        "anthropic-api-key" => &["sk-ant-"],
        "npm-token" => &["npm_"],
        "npmrc-auth-token" => &["_authtoken"],
        "pypi-token" => &["pypi-ageichlwas5vcmc"],
        "azure-storage-key" => &["accountkey="],
        "sendgrid-api-key" => &["sg."],
        "twilio-api-key" => &["sk"],
        "mailgun-api-key" => &["key-"],
        "square-token" => &["sq0atp-", "sq0csp-"],
        "shopify-token" => &["shpat_", "shpca_", "shppa_", "shpss_"],
        "digitalocean-token" => &["_v1_"],
        "hashicorp-vault-token" => &["hvs.", "hvb.", "hvr."],
        "telegram-bot-token" => &[":aa"],
        "discord-webhook" => &["/api/webhooks/"],
        "jwt" => &["eyj"],
        "basic-auth-header" => &["basic"],
        "password-in-url" => &["://"],
        "bearer-token" => &["bearer"],
        "generic-secret" => SECRET_WORDS,
        // A rule without anchors always runs.
        _ => &[],
    }
}

/// Every secret rule, in priority order: when two rules match overlapping
/// text, the earlier one is reported.
pub fn rules() -> RuleSet {
    let rules = rule_list();
    let mut patterns: Vec<&str> = Vec::new();
    let mut owners: Vec<Vec<usize>> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        for a in anchors(r.id) {
            match patterns.iter().position(|p| p == a) {
                Some(at) => owners[at].push(i),
                None => {
                    patterns.push(a);
                    owners.push(vec![i]);
                }
            }
        }
    }
    #[expect(clippy::expect_used, reason = "constant anchors; the tests build the set")]
    let prefilter = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(&patterns)
        .expect("secret anchors");
    RuleSet {
        rules,
        prefilter,
        owners,
    }
}

impl RuleSet {
    /// Which rules can match `text`.
    fn enabled(&self, text: &[u8]) -> Vec<bool> {
        let mut on: Vec<bool> = self.rules.iter().map(|r| anchors(r.id).is_empty()).collect();
        let mut seen = vec![false; self.owners.len()];
        for m in self.prefilter.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            if !seen[p] {
                seen[p] = true;
                for &r in &self.owners[p] {
                    on[r] = true;
                }
                if seen.iter().all(|s| *s) {
                    break;
                }
            }
        }
        on
    }
}

fn rule_list() -> Vec<Rule> {
    let table: Vec<(&str, &str, Severity, &str, usize, bool, Check)> = vec![
        rule!(
            "gcp-service-account-key",
            "a Google Cloud service account key",
            Critical,
            r#""private_key"\s*:\s*"(-----BEGIN[A-Z ]*PRIVATE KEY-----\\n[A-Za-z0-9+/=\\]{60,})"#,
            0,
            false,
            Check::None
        ),
        rule!(
            "private-key",
            "a private key",
            Critical,
            r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
            0,
            false,
            Check::KeyBody
        ),
        rule!(
            "aws-access-key-id",
            "an AWS access key id",
            Critical,
            r"((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})",
            4,
            true,
            Check::NotAwsExample
        ),
        rule!(
            "aws-secret-access-key",
            "an AWS secret access key",
            Critical,
            r#"(?i)aws[a-z0-9_.\-]{0,20}(?:secret|private)[a-z0-9_.\-]{0,20}['"]?\s*(?:=|:|=>)\s*['"]?([A-Za-z0-9/+]{40})"#,
            0,
            true,
            Check::Random(3.5)
        ),
        rule!(
            "gcp-api-key",
            "a Google Cloud API key",
            High,
            r"(AIza[0-9A-Za-z_\-]{35})",
            4,
            true,
            Check::None
        ),
        rule!(
            "github-token",
            "a GitHub token",
            Critical,
            r"(gh[pousr]_[A-Za-z0-9]{36,255})",
            4,
            true,
            Check::None
        ),
        rule!(
            "github-fine-grained-token",
            "a GitHub fine-grained token",
            Critical,
            r"(github_pat_[A-Za-z0-9_]{82})",
            11,
            true,
            Check::None
        ),
        rule!(
            "gitlab-token",
            "a GitLab token",
            Critical,
            r"((?:glpat|gldt|glrt|glptt|glsoat|glcbt|glft|glimt|glagent)-[A-Za-z0-9_\-]{20,})",
            6,
            true,
            Check::None
        ),
        rule!(
            "slack-token",
            "a Slack token",
            Critical,
            r"(xox[abposr]-(?:[0-9]+-)?[0-9A-Za-z\-]{10,})",
            5,
            true,
            Check::None
        ),
        rule!(
            "slack-webhook",
            "a Slack webhook URL",
            High,
            r"(https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,})",
            24,
            true,
            Check::None
        ),
        rule!(
            "stripe-key",
            "a Stripe live key",
            Critical,
            r"((?:sk|rk)_live_[0-9A-Za-z]{20,})",
            8,
            true,
            Check::None
        ),
        rule!(
            "openai-api-key",
            "an OpenAI API key",
            Critical,
            r"(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,})",
            3,
            true,
            Check::None
        ),
        rule!(
            "anthropic-api-key",
            "an Anthropic API key",
            Critical,
            r"(sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,})",
            7,
            true,
            Check::None
        ),
        rule!(
            "npm-token",
            "an npm token",
            Critical,
            r"(npm_[A-Za-z0-9]{36})",
            4,
            true,
            Check::None
        ),
        rule!(
            "npmrc-auth-token",
            "an npm registry auth token",
            Critical,
            r#"_authToken\s*=\s*['"]?([A-Za-z0-9_\-.=/+]{20,})"#,
            0,
            true,
            Check::Random(3.0)
        ),
        rule!(
            "pypi-token",
            "a PyPI token",
            Critical,
            r"(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})",
            5,
            true,
            Check::None
        ),
        rule!(
            "azure-storage-key",
            "an Azure storage account key",
            Critical,
            r"AccountKey=([A-Za-z0-9+/]{86}==)",
            0,
            false,
            Check::None
        ),
        rule!(
            "sendgrid-api-key",
            "a SendGrid API key",
            High,
            r"(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})",
            3,
            true,
            Check::None
        ),
        rule!(
            "twilio-api-key",
            "a Twilio API key",
            High,
            r"(SK[0-9a-f]{32})",
            2,
            true,
            Check::Random(3.0)
        ),
        rule!(
            "mailgun-api-key",
            "a Mailgun API key",
            High,
            r"(key-[0-9a-zA-Z]{32})",
            4,
            true,
            Check::Random(3.5)
        ),
        rule!(
            "square-token",
            "a Square access token",
            High,
            r"(sq0(?:atp|csp)-[0-9A-Za-z_\-]{22,43})",
            7,
            true,
            Check::None
        ),
        rule!(
            "shopify-token",
            "a Shopify access token",
            High,
            r"(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})",
            6,
            true,
            Check::None
        ),
        rule!(
            "digitalocean-token",
            "a DigitalOcean token",
            High,
            r"(do[por]_v1_[a-f0-9]{64})",
            7,
            true,
            Check::None
        ),
        rule!(
            "hashicorp-vault-token",
            "a HashiCorp Vault token",
            High,
            r"(hv[sbr]\.[A-Za-z0-9_\-]{90,})",
            4,
            true,
            Check::None
        ),
        rule!(
            "telegram-bot-token",
            "a Telegram bot token",
            High,
            r"([0-9]{8,10}:AA[0-9A-Za-z_\-]{33})",
            0,
            true,
            Check::None
        ),
        rule!(
            "discord-webhook",
            "a Discord webhook URL",
            High,
            r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/[A-Za-z0-9_\-]{30,})",
            0,
            true,
            Check::None
        ),
        rule!(
            "jwt",
            "a JSON Web Token",
            High,
            r"(eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
            3,
            true,
            Check::Jwt
        ),
        rule!(
            "basic-auth-header",
            "HTTP basic credentials",
            High,
            r"(?i)authorization\s*:\s*basic\s+([A-Za-z0-9+/]{12,}={0,2})",
            0,
            true,
            Check::BasicAuth
        ),
        rule!(
            "password-in-url",
            "a password in a URL",
            High,
            r#"[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/?#@'"<>]{0,64}:([^\s/?#@'"<>]{3,128})@[a-zA-Z0-9.\-]+"#,
            0,
            false,
            Check::Random(2.0)
        ),
        rule!(
            "bearer-token",
            "a bearer token",
            High,
            r"(?i)bearer\s+([A-Za-z0-9_\-.~+/]{20,}=*)",
            0,
            true,
            Check::Keyword
        ),
        rule!(
            "generic-secret",
            "a secret assigned to a name that says so",
            High,
            r#"(?i)(?P<name>[a-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|auth[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?)[a-z0-9_.\-]*)['"]?\s*(?:=|:=|:|=>|\?\?=)\s*[bru]?["'`]([^"'`\s]{8,200})["'`]"#,
            0,
            false,
            Check::Keyword
        ),
        rule!(
            "generic-secret",
            "a secret assigned to a name that says so",
            High,
            r#"(?im)^\s*(?:export\s+)?(?P<name>[a-z0-9_.\-]*(?:password|passwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|credentials?)[a-z0-9_.\-]*)\s*[:=]\s*([^\s'"`#$][^\s'"`#]{7,199})\s*$"#,
            0,
            false,
            Check::Keyword
        ),
    ];
    table
        .into_iter()
        .map(|(id, what, severity, re, public_prefix, bounded, check)| Rule {
            id,
            what,
            severity,
            // The patterns are constants checked by the unit tests.
            #[expect(clippy::expect_used, reason = "a constant pattern; the tests compile every one")]
            // ASCII-only matching: faster, and `(?i)` needs no Unicode tables.
            regex: Regex::new(&format!("(?-u){re}")).expect("secret rule pattern"),
            public_prefix,
            bounded,
            check,
        })
        .collect()
}

/// The distinct rule ids.
#[cfg(test)]
fn rule_ids(rules: &RuleSet) -> Vec<&'static str> {
    let mut ids: Vec<&str> = rules.rules.iter().map(|r| r.id).collect();
    ids.dedup();
    ids
}

/// Most secrets reported per file: a file of nothing but keys is one
/// problem, and the overlap check stays cheap.
pub const MAX_HITS_PER_FILE: usize = 200;

/// Every secret in `text` (at most [`MAX_HITS_PER_FILE`]), overlapping
/// matches resolved by rule order, sorted by position.
pub fn find(rules: &RuleSet, text: &[u8]) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let enabled = rules.enabled(text);
    for (index, rule) in rules.rules.iter().enumerate() {
        if !enabled[index] {
            continue;
        }
        for caps in rule.regex.captures_iter(text) {
            if hits.len() >= MAX_HITS_PER_FILE {
                break;
            }
            // The secret is the last group (or the whole match).
            let Some(m) = caps.get(caps.len() - 1) else {
                continue;
            };
            let whole = caps.get(0).map_or(m.range(), |w| w.range());
            if rule.bounded && !bounded(text, m.start(), m.end()) {
                continue;
            }
            let secret = &text[m.range()];
            if let Some(name) = caps.name("name")
                && !names_a_secret(name.as_bytes(), secret)
            {
                continue;
            }
            if !passes(
                rule.check,
                secret,
                &text[whole.end..text.len().min(whole.end + 400)],
            ) {
                continue;
            }
            if hits
                .iter()
                .any(|h| h.start < whole.end.max(m.end()) && whole.start.min(m.start()) < h.end)
            {
                continue;
            }
            let s = String::from_utf8_lossy(secret);
            let len = s.chars().count();
            let mut shown: String = s
                .chars()
                .take(rule.public_prefix.min(len.saturating_sub(4)))
                .collect();
            // Prefixes vary in length within a rule (`glpat-`, `gldt-`):
            // show only up to the last separator, never into the secret.
            if let Some(cut) = shown.rfind(['_', '-', '.', '/']) {
                shown.truncate(cut + 1);
            }
            hits.push(Hit {
                rule: index,
                start: m.start(),
                end: m.end(),
                shown,
                len,
            });
        }
    }
    hits.sort_by_key(|h| h.start);
    hits
}

/// `text` with every secret in it replaced by its redacted form: for
/// messages that quote file content.
pub fn redact_text(rules: &RuleSet, text: &str) -> String {
    let hits = find(rules, text.as_bytes());
    if hits.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in hits {
        if h.start < at || !text.is_char_boundary(h.start) || !text.is_char_boundary(h.end) {
            continue;
        }
        out.push_str(&text[at..h.start]);
        out.push_str(&redacted(&h));
        at = h.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The redacted form of a hit, e.g. `ghp_…` or `…`: never more than the
/// part that names the token type.
pub fn redacted(hit: &Hit) -> String {
    format!("{}…", hit.shown)
}

/// Names that contain a secret word but hold something else: an id, a
/// file name, a lifetime. Values that are paths are not secrets either.
fn names_a_secret(name: &[u8], value: &[u8]) -> bool {
    const NOT_SECRETS: &[&str] = &[
        "id", "ids", "name", "names", "file", "path", "dir", "url", "uri", "endpoint", "ttl", "expiry",
        "expires", "length", "len", "size", "type", "hint", "field", "header", "env", "var", "key_id",
        "prefix", "format",
    ];
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let last = name.rsplit(['_', '-', '.']).next().unwrap_or(&name);
    let pathlike = value.starts_with(b"/") || value.starts_with(b"./") || value.starts_with(b"~/");
    !NOT_SECRETS.contains(&last) && !pathlike
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The secret is not part of a longer token.
fn bounded(text: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    !before.is_some_and(is_token_byte) && !after.is_some_and(is_token_byte)
}

fn passes(check: Check, secret: &[u8], after: &[u8]) -> bool {
    if !matches!(check, Check::KeyBody | Check::BasicAuth) && is_placeholder(secret) {
        return false;
    }
    match check {
        Check::None => true,
        Check::Keyword => entropy(secret) >= 3.0 && kinds_of_character(secret) >= 2,
        Check::Random(bits) => !is_placeholder(secret) && entropy(secret) >= bits,
        Check::NotAwsExample => !secret.ends_with(b"EXAMPLE"),
        Check::Jwt => {
            let header = secret.split(|b| *b == b'.').next().unwrap_or_default();
            base64_decode(header)
                .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
                .is_some_and(|v| v.get("alg").is_some())
        }
        Check::KeyBody => {
            // At least 64 base64 characters on the lines after the header.
            let body = after
                .iter()
                .skip_while(|b| b.is_ascii_whitespace() || **b == b'\\' || **b == b'n')
                .take_while(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r' | b'\\')
                })
                .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
                .count();
            body >= 64
        }
        Check::BasicAuth => base64_decode(secret).is_some_and(|d| {
            let s = String::from_utf8_lossy(&d);
            s.split_once(':').is_some_and(|(user, pass)| {
                !user.is_empty() && pass.len() >= 3 && !is_placeholder(pass.as_bytes())
            })
        }),
    }
}

/// Words and shapes that say a value is a stand-in, not a secret.
pub fn is_placeholder(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value).to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "example",
        "changeme",
        "change_me",
        "change-me",
        "placeholder",
        "your",
        "dummy",
        "sample",
        "redacted",
        "xxxx",
        "****",
        "....",
        "todo",
        "fixme",
        "insert",
        "replace",
        "secret_here",
        "password",
        "passwd",
        "none",
        "null",
        "undefined",
        "notasecret",
        "not-a-secret",
        "fake",
        "test123",
        "hunter2",
        "foobar",
        "<",
        ">",
        "${",
        "{{",
        "$(",
        "%s",
        "%(",
        "process.env",
        "os.environ",
        "getenv",
        "env[",
        "env.",
    ];
    if WORDS.iter().any(|w| v.contains(w)) {
        return true;
    }
    // A value that is an expression or a reference, not a literal.
    if v.starts_with('$') || v.starts_with('@') || v.starts_with("env:") {
        return true;
    }
    // The same character over and over.
    let first = v.chars().next();
    v.chars().all(|c| Some(c) == first)
}

/// How many of lower case, upper case, digits and symbols (other than
/// the `-_.` identifiers use) `s` has.
fn kinds_of_character(s: &[u8]) -> usize {
    let lower = s.iter().any(u8::is_ascii_lowercase);
    let upper = s.iter().any(u8::is_ascii_uppercase);
    let digit = s.iter().any(u8::is_ascii_digit);
    let symbol = s
        .iter()
        .any(|b| !b.is_ascii_alphanumeric() && !matches!(b, b'-' | b'_' | b'.'));
    [lower, upper, digit, symbol].into_iter().filter(|k| *k).count()
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s {
        counts[usize::from(*b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Decode standard or URL-safe base64, padded or not.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in s {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<&'static str> {
        let rules = rules();
        find(&rules, text.as_bytes())
            .iter()
            .map(|h| rules[h.rule].id)
            .collect()
    }

    #[test]
    fn at_least_twenty_kinds() {
        let rules = rules();
        assert!(rule_ids(&rules).len() >= 20, "{:?}", rule_ids(&rules));
    }

    #[test]
    fn every_rule_has_anchors_that_its_matches_contain() {
        let rules = rules();
        for r in &rules.rules {
            assert!(!anchors(r.id).is_empty(), "{} has no anchors", r.id);
            for a in anchors(r.id) {
                assert_eq!(
                    *a,
                    a.to_ascii_lowercase(),
                    "{}: anchors are written lower case",
                    r.id
                );
            }
        }
    }

    #[test]
    fn typed_tokens_are_found_and_redacted() {
        let text = "token: ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T\n";
        let rules = rules();
        let hits = find(&rules, text.as_bytes());
        assert_eq!(hits.len(), 1);
        assert_eq!(rules[hits[0].rule].id, "github-token");
        assert_eq!(redacted(&hits[0]), "ghp_…");
        assert_eq!(hits[0].start, 7);
        assert_eq!(ids("key = AKIAZ3MHQ7RX2WLKE5TN"), ["aws-access-key-id"]);
        assert!(
            ids("AKIAIOSFODNN7EXAMPLE").is_empty(),
            "the documented example key"
        );
        assert_eq!(ids("sk_live_4eC39HqLyjWDarjtT1zdp7dc"), ["stripe-key"]);
        assert_eq!(ids("xoxb-2361872931-9b1c8d7e6f5a4b3c2d1e"), ["slack-token"]);
        assert_eq!(ids("glpat-Kx7Yq2Lm9Nb4Vc8Zr1Tw"), ["gitlab-token"]);
        let short = find(&rules, b"gldt-Kx7Yq2Lm9Nb4Vc8Zr1Tw");
        assert_eq!(
            redacted(&short[0]),
            "gldt-…",
            "a shorter prefix shows no secret character"
        );
        assert_eq!(
            redact_text(&rules, "image ghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T here"),
            "image ghp_… here"
        );
        assert!(
            ids("xghp_Zx8k2LmQ9vT4wRb7NcYp3HsJd6Fg1Ae5Ku0T").is_empty(),
            "part of a longer word"
        );
    }

    #[test]
    fn keyword_assignments_skip_placeholders() {
        assert_eq!(ids(r#"db_password = "Tr0ub4dor&3xQz""#), ["generic-secret"]);
        assert_eq!(ids("API_TOKEN=f83Kd92LmQ0xZ7vB\n"), ["generic-secret"]);
        assert!(ids(r#"password = "changeme""#).is_empty());
        assert!(ids(r#"api_key = "${API_KEY}""#).is_empty());
        assert!(ids(r#"token = "xxxxxxxxxxxxxxxx""#).is_empty());
        assert!(ids("API_TOKEN=$API_TOKEN\n").is_empty());
        assert!(ids(r#"password_hint = "aaaaaaaaaa""#).is_empty());
        assert!(ids("secret_name: my-app-secret\n").is_empty());
        assert_eq!(ids("  db.password: Xk29fLq0Zp\n"), ["generic-secret"]);
        assert!(ids("token: {{ .Values.token }}\n").is_empty());
        assert_eq!(
            ids("curl -H 'Authorization: Bearer 9fQ2kLmX8zR4vT7wYp3N'"),
            ["bearer-token"]
        );
        assert!(
            ids("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").is_empty(),
            "a docs placeholder"
        );
    }

    #[test]
    fn structure_checks() {
        let key = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aumwTRbd1BDHu1hwsCu4VbfXg1".repeat(2)
        );
        assert_eq!(ids(&key), ["private-key"]);
        assert!(ids("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----").is_empty());
        // {"alg":"HS256","typ":"JWT"}.{"sub":"1234567890"}.sig
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(ids(jwt), ["jwt"]);
        assert!(ids("eyJub3RhIjoiand0In0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk").is_empty());
        assert_eq!(
            ids("postgres://app:Qm9vX2Y3kL@db.internal:5432/app"),
            ["password-in-url"]
        );
        assert!(ids("postgres://app:${DB_PASSWORD}@db/app").is_empty());
        assert!(ids("postgres://app:password@db/app").is_empty());
    }

    #[test]
    fn entropy_of_simple_strings() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
