//! A program as the actor holds it: its configuration and lifecycle state, its capture pipes,
//! the clients waiting on it and its start budget (the lifecycle's input); the log files its
//! streams share. What each feature keeps per program (health, polls, deploys, alerts, event
//! listeners, ceilings, schedules) is that feature's component's, by the program's name.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::SystemTime;

use anyhow::Context as _;
use supervisor_proto::ActionResult;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::health;
use crate::config::ProgramConfig;
use crate::config::health::Ready;
use crate::health::Report;
use crate::health::budget::{self, Starts};
use crate::health::notify::NotifySocket;
use crate::lifecycle::{ExitReason, State};
use crate::logs::capture::{Capture, Echo, EchoSender, LogWatch};
use crate::logs::rotation::LogFile;
use crate::process;

/// A client waiting for a program to reach a state.
pub(super) struct Waiter {
    pub(super) kind: WaitKind,
    /// Results so far (a restart reports its stop before its start).
    pub(super) results: Vec<ActionResult>,
    pub(super) tx: oneshot::Sender<Vec<ActionResult>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitKind {
    /// Until RUNNING, or the start failed.
    Running,
    /// Until nothing of it is alive.
    Stopped,
    /// Until stopped, then start it and wait until RUNNING.
    Restart,
}

/// What `update` decided for a program that must stop first.
pub(super) enum Retire {
    Remove,
    Replace(Box<ProgramConfig>),
}

pub(super) struct Program {
    pub(super) cfg: ProgramConfig,
    pub(super) state: State,
    /// Length of the longest `depends_on` chain below it: shutdown stops the deepest first.
    pub(super) depth: u32,
    /// Start as soon as its dependencies are RUNNING.
    pub(super) pending_start: bool,
    /// Write ends of its capture pipes, copied into each spawn (the same pipe twice when
    /// `redirect_stderr`).
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) spawns: u64,
    /// Wall-clock time of the last state change, for `status`.
    pub(super) changed_at: SystemTime,
    pub(super) last_exit: Option<ExitReason>,
    pub(super) waiters: Vec<Waiter>,
    pub(super) retiring: Option<Retire>,
    /// Recent spawns, for `start_limit`.
    pub(super) starts: Starts,
}

/// The log files, shared by every stream that writes to one (weakly: a file closes when its
/// last program goes). A file is opened off the daemon's thread after the spawns
/// ([`LogFiles::open_pending`]), or by the first write that comes before.
#[derive(Debug, Default)]
pub(super) struct LogFiles {
    pub(super) files: HashMap<std::path::PathBuf, std::sync::Weak<std::sync::Mutex<LogFile>>>,
    pub(super) pending: Vec<crate::logs::capture::SharedLog>,
}

impl LogFiles {
    pub(super) fn open(
        &mut self,
        path: &std::path::Path,
        maxbytes: u64,
        backups: u32,
    ) -> crate::logs::capture::SharedLog {
        if let Some(open) = self.files.get(path).and_then(std::sync::Weak::upgrade) {
            return open;
        }
        let file = std::sync::Arc::new(std::sync::Mutex::new(LogFile::unopened(
            path, maxbytes, backups,
        )));
        self.files.retain(|_, w| w.strong_count() > 0);
        self.files
            .insert(path.to_owned(), std::sync::Arc::downgrade(&file));
        self.pending.push(file.clone());
        file
    }

    /// Opens (creates) the files set up since the last call, on a blocking thread: 400 files
    /// of 200 programs take tens of milliseconds, which the first spawns need not wait for.
    pub(super) fn open_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        tokio::task::spawn_blocking(move || {
            for shared in pending {
                let mut file = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(e) = file.ensure_open() {
                    tracing::error!(path = %file.path().display(), error = %e,
                        "cannot open the log file; it is tried again at the next output");
                }
            }
        });
    }
}

/// What a program needs from the daemon when it is set up: its notify socket's folder and
/// health reports, its start times, the log files it may share.
pub(super) struct ProgramSetup<'a> {
    pub(super) notify_dir: &'a std::path::Path,
    pub(super) statedir: &'a std::path::Path,
    pub(super) reports: &'a mpsc::Sender<Report>,
    pub(super) writer: &'a budget::Writer,
    pub(super) log_files: &'a mut LogFiles,
    pub(super) echo_format: crate::config::EchoFormat,
}

impl Program {
    /// Sets up the program's pipes and the tasks that capture them, and its health (its notify
    /// socket, what its captures tell it), which the health component keeps.
    pub(super) fn new(
        cfg: ProgramConfig,
        echo: &EchoSender,
        reopen: &watch::Sender<u64>,
        setup: &mut ProgramSetup<'_>,
    ) -> anyhow::Result<(Self, health::ProgramHealth, Vec<JoinHandle<()>>)> {
        let mut health = health::ProgramHealth::default();
        // A watchdog needs the socket too, whatever decides readiness (systemd's
        // `WatchdogSec=` works with any `Type=`).
        if cfg.ready == Ready::Notify || cfg.watchdog.is_some() {
            let socket = NotifySocket::bind(
                setup.notify_dir,
                &cfg.name,
                cfg.user.as_ref(),
                setup.reports.clone(),
            )
            .with_context(|| {
                format!(
                    "creating the notify socket of {} in {}",
                    cfg.name,
                    setup.notify_dir.display()
                )
            })?;
            health.notify = Some(socket);
        }
        let log_watch = match &cfg.ready {
            Ready::Log(pattern) => {
                let armed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let heard = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                health.log_armed = Some(armed.clone());
                health.log_heard = Some(heard.clone());
                Some(LogWatch {
                    pattern: pattern.0.clone(),
                    armed,
                    heard,
                    program: cfg.name.clone(),
                    reports: setup.reports.clone(),
                })
            }
            _ => None,
        };
        let mut log_watch = log_watch;
        let (out_r, out_w) = process::pipe().context("creating an output pipe")?;
        let mut streams = vec![(out_r, &cfg.stdout, "stdout")];
        let err_w = if cfg.redirect_stderr {
            out_w.try_clone().context("duplicating an output pipe")?
        } else {
            let (err_r, err_w) = process::pipe().context("creating an output pipe")?;
            streams.push((err_r, &cfg.stderr, "stderr"));
            err_w
        };
        let mut captures = Vec::new();
        for (reader, target, stream) in streams {
            let file = target
                .path
                .as_ref()
                .map(|path| setup.log_files.open(path, target.maxbytes, target.backups));
            let style = match setup.echo_format {
                crate::config::EchoFormat::Text => {
                    Echo::Text(format!("{} | ", cfg.name).into_bytes())
                }
                crate::config::EchoFormat::Json => Echo::Json {
                    program: cfg.name.to_string(),
                    stream,
                },
            };
            let mut capture = Capture::new(
                style,
                file,
                cfg.echo_output.then(|| echo.clone()),
                reopen.subscribe(),
            );
            // The readiness line is looked for in stdout (with stderr when redirected).
            if let Some(watch) = log_watch.take() {
                capture = capture.watch_ready(watch);
            }
            if stream == "stderr" || cfg.redirect_stderr {
                capture = capture.keep_last_line(health.last_line.clone());
            }
            captures.push(capture.spawn(reader).context("watching an output pipe")?);
        }
        let program = Program {
            state: State::initial(),
            depth: 0,
            pending_start: cfg.autostart,
            stdout: out_w,
            stderr: err_w,
            spawns: 0,
            changed_at: SystemTime::now(),
            last_exit: None,
            waiters: Vec::new(),
            retiring: None,
            starts: Starts::new(
                cfg.policy.start_limit,
                setup.statedir,
                cfg.name.as_str(),
                setup.writer,
            ),
            cfg,
        };
        Ok((program, health, captures))
    }
}

impl Program {
    /// The program as its health sees it.
    pub(super) fn checked(&self) -> health::Checked<'_> {
        health::Checked {
            cfg: &self.cfg,
            state: &self.state,
        }
    }
}

/// Length of the longest `depends_on` chain below program `i`.
pub(super) fn depth(programs: &[Program], i: usize, guard: u32) -> u32 {
    if guard as usize > programs.len() {
        return 0; // a cycle; validation rejects those, this only keeps us finite
    }
    programs[i]
        .cfg
        .depends_on
        .iter()
        .filter_map(|d| programs.iter().position(|p| &p.cfg.name == d))
        .map(|j| depth(programs, j, guard + 1) + 1)
        .max()
        .unwrap_or(0)
}
