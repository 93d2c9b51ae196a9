//! Putting a build's output into `releases/<commit>/`, and pruning old releases: the file work
//! of an artifact-mode deploy.
//!
//! This never runs inside the daemon. The deploy engine runs it as a step process
//! (`supervisor release-copy ...`, the same binary), spawned like git and the build steps: as the
//! deploy's user, in its own process group, with the step timeout, reaped by the one reaper.
//! So the copy has exactly the rights of the build that produced the files (none of root's),
//! and however long or stuck it is (a huge artifact, a FIFO), the actor keeps running.
//!
//! What is copied is what a release can safely hold: regular files and folders. A symlink, a
//! FIFO, a socket or a device in the artifact fails the copy, naming the path; files are opened
//! without following links and checked again after opening, so a swap after the check does not
//! help. Permission bits are kept except setuid, setgid and sticky, and write for group and
//! others.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bits a release never keeps: setuid, setgid, sticky, and write for group and others.
const DROPPED_BITS: u32 = 0o7022;

/// Why a release could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {what} cannot be part of a release (only regular files and folders)")]
    NotAllowed { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Points `releases/current` at `target` with one rename, so that it is never missing or half
/// made; returns where it pointed before. (A symlink and a rename: quick enough for the actor.)
pub fn point_current(releases: &Path, target: &Path) -> io::Result<Option<PathBuf>> {
    let previous = fs::read_link(releases.join("current")).ok();
    let tmp = releases.join(format!(".current-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, releases.join("current"))?;
    Ok(previous)
}

/// The name of the release `current` points at.
pub fn current(releases: &Path) -> Option<String> {
    fs::read_link(releases.join("current"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Copies `src` (a file or a folder) to `releases/<name>/<file name of src>`, made in a
/// temporary folder and renamed into place, replacing an earlier release of the same name.
/// Then prunes: keeps the newest `keep` releases, and always `name` and the one `current`
/// points at.
pub fn make(src: &Path, releases: &Path, name: &str, keep: usize) -> Result<PathBuf, ReleaseError> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(ReleaseError::Io {
            path: releases.join(name),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a release name"),
        });
    }
    let leaf = src.file_name().ok_or_else(|| ReleaseError::Io {
        path: src.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the artifact has no file name"),
    })?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(releases)
        .map_err(io_at(releases))?;
    let partial = releases.join(format!(".partial-{name}"));
    remove_any(&partial)?;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&partial)
        .map_err(io_at(&partial))?;
    let copied = copy(src, &partial.join(leaf));
    if let Err(e) = copied {
        let _ = remove_any(&partial);
        return Err(e);
    }
    let dest = releases.join(name);
    let old = releases.join(format!(".old-{name}"));
    if fs::symlink_metadata(&dest).is_ok() {
        remove_any(&old)?;
        fs::rename(&dest, &old).map_err(io_at(&dest))?;
    }
    fs::rename(&partial, &dest).map_err(io_at(&dest))?;
    remove_any(&old)?;
    prune(releases, name, keep)?;
    Ok(dest)
}

/// Copies one entry, never following a link; see the module docs for what is refused.
fn copy(src: &Path, dest: &Path) -> Result<(), ReleaseError> {
    let meta = fs::symlink_metadata(src).map_err(io_at(src))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        fs::DirBuilder::new()
            .mode(meta.permissions().mode() & 0o777 & !DROPPED_BITS | 0o700)
            .create(dest)
            .map_err(io_at(dest))?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(io_at(src))?
            .collect::<Result<_, _>>()
            .map_err(io_at(src))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            copy(&entry.path(), &dest.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if !kind.is_file() {
        return Err(ReleaseError::NotAllowed {
            path: src.to_owned(),
            what: describe(&kind),
        });
    }
    // O_NOFOLLOW: a link put in its place after the check is not followed; O_NONBLOCK: a FIFO
    // put there does not hang the open (and fails the check below).
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
        .map_err(io_at(src))?;
    let opened = from.metadata().map_err(io_at(src))?;
    if !opened.is_file() {
        return Err(ReleaseError::NotAllowed {
            path: src.to_owned(),
            what: describe(&opened.file_type()),
        });
    }
    let mode = opened.permissions().mode() & 0o777 & !DROPPED_BITS;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_at(dest))?;
    io::copy(&mut from, &mut to).map_err(io_at(src))?;
    // The umask may have narrowed the mode; set it exactly (still without the dropped bits).
    to.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_at(dest))?;
    to.sync_all().map_err(io_at(dest))?;
    Ok(())
}

fn describe(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "this kind of file"
    }
}

/// Removes a file, link or folder (a folder's links are removed, never followed); missing is
/// fine.
pub(crate) fn remove_any(path: &Path) -> Result<(), ReleaseError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_at(path)),
        Ok(_) => fs::remove_file(path).map_err(io_at(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Keeps the newest `keep` release folders, `name`, and the one `current` points at; removes
/// the rest and any leftover `.partial-*`/`.old-*` folder.
pub(crate) fn prune(releases: &Path, name: &str, keep: usize) -> Result<(), ReleaseError> {
    let current = fs::read_link(releases.join("current"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mut dirs: Vec<(SystemTime, String)> = Vec::new();
    for entry in fs::read_dir(releases).map_err(io_at(releases))? {
        let entry = entry.map_err(io_at(releases))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue; // `current` and the switch's temporary link
        }
        if file.starts_with(".partial-") || file.starts_with(".old-") {
            remove_any(&entry.path())?;
            continue;
        }
        dirs.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), file));
    }
    dirs.sort_by(|a, b| b.cmp(a));
    for (_, dir) in dirs.into_iter().skip(keep) {
        if dir != name && current.as_deref() != Some(dir.as_str()) {
            remove_any(&releases.join(&dir))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let art = dir.path().join("build/out");
        fs::create_dir_all(art.join("lib")).unwrap();
        fs::write(art.join("bot"), b"binary").unwrap();
        fs::set_permissions(art.join("bot"), fs::Permissions::from_mode(0o6775)).unwrap();
        fs::write(art.join("lib/data"), b"data").unwrap();
        dir
    }

    #[test]
    fn copies_files_and_folders_without_special_bits() {
        let dir = tree();
        let releases = dir.path().join("releases");
        let dest = make(&dir.path().join("build/out"), &releases, "c1", 3).unwrap();
        assert_eq!(fs::read(dest.join("out/bot")).unwrap(), b"binary");
        assert_eq!(fs::read(dest.join("out/lib/data")).unwrap(), b"data");
        let mode = fs::metadata(dest.join("out/bot"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o7777,
            0o755,
            "setuid, setgid and group write dropped"
        );
    }

    #[test]
    fn refuses_links_fifos_and_sockets() {
        for (what, make_it) in [
            (
                "a symbolic link",
                Box::new(|p: &Path| symlink("/etc/shadow", p).unwrap()) as Box<dyn Fn(&Path)>,
            ),
            (
                "a FIFO",
                Box::new(|p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()),
            ),
            (
                "a socket",
                Box::new(|p: &Path| drop(std::os::unix::net::UnixListener::bind(p).unwrap())),
            ),
        ] {
            let dir = tree();
            make_it(&dir.path().join("build/out/lib/odd"));
            let releases = dir.path().join("releases");
            let err = make(&dir.path().join("build/out"), &releases, "c1", 3).unwrap_err();
            assert!(
                matches!(&err, ReleaseError::NotAllowed { what: w, path } if *w == what && path.ends_with("lib/odd")),
                "{what}: {err}"
            );
            assert!(!releases.join("c1").exists(), "{what}: no release made");
            let left: Vec<_> = fs::read_dir(&releases).unwrap().collect();
            assert!(left.is_empty(), "{what}: nothing left behind: {left:?}");
        }
    }

    #[test]
    fn an_artifact_that_is_a_link_is_refused() {
        let dir = tree();
        symlink(
            dir.path().join("build/out/bot"),
            dir.path().join("build/link"),
        )
        .unwrap();
        let err = make(
            &dir.path().join("build/link"),
            &dir.path().join("r"),
            "c1",
            3,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::NotAllowed { .. }), "{err}");
    }

    #[test]
    fn prunes_all_but_the_newest_the_new_and_the_current() {
        let dir = tree();
        let releases = dir.path().join("releases");
        let src = dir.path().join("build/out");
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            make(&src, &releases, name, 2).unwrap();
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            File::open(releases.join(name))
                .unwrap()
                .set_modified(t)
                .unwrap();
            if *name == "a" {
                symlink("a", releases.join("current")).unwrap();
            }
        }
        make(&src, &releases, "e", 2).unwrap();
        let mut left: Vec<_> = fs::read_dir(&releases)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // e (new, newest), d (second newest), a (current).
        assert_eq!(left, ["a", "current", "d", "e"]);
    }

    #[test]
    fn the_same_name_again_replaces_the_release() {
        let dir = tree();
        let releases = dir.path().join("releases");
        let src = dir.path().join("build/out");
        make(&src, &releases, "c1", 3).unwrap();
        fs::write(src.join("bot"), b"rebuilt").unwrap();
        let dest = make(&src, &releases, "c1", 3).unwrap();
        assert_eq!(fs::read(dest.join("out/bot")).unwrap(), b"rebuilt");
    }
}
