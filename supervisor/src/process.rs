//! The process layer: spawning children, signalling them and their groups, reaping, and the
//! process attributes (umask, open-files limit, subreaper). The only module of the daemon with
//! `unsafe` and the only one that acts on processes; elsewhere nix appears for its types
//! (`Signal`, `Pid`), user lookups and the socket's lock.
//!
//! Spawning uses `std::process::Command` with a `pre_exec` hook, and never `tokio::process`: std
//! waits on its own child when `exec` fails, so reaping (`waitpid(-1)`) must happen on the same
//! thread as spawning, never concurrently (DESIGN.md, decision 5).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use std::path::Path;

use crate::config::environ::{self, Account};
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
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
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
    let mut direct = if watchdog_pid {
        Some(DirectExec::new(spec.argv, &env)?)
    } else {
        None
    };
    cmd.env_clear();
    cmd.envs(env);
    if let Some(dir) = spec.directory {
        cmd.current_dir(dir);
    }
    match spec.stdin {
        Some(fd) => cmd.stdin(Stdio::from(fd.as_fd().try_clone_to_owned()?)),
        None => cmd.stdin(Stdio::null()),
    };
    cmd.stdout(Stdio::from(spec.stdout.as_fd().try_clone_to_owned()?));
    cmd.stderr(Stdio::from(spec.stderr.as_fd().try_clone_to_owned()?));
    cmd.process_group(0);

    // Everything the child needs is computed here, before fork: the hook below may only make
    // async-signal-safe system calls (no allocation, no locks, no logging).
    let creds = spec.user.map(|u| {
        (
            u.uid,
            u.gid,
            u.groups
                .iter()
                .map(|&g| g as libc::gid_t)
                .collect::<Vec<_>>(),
        )
    });
    let hook = move || -> io::Result<()> {
        if let Some((uid, gid, groups)) = &creds {
            // SAFETY: plain system calls on values prepared before fork; `groups` is a live
            // Vec whose pointer and length stay valid for the call.
            unsafe {
                let euid = libc::geteuid();
                if euid == 0 {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if euid != *uid {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
        }
        // Mark every descriptor past stderr close-on-exec rather than closing it: std's own
        // error pipe (already close-on-exec) must stay open until exec.
        // SAFETY: close_range only changes descriptor flags.
        let marked = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if marked != 0 {
            for fd in 3..4096 {
                // SAFETY: F_SETFD on a descriptor that may not exist only fails with EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        // Ignored signals stay ignored across exec (handled ones are reset by it). The raw
        // system call, because libc refuses its own reserved real-time signals, which a parent
        // may have left ignored too. An all-zero kernel sigaction is SIG_DFL with no flags and
        // an empty mask, whatever the architecture's field order.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // SAFETY: rt_sigaction reads 32 zeroed bytes we own; no old action is written.
                unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        default_action.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8usize,
                    )
                };
            }
        }
        if let Some(limit) = &nofile {
            // SAFETY: restores the limit the supervisor itself was started with.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
        }
        // The supervisor's own umask keeps its files private (restrict_umask); children get
        // the usual one.
        // SAFETY: umask only sets a process attribute.
        unsafe { libc::umask(CHILD_UMASK) };
        match direct.as_mut() {
            Some(exec) => Err(exec.exec()),
            None => Ok(()),
        }
    };
    // SAFETY: the hook is async-signal-safe, see above.
    unsafe { cmd.pre_exec(hook) };
    // The one spawn of the daemon (supervisor/clippy.toml forbids the others); the `Child` is
    // dropped without a wait: the actor reaps it with waitpid(-1).
    #[allow(clippy::disallowed_methods)]
    let child = cmd.spawn().map_err(|e| describe_spawn_error(spec, e))?;
    Ok(Pid::from_raw(child.id() as i32))
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

/// An `execve` prepared before fork, for a child that must know its own pid in its
/// environment (`WATCHDOG_PID`): std's `Command` builds the environment before fork, so the
/// hook runs the program itself, writing the pid into a slot reserved for it. Like `execvp`,
/// a name without a slash is looked up in the child's `PATH`.
struct DirectExec {
    /// Full paths to try, in `PATH` order.
    candidates: Vec<std::ffi::CString>,
    /// Kept alive for the pointers below.
    _argv: Vec<std::ffi::CString>,
    _envp: Vec<std::ffi::CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `WATCHDOG_PID=` followed by room for the digits and their NUL (a `CString` of ours,
    /// given back in `drop`).
    pid_slot: *mut u8,
}

impl Drop for DirectExec {
    fn drop(&mut self) {
        // SAFETY: made by CString::into_raw in new, and given back once, here.
        drop(unsafe { std::ffi::CString::from_raw(self.pid_slot.cast()) });
    }
}

const PID_SLOT_PREFIX: &[u8] = b"WATCHDOG_PID=";

// SAFETY: the raw pointers point into the CStrings owned by the same value; it moves into the
// pre_exec hook whole and is only used in the child, single-threaded after fork.
unsafe impl Send for DirectExec {}
// SAFETY: as above: nothing shares it across threads while it is used.
unsafe impl Sync for DirectExec {}

impl DirectExec {
    fn new(argv: &[String], env: &[(OsString, OsString)]) -> io::Result<Self> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command");
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(invalid))
            .collect::<io::Result<_>>()?;
        let program = argv
            .first()
            .map(|a| a.as_bytes().to_vec())
            .unwrap_or_default();
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_bytes().to_vec())
            .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
        let candidates: Vec<CString> = if program.contains(&b'/') {
            vec![CString::new(program).map_err(invalid)?]
        } else {
            path_var
                .split(|&b| b == b':')
                .map(|dir| if dir.is_empty() { &b"."[..] } else { dir })
                .filter_map(|dir| {
                    let mut full = dir.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(&program);
                    CString::new(full).ok()
                })
                .collect()
        };
        let envp: Vec<CString> = env
            .iter()
            .filter(|(k, _)| k != "WATCHDOG_PID")
            .filter_map(|(k, v)| {
                let mut entry = k.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                CString::new(entry).ok()
            })
            .collect();
        // Room for 20 digits (any pid has at most 10) and the NUL after them; the child
        // writes its own.
        let mut slot = PID_SLOT_PREFIX.to_vec();
        slot.extend_from_slice(b"00000000000000000000");
        let pid_slot = CString::new(slot).map_err(invalid)?.into_raw().cast::<u8>();
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(pid_slot.cast_const().cast());
        envp_ptrs.push(std::ptr::null());
        Ok(Self {
            candidates,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            pid_slot,
        })
    }

    /// In the child: writes its pid into the slot and execs; returns only the error.
    fn exec(&mut self) -> io::Error {
        // SAFETY: getpid has no preconditions.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..n {
            // SAFETY: the slot has 20 bytes after the prefix (see new), and a pid has at most
            // 10 digits; the NUL written after them stays within the slot too.
            unsafe { *self.pid_slot.add(PID_SLOT_PREFIX.len() + i) = digits[n - 1 - i] };
        }
        // SAFETY: as above; index n ≤ 10 < 20.
        unsafe { *self.pid_slot.add(PID_SLOT_PREFIX.len() + n) = 0 };
        let mut error = io::Error::from_raw_os_error(libc::ENOENT);
        for path in &self.candidates {
            // SAFETY: every pointer is a NUL-terminated string owned by self, and both arrays
            // end with a null pointer.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                )
            };
            let e = io::Error::last_os_error();
            // As execvp: a missing or unusable entry of PATH is skipped; permission denied is
            // remembered and reported if nothing else runs.
            match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE) => {}
                Some(libc::EACCES) => error = e,
                _ => return e,
            }
        }
        error
    }
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

/// Reaps one exited child, if any: our programs and every orphan handed to us.
pub fn reap_one() -> Option<(Pid, ExitReason)> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid, ExitReason::Exited(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => return Some((pid, ExitReason::Killed(sig))),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return None,
        }
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

/// Raises the soft open-files limit to the hard one (two pipes per program add up), returning
/// the original for children to get back.
pub fn raise_nofile() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0).then_some(limit)
}

/// A pipe whose ends are both close-on-exec; the write end is handed to children by `dup2`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}
