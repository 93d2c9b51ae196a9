//! Unpacking a verified prebuilt release into its folder (see [`super::fetch`], which calls
//! this once the signature checked out; it runs in the same step process, never in PID 1).
//!
//! A tar archive (plain, gzip or zstd, told by their first bytes) holds the release folder's
//! contents; anything else is a single file, saved as the program's name with mode 0755. An
//! archive may hold regular files, folders, hard links to its own files and symbolic links that
//! stay inside the release. An absolute path, a `..`, a link leaving the release (also through
//! another link) or pointing at nothing, a setuid or setgid bit, a device or FIFO, an entry
//! twice, more than [`ENTRIES_MAX`] entries or more than four times `artifact_max_size` refuses
//! the whole release, naming the entry. Links are made after every file is written, so no file
//! is ever written through one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

/// What an archive may unpack to, as a multiple of `artifact_max_size`.
pub const UNPACKED_FACTOR: u64 = 4;
/// The most entries an archive may hold.
const ENTRIES_MAX: usize = 100_000;

/// Why a release archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// It holds what a release may not, or unpacks to too much.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Stops a decompressor at `limit` bytes with an error that says so.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(TooLarge(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A release that unpacks to more than its limit.
#[derive(Debug, thiserror::Error)]
#[error("it unpacks to more than {0} bytes ({UNPACKED_FACTOR} × artifact_max_size)")]
struct TooLarge(u64);

/// The release: a tar archive (plain, gzip, zstd), or a single file saved as `name`.
pub fn unpack(mut file: File, dest: &Path, name: &str, limit: u64) -> Result<(), UnpackError> {
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io_at(dest))?;
    file.rewind().map_err(io_at(dest))?;
    let decoded: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| UnpackError::Refused(format!("not a readable zstd file: {e}")))?,
        ),
        _ => Box::new(file),
    };
    let mut stream = Capped {
        inner: decoded,
        left: limit,
        limit,
    };
    let mut head = Vec::with_capacity(512);
    (&mut stream)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| UnpackError::Refused(format!("cannot read the release: {e}")))?;
    let rest = io::Cursor::new(head.clone()).chain(stream);
    if head.get(257..262) == Some(b"ustar") {
        untar(rest, dest)
    } else {
        let path = dest.join(name);
        let mut out = create_file(&path, 0o755)?;
        let mut rest = rest;
        io::copy(&mut rest, &mut out).map_err(|e| unpack_error(&path, e))?;
        Ok(())
    }
}

fn unpack_error(path: &Path, e: io::Error) -> UnpackError {
    // tar may wrap the reader's error in one of its own, with the text kept.
    let too_large = e.get_ref().is_some_and(|i| i.is::<TooLarge>())
        || e.to_string().contains("unpacks to more than");
    if too_large {
        UnpackError::Refused(e.to_string())
    } else {
        UnpackError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

fn create_file(path: &Path, mode: u32) -> Result<File, UnpackError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                UnpackError::Refused(format!("{} appears twice in the archive", path.display()))
            }
            _ => UnpackError::Io {
                path: path.to_owned(),
                source: e,
            },
        })
}

/// An entry's path inside the release: relative, without `..`; `.` parts dropped.
fn inside(raw: &Path) -> Result<PathBuf, String> {
    let mut clean = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{}: an absolute path", raw.display()));
            }
            Component::ParentDir => return Err(format!("{}: a path with ..", raw.display())),
        }
    }
    Ok(clean)
}

/// Where a symbolic link at `at` (inside the release) points, worked out on its path alone;
/// `None` when that leaves the release.
fn link_target(at: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<_> = at.parent().into_iter().flat_map(Path::components).collect();
    for part in target.components() {
        match part {
            Component::Normal(_) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn untar(stream: impl Read, dest: &Path) -> Result<(), UnpackError> {
    let refuse = |m: String| UnpackError::Refused(m);
    let mut archive = tar::Archive::new(stream);
    let read_error = |e: io::Error| unpack_error(dest, e);
    // Links are made once every file is written, so that no file is ever written through one.
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut hardlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (count, entry) in archive.entries().map_err(read_error)?.enumerate() {
        if count >= ENTRIES_MAX {
            return Err(refuse(format!("more than {ENTRIES_MAX} entries")));
        }
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path().map_err(read_error)?.into_owned();
        let rel = inside(&raw).map_err(refuse)?;
        let shown = raw.display().to_string();
        let header = entry.header();
        let mode = header.mode().map_err(read_error)?;
        if mode & 0o6000 != 0 {
            let bit = if mode & 0o4000 != 0 {
                "setuid"
            } else {
                "setgid"
            };
            return Err(refuse(format!(
                "{shown} is {bit}; a release never holds one"
            )));
        }
        let kind = header.entry_type();
        let path = dest.join(&rel);
        if kind.is_dir() {
            if rel.as_os_str().is_empty() {
                continue;
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode & 0o755 | 0o700)
                .create(&path)
                .map_err(io_at(&path))?;
            continue;
        }
        if rel.as_os_str().is_empty() {
            return Err(refuse(format!("{shown}: not a file name")));
        }
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_at(parent))?;
        }
        if kind.is_file() {
            let mut out = create_file(&path, mode & 0o755 | 0o400)?;
            io::copy(&mut entry, &mut out).map_err(|e| unpack_error(&path, e))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(read_error)?
                .ok_or_else(|| refuse(format!("{shown}: a link without a target")))?
                .into_owned();
            if link_target(&rel, &target).is_none() {
                return Err(refuse(format!(
                    "{shown} is a link to {} which leaves the release",
                    target.display()
                )));
            }
            symlinks.push((rel, target));
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(read_error)?
                .ok_or_else(|| refuse(format!("{shown}: a link without a target")))?;
            let target = inside(&target).map_err(refuse)?;
            hardlinks.push((rel, target));
        } else if kind.is_pax_global_extensions() {
            continue;
        } else {
            let what = if kind.is_character_special() || kind.is_block_special() {
                "a device"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "an entry of a kind a release does not hold"
            };
            return Err(refuse(format!("{shown} is {what}")));
        }
    }
    let root = fs::canonicalize(dest).map_err(io_at(dest))?;
    // The folder a link is made in must really be inside (an earlier link may lead elsewhere).
    let parent_inside = |path: &Path| -> Result<(), UnpackError> {
        let parent = path.parent().unwrap_or(dest);
        match fs::canonicalize(parent) {
            Ok(real) if real.starts_with(&root) => Ok(()),
            _ => Err(refuse(format!(
                "{} would be made outside the release",
                path.strip_prefix(dest).unwrap_or(path).display()
            ))),
        }
    };
    for (rel, target) in &hardlinks {
        let path = dest.join(rel);
        let from = dest.join(target);
        parent_inside(&path)?;
        match fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(refuse(format!(
                    "{} is a hard link to {}, which is not a file of the release",
                    rel.display(),
                    target.display()
                )));
            }
        }
        fs::hard_link(&from, &path).map_err(io_at(&path))?;
    }
    for (rel, target) in &symlinks {
        let path = dest.join(rel);
        parent_inside(&path)?;
        std::os::unix::fs::symlink(target, &path).map_err(io_at(&path))?;
    }
    // Each link, followed through every other: it must end at something inside.
    for (rel, target) in &symlinks {
        match fs::canonicalize(dest.join(rel)) {
            Ok(real) if real.starts_with(&root) => {}
            Ok(_) => {
                return Err(refuse(format!(
                    "{} is a link to {} which leaves the release",
                    rel.display(),
                    target.display()
                )));
            }
            Err(_) => {
                return Err(refuse(format!(
                    "{} is a link to {}, which is nothing in the release",
                    rel.display(),
                    target.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of (path, kind, link target or content) entries, as a file.
    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_size(0);
                builder.append_link(&mut header, name, data).unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, name, data.as_bytes())
                    .unwrap();
            }
        }
        builder.finish().unwrap();
        drop(builder);
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    fn unpacked(entries: &[(&str, tar::EntryType, &str)]) -> Result<tempfile::TempDir, String> {
        let (_src, file) = archive(entries);
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("r");
        fs::create_dir(&out).unwrap();
        unpack(file, &out, "bot", 1 << 20)
            .map(|()| dest)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_archive_keeps_its_own_links_and_nothing_leaves_it() {
        use tar::EntryType::{Fifo, Link, Regular, Symlink};
        let dest = unpacked(&[
            ("bin/bot", Regular, "run"),
            ("bot", Symlink, "bin/bot"),
            ("copy", Link, "bin/bot"),
        ])
        .unwrap();
        let r = dest.path().join("r");
        assert_eq!(fs::read_to_string(r.join("bot")).unwrap(), "run");
        assert_eq!(fs::read_to_string(r.join("copy")).unwrap(), "run");
        // Each link looks fine on its path alone; followed, the second leaves the release.
        let out = unpacked(&[("here", Symlink, "."), ("up", Symlink, "here/..")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: up is a link to here/.. which leaves the release")
        );
        let out = unpacked(&[("gone", Symlink, "nothing")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: gone is a link to nothing, which is nothing in the release")
        );
        let out = unpacked(&[("p", Fifo, "")]);
        assert_eq!(out.err().as_deref(), Some("refused: p is a FIFO"));
        let out = unpacked(&[("a", Regular, "1"), ("a", Regular, "2")]);
        assert!(
            out.err()
                .unwrap()
                .ends_with("/r/a appears twice in the archive")
        );
        let out = unpacked(&[("h", Link, "bin")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: h is a hard link to bin, which is not a file of the release")
        );
    }

    #[test]
    fn a_release_that_unpacks_past_its_limit_is_refused() {
        let big = "x".repeat(5000);
        let (_src, file) = archive(&[("big", tar::EntryType::Regular, &big)]);
        let dest = tempfile::tempdir().unwrap();
        let out = unpack(file, dest.path(), "bot", 4096).map_err(|e| e.to_string());
        assert_eq!(
            out.err().as_deref(),
            Some("refused: it unpacks to more than 4096 bytes (4 × artifact_max_size)")
        );
        // Not an archive: one file, the program's name, executable.
        let dir = tempfile::tempdir().unwrap();
        let single = dir.path().join("bot-x86_64");
        fs::write(&single, "#!/bin/sh\n").unwrap();
        unpack(File::open(&single).unwrap(), dest.path(), "bot", 4096).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dest.path().join("bot"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn link_targets_are_judged_from_where_the_link_is() {
        let t = |at: &str, to: &str| link_target(Path::new(at), Path::new(to));
        assert_eq!(t("bin/bot", "../lib/bot"), Some(PathBuf::from("lib/bot")));
        assert_eq!(t("bot", "./x"), Some(PathBuf::from("x")));
        assert_eq!(t("bin/bot", "../../etc/passwd"), None);
        assert_eq!(t("bot", "/etc/passwd"), None);
        assert!(inside(Path::new("./a/../b")).is_err());
        assert!(inside(Path::new("/a")).is_err());
        assert_eq!(inside(Path::new("./a/b")), Ok(PathBuf::from("a/b")));
    }
}
