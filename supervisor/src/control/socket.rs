//! Binding the control socket: one supervisor per socket path.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "another supervisor is already running on {0} (its socket answers, or it holds the lock beside it). Stop it first, or set [supervisor] socket to another path"
    )]
    Live(String),
    #[error("{path}: {message}")]
    Other { path: String, message: String },
}

fn other(path: &Path, message: impl std::fmt::Display) -> BindError {
    BindError::Other {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Held for the daemon's life: the lock on `<socket>.lock` that makes the check for a live
/// socket and the takeover of a stale one a single step (two supervisors starting at once
/// cannot both take over).
#[derive(Debug)]
pub struct SocketLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Binds `path` with `mode` (and `gid` as its group). A socket that answers means another
/// supervisor runs: refuse. One that refuses connections is left over from a crash: remove it.
/// The socket is made under the supervisor's umask (restrict_umask: never open to others),
/// then given its mode and group.
pub fn bind(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> Result<(UnixListener, SocketLock), BindError> {
    // Its folder, when made here, is open for passage (0755): the socket's own mode and group
    // decide who may connect.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::dirs::prepare(dir, 0o755, None, crate::dirs::Existing::Adopt)
            .map_err(|message| other(path, message))?;
    }
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| other(&lock_path, e))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => BindError::Live(path.display().to_string()),
            e => other(&lock_path, e),
        },
    )?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(other(
                    path,
                    "exists and is not a socket; remove it or choose another path",
                ));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::Live(path.display().to_string())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing a stale control socket");
                    std::fs::remove_file(path)
                        .map_err(|e| other(path, format!("cannot remove the stale socket: {e}")))?;
                }
                Err(e) => {
                    return Err(other(
                        path,
                        format!("cannot check the existing socket: {e}"),
                    ));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(other(path, e)),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| other(path, format!("cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| other(path, format!("cannot set its mode: {e}")))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| other(path, format!("cannot set its group: {e}")))?;
    }
    Ok((listener, SocketLock(lock)))
}
