//! Reading and writing beneath a directory a plugin can change, without
//! following a symlink it planted: every directory is opened from its
//! parent with `O_NOFOLLOW`, files are opened with `O_NOFOLLOW`, and a file
//! is written under a fresh temporary name (`O_EXCL`) and renamed into
//! place (which replaces a symlink there rather than following it). A
//! plugin that swaps a directory for a symlink mid-walk gets an error, not
//! the host's files.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

/// Open `root` (trusted: weir chose it) as a directory.
pub fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the directory `name` inside `dir`, refusing a symlink.
pub fn open_dir(dir: &OwnedFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the regular file `name` inside `dir` for reading, refusing a
/// symlink or anything that is not a regular file.
pub fn open_file(dir: &OwnedFd, name: &OsStr) -> std::io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(File::from(fd))
}

/// Where the symlink `name` inside `dir` points.
pub fn read_link(dir: &OwnedFd, name: &OsStr) -> std::io::Result<String> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(target.to_string_lossy().into_owned())
}

/// What `name` inside `dir` is, without following it.
pub fn kind(dir: &OwnedFd, name: &OsStr) -> std::io::Result<FileType> {
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(FileType::from_raw_mode(stat.st_mode))
}

/// The entries of `dir` (without `.` and `..`), sorted by name, with their
/// types (`Unknown` types resolved without following links).
pub fn entries(dir: &OwnedFd) -> std::io::Result<Vec<(std::ffi::OsString, FileType)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let name = OsStr::from_bytes(bytes).to_os_string();
        let mut kind_of = entry.file_type();
        if kind_of == FileType::Unknown {
            kind_of = kind(dir, &name)?;
        }
        out.push((name, kind_of));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Copy `src` to `rel` beneath `root`, creating directories as needed.
/// `rel` must be relative, without `..`.
pub fn write_file(root: &Path, rel: &Path, src: &mut dyn std::io::Read) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(std::io::Error::other(format!(
                    "`{}` leaves the directory",
                    rel.display()
                )));
            }
        }
    }
    let Some((name, parents)) = names.split_last() else {
        return Err(std::io::Error::other("an empty path"));
    };
    let mut dir = open_root(root)?;
    for p in parents {
        match rustix::fs::mkdirat(&dir, *p, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = open_dir(&dir, p).map_err(|e| {
            std::io::Error::other(format!(
                "{}: {e} (a symlink is not followed)",
                p.to_string_lossy()
            ))
        })?;
    }
    let tmp = format!(
        ".weir-{}-{}.partial",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let fd = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut out = File::from(fd);
    let written = std::io::copy(src, &mut out)
        .and_then(|_| out.flush())
        .and_then(|()| out.sync_all());
    let placed = written.and_then(|()| Ok(rustix::fs::renameat(&dir, tmp.as_str(), &dir, *name)?));
    if placed.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_beneath_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        write_file(&root, Path::new("a/b/c.txt"), &mut &b"one"[..]).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("a/b/c.txt")).unwrap(), "one");

        // A symlinked directory on the way is refused.
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        assert!(write_file(&root, Path::new("out/x"), &mut &b"bad"[..]).is_err());
        assert!(!outside.join("x").exists());
        // A symlink at the file itself is replaced, not written through.
        std::os::unix::fs::symlink(outside.join("target"), root.join("link")).unwrap();
        write_file(&root, Path::new("link"), &mut &b"two"[..]).unwrap();
        assert!(!outside.join("target").exists());
        assert_eq!(std::fs::read_to_string(root.join("link")).unwrap(), "two");
        assert!(write_file(&root, Path::new("../x"), &mut &b"bad"[..]).is_err());

        // Reading refuses symlinks too.
        let fd = open_root(&root).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("s")).unwrap();
        assert!(open_file(&fd, OsStr::new("s")).is_err());
        assert!(open_dir(&fd, OsStr::new("out")).is_err());
        let names: Vec<_> = entries(&fd).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "link", "out", "s"]);
    }
}
