//! Bubblewrap: the pieces every sandbox weir starts shares, whether it
//! holds a stage's program (`capabilities::process`) or a deployed
//! instance (`target::instance_sandbox`): finding bubblewrap and whether it
//! works here, the unprivileged user and private mounts, the view of the
//! host a sandbox gets (system directories, an allow-list of `/etc`, what
//! other users may not read hidden), and where the sandbox's first
//! process is.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use weir_pipeline::sandbox::SYSTEM_DIRS;

/// The `PATH` a program gets when the stage declares none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What of `/etc` a sandbox shows, read-only, when present: users and
/// groups (no passwords: those live in the shadow files, never shown),
/// name resolution, the dynamic loader's cache, time zones, MIME and magic
/// data, certificates, and the system-wide settings of the toolchains
/// programs run (git, Python, npm, pip, Java, Maven). Nothing else of
/// `/etc` is there.
pub const ETC_ALLOWED: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "magic",
    "magic.mime",
    "os-release",
    "debian_version",
    "lsb-release",
    "alternatives",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "crypto-policies",
    "gitconfig",
    "inputrc",
    "locale.alias",
    "shells",
    "npmrc",
    "pip.conf",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
    "perl",
    "java-8-openjdk",
    "java-11-openjdk",
    "java-17-openjdk",
    "java-21-openjdk",
    "java-25-openjdk",
    "maven",
    "fonts",
    "profile",
    "profile.d",
    "ssh/ssh_config",
    "ssh/ssh_known_hosts",
    "ssl/cert.pem",
    "pki/tls/openssl.cnf",
    "texmf",
];

/// Largest private `/tmp` a sandbox gets; a tenant's `limits.disk`
/// makes it smaller.
pub const TMP_BYTES: u64 = 256 << 20;
/// Largest private `/dev/shm`; the same limit makes it smaller.
pub const SHM_BYTES: u64 = 64 << 20;

/// Whether programs run inside bubblewrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// Inside bubblewrap, found at this path.
    Bubblewrap(PathBuf),
    /// Directly: bubblewrap is not installed.
    Unavailable,
    /// Directly: the stage chose `sandbox = "none"`.
    OptedOut,
}

/// Why bubblewrap cannot confine programs on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// No `bwrap` on the default path.
    #[error(
        "bubblewrap is not installed (no `bwrap` on {DEFAULT_PATH}); install it (Debian: apt-get install bubblewrap)"
    )]
    NotInstalled,
    /// It ran and refused (user namespaces off, weir confined).
    #[error("{} cannot start a sandbox here: {stderr}", bwrap.display())]
    Refused {
        /// The program.
        bwrap: PathBuf,
        /// What it said.
        stderr: String,
    },
    /// It could not be run at all.
    #[error("{} cannot be started: {error}", bwrap.display())]
    NotStarted {
        /// The program.
        bwrap: PathBuf,
        /// Why.
        error: String,
    },
}

impl Sandbox {
    /// Bubblewrap if it is installed, else [`Sandbox::Unavailable`].
    pub fn detect() -> Self {
        match find_program("bwrap", DEFAULT_PATH) {
            Some(p) => Sandbox::Bubblewrap(p),
            None => Sandbox::Unavailable,
        }
    }

    /// Bubblewrap, when it is installed and can start a sandbox here (user
    /// namespaces may be off, or weir itself confined); why not otherwise.
    /// Tried once per process.
    pub fn usable() -> Result<PathBuf, Unusable> {
        static TRIED: std::sync::OnceLock<Result<PathBuf, Unusable>> = std::sync::OnceLock::new();
        TRIED
            .get_or_init(|| {
                let Sandbox::Bubblewrap(bwrap) = Sandbox::detect() else {
                    return Err(Unusable::NotInstalled);
                };
                let tried = std::process::Command::new(&bwrap)
                    .args(["--ro-bind", "/", "/", "--unshare-all", "--unshare-user"])
                    .args([
                        "--uid",
                        "65534",
                        "--gid",
                        "65534",
                        "--cap-drop",
                        "ALL",
                        "--",
                        "true",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                match tried {
                    Ok(out) if out.status.success() => Ok(bwrap),
                    Ok(out) => Err(Unusable::Refused {
                        bwrap,
                        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    }),
                    Err(e) => Err(Unusable::NotStarted {
                        bwrap,
                        error: e.to_string(),
                    }),
                }
            })
            .clone()
    }

    /// How it reads in a summary.
    pub fn describe(&self) -> &'static str {
        match self {
            Sandbox::Bubblewrap(_) => "bubblewrap",
            Sandbox::Unavailable => "none (bubblewrap is not installed)",
            Sandbox::OptedOut => "none (sandbox = \"none\")",
        }
    }
}

/// The pid of the sandbox's first process, from bubblewrap's `--info-fd`
/// JSON (`{"child-pid": N, …}`), read until it is complete.
pub fn sandbox_pid(mut info: std::fs::File) -> std::io::Result<u32> {
    use std::io::Read;
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text)
            && let Some(pid) = v.get("child-pid").and_then(serde_json::Value::as_u64)
        {
            return Ok(pid as u32);
        }
        let n = info.read(&mut chunk)?;
        if n == 0 || text.len() > 64 << 10 {
            return Err(std::io::Error::other(format!(
                "bubblewrap did not say where its sandbox is (it said `{}`)",
                String::from_utf8_lossy(&text).trim()
            )));
        }
        text.extend_from_slice(&chunk[..n]);
    }
}

/// Something the host keeps from other users, hidden in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masked {
    /// A file others may not read: `/dev/null` over it.
    File(PathBuf),
    /// A directory others may not list or enter: an empty one over it.
    Dir(PathBuf),
}

impl Masked {
    fn path(&self) -> &Path {
        match self {
            Masked::File(p) | Masked::Dir(p) => p,
        }
    }
}

/// bubblewrap's arguments for an unprivileged user with no capabilities,
/// even when weir runs as root: nobody, in a user namespace of its own.
pub const UNPRIVILEGED: [&str; 7] = [
    "--unshare-user",
    "--uid",
    "65534",
    "--gid",
    "65534",
    "--cap-drop",
    "ALL",
];

/// bubblewrap's arguments for a sandbox's own `/proc` and `/dev`, and its
/// in-memory `/tmp` and `/dev/shm` of at most `tmp` and `shm` bytes.
pub fn private_mounts(c: &mut tokio::process::Command, tmp: u64, shm: u64) {
    c.args(["--proc", "/proc", "--dev", "/dev"]);
    c.arg("--size").arg(tmp.to_string()).args(["--tmpfs", "/tmp"]);
    c.arg("--size").arg(shm.to_string()).args(["--tmpfs", "/dev/shm"]);
}

/// Show `view` read-only in the bubblewrap command `c`, with `masked`
/// (what in it others may not read) hidden; the directories that hold
/// the binds are made too.
pub fn mount_view(c: &mut tokio::process::Command, view: &[PathBuf], masked: &[Masked]) {
    // The directories that hold the binds are the sandbox's own: made
    // readable (bubblewrap would make them 0700), and empty but for
    // what is bound into them.
    let mut parents: Vec<&Path> = view
        .iter()
        .flat_map(|p| p.ancestors().skip(1))
        .filter(|a| *a != Path::new("/") && !view.iter().any(|v| a.starts_with(v)))
        .collect();
    parents.sort_by_key(|a| (a.components().count(), *a));
    parents.dedup();
    for dir in parents {
        c.args(["--perms", "0755", "--dir"]).arg(dir);
    }
    // Only the pipeline's env decides what toolchains are shown: the
    // plugin's per-call variables cannot widen the sandbox.
    for dir in view {
        c.arg("--ro-bind-try").arg(dir).arg(dir);
    }
    // Inside the sandbox the program's file access maps to the user
    // weir runs as, for whom root's files are its own: what the host
    // keeps from other users is hidden, not merely protected.
    for m in masked {
        match m {
            Masked::File(f) => {
                c.arg("--ro-bind").arg("/dev/null").arg(f);
            }
            Masked::Dir(d) => {
                c.args(["--size", "4096", "--tmpfs"])
                    .arg(d)
                    .arg("--remount-ro")
                    .arg(d);
            }
        }
    }
}

/// Everything under the roots of `view` that other users may not read.
/// The system directories and `/etc` are walked once per process (they do
/// not change under a running weir; a package installed since shows on
/// the next run); the stage's own PATH and `allow.read` directories are
/// walked for every program, never into `workspace`. Those were granted
/// by name (the tenancy check keeps them within the tenant's
/// `allow.read`), so a closed directory above them, such as a 0700 home
/// holding a toolchain, does not hide them; what inside them others may
/// not read (`~/.cargo/credentials.toml`) still is.
pub fn unreadable_in(view: &[PathBuf], workspace: &Path) -> Vec<Masked> {
    type Walked = std::collections::HashMap<PathBuf, std::sync::Arc<Vec<Masked>>>;
    static WALKED: std::sync::OnceLock<std::sync::Mutex<Walked>> = std::sync::OnceLock::new();
    let walked = WALKED.get_or_init(Default::default);
    let mut out = Vec::new();
    for root in view {
        let system = root.starts_with("/etc") || SYSTEM_DIRS.iter().any(|s| root.starts_with(s));
        if !system {
            out.extend(walk_unreadable(root, Some(workspace)));
            continue;
        }
        let known = walked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(root)
            .cloned();
        let found = known.unwrap_or_else(|| {
            let found = std::sync::Arc::new(walk_unreadable(root, None));
            walked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(root.clone(), found.clone());
            found
        });
        out.extend(found.iter().cloned());
    }
    outermost(out)
}

/// `masked` without what lies inside a directory that is itself hidden
/// (roots of the view may nest: `~/.cargo` and `~/.cargo/bin`), so that
/// no mount is made inside a read-only tmpfs. Sorted by path, what lies
/// inside a directory comes right after it.
fn outermost(mut masked: Vec<Masked>) -> Vec<Masked> {
    masked.sort_by(|a, b| a.path().cmp(b.path()));
    let mut kept: Vec<Masked> = Vec::with_capacity(masked.len());
    for m in masked {
        let covered = kept.last().is_some_and(|k| match k {
            Masked::Dir(d) => m.path().starts_with(d),
            Masked::File(f) => m.path() == f,
        });
        if !covered {
            kept.push(m);
        }
    }
    kept
}

/// What under `root` (itself included, symlinks not followed past the
/// root) other users may not read: files without `o+r`, directories
/// without `o+rx`. A directory hidden whole is not walked.
fn walk_unreadable(root: &Path, skip: Option<&Path>) -> Vec<Masked> {
    use std::os::unix::fs::PermissionsExt;
    let hidden = |meta: &std::fs::Metadata, path: &Path| {
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            (mode & 0o005 != 0o005).then(|| Masked::Dir(path.to_path_buf()))
        } else {
            (mode & 0o004 == 0).then(|| Masked::File(path.to_path_buf()))
        }
    };
    // The root as bubblewrap binds it: through a symlink.
    let Ok(meta) = std::fs::metadata(root) else {
        return Vec::new();
    };
    if let Some(m) = hidden(&meta, root) {
        return vec![m];
    }
    if !meta.is_dir() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            out.push(Masked::Dir(dir));
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.file_type().is_symlink() {
                continue;
            }
            if skip.is_some_and(|s| path.starts_with(s)) {
                continue;
            }
            match hidden(&meta, &path) {
                Some(m) => out.push(m),
                None if meta.is_dir() => stack.push(path),
                None => {}
            }
        }
    }
    out
}

/// The first executable called `name` on `path`.
pub fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':').filter(|d| d.starts_with('/')).find_map(|dir| {
        let candidate = Path::new(dir).join(name);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mask_is_made_inside_a_hidden_directory() {
        let d = |p: &str| Masked::Dir(PathBuf::from(p));
        let f = |p: &str| Masked::File(PathBuf::from(p));
        let kept = outermost(vec![
            f("/home/a/.cargo/bin/secret"),
            d("/home/a/.cargo/bin"),
            f("/home/a/.cargo/credentials.toml"),
            d("/home/a/.cargo/bin"),
            f("/home/a/.cargo/credentials.toml"),
            d("/home/a/.cargo-other"),
        ]);
        assert_eq!(
            kept,
            vec![
                d("/home/a/.cargo/bin"),
                f("/home/a/.cargo/credentials.toml"),
                d("/home/a/.cargo-other"),
            ]
        );
    }
}
