//! Starting a child the way `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)` onto a small
//! stack of its own, so that nothing of the supervisor is copied (no page tables, no
//! copy-on-write faults afterwards) and the daemon's thread waits only until the child has
//! called `execve`. `posix_spawn` itself cannot switch users or restore the open-files limit,
//! and `fork` (std's `Command` with a `pre_exec` hook) copied the whole address space at every
//! spawn: with 200 programs that was most of the start-up (docs/BENCHMARKS.md).
//!
//! Everything the child needs is prepared here, before `clone`, in [`Prepared`]: the paths to
//! try, `argv`, `envp`, the folder, the descriptors, the credentials. The child shares the
//! supervisor's memory until `execve`, so it only makes system calls on that data: no
//! allocation, no lock, no Rust code that could panic, and the raw system calls for the
//! credentials (glibc's `setuid` would signal the supervisor's other threads). A failure is
//! written, as an errno, to a close-on-exec pipe that the parent reads to its end: end of file
//! means `execve` succeeded. Under qemu-user (which runs a vfork as a fork) the same protocol
//! holds, with the child working on a copy.

use std::ffi::{CString, OsString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::Pid;

/// The child's stack until `execve`: system calls on prepared data need little.
const STACK: usize = 64 * 1024;

/// `WATCHDOG_PID=` followed by room for the digits, written by the child.
const PID_SLOT_PREFIX: &[u8] = b"WATCHDOG_PID=";

/// The user and groups a child switches to.
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// What a child does between `clone` and `execve`, prepared by the parent.
pub struct Prepared {
    /// Full paths to try, in `PATH` order (execvp's rule).
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `/bin/sh`, the candidate (written by the child), the arguments: for a file without
    /// `#!` (ENOEXEC), run by the shell as execvp does.
    sh_argv_ptrs: Vec<*const libc::c_char>,
    sh: CString,
    /// The `WATCHDOG_PID=` entry's bytes, when the child must name itself.
    pid_slot: Option<Vec<u8>>,
    directory: Option<CString>,
    /// Sources of descriptors 0, 1 and 2.
    stdio: [RawFd; 3],
    credentials: Option<Credentials>,
    nofile: Option<libc::rlimit>,
    umask: libc::mode_t,
    /// `rlimits`, set before the credentials (raising a hard limit needs root).
    limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    /// Their names, in the same order, for the error message.
    limit_names: Vec<&'static str>,
    /// `/proc/self/oom_score_adj` and what to write there, when it differs from the
    /// supervisor's own (which the child inherits).
    oom_path: CString,
    oom_value: Option<Vec<u8>>,
    /// Write end of the report pipe (set by [`launch`]).
    report: RawFd,
}

/// A failure's stage travels with its errno in the report: `errno + STAGE * n`, where n is 1 +
/// the index of the `rlimits` entry that failed, or [`OOM_STAGE`].
const STAGE: c_int = 1 << 16;
const OOM_STAGE: c_int = 0x7000;

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a NUL byte in the {what}"),
    )
}

impl Prepared {
    /// Prepares `argv` with environment `env` (later entries already won: config::environ).
    /// A name without a slash is looked up in the child's `PATH` (else /usr/local/bin,
    /// /usr/bin, /bin). `watchdog_pid` adds `WATCHDOG_PID=<the child's pid>`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        argv: &[String],
        env: &[(OsString, OsString)],
        watchdog_pid: bool,
        directory: Option<&std::path::Path>,
        stdio: [RawFd; 3],
        credentials: Option<Credentials>,
        nofile: Option<libc::rlimit>,
        umask: libc::mode_t,
    ) -> io::Result<Self> {
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| invalid("command")))
            .collect::<io::Result<_>>()?;
        let program = argv
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?
            .as_bytes()
            .to_vec();
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_bytes().to_vec())
            .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
        let candidates: Vec<CString> = if program.contains(&b'/') {
            vec![CString::new(program).map_err(|_| invalid("command"))?]
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
        let mut envp: Vec<CString> = env
            .iter()
            .filter(|(k, _)| !(watchdog_pid && k == "WATCHDOG_PID"))
            .map(|(k, v)| {
                let mut entry = k.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                CString::new(entry).map_err(|_| invalid("environment"))
            })
            .collect::<io::Result<_>>()?;
        // Room for 20 digits (a pid has at most 10) and the NUL after them.
        let pid_slot = watchdog_pid.then(|| {
            let mut slot = PID_SLOT_PREFIX.to_vec();
            slot.extend_from_slice(&[b'0'; 20]);
            slot.push(0);
            slot
        });
        let directory = directory
            .map(|d| CString::new(d.as_os_str().as_bytes()).map_err(|_| invalid("directory")))
            .transpose()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let sh = CString::from(c"/bin/sh");
        let mut sh_argv_ptrs = vec![sh.as_ptr(), std::ptr::null()];
        sh_argv_ptrs.extend(argv_ptrs.iter().skip(1));
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        let mut prepared = Self {
            candidates,
            _argv: argv,
            _envp: Vec::new(),
            argv_ptrs,
            envp_ptrs: Vec::new(),
            sh_argv_ptrs,
            sh,
            pid_slot,
            directory,
            stdio,
            credentials,
            nofile,
            umask,
            limits: Vec::new(),
            limit_names: Vec::new(),
            oom_path: CString::from(c"/proc/self/oom_score_adj"),
            oom_value: None,
            report: -1,
        };
        if let Some(slot) = prepared.pid_slot.as_mut() {
            envp_ptrs.push(slot.as_ptr().cast());
        }
        envp_ptrs.push(std::ptr::null());
        prepared._envp = std::mem::take(&mut envp);
        prepared.envp_ptrs = envp_ptrs;
        Ok(prepared)
    }

    /// Resource limits and an OOM score for the child.
    pub fn with_limits(
        mut self,
        rlimits: &[crate::config::limits::Rlimit],
        oom_score_adj: i32,
    ) -> Self {
        self.limits = rlimits
            .iter()
            .map(|r| (r.resource.resource, r.to_libc()))
            .collect();
        self.limit_names = rlimits.iter().map(|r| r.resource.name).collect();
        // A configured open-files limit replaces the one restored from the supervisor's start.
        if rlimits
            .iter()
            .any(|r| r.resource.resource == libc::RLIMIT_NOFILE)
        {
            self.nofile = None;
        }
        self.oom_value = (oom_score_adj != super::own_oom_score_adj())
            .then(|| oom_score_adj.to_string().into_bytes());
        self
    }

    /// What a report from the child means: the errno, and which limit it was about.
    fn describe(&self, code: c_int) -> io::Error {
        let (stage, errno) = (code / STAGE, code % STAGE);
        let os = io::Error::from_raw_os_error(errno);
        match stage {
            0 => os,
            OOM_STAGE => io::Error::other(format!(
                "cannot set oom_score_adj to {}: {os}",
                String::from_utf8_lossy(self.oom_value.as_deref().unwrap_or_default())
            )),
            n => {
                let name = self.limit_names.get(n as usize - 1).copied().unwrap_or("?");
                io::Error::other(format!("cannot set rlimits.{name}: {os}"))
            }
        }
    }

    /// The entry the child fills in, for tests.
    #[cfg(test)]
    fn slot_text(&self) -> Option<&[u8]> {
        self.pid_slot.as_deref()
    }
}

/// Starts the child described by `prepared`; returns once it runs the program (its `execve`
/// succeeded), or with the errno that stopped it (the child is then reaped here).
pub fn launch(prepared: &mut Prepared) -> io::Result<Pid> {
    let (report_r, report_w) = super::pipe()?;
    prepared.report = report_w.as_raw_fd();
    let mut stack: Vec<u8> = Vec::with_capacity(STACK);
    // SAFETY: one past the end of the allocation (capacity STACK), rounded down to the
    // 16 bytes every supported ABI wants; the child's stack grows down from there.
    let top = unsafe { stack.as_mut_ptr().add(STACK) };
    let top = (top as usize & !15) as *mut c_void;
    // No handler of the supervisor may run in the child (it shares the memory): every signal
    // is blocked around clone; the child resets the handlers, then unblocks.
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    let arg = std::ptr::from_mut(prepared).cast::<c_void>();
    // SAFETY: `child` only makes system calls on `prepared`, which outlives the child's use of
    // it: with CLONE_VFORK this thread resumes only after the child's execve or exit, and
    // under a fork emulation the child works on its own copy. The stack is ours and unused.
    let pid = unsafe {
        libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        )
    };
    let cloned = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(Pid::from_raw(pid))
    };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    drop(report_w);
    drop(stack);
    let pid = cloned?;
    match read_report(&report_r) {
        Ok(None) => Ok(pid),
        Ok(Some(code)) => {
            reap(pid);
            Err(prepared.describe(code))
        }
        Err(e) => {
            // Unknown whether it runs: leave it to the daemon's reaper, report the error.
            Err(e)
        }
    }
}

/// Waits for the child that failed before exec (it exits at once after its report).
fn reap(pid: Pid) {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// The errno the child reported, or None at end of file (it ran `execve`).
fn read_report(fd: &OwnedFd) -> io::Result<Option<i32>> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((got == buf.len()).then(|| i32::from_ne_bytes(buf)))
}

/// The credential system calls by number: glibc's wrappers would make every thread of the
/// process it believes it is change too, and the 32-bit ARM ABI names the 32-bit-id ones apart.
#[cfg(any(target_arch = "arm", target_arch = "x86"))]
mod ids {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub const SETGID: libc::c_long = libc::SYS_setgid32;
    pub const SETUID: libc::c_long = libc::SYS_setuid32;
}
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
mod ids {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub const SETGID: libc::c_long = libc::SYS_setgid;
    pub const SETUID: libc::c_long = libc::SYS_setuid;
}

/// The errno of the last failed call, in the child.
fn errno() -> c_int {
    // SAFETY: errno's location is valid for the calling thread (the child runs on the parent
    // thread's TLS, which is suspended meanwhile).
    unsafe { *libc::__errno_location() }
}

/// Reports `errno` through the pipe and exits, in the child.
fn fail(report: RawFd, errno: c_int) -> ! {
    let bytes = errno.to_ne_bytes();
    // SAFETY: write and _exit are plain system calls; the buffer is on this stack.
    unsafe {
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// Moves `from` onto descriptor `to`, without close-on-exec.
///
/// # Safety
/// In the child only: changes the process's descriptors.
unsafe fn place(from: RawFd, to: RawFd) -> Result<(), c_int> {
    // SAFETY: descriptor calls on numbers; failures are returned.
    let rc = unsafe {
        if from == to {
            libc::fcntl(to, libc::F_SETFD, 0)
        } else {
            libc::dup2(from, to)
        }
    };
    if rc < 0 { Err(errno()) } else { Ok(()) }
}

/// The child, between clone and execve: system calls on what `arg` (a `Prepared`) holds.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `launch` passes a live `Prepared` that nothing else touches meanwhile.
    let p = unsafe { &mut *arg.cast::<Prepared>() };
    let report = p.report;
    // SAFETY: every call below is a system call on prepared values or on this stack; the
    // order is std's (descriptors, credentials, folder, group), then ours.
    unsafe {
        // Handlers first, while everything is still blocked: an all-zero kernel sigaction is
        // SIG_DFL with no flags and an empty mask, whatever the architecture's field order;
        // the raw call, because libc refuses its own reserved real-time signals. Ignored
        // signals would stay ignored across exec.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        for (to, &from) in p.stdio.iter().enumerate() {
            if let Err(e) = place(from, to as RawFd) {
                fail(report, e);
            }
        }
        // Limits and the OOM score while still root: a hard limit is raised, and a score below
        // the supervisor's set, only with privileges the program may not keep.
        for (i, (resource, limit)) in p.limits.iter().enumerate() {
            if libc::setrlimit(*resource, limit) != 0 {
                fail(report, errno() + STAGE * (i as c_int + 1));
            }
        }
        if let Some(value) = &p.oom_value {
            let oom = libc::open(p.oom_path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if oom < 0 || libc::write(oom, value.as_ptr().cast(), value.len()) < 0 {
                fail(report, errno() + STAGE * OOM_STAGE);
            }
            libc::close(oom);
        }
        if let Some(c) = &p.credentials {
            let euid = libc::geteuid();
            if euid == 0 {
                if libc::syscall(ids::SETGROUPS, c.groups.len(), c.groups.as_ptr()) != 0
                    || libc::syscall(ids::SETGID, c.gid) != 0
                    || libc::syscall(ids::SETUID, c.uid) != 0
                {
                    fail(report, errno());
                }
            } else if euid != c.uid {
                fail(report, libc::EPERM);
            }
        }
        if let Some(dir) = &p.directory {
            if libc::chdir(dir.as_ptr()) != 0 {
                fail(report, errno());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(report, errno());
        }
        // Every descriptor past stderr close-on-exec (the report pipe already is, and must
        // stay open until exec).
        let marked = libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if marked != 0 {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if let Some(limit) = &p.nofile {
            // Restores the limit the supervisor itself was started with.
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        libc::umask(p.umask);
        if let Some(slot) = p.pid_slot.as_mut() {
            write_pid(&mut slot[PID_SLOT_PREFIX.len()..], libc::getpid() as u32);
        }
        // An empty signal mask for the program (the raw call: glibc's keeps its own two).
        let empty = [0u64; 1];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            empty.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        let mut error = libc::ENOENT;
        for path in &p.candidates {
            libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
            // As execvp: a file without `#!` is run by the shell; a missing or unusable
            // entry of PATH is skipped; permission denied is remembered and reported if
            // nothing else runs.
            match errno() {
                libc::ENOEXEC => {
                    if let Some(script) = p.sh_argv_ptrs.get_mut(1) {
                        *script = path.as_ptr();
                    }
                    libc::execve(p.sh.as_ptr(), p.sh_argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
                    fail(report, errno());
                }
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE => {}
                libc::EACCES => error = libc::EACCES,
                other => fail(report, other),
            }
        }
        fail(report, error)
    }
}

/// Writes `pid` in decimal and a NUL into `slot` (room for 20 digits and the NUL).
fn write_pid(slot: &mut [u8], mut pid: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 || n == digits.len() {
            break;
        }
    }
    for i in 0..n {
        slot[i] = digits[n - 1 - i];
    }
    slot[n] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_written_in_decimal_and_terminated() {
        let mut slot = [b'0'; 21];
        write_pid(&mut slot, 4_294_967_295);
        assert_eq!(&slot[..11], b"4294967295\0");
        write_pid(&mut slot, 7);
        assert_eq!(&slot[..2], b"7\0");
    }

    #[test]
    fn names_are_looked_up_in_the_childs_path_and_nul_bytes_refused() {
        let env = vec![(OsString::from("PATH"), OsString::from("/a::/b"))];
        let p = Prepared::new(
            &["prog".into()],
            &env,
            true,
            None,
            [0, 1, 2],
            None,
            None,
            0o22,
        )
        .unwrap();
        let tried: Vec<_> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(tried, ["/a/prog", "./prog", "/b/prog"]);
        assert!(p.slot_text().unwrap().starts_with(PID_SLOT_PREFIX));
        let bad = Prepared::new(
            &["a\0b".into()],
            &env,
            false,
            None,
            [0, 1, 2],
            None,
            None,
            0,
        );
        assert_eq!(bad.err().unwrap().kind(), io::ErrorKind::InvalidInput);
    }
}
