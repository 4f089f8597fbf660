//! Arguments that would run a program `allow.exec` does not name:
//! `git -c core.sshCommand=...`, `--upload-pack`, `env X`, and the like.

/// Why running `program` with `args` would run something the stage was
/// not granted, if it would: `env PROG` runs PROG (so PROG must be granted
/// too; `env -S` is refused outright), and git's global options that name
/// a command to run (`-c`, `--config-env`, `--exec-path`,
/// `--upload-pack`, `--receive-pack`) are refused. What a granted program
/// does on its own, from files in the workspace, is bounded by the sandbox
/// it runs in, not by this list.
pub fn smuggled(program: &str, args: &[String], granted: &[String]) -> Option<String> {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "env" => {
            let mut i = 0;
            while let Some(a) = args.get(i) {
                match a.as_str() {
                    "-S" | "--split-string" => {
                        return Some(
                            "`env -S` splits a string into a command line; run the program itself".into(),
                        );
                    }
                    _ if a.starts_with("-S") || a.starts_with("--split-string=") => {
                        return Some(
                            "`env -S` splits a string into a command line; run the program itself".into(),
                        );
                    }
                    "-u" | "--unset" | "-C" | "--chdir" => i += 2,
                    "--" => {
                        i += 1;
                        break;
                    }
                    _ if a.starts_with('-') || a.contains('=') => i += 1,
                    _ => break,
                }
            }
            let target = args.get(i)?;
            let target_name = target.rsplit('/').next().unwrap_or(target);
            (!granted.iter().any(|g| g == target || g == target_name)).then(|| {
                format!("`env` would run `{target}`, which is not granted; grant it with allow = {{ exec = [\"{target_name}\"] }}")
            })
        }
        "git" => {
            // Global options, before the subcommand. `-c KEY=VALUE` may only
            // set keys that cannot name a command.
            let mut i = 0;
            while let Some(a) = args.get(i) {
                if !a.starts_with('-') {
                    break;
                }
                let option = a.split('=').next().unwrap_or(a);
                if matches!(option, "--config-env" | "--exec-path") {
                    return Some(format!("git's `{option}` can make git run any command"));
                }
                if matches!(
                    a.as_str(),
                    "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
                ) {
                    i += 2;
                    continue;
                }
                if let Some(rest) = a.strip_prefix("-c") {
                    let setting = if rest.is_empty() {
                        i += 1;
                        args.get(i).map(String::as_str).unwrap_or_default()
                    } else {
                        rest
                    };
                    let key = setting.split('=').next().unwrap_or_default();
                    if !SAFE_GIT_CONFIG.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        return Some(format!(
                            "git's `-c {key}` is not one of the settings a plugin may pass ({}); others can make git run any command",
                            SAFE_GIT_CONFIG.join(", ")
                        ));
                    }
                }
                i += 1;
            }
            args.iter()
                .find(|a| {
                    (a.starts_with("--upload-pack") || a.starts_with("--receive-pack") || a.as_str() == "-u")
                        && a.as_str() != SAFE_UPLOAD_PACK
                })
                .filter(|_| {
                    args.iter().any(|a| {
                        matches!(
                            a.as_str(),
                            "clone" | "fetch" | "ls-remote" | "pull" | "push" | "archive"
                        )
                    })
                })
                .map(|a| {
                    format!("git's `{a}` names a program for git to run; it is not allowed from a plugin")
                })
        }
        _ => None,
    }
}

/// git settings a plugin may pass with `-c`: none can name a command.
pub const SAFE_GIT_CONFIG: &[&str] = &[
    "protocol.file.allow",
    "uploadpack.allowAnySHA1InWant",
    "safe.directory",
    "init.defaultBranch",
    "user.name",
    "user.email",
    "advice.detachedHead",
    "gc.auto",
    "color.ui",
];

/// The one `--upload-pack` a plugin may pass: git's own, allowing a fetch
/// by commit.
pub(super) const SAFE_UPLOAD_PACK: &str =
    "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack";
