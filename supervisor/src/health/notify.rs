//! systemd's readiness protocol (`man sd_notify`): the `NOTIFY_SOCKET` a `ready = "notify"`
//! program gets, and the datagrams it sends there.
//!
//! One `AF_UNIX` `SOCK_DGRAM` socket per program, made before its first spawn and kept for as
//! long as its configuration: `notify/NAME.sock` beside the control socket, owned by the
//! program's user (mode 0600) in a folder others may only traverse. `SO_PASSCRED` is on, so
//! the kernel attaches the sender's real pid to every datagram; a datagram counts only when
//! that pid is in the program's current process group (or is the `MAINPID=` it declared).
//! Everything else (other processes, oversized datagrams, text that is not `KEY=VALUE`) is
//! counted and dropped. Descriptors passed along (`BARRIER=1` sends one) are closed at once:
//! closing the barrier's pipe is how `systemd-notify` learns that we have read what it sent.
//!
//! The receiving task runs on the daemon's thread but only parses and filters; it hands the
//! accepted messages to the actor through a bounded channel.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, watch};

use super::Report;
use crate::config::{ProgramName, UserSpec};

/// systemd's own limit for one notification (NOTIFY_BUFFER_MAX is the pipe buffer size).
pub const MAX_DATAGRAM: usize = 4096;
/// `STATUS=` text beyond this is cut (it is shown in one line of `status`).
const MAX_STATUS: usize = 256;

/// One thing a program said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Ready,
    Reloading,
    Stopping,
    Status(String),
    Watchdog,
    /// `WATCHDOG=trigger`: the program asks to be treated as hung.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=`: a new watchdog timeout.
    WatchdogUsec(Duration),
    ExtendTimeout(Duration),
    MainPid(i32),
    Errno(i32),
}

/// Parses one datagram: newline-separated `KEY=VALUE` assignments; unknown keys are ignored, as
/// systemd does. `Err` when nothing in it is an assignment we understand or ignore knowingly.
pub fn parse(datagram: &[u8]) -> Result<Vec<Message>, &'static str> {
    if datagram.len() > MAX_DATAGRAM {
        return Err("oversized");
    }
    let text = std::str::from_utf8(datagram).map_err(|_| "not UTF-8")?;
    let mut messages = Vec::new();
    let mut assignments = 0;
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            continue;
        }
        assignments += 1;
        let usec = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_micros)
        };
        let message = match key {
            "READY" if value == "1" => Some(Message::Ready),
            "RELOADING" if value == "1" => Some(Message::Reloading),
            "STOPPING" if value == "1" => Some(Message::Stopping),
            "STATUS" => Some(Message::Status(clean_status(value))),
            "WATCHDOG" if value == "1" => Some(Message::Watchdog),
            "WATCHDOG" if value == "trigger" => Some(Message::WatchdogTrigger),
            "WATCHDOG_USEC" => usec().map(Message::WatchdogUsec),
            "EXTEND_TIMEOUT_USEC" => usec().map(Message::ExtendTimeout),
            "MAINPID" => value
                .parse::<i32>()
                .ok()
                .filter(|&p| p > 0)
                .map(Message::MainPid),
            "ERRNO" => value
                .parse::<i32>()
                .ok()
                .filter(|&e| e >= 0)
                .map(Message::Errno),
            // BARRIER=1 is answered by closing its descriptor; the rest (FDSTORE=1, ...) we
            // do not offer.
            _ => None,
        };
        messages.extend(message);
    }
    if assignments == 0 {
        return Err("no KEY=VALUE assignment");
    }
    Ok(messages)
}

/// One line, printable, at most [`MAX_STATUS`] bytes (cut at a character boundary).
fn clean_status(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_STATUS));
    for c in value.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + c.len_utf8() > MAX_STATUS {
            break;
        }
        out.push(c);
    }
    out
}

/// Where the notify sockets of a supervisor live: `notify/` beside its control socket.
pub fn folder(control_socket: &Path) -> PathBuf {
    control_socket
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .join("notify")
}

/// A program's socket and the task reading it. Dropping it stops the task and removes the
/// socket file, if the file is still this socket's: `update` binds the program's new socket at
/// the same path before the old one is dropped, and the old one must not take the new file
/// with it.
#[derive(Debug)]
pub struct NotifySocket {
    pub path: PathBuf,
    /// The socket file's device and inode, as bound.
    file: (u64, u64),
    /// The program's current process group (its leader's pid) and declared main pid; the
    /// actor updates it at each spawn and exit.
    pub group: watch::Sender<Option<(Pid, Option<Pid>)>>,
    /// Datagrams dropped: from outside the group, oversized, or unreadable.
    pub rejected: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl NotifySocket {
    /// Binds `folder/NAME.sock` for `program` (run as `user`) and starts reading it.
    pub fn bind(
        folder: &Path,
        program: &ProgramName,
        user: Option<&UserSpec>,
        reports: mpsc::Sender<Report>,
    ) -> std::io::Result<Self> {
        make_folder(folder)?;
        let path = folder.join(format!("{program}.sock"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let std_socket = std::os::unix::net::UnixDatagram::bind(&path)?;
        let file = {
            let m = std::fs::symlink_metadata(&path)?;
            (m.dev(), m.ino())
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(u) = user.filter(|_| nix::unistd::geteuid().is_root()) {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))?;
        }
        setsockopt(&std_socket, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
        std_socket.set_nonblocking(true)?;
        let socket = UnixDatagram::from_std(std_socket)?;
        let (group, group_rx) = watch::channel(None);
        let rejected = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(receive(
            socket,
            program.clone(),
            group_rx,
            rejected.clone(),
            reports,
        ));
        Ok(Self {
            path,
            file,
            group,
            rejected,
            task,
        })
    }
}

/// `notify/`: searchable by everyone (each program must reach its own socket), listable by no
/// one but the supervisor's user.
fn make_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o711))
}

/// What one `recvmsg` brought.
struct Datagram {
    len: usize,
    truncated: bool,
    sender: Option<i32>,
}

fn read_one(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [std::os::fd::RawFd; 16]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let mut sender = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(creds) => sender = Some(creds.pid()),
                ControlMessageOwned::ScmRights(fds) => {
                    for fd in fds {
                        // SAFETY: the kernel just installed this descriptor for us; nothing
                        // else knows it, and it is closed exactly once, here.
                        drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Datagram {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.bytes > MAX_DATAGRAM,
        sender,
    })
}

async fn receive(
    socket: UnixDatagram,
    program: ProgramName,
    group: watch::Receiver<Option<(Pid, Option<Pid>)>>,
    rejected: Arc<AtomicU64>,
    reports: mpsc::Sender<Report>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let reject = |why: &str, pid: Option<i32>| {
        let n = rejected.fetch_add(1, Ordering::Relaxed) + 1;
        // The first, then every thousandth: a flood must not flood the log too.
        if n == 1 || n % 1000 == 0 {
            tracing::warn!(program = %program, sender = ?pid, reason = why, rejected = n,
                "notification ignored");
        }
    };
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let got = socket.try_io(Interest::READABLE, || read_one(&socket, &mut buf));
        let d = match got {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(program = %program, error = %e, "reading the notify socket failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(sender) = d.sender else {
            reject("no sender credentials", None);
            continue;
        };
        let current = *group.borrow();
        if !belongs(sender, current) {
            reject("sender is not in the program's process group", Some(sender));
            continue;
        }
        if d.truncated {
            reject("oversized datagram", Some(sender));
            continue;
        }
        match parse(&buf[..d.len]) {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => {
                let report = Report::Notify {
                    program: program.clone(),
                    sender,
                    messages,
                };
                if reports.send(report).await.is_err() {
                    return;
                }
            }
            Err(why) => reject(why, Some(sender)),
        }
    }
}

/// Whether `pid` is in the group led by `leader`, or is the declared main pid.
fn belongs(pid: i32, current: Option<(Pid, Option<Pid>)>) -> bool {
    let Some((leader, main)) = current else {
        return false;
    };
    if pid == leader.as_raw() || main.is_some_and(|m| m.as_raw() == pid) {
        return true;
    }
    nix::unistd::getpgid(Some(Pid::from_raw(pid))).is_ok_and(|g| g == leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_assignment() {
        let text = b"READY=1\nSTATUS=connected to 3 guilds\nRELOADING=1\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=5000000\nEXTEND_TIMEOUT_USEC=20000000\nMAINPID=4242\nERRNO=2\nBARRIER=1\nFDSTORE=1\n";
        assert_eq!(
            parse(text),
            Ok(vec![
                Message::Ready,
                Message::Status("connected to 3 guilds".into()),
                Message::Reloading,
                Message::Stopping,
                Message::Watchdog,
                Message::WatchdogTrigger,
                Message::WatchdogUsec(Duration::from_secs(5)),
                Message::ExtendTimeout(Duration::from_secs(20)),
                Message::MainPid(4242),
                Message::Errno(2),
            ])
        );
    }

    #[test]
    fn garbage_is_refused_and_bad_values_ignored() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(&[0xff, 0xfe, b'=', b'1']).is_err());
        assert!(parse(&vec![b'A'; MAX_DATAGRAM + 1]).is_err());
        // Known keys with values that mean nothing: understood, and ignored.
        assert_eq!(
            parse(b"READY=0\nMAINPID=-1\nWATCHDOG_USEC=x\nERRNO=-5"),
            Ok(vec![])
        );
        assert_eq!(parse(b"lower=1\nREADY=1"), Ok(vec![Message::Ready]));
    }

    #[test]
    fn status_is_one_bounded_line() {
        let Ok(m) = parse("STATUS=a\u{7}b\u{1b}[31m".as_bytes()) else {
            panic!("parsed")
        };
        assert_eq!(m, vec![Message::Status("a b [31m".into())]);
        let long = format!("STATUS={}", "é".repeat(400));
        let Ok(m) = parse(long.as_bytes()) else {
            panic!("parsed")
        };
        let [Message::Status(s)] = m.as_slice() else {
            panic!("one status")
        };
        assert!(s.len() <= MAX_STATUS && s.chars().all(|c| c == 'é'), "{s}");
    }
}
