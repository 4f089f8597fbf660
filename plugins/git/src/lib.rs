//! `git`: check out a repository into the workspace.
//!
//! ```toml
//! [stages.checkout]
//! uses = "git"
//! with = { repo = "${{ pipeline.dir }}", ref = "main", depth = 1, base = "v0.1.0" }
//! allow = { exec = ["git"], read = ["."] }
//! ```
//!
//! `repo` is a local path, a `file://` URL, or a remote URL (which needs an
//! `allow.network` grant for the sandboxed `git`). `ref` is a branch, a tag,
//! a full or abbreviated commit sha, or `HEAD` (the default). The checkout
//! goes to `dir` (default `src`) in the workspace, detached at that commit.
//!
//! Outputs: `sha`, `short-sha`, `branch` and `tag` (when the ref was one),
//! `author`, `message` (the subject line), `committed-at` (ISO 8601),
//! `dir`, and with `base`, `files-changed` (newline-separated) and
//! `files-changed-count`: the files that differ between `base` and `ref`.
//! Runs the host's `git` through the `process` capability.

use serde::Deserialize;
use weir_sdk::process::{Command, Exit};
use weir_sdk::{Capability, Context, Failure, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    repo: String,
    #[serde(default = "head", rename = "ref")]
    reference: String,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default = "src")]
    dir: String,
    #[serde(default)]
    base: Option<String>,
}

fn head() -> String {
    "HEAD".into()
}

fn src() -> String {
    "src".into()
}

struct Git;

impl Plugin for Git {
    fn manifest() -> Manifest {
        let mut m = weir_sdk::package_manifest!(Stage, [Capability::Process]);
        m.config_schema = Some(
            r#"{"type":"object","required":["repo"],"additionalProperties":false,"properties":{"repo":{"type":"string"},"ref":{"type":"string"},"depth":{"type":"integer","minimum":1},"dir":{"type":"string"},"base":{"type":"string"}}}"#
                .into(),
        );
        m
    }
}

/// Run `git ARGS` in `cwd`; the failure carries git's own message.
fn git(cwd: &str, args: &[&str]) -> Result<Exit, Failure> {
    let cmd = Command::new("git")
        .args(args.iter().copied())
        .cwd(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .quiet();
    Ok(weir_sdk::process::run(&cmd)?)
}

fn ok(exit: &Exit) -> bool {
    exit.code == Some(0)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Run git and insist on success, with `what` saying what was being done.
fn git_ok(cwd: &str, args: &[&str], what: &str) -> Result<String, Failure> {
    let exit = git(cwd, args)?;
    if ok(&exit) {
        Ok(text(&exit.stdout))
    } else {
        // git fails mostly on the network: worth another attempt.
        Err(Failure::retryable(format!("{what}: {}", text(&exit.stderr)))
            .with_details(format!("git {}", args.join(" "))))
    }
}

/// What `ref` names in `repo`, from `git ls-remote`.
enum Resolved {
    Branch(String),
    Tag(String),
    /// HEAD of the repository, and the branch it points at.
    Head(Option<String>),
    /// A commit sha (possibly abbreviated), to fetch as is.
    Commit,
}

fn resolve(repo: &str, reference: &str) -> Result<Resolved, Failure> {
    let listing = git(".", &["ls-remote", "--symref", repo])?;
    if !ok(&listing) {
        return Err(Failure::new(format!(
            "repository `{repo}` cannot be read: {}",
            text(&listing.stderr)
        )));
    }
    let out = text(&listing.stdout);
    if reference == "HEAD" {
        let branch = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("ref: refs/heads/")
                    .and_then(|r| r.strip_suffix("\tHEAD"))
            })
            .map(String::from);
        return Ok(Resolved::Head(branch));
    }
    for line in out.lines() {
        let Some((_, name)) = line.split_once('\t') else {
            continue;
        };
        if name == format!("refs/heads/{reference}") {
            return Ok(Resolved::Branch(reference.into()));
        }
        if name == format!("refs/tags/{reference}") {
            return Ok(Resolved::Tag(reference.into()));
        }
    }
    if reference.len() >= 4 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Resolved::Commit);
    }
    Err(Failure::new(format!(
        "ref `{reference}` is not a branch, tag or commit of `{repo}`"
    )))
}

/// Fetch `what` from `repo` into `dir`; returns the fetched commit. An
/// abbreviated sha cannot be asked for: then every branch and tag is
/// fetched and the abbreviation resolved locally.
fn fetch(dir: &str, repo: &str, what: &str, depth: Option<u32>) -> Result<String, Failure> {
    let abbreviated = what.len() < 40 && what.chars().all(|c| c.is_ascii_hexdigit());
    if abbreviated {
        let exit = git(
            dir,
            &[
                "-c",
                "protocol.file.allow=always",
                "fetch",
                "--quiet",
                repo,
                "+refs/heads/*:refs/weir/heads/*",
                "+refs/tags/*:refs/weir/tags/*",
            ],
        )?;
        if !ok(&exit) {
            return Err(Failure::new(format!(
                "cannot fetch from `{repo}`: {}",
                text(&exit.stderr)
            )));
        }
        return git_ok(
            dir,
            &["rev-parse", "--verify", "--quiet", &format!("{what}^{{commit}}")],
            &format!("`{what}` is not a commit of `{repo}`"),
        );
    }
    let depth_arg = depth.map(|d| format!("--depth={d}"));
    let mut args = vec![
        "-c",
        "protocol.file.allow=always",
        "fetch",
        "--quiet",
        "--no-tags",
        "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack",
    ];
    if let Some(d) = &depth_arg {
        args.push(d);
    }
    args.extend([repo, what]);
    let exit = git(dir, &args)?;
    if !ok(&exit) {
        return Err(Failure::new(format!(
            "cannot fetch `{what}` from `{repo}`: {}",
            text(&exit.stderr)
        )));
    }
    git_ok(
        dir,
        &["rev-parse", "FETCH_HEAD^{commit}"],
        "cannot read the fetched commit",
    )
}

impl Stage for Git {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let resolved = resolve(&c.repo, &c.reference)?;
        let source = match &resolved {
            Resolved::Branch(b) => format!("refs/heads/{b}"),
            Resolved::Tag(t) => format!("refs/tags/{t}"),
            Resolved::Head(_) => "HEAD".into(),
            Resolved::Commit => c.reference.clone(),
        };
        std::fs::create_dir_all(&c.dir)
            .map_err(|e| Failure::new(format!("cannot create `{}`: {e}", c.dir)))?;
        git_ok(&c.dir, &["init", "--quiet"], "cannot create the checkout")?;
        weir_sdk::log::info(&format!("fetching {} from {}", c.reference, c.repo));
        let sha = match fetch(&c.dir, &c.repo, &source, c.depth) {
            Ok(sha) => sha,
            Err(e) if matches!(resolved, Resolved::Commit) => {
                return Err(Failure::new(format!(
                    "ref `{}` is not a branch, tag or commit of `{}`",
                    c.reference, c.repo
                ))
                .with_details(e.message));
            }
            Err(e) => return Err(e),
        };
        git_ok(
            &c.dir,
            &["checkout", "--quiet", "--detach", &sha],
            "cannot check out the commit",
        )?;
        let info = git_ok(
            &c.dir,
            &["log", "-1", "--format=%H%x00%h%x00%an <%ae>%x00%s%x00%cI"],
            "cannot read the commit",
        )?;
        let fields: Vec<&str> = info.split('\0').collect();
        let [sha, short, author, subject, time] = fields.as_slice() else {
            return Err(Failure::new(format!("unexpected `git log` output: {info}")));
        };
        let mut out = StageOutput::new()
            .output("sha", *sha)
            .output("short-sha", *short)
            .output("author", *author)
            .output("message", *subject)
            .output("committed-at", *time)
            .output("dir", c.dir.clone());
        match &resolved {
            Resolved::Branch(b) | Resolved::Head(Some(b)) => out = out.output("branch", b.clone()),
            Resolved::Tag(t) => out = out.output("tag", t.clone()),
            _ => {}
        }
        if let Some(base) = &c.base {
            let base_source = match resolve(&c.repo, base)? {
                Resolved::Branch(b) => format!("refs/heads/{b}"),
                Resolved::Tag(t) => format!("refs/tags/{t}"),
                Resolved::Head(_) => "HEAD".into(),
                Resolved::Commit => base.clone(),
            };
            let base_sha = fetch(&c.dir, &c.repo, &base_source, c.depth)?;
            let files = git_ok(
                &c.dir,
                &["diff", "--name-only", &base_sha, sha],
                "cannot compare with the base",
            )?;
            let count = files.lines().filter(|l| !l.is_empty()).count();
            out = out
                .output("files-changed", files)
                .output("files-changed-count", count.to_string());
        }
        Ok(out.summary(format!("{} {subject}", short)))
    }
}

weir_sdk::export_stage!(Git);
