//! Risky configuration in Dockerfiles, Compose files and CI files, read
//! line by line so every finding has its line.

use weir_sdk::{Finding, Severity};

/// Which rules a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `Dockerfile`, `*.Dockerfile`, `Dockerfile.*`, `Containerfile`.
    Dockerfile,
    /// A GitHub Actions workflow or action.
    GithubActions,
    /// `.gitlab-ci.yml`.
    GitlabCi,
    /// Other CI files: CircleCI, Azure Pipelines, Jenkinsfile, Bitbucket.
    OtherCi,
    /// `docker-compose.yml`, `compose.yaml`.
    Compose,
}

/// The kind of `path`, if it gets any rule.
pub fn kind_of(path: &str) -> Option<FileKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    if name == "Dockerfile"
        || name == "Containerfile"
        || name.ends_with(".Dockerfile")
        || name.starts_with("Dockerfile.")
    {
        Some(FileKind::Dockerfile)
    } else if yaml
        && (path.starts_with(".github/workflows/") || name == "action.yml" || name == "action.yaml")
    {
        Some(FileKind::GithubActions)
    } else if name == ".gitlab-ci.yml" {
        Some(FileKind::GitlabCi)
    } else if path == ".circleci/config.yml"
        || name == "azure-pipelines.yml"
        || name == "bitbucket-pipelines.yml"
        || name == "Jenkinsfile"
    {
        Some(FileKind::OtherCi)
    } else if yaml && (name.starts_with("docker-compose") || name.starts_with("compose.")) {
        Some(FileKind::Compose)
    } else {
        None
    }
}

/// Words that make an `ENV`/`ARG` name a secret's.
const SECRET_NAMES: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
];

/// `s` if it looks like an image or action reference and can be quoted;
/// anything else (a comment, odd characters) is not repeated in a message.
fn quotable(s: &str) -> &str {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b':' | b'@' | b'-' | b'+')
        });
    if ok { s } else { "(this reference)" }
}

/// Check one file's text.
pub fn check(path: &str, kind: FileKind, text: &str) -> Vec<Finding> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    match kind {
        FileKind::Dockerfile => dockerfile(path, &lines, &mut out),
        FileKind::GithubActions => github_actions(path, &lines, &mut out),
        FileKind::GitlabCi => gitlab(path, &lines, &mut out),
        FileKind::OtherCi => {}
        FileKind::Compose => compose(path, &lines, &mut out),
    }
    if kind != FileKind::Dockerfile {
        for (i, l) in lines.iter().enumerate() {
            if !is_comment(l) && pipes_download_to_shell(l) {
                out.push(curl_pipe(path, i));
            }
        }
    }
    out.sort_by_key(|f| f.line);
    out
}

fn at(
    rule: &str,
    severity: Severity,
    message: String,
    path: &str,
    index: usize,
    column: Option<usize>,
) -> Finding {
    Finding::new(rule, severity, message).at(path, index as u32 + 1, column.map(|c| c as u32 + 1))
}

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('#') || t.starts_with("//")
}

fn curl_pipe(path: &str, index: usize) -> Finding {
    at(
        "curl-pipe-shell",
        Severity::High,
        "a download is piped straight into a shell: whoever controls the URL (or the network) runs code here; download to a file, check its checksum or signature, then run it".into(),
        path,
        index,
        None,
    )
}

/// `curl … | sh`, `wget -O- … | bash`, `| sudo sh`, `| python`.
fn pipes_download_to_shell(line: &str) -> bool {
    let Some(fetch) = line.find("curl ").or_else(|| line.find("wget ")) else {
        return false;
    };
    line[fetch..].split('|').skip(1).any(|segment| {
        let mut words = segment.split_whitespace();
        let mut first = words.next().unwrap_or("");
        if first == "sudo" {
            first = words.next().unwrap_or("");
        }
        let program = first.rsplit('/').next().unwrap_or(first);
        matches!(
            program,
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "python" | "python3" | "perl" | "ruby" | "node"
        )
    })
}

/// Dockerfile instructions with their first line, continuation lines
/// joined.
fn instructions(lines: &[&str]) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut text = String::new();
        loop {
            let l = lines[i].trim_end();
            if let Some(cont) = l.strip_suffix('\\') {
                text.push_str(cont);
                text.push(' ');
                i += 1;
                if i >= lines.len() {
                    break;
                }
            } else {
                text.push_str(l);
                i += 1;
                break;
            }
        }
        let t = text.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        out.push((start, word.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

fn dockerfile(path: &str, lines: &[&str], out: &mut Vec<Finding>) {
    let instrs = instructions(lines);
    let mut stages: Vec<String> = Vec::new();
    let mut last_from: Option<usize> = None;
    let mut user: Option<(usize, String)> = None;
    for (line, word, rest) in &instrs {
        match word.as_str() {
            "FROM" => {
                last_from = Some(*line);
                user = None;
                let args: Vec<&str> = rest.split_whitespace().filter(|a| !a.starts_with("--")).collect();
                let image = args.first().copied().unwrap_or("");
                if let Some(alias) = args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case("as"))
                    .and_then(|i| args.get(i + 1))
                {
                    stages.push(alias.to_ascii_lowercase());
                }
                let earlier_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
                if !earlier_stage && image != "scratch" && !image.contains('$') && !pinned_image(image) {
                    out.push(at(
                        "dockerfile-unpinned-base-image",
                        Severity::Low,
                        format!(
                            "base image `{}` has no version tag (or uses `latest`): builds change under you; pin a tag, or better a digest (`@sha256:…`)",
                            quotable(image)
                        ),
                        path,
                        *line,
                        None,
                    ));
                }
            }
            "USER" => user = Some((*line, rest.clone())),
            "RUN" if pipes_download_to_shell(rest) => out.push(curl_pipe(path, *line)),
            "ADD"
                if rest
                    .split_whitespace()
                    .any(|a| a.starts_with("http://") || a.starts_with("https://")) =>
            {
                out.push(at(
                        "dockerfile-add-remote-url",
                        Severity::Medium,
                        "`ADD` fetches a URL with no checksum check; use `ADD --checksum=sha256:…` or download and verify in a `RUN` step".into(),
                        path,
                        *line,
                        None,
                    ));
            }
            "ENV" | "ARG" => {
                // `ENV A=1 B=2`, `ENV A 1`, `ARG A=1`: every name with a value.
                let pairs: Vec<(&str, &str)> = if rest.contains('=') {
                    rest.split_whitespace()
                        .filter_map(|p| p.split_once('='))
                        .collect()
                } else {
                    let mut it = rest.splitn(2, char::is_whitespace);
                    match (it.next(), it.next()) {
                        (Some(n), Some(v)) => vec![(n, v.trim())],
                        _ => Vec::new(),
                    }
                };
                for (name, value) in pairs {
                    let upper = name.to_ascii_uppercase();
                    let secretish = SECRET_NAMES.iter().any(|w| upper.contains(w));
                    let value = value.trim_matches(['"', '\'']);
                    let plain_name =
                        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if secretish && plain_name && !value.is_empty() && !value.starts_with('$') {
                        out.push(at(
                            "dockerfile-secret-in-env",
                            Severity::High,
                            format!(
                                "`{word} {name}` bakes a secret into the image, where every layer keeps it; pass it at run time or with `RUN --mount=type=secret`"
                            ),
                            path,
                            *line,
                            None,
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let runs_as_root = match &user {
        None => true,
        Some((_, u)) => {
            let name = u.split(':').next().unwrap_or("").trim();
            name == "root" || name == "0"
        }
    };
    if runs_as_root && let Some(from) = last_from {
        let (line, why) = match &user {
            Some((l, _)) => (*l, "`USER` sets root"),
            None => (from, "no `USER` instruction follows the final `FROM`"),
        };
        out.push(at(
            "dockerfile-root-user",
            Severity::Medium,
            format!("the image runs as root ({why}); add `USER` with an unprivileged user after installing packages"),
            path,
            line,
            None,
        ));
    }
}

/// `name:tag` (not `latest`) or `name@sha256:…`; a registry port
/// (`host:5000/name`) is not a tag.
fn pinned_image(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

/// Contexts an outsider controls (titles, bodies, branch names, …).
const UNTRUSTED: &[&str] = &[
    "github.event.issue.title",
    "github.event.issue.body",
    "github.event.pull_request.title",
    "github.event.pull_request.body",
    "github.event.comment.body",
    "github.event.review.body",
    "github.event.review_comment.body",
    "github.event.pages",
    "github.event.commits",
    "github.event.head_commit.message",
    "github.event.head_commit.author",
    "github.event.pull_request.head.ref",
    "github.event.pull_request.head.label",
    "github.event.pull_request.head.repo.default_branch",
    "github.event.workflow_run.head_branch",
    "github.event.discussion.title",
    "github.event.discussion.body",
    "github.head_ref",
];

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn github_actions(path: &str, lines: &[&str], out: &mut Vec<Finding>) {
    let pull_request_target = lines
        .iter()
        .any(|l| !is_comment(l) && l.contains("pull_request_target"));
    // The indentation of the `run:` key whose block we are in, if any.
    let mut in_run: Option<usize> = None;
    for (i, raw) in lines.iter().enumerate() {
        if is_comment(raw) {
            continue;
        }
        let l = raw.trim_start().trim_start_matches("- ");
        let ind = indent(raw);
        if let Some(run_indent) = in_run
            && !raw.trim().is_empty()
            && ind <= run_indent
        {
            in_run = None;
        }
        if l.starts_with("run:") {
            in_run = Some(ind);
        }
        if in_run.is_some()
            && let Some(col) = raw.find("${{")
        {
            let expr = &raw[col..];
            if let Some(ctx) = UNTRUSTED.iter().find(|c| expr.contains(*c)) {
                out.push(at(
                    "actions-script-injection",
                    Severity::High,
                    format!(
                        "`{ctx}` is expanded into a shell script: whoever writes it can run commands in this job; pass it through `env:` and use \"$VAR\" instead"
                    ),
                    path,
                    i,
                    Some(raw[..col].chars().count()),
                ));
            }
        }
        if let Some(rest) = l.strip_prefix("uses:") {
            let target = rest.trim().trim_matches(['"', '\'']);
            let target = target.split_whitespace().next().unwrap_or("");
            if let Some(problem) = unpinned_action(target) {
                out.push(at(
                    "actions-unpinned-third-party",
                    Severity::Medium,
                    format!(
                        "`{}` {problem}; pin it to a full commit SHA (`@<40 hex>`, with the tag in a comment)",
                        quotable(target)
                    ),
                    path,
                    i,
                    Some(raw[..raw.find("uses:").unwrap_or(0)].chars().count()),
                ));
            }
        }
        if pull_request_target
            && l.starts_with("ref:")
            && (l.contains("github.event.pull_request.head") || l.contains("github.head_ref"))
        {
            out.push(at(
                "actions-untrusted-checkout",
                Severity::High,
                "a `pull_request_target` workflow checks out the pull request's code: it runs with this repository's secrets and write token; use `pull_request`, or never build the checked-out code".into(),
                path,
                i,
                None,
            ));
        }
        if l.starts_with("permissions:") && l.contains("write-all") {
            out.push(at(
                "actions-write-all-permissions",
                Severity::Medium,
                "`permissions: write-all` gives every step a token that can write everything; grant only the scopes the job needs".into(),
                path,
                i,
                None,
            ));
        }
    }
}

/// Why `uses: target` is not pinned, if it is a third-party action that is
/// not pinned to a commit.
fn unpinned_action(target: &str) -> Option<&'static str> {
    if target.starts_with("./") || target.is_empty() {
        return None;
    }
    if let Some(image) = target.strip_prefix("docker://") {
        return (!image.contains("@sha256:")).then_some("is a container image not pinned by digest");
    }
    let (action, reference) = target.split_once('@')?;
    let owner = action.split('/').next().unwrap_or("");
    if owner == "actions" || owner == "github" {
        return None;
    }
    let is_sha = reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
    (!is_sha).then_some("is a third-party action pinned to a movable tag or branch")
}

fn gitlab(path: &str, lines: &[&str], out: &mut Vec<Finding>) {
    for (i, raw) in lines.iter().enumerate() {
        if is_comment(raw) {
            continue;
        }
        let l = raw.trim_start().trim_start_matches("- ");
        let Some(rest) = l.strip_prefix("image:") else {
            continue;
        };
        // The image is the first word (a trailing `# comment` is not part of
        // it); `image: { name: … }` is left alone.
        let first = rest.split_whitespace().next().unwrap_or("");
        let image = first.trim_matches(['"', '\'']);
        if image.is_empty() || image.starts_with('$') || image.starts_with('{') {
            continue;
        }
        if !pinned_image(image) {
            out.push(at(
                "ci-unpinned-image",
                Severity::Low,
                format!(
                    "CI image `{}` has no version tag (or uses `latest`); pin a tag or a digest",
                    quotable(image)
                ),
                path,
                i,
                None,
            ));
        }
    }
}

fn compose(path: &str, lines: &[&str], out: &mut Vec<Finding>) {
    for (i, raw) in lines.iter().enumerate() {
        let l = raw.trim();
        if l.starts_with("privileged:") && l.contains("true") {
            out.push(at(
                "compose-privileged",
                Severity::High,
                "`privileged: true` gives the container every capability and the host's devices; grant the specific `cap_add` it needs".into(),
                path,
                i,
                None,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(path: &str, text: &str) -> Vec<(String, u32)> {
        check(path, kind_of(path).unwrap(), text)
            .into_iter()
            .map(|f| (f.rule, f.line.unwrap_or(0)))
            .collect()
    }

    #[test]
    fn dockerfile_rules() {
        let text = "FROM rust:1.95 AS build\nRUN curl -sSf https://sh.rustup.rs | \\\n    sh -s -- -y\nFROM debian\nADD https://example.com/tool /usr/bin/tool\nENV API_TOKEN=abc123\n";
        let got = rules("Dockerfile", text);
        assert_eq!(
            got,
            [
                ("curl-pipe-shell".into(), 2),
                ("dockerfile-unpinned-base-image".into(), 4),
                ("dockerfile-root-user".into(), 4),
                ("dockerfile-add-remote-url".into(), 5),
                ("dockerfile-secret-in-env".into(), 6),
            ]
        );
        assert_eq!(
            rules("Dockerfile", "FROM alpine:3\nENV A=1 DB_PASSWORD=x9\nUSER app\n"),
            [("dockerfile-secret-in-env".into(), 2)]
        );
        let fine = "FROM rust:1.95 AS build\nRUN cargo build\nFROM build AS test\nFROM debian:12-slim@sha256:abc\nUSER app\n";
        assert!(
            rules("Dockerfile", fine).is_empty(),
            "{:?}",
            rules("Dockerfile", fine)
        );
        assert_eq!(
            rules("Dockerfile", "FROM alpine:3\nUSER root\n"),
            [("dockerfile-root-user".into(), 2)]
        );
    }

    #[test]
    fn github_actions_rules() {
        let text = r#"on: [pull_request_target]
permissions: write-all
jobs:
  build:
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - uses: some-org/deploy-action@v2
      - uses: some-org/pinned@0123456789abcdef0123456789abcdef01234567
      - name: greet
        run: |
          echo "${{ github.event.issue.title }}"
          curl -fsSL https://get.example.com | bash
      - run: echo "${{ github.sha }}"
"#;
        assert_eq!(
            rules(".github/workflows/ci.yml", text),
            [
                ("actions-write-all-permissions".into(), 2),
                ("actions-untrusted-checkout".into(), 8),
                ("actions-unpinned-third-party".into(), 9),
                ("actions-script-injection".into(), 13),
                ("curl-pipe-shell".into(), 14),
            ]
        );
    }

    #[test]
    fn messages_quote_only_references() {
        let f = check(
            ".gitlab-ci.yml",
            FileKind::GitlabCi,
            "image: node # note: a comment\n",
        );
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("`node`") && !f[0].message.contains("comment"),
            "{}",
            f[0].message
        );
        assert_eq!(quotable("node:20 # x"), "(this reference)");
    }

    #[test]
    fn gitlab_and_compose() {
        assert_eq!(
            rules(".gitlab-ci.yml", "image: node\ntest:\n  image: \"python:3.12\"\n"),
            [("ci-unpinned-image".into(), 1)]
        );
        assert_eq!(
            rules("docker-compose.yml", "services:\n  app:\n    privileged: true\n"),
            [("compose-privileged".into(), 3)]
        );
    }
}
