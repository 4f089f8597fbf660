//! Which environment variables may reach a program, and from whom.
//!
//! A plugin may set, for one program call, only the variables its stage
//! lists in `allow.env` (and the few in [`INERT`], which only turn things
//! off). Some variables hand a program a command to run, code to load or a
//! configuration that can name either; those ([`dangerous`]) are refused
//! in a stage's `env`, `inherit-env` and `allow.env` unless the tenant
//! allows them by name (`[tenants.NAME] allow.env`). `PATH` and `LD_*`
//! are the pipeline's alone: a plugin never sets them.

/// Variables a plugin may set without a grant, with the one value each may
/// have: each only turns something off.
pub const INERT: &[(&str, &[&str])] = &[
    ("GIT_TERMINAL_PROMPT", &["0"]),
    ("GIT_CONFIG_NOSYSTEM", &["1"]),
    ("GIT_CONFIG_GLOBAL", &["/dev/null"]),
    ("CARGO_TERM_COLOR", &["never", "auto", "always"]),
    ("RUST_BACKTRACE", &["0", "1", "full"]),
    ("NO_COLOR", &["1"]),
];

/// Whether `key = value` is in [`INERT`].
pub fn inert(key: &str, value: &str) -> bool {
    INERT
        .iter()
        .any(|(k, values)| *k == key && values.contains(&value))
}

/// git variables that name nothing to run or read: identities and dates.
const GIT_HARMLESS: &[&str] = &[
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_TERMINAL_PROMPT",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_TRACE",
];

/// Why `key` can make a program run something other than itself, if it
/// can: the list docs/security.md documents.
pub fn dangerous(key: &str) -> Option<&'static str> {
    let exact = |names: &[&str]| names.contains(&key);
    if key.starts_with("GIT_") && !GIT_HARMLESS.contains(&key) {
        return Some("git reads commands, protocols (`ext::`), hooks and configuration from GIT_* variables");
    }
    if exact(&["HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"]) {
        return Some(
            "programs read their configuration, which can name commands, from the home and XDG directories",
        );
    }
    if exact(&[
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
    ]) || key.starts_with("CARGO_")
        && (key.ends_with("_RUNNER")
            || key.ends_with("_LINKER")
            || key.ends_with("RUSTFLAGS")
            || key.starts_with("CARGO_BUILD_")
            || key == "CARGO_HOME")
    {
        return Some("cargo runs the compiler, wrappers, linkers and runners these variables name");
    }
    if exact(&[
        "CC",
        "CXX",
        "LD",
        "AR",
        "CFLAGS",
        "CXXFLAGS",
        "LDFLAGS",
        "CPP",
        "MAKEFLAGS",
        "MAKE",
    ]) {
        return Some("build tools run the compiler and linker these variables name");
    }
    if exact(&[
        "NODE_OPTIONS",
        "NODE_PATH",
        "NPM_CONFIG_USERCONFIG",
        "NPM_CONFIG_GLOBALCONFIG",
    ]) || key.starts_with("npm_config_")
        || key.starts_with("NPM_CONFIG_")
    {
        return Some("node and npm load the modules and scripts these variables name");
    }
    if key.starts_with("PYTHON") || exact(&["PIP_CONFIG_FILE"]) {
        return Some("Python loads the startup files and modules PYTHON* variables name");
    }
    if exact(&["PERL5OPT", "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB"]) {
        return Some("perl and ruby load the code these variables name");
    }
    if exact(&[
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "MAVEN_OPTS",
        "GRADLE_OPTS",
        "CLASSPATH",
    ]) {
        return Some("the JVM loads the agents and classes these variables name");
    }
    if exact(&[
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PROMPT_COMMAND",
        "PS4",
        "IFS",
        "CDPATH",
    ]) || key.starts_with("BASH_FUNC_")
    {
        return Some("shells run the files and code these variables name");
    }
    if exact(&[
        "PAGER",
        "EDITOR",
        "VISUAL",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "SSH_AUTH_SOCK",
        "BROWSER",
        "LESSOPEN",
        "LESSCLOSE",
        "OPENSSL_CONF",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "TMPDIR",
    ]) {
        return Some("programs run (or trust) what these variables name");
    }
    None
}

/// Whether only the pipeline's own `env` may set `key`: where programs
/// are found and what they load.
pub fn pipeline_only(key: &str) -> bool {
    key == "PATH" || key.starts_with("LD_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_command_variables_are_dangerous() {
        for key in [
            "GIT_ALLOW_PROTOCOL",
            "GIT_DIR",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_GLOBAL",
            "HOME",
            "RUSTC_WRAPPER",
            "RUSTC",
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "BASH_ENV",
            "BASH_FUNC_ls%%",
            "JAVA_TOOL_OPTIONS",
        ] {
            assert!(dangerous(key).is_some(), "{key}");
        }
        for key in [
            "CI",
            "RUST_LOG",
            "GIT_AUTHOR_NAME",
            "LANG",
            "TZ",
            "CARGO_TERM_COLOR",
        ] {
            assert_eq!(dangerous(key), None, "{key}");
        }
        assert!(inert("GIT_CONFIG_GLOBAL", "/dev/null") && !inert("GIT_CONFIG_GLOBAL", "./evil"));
        assert!(pipeline_only("LD_PRELOAD") && pipeline_only("PATH") && !pipeline_only("LANG"));
    }
}
