//! Folders the supervisor makes for the user that writes in them: a program's `state_dirs`,
//! and a deploy's working tree and releases. The supervisor runs as root and its data folder is
//! root's; a program or build step running as its own user could not create them itself. And
//! the supervisor's own folders, closed to everyone but root and the socket's group.
//!
//! Quick system calls only (this runs on the actor's thread): no walk of a folder's contents,
//! and ownership is changed with `lchown`, which never follows a link.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use crate::config::UserSpec;

/// What to do with a folder that exists but belongs to someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Give the folder itself (not its contents) to the user: a program's state folder, as
    /// systemd's `StateDirectory=` does.
    Adopt,
    /// Refuse, saying how to fix it: a deploy's tree, whose contents the user must own too.
    Require,
}

/// Why a folder could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot create {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("cannot give {} to {user}: {source}", .path.display())]
    GiveAway {
        path: PathBuf,
        user: String,
        source: io::Error,
    },
    /// A deploy's tree that another user owns: its contents must be the deploying user's too.
    #[error(
        "{} belongs to uid {uid}, not to {user} who deploys: `chown -R {user} {}` (or remove it; a deploy makes it again)",
        .path.display(),
        .path.display()
    )]
    NotTheirs {
        path: PathBuf,
        uid: u32,
        user: String,
    },
    #[error("cannot prepare {}: {source}", .path.display())]
    Prepare { path: PathBuf, source: io::Error },
}

/// Makes `dir` (with `mode`) and its missing parents (0755: passage only), each one it creates
/// owned by `user` (None: the supervisor's own user, nothing to change). The modes are set
/// exactly, whatever the supervisor's umask.
pub fn prepare(
    dir: &Path,
    mode: u32,
    user: Option<&UserSpec>,
    existing: Existing,
) -> Result<(), DirError> {
    use std::os::unix::fs::PermissionsExt as _;
    let fail = |path: &Path, source: io::Error| DirError::Create {
        path: path.to_owned(),
        source,
    };
    let mut missing = Vec::new();
    let mut at = dir;
    while fs::symlink_metadata(at).is_err() {
        missing.push(at.to_owned());
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for path in missing.iter().rev() {
        match fs::DirBuilder::new().mode(0o755).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail(path, e)),
        }
        let mode = if path == dir { mode } else { 0o755 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| fail(path, e))?;
        if let Some(u) = user {
            std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid)).map_err(|e| fail(path, e))?;
        }
    }
    let Some(u) = user else { return Ok(()) };
    let meta = fs::symlink_metadata(dir).map_err(|e| fail(dir, e))?;
    if !meta.is_dir() {
        return Err(DirError::NotAFolder(dir.to_owned()));
    }
    if meta.uid() == u.uid {
        return Ok(());
    }
    match existing {
        Existing::Adopt => {
            std::os::unix::fs::lchown(dir, Some(u.uid), Some(u.gid)).map_err(|source| {
                DirError::GiveAway {
                    path: dir.to_owned(),
                    user: u.name.clone(),
                    source,
                }
            })
        }
        Existing::Require => Err(DirError::NotTheirs {
            path: dir.to_owned(),
            uid: meta.uid(),
            user: u.name.clone(),
        }),
    }
}

/// The supervisor's own folders (logs, deploy records): made if missing, and set to 0750 and
/// the supervisor's own group, or with `group` (`files_group`) to 2750 and that group, so that
/// the files made inside inherit it. Existing files made before keep their modes and groups,
/// but are no longer reachable by others (a folder that belonged to another group before
/// is taken back).
pub fn private(dir: &Path, group: Option<u32>) -> Result<(), DirError> {
    use std::os::unix::fs::PermissionsExt as _;
    let fail = |source: io::Error| DirError::Prepare {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(fail)?;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::lchown(dir, None, Some(gid)).map_err(fail)?;
            0o2750
        }
        None => {
            let own = nix::unistd::getegid().as_raw();
            std::os::unix::fs::lchown(dir, None, Some(own)).map_err(fail)?;
            0o750
        }
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> UserSpec {
        UserSpec {
            name: "me".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            groups: Vec::new(),
            home: "/".into(),
        }
    }

    #[test]
    fn private_folders_are_closed_to_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("data/logs");
        private(&logs, None).unwrap();
        assert_eq!(
            fs::metadata(&logs).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        let gid = nix::unistd::getgid().as_raw();
        private(&logs, Some(gid)).unwrap();
        let meta = fs::metadata(&logs).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2750);
        assert_eq!(meta.gid(), gid);
    }

    #[test]
    fn makes_missing_folders_with_parents() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/c");
        prepare(&target, 0o750, Some(&me()), Existing::Require).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&target), 0o750);
        assert_eq!(mode(&dir.path().join("a/b")), 0o755);
        prepare(&target, 0o755, Some(&me()), Existing::Require).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs::write(&target, "").unwrap();
        let e = prepare(&target, 0o755, Some(&me()), Existing::Adopt)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a folder"), "{e}");
    }

    #[test]
    fn a_folder_of_another_user_is_refused_or_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = me();
        other.uid += 1;
        other.name = "builder".into();
        if nix::unistd::geteuid().is_root() {
            let e = prepare(dir.path(), 0o755, Some(&other), Existing::Require)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not to builder who deploys: `chown -R builder"),
                "{e}"
            );
            prepare(dir.path(), 0o755, Some(&other), Existing::Adopt).unwrap();
            assert_eq!(fs::metadata(dir.path()).unwrap().uid(), other.uid);
        } else {
            let e = prepare(dir.path(), 0o755, Some(&other), Existing::Require)
                .unwrap_err()
                .to_string();
            assert!(e.contains("chown -R builder"), "{e}");
        }
    }
}
