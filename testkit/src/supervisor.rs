//! The real `supervisor` binary in a temporary folder, its JSON log read as it is written (so
//! that a test waits on what the daemon says, and a failure shows its last lines), killed and
//! reaped on drop; and the small things tests of it need (scripts, /proc, the CLI).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::PATIENCE;

/// The workspace's `supervisor` binary, beside the running test's (cargo builds it for every
/// integration test of the workspace: `cargo test --workspace`, or `cargo build -p supervisor`).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/TEST-HASH -> target/debug/supervisor
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("supervisor"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p supervisor` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

#[derive(Debug, Default)]
struct Seen {
    log: Vec<Value>,
    stdout: String,
    closed: bool,
    stdout_closed: bool,
}

#[derive(Debug)]
pub struct Supervisor {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    /// The pid to signal: the supervisor itself (its host pid when it is PID 1 of a namespace).
    pub pid: i32,
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Plain,
    /// PID 1 of a new PID namespace (root only).
    Pid1,
}

/// Writes an executable script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Supervisor {
    /// A temporary folder with `supervisor.toml` = `config` (`@DIR@` replaced by the folder).
    pub fn dir_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let text = config.replace("@DIR@", dir.path().to_str().unwrap());
        std::fs::write(dir.path().join("supervisor.toml"), text).unwrap();
        dir
    }

    pub fn start(dir: tempfile::TempDir, mode: Mode) -> Self {
        Self::start_with(dir, mode, "supervisor.toml")
    }

    /// As [`Self::start`], on the configuration file `config` of the folder (a supervisord
    /// file works too).
    pub fn start_with(dir: tempfile::TempDir, mode: Mode, config: &str) -> Self {
        let config = dir.path().join(config);
        let mut cmd = match mode {
            Mode::Plain => Command::new(bin()),
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                    .arg(bin());
                c
            }
        };
        cmd.args(["run", "--log-format", "json", "-c"])
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "supervisor=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let seen: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                let (lock, cv) = &*s;
                lock.lock().unwrap().log.push(value);
                cv.notify_all();
            }
            let (lock, cv) = &*s;
            lock.lock().unwrap().closed = true;
            cv.notify_all();
        });
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = vec![0; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (lock, cv) = &*s;
                        lock.lock()
                            .unwrap()
                            .stdout
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                        cv.notify_all();
                    }
                }
            }
            let (lock, cv) = &*s;
            lock.lock().unwrap().stdout_closed = true;
            cv.notify_all();
        });
        let pid = match mode {
            Mode::Plain => child.id() as i32,
            Mode::Pid1 => host_pid_of_namespace_init(child.id() as i32),
        };
        let sup = Self {
            dir,
            child: Some(child),
            seen,
            pid,
        };
        sup.wait_log("supervisor started", |e| msg(e) == "supervisor started");
        sup
    }

    /// The folder, kept when this supervisor goes (killed and reaped if still running): for
    /// a new supervisor on the same data.
    pub fn take_dir(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Stops it as `docker stop` would (SIGTERM), waits for a clean exit and returns the
    /// folder, for a new supervisor on the same data.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit(PATIENCE);
        assert!(status.success(), "the supervisor exited with {status}");
        self.take_dir()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until a log event satisfies `pred`; returns it.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let (lock, cv) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            if let Some(v) = seen.log.iter().find(|v| pred(v)) {
                return v.clone();
            }
            let now = Instant::now();
            if now >= deadline || seen.closed {
                let tail: Vec<String> = seen
                    .log
                    .iter()
                    .rev()
                    .take(30)
                    .map(|v| v.to_string())
                    .collect();
                panic!(
                    "waited for {what}; last log lines (newest first):\n{}",
                    tail.join("\n")
                );
            }
            seen = cv.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }

    /// Waits for `program` to enter `state`; returns the event.
    pub fn wait_state(&self, program: &str, state: &str) -> Value {
        self.wait_log(&format!("{program} to become {state}"), |e| {
            msg(e) == "state changed" && field(e, "program") == program && field(e, "to") == state
        })
    }

    pub fn log_events(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let (lock, _) = &*self.seen;
        lock.lock()
            .unwrap()
            .log
            .iter()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    pub fn stdout(&self) -> String {
        self.seen.0.lock().unwrap().stdout.clone()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).unwrap();
    }

    /// Waits for the supervisor to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader threads see the end of the output.
                let (lock, cv) = &*self.seen;
                let _unused = cv
                    .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(5), |s| {
                        !(s.closed && s.stdout_closed)
                    })
                    .unwrap();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the supervisor did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A graceful stop first, so that the programs go too; then no mercy.
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            // Long enough for programs with a long stopwaitsecs (the bot's is 10 s).
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// The host pid of the process `unshare --fork` started as PID 1 of the new namespace.
fn host_pid_of_namespace_init(unshare: i32) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        // A supervisor that already exited (an on_fatal shutdown can be that quick) leaves
        // unshare childless: there is nothing left to signal.
        if !alive(unshare) {
            return unshare;
        }
        assert!(Instant::now() < deadline, "unshare started no child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn msg(e: &Value) -> &str {
    e.get("message").and_then(Value::as_str).unwrap_or("")
}

pub fn field<'a>(e: &'a Value, name: &str) -> &'a str {
    e.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The deploy history of `program` under the supervisor folder `root` (its JSON lines), oldest
/// first; empty before the first deploy.
pub fn deploy_history(root: &Path, program: &str) -> Vec<Value> {
    std::fs::read_to_string(root.join(format!("data/deploys/{program}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Lines of a file, empty when it does not exist.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Processes whose parent is `ppid` and that are zombies.
pub fn zombies_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let parent = f.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && parent == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Runs `supervisor ARGS -s SOCKET`; returns (exit code, stdout, stderr).
pub fn ctl(sup: &Supervisor, args: &[&str]) -> (i32, String, String) {
    ctl_as(sup, args, None)
}

/// As [`ctl`], as another `uid` (through setpriv; root only).
pub fn ctl_as(sup: &Supervisor, args: &[&str], uid: Option<u32>) -> (i32, String, String) {
    let socket = sup.path("data/supervisor.sock");
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let out = cmd
        .args(args)
        .arg("-s")
        .arg(&socket)
        .env_remove("SUPERVISOR_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
