//! The process layer: spawning children, signalling them and their groups, reaping, and the
//! process attributes (umask, open-files limit, subreaper). The only module of the daemon with
//! `unsafe` and the only one that acts on processes; elsewhere nix appears for its types
//! (`Signal`, `Pid`), user lookups and the socket's lock.
//!
//! Spawning is [`exec`]'s (a vfork-style clone, as `posix_spawn` does), never `tokio::process`
//! or std's `Command`: the spawn reaps its own child when `exec` fails, so reaping (`wait4(-1)`,
//! which also gives each child's resource use) must happen on the same thread as spawning,
//! never concurrently (DESIGN.md, decision 5).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

mod exec;
pub mod rlimit;

use std::path::Path;

use crate::config::environ::{self, Account};
use crate::config::limits::Rlimit;
use crate::config::{ProgramConfig, UserSpec};
use crate::lifecycle::ExitReason;

/// The descriptors a child gets as stdout and stderr (write ends of the capture pipes), and
/// as stdin (an event listener's channel; otherwise /dev/null).
#[derive(Debug)]
pub struct Outputs<'a> {
    pub stdin: Option<&'a OwnedFd>,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
}

/// What to run and how: a program, or a deploy's git or build step.
#[derive(Debug)]
pub struct Spec<'a> {
    pub argv: &'a [String],
    pub directory: Option<&'a Path>,
    /// What its configuration sets; with `pass_env`, the whole environment (config::environ).
    pub environment: &'a [(String, String)],
    pub pass_env: &'a [String],
    pub user: Option<&'a UserSpec>,
    /// `None`: /dev/null.
    pub stdin: Option<&'a OwnedFd>,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    /// Set in the child before `exec`.
    pub rlimits: &'a [Rlimit],
    /// Written to the child's `/proc/self/oom_score_adj` (the supervisor's own is lower, and
    /// children would inherit it).
    pub oom_score_adj: i32,
}

/// What build steps get: the OOM killer takes a runaway build before the bot or PID 1.
pub const STEP_OOM_SCORE_ADJ: i32 = 1000;

/// The supervisor's own `oom_score_adj`, which its children inherit.
static OWN_OOM_SCORE_ADJ: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

pub fn own_oom_score_adj() -> i32 {
    OWN_OOM_SCORE_ADJ.load(std::sync::atomic::Ordering::Relaxed)
}

/// Puts the supervisor last in the OOM killer's order, as low as it may: -1000 needs
/// `CAP_SYS_RESOURCE` (root in a container usually lacks it: then it stays where it was).
/// Returns the score in force. Each child then writes its own (`oom_score_adj`, default 0).
pub fn protect_from_oom() -> i32 {
    let path = "/proc/self/oom_score_adj";
    let _ = std::fs::write(path, "-1000");
    let own = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    OWN_OOM_SCORE_ADJ.store(own, std::sync::atomic::Ordering::Relaxed);
    own
}

/// Spawns `program` (with `extra` variables) in its own process group with its user, directory and environment, stdin
/// on /dev/null (or the listener's pipe), default signal dispositions, an empty signal mask and no inherited descriptor
/// beyond 0, 1 and 2. Returns once `exec` succeeded, or the reason it did not.
pub fn spawn(
    program: &ProgramConfig,
    extra: &[(String, String)],
    outputs: Outputs<'_>,
    nofile: Option<libc::rlimit>,
) -> io::Result<Pid> {
    let mut environment = vec![
        ("SUPERVISOR_ENABLED".to_owned(), "1".to_owned()),
        (
            "SUPERVISOR_PROCESS_NAME".to_owned(),
            program.name.to_string(),
        ),
    ];
    environment.extend(program.environment.iter().cloned());
    // The supervisor's own (NOTIFY_SOCKET, WATCHDOG_USEC) last: the configuration cannot
    // point a program at another socket.
    environment.extend(extra.iter().cloned());
    // A watchdog is for the program's own process: WATCHDOG_PID names it (sd_watchdog_enabled
    // checks it), so that its children do not take the variable as theirs.
    let watchdog_pid = extra.iter().any(|(k, _)| k == "WATCHDOG_USEC");
    spawn_with(
        &Spec {
            argv: &program.command,
            directory: program.directory.as_deref(),
            environment: &environment,
            pass_env: &program.pass_env,
            user: program.user.as_ref(),
            stdin: outputs.stdin,
            stdout: outputs.stdout,
            stderr: outputs.stderr,
            rlimits: &program.rlimits,
            oom_score_adj: program.oom_score_adj,
        },
        nofile,
        watchdog_pid,
    )
}

/// Spawns what `spec` describes, as [`spawn`] does for a program.
pub fn spawn_spec(spec: &Spec<'_>, nofile: Option<libc::rlimit>) -> io::Result<Pid> {
    spawn_with(spec, nofile, false)
}

fn spawn_with(
    spec: &Spec<'_>,
    nofile: Option<libc::rlimit>,
    watchdog_pid: bool,
) -> io::Result<Pid> {
    let account = spec.user.map(|u| Account {
        name: &u.name,
        home: &u.home,
    });
    let env = environ::child(
        std::env::vars_os(),
        spec.pass_env,
        account,
        spec.environment,
    );
    let null;
    let stdin = match spec.stdin {
        Some(fd) => fd.as_raw_fd(),
        None => {
            null = std::fs::File::open("/dev/null")?;
            null.as_raw_fd()
        }
    };
    let credentials = spec.user.map(|u| exec::Credentials {
        uid: u.uid,
        gid: u.gid,
        groups: u.groups.iter().map(|&g| g as libc::gid_t).collect(),
    });
    let mut prepared = exec::Prepared::new(
        spec.argv,
        &env,
        watchdog_pid,
        spec.directory,
        [stdin, spec.stdout.as_raw_fd(), spec.stderr.as_raw_fd()],
        credentials,
        nofile,
        CHILD_UMASK,
    )?
    .with_limits(spec.rlimits, spec.oom_score_adj);
    exec::launch(&mut prepared).map_err(|e| describe_spawn_error(spec, e))
}

fn describe_spawn_error(spec: &Spec<'_>, e: io::Error) -> io::Error {
    let what: OsString = spec.argv.first().cloned().unwrap_or_default().into();
    let text = match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "{}: command not found or directory missing ({e})",
            what.to_string_lossy()
        ),
        Some(libc::EACCES) => format!("{}: permission denied ({e})", what.to_string_lossy()),
        Some(libc::EPERM) if spec.user.is_some() => {
            format!(
                "cannot switch to the configured user ({e}); the supervisor must run as root for that"
            )
        }
        _ => format!("{}: {e}", what.to_string_lossy()),
    };
    io::Error::new(e.kind(), text)
}

/// Sends `signal` to one process (`signal` on request: supervisorctl signals the process, not
/// its group).
pub fn signal_process(pid: Pid, signal: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(pid, signal)
}

/// Sends `signal` to the process group led by `leader`. A group that is already gone is fine.
pub fn signal_group(leader: Pid, signal: Signal) -> nix::Result<()> {
    match killpg(leader, signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Whether any process (zombies included) is still in the group led by `leader`.
pub fn group_alive(leader: Pid) -> bool {
    !matches!(killpg(leader, None), Err(Errno::ESRCH))
}

/// How many processes the kernel's OOM killer has killed since boot (`oom_kill` in
/// /proc/vmstat, memory cgroups' kills included); None where the kernel does not say.
pub fn oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// `MemAvailable` of /proc/meminfo, in bytes.
pub fn memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// One reaped child: who, why, and the bytes it (with every child it reaped in turn) caused to
/// be written to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    pub pid: Pid,
    pub reason: ExitReason,
    pub written_bytes: u64,
}

/// Reaps one exited child, if any: our programs and every orphan handed to us. `wait4` rather
/// than `waitpid`: the same wait, with the child's resource usage.
pub fn reap_one() -> Option<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals of the right types.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if pid == 0 {
            return None;
        }
        if pid < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                _ => return None,
            }
        }
        let pid = Pid::from_raw(pid);
        let reason = match WaitStatus::from_raw(pid, status) {
            Ok(WaitStatus::Exited(_, code)) => ExitReason::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => ExitReason::Killed(sig),
            // Stopped or continued (never asked for: no WUNTRACED): not an exit.
            _ => continue,
        };
        // Linux counts block output in 512-byte units (the task's write_bytes).
        let written_bytes = u64::try_from(usage.ru_oublock).unwrap_or(0) * 512;
        return Some(Reaped {
            pid,
            reason,
            written_bytes,
        });
    }
}

/// Runs what `spec` describes to its end, for at most `limit` (then its process group is
/// killed), polling rather than blocking. Only for the daemon's start, before the actor and
/// its reaper run: nothing else may wait for children meanwhile.
pub fn run_bounded(
    spec: &Spec<'_>,
    nofile: Option<libc::rlimit>,
    limit: std::time::Duration,
) -> io::Result<ExitReason> {
    let pid = spawn_spec(spec, nofile)?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitReason::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitReason::Killed(sig)),
            Err(Errno::EINTR) | Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        if std::time::Instant::now() >= deadline {
            let _ = signal_group(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("did not finish within {limit:?}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The umask children start with.
const CHILD_UMASK: libc::mode_t = 0o022;

/// What the supervisor creates (logs, deploy logs, history, its socket before its mode is
/// set) is at most 0640 and folders 0750: readable by its group, never by everyone.
pub fn restrict_umask() {
    // SAFETY: umask only sets a process attribute.
    unsafe { libc::umask(0o027) };
}

/// Switches the whole supervisor to `user` (a name or uid) and its groups, for supervisord's
/// `-u`: once, at start, before any thread or child exists.
pub fn become_user(user: &str) -> io::Result<()> {
    let spec = crate::config::parse::resolve_user(user).map_err(io::Error::other)?;
    let groups: Vec<nix::unistd::Gid> = spec
        .groups
        .iter()
        .map(|&g| nix::unistd::Gid::from_raw(g))
        .collect();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::setgroups(&groups)?;
    }
    nix::unistd::setgid(nix::unistd::Gid::from_raw(spec.gid))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(spec.uid))?;
    Ok(())
}

/// When not PID 1, become the reaper of our orphaned descendants, as PID 1 is.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with an integer argument has no memory effects.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Grows the descriptor table to hold `count` descriptors (at most the open-files limit), by
/// placing one at the top and closing it: the kernel never shrinks the table. Call it while
/// the process has one thread, when growing costs nothing.
pub fn reserve_descriptors(count: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    // rlim_t is 32 bits wide on 32-bit ARM.
    #[allow(clippy::useless_conversion)]
    let top = (count as u64)
        .min(u64::from(limit.rlim_cur))
        .saturating_sub(1);
    let Ok(top) = libc::c_int::try_from(top) else {
        return;
    };
    if top <= 2 {
        return;
    }
    // SAFETY: F_DUPFD makes a new descriptor at `top` or above (refused past the limit), which
    // is closed at once; nothing else refers to it.
    unsafe {
        let fd = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, top);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// A pipe whose ends are both close-on-exec; the write end is handed to children by `dup2`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}
