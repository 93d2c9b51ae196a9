//! Readiness and liveness in the actor: what the `health` module's parts mean for a program's
//! lifecycle. Nothing here waits: probes run as tasks (HTTP, TCP) or as children reaped by the
//! actor (commands), and report back; timers are deadlines in the actor's one sleep. A program
//! without health keys has no timer and no task.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use supervisor_proto::Event;

use super::action::Action;
use super::children::{Child, CommandProbe};
use super::program::Program;
use super::{Daemon, alerts, ceilings};
use crate::config::ProgramConfig;
use crate::config::health::{Probe, Ready};
use crate::dirs;
use crate::health::check::{Liveness, Schedule, Verdict, Watchdog};
use crate::health::notify::{Message, NotifySocket};
use crate::health::probe::{self, ProbeError};
use crate::health::{ProbeKind, Report};
use crate::lifecycle::{Event as LifeEvent, ExitReason, State, later};
use crate::process::{self, Spec};
use crate::status::unix_ms;

/// A program's health as the actor tracks it.
#[derive(Debug, Default)]
pub(super) struct ProgramHealth {
    pub notify: Option<NotifySocket>,
    /// The spawn (`run`) a `ready = { log = ... }` program's capture looks for its line for;
    /// 0 when not looking. The capture clears it on a match.
    pub log_armed: Option<Arc<AtomicU64>>,
    /// The last spawn of such a program that wrote anything (set by its capture).
    pub log_heard: Option<Arc<AtomicU64>>,
    /// The last line of its stderr (of its output, with `redirect_stderr`).
    pub last_line: crate::logs::capture::LastLine,
    /// When `status_text` was last sent.
    pub status_at: Option<Instant>,
    /// `STATUS=`, with `RELOADING=1` / `STOPPING=1` / `ERRNO=` noted.
    pub status_text: Option<String>,
    pub errno: Option<i32>,
    /// `MAINPID=` when it is not the leader.
    pub main_pid: Option<Pid>,
    /// Which spawn the checks below belong to: results of older ones are dropped.
    pub run: u64,
    /// The pid the checks were set up for, and whether for RUNNING (liveness) or STARTING.
    armed_for: Option<(Pid, bool)>,
    ready_poll: Option<Schedule>,
    liveness: Option<Liveness>,
    watchdog: Option<Watchdog>,
    /// A `WATCHDOG_USEC=` the program set; replaces `watchdog` until its next spawn.
    watchdog_override: Option<Duration>,
    pub healthy: Option<bool>,
    pub failures: u64,
}

/// Every program's health, by name: the health component's own state (the actor's `Program`
/// holds none of it).
#[derive(Debug, Default)]
pub(super) struct Health {
    programs: HashMap<String, ProgramHealth>,
}

impl Health {
    /// A program's health (set up by [`Self::insert`] when the program was; a fresh one, with
    /// no socket and no checks, for a name never set up).
    pub fn of(&mut self, program: &str) -> &mut ProgramHealth {
        self.programs.entry(program.to_owned()).or_default()
    }

    pub fn get(&self, program: &str) -> Option<&ProgramHealth> {
        self.programs.get(program)
    }

    /// A program set up anew: what an older one of that name had (its socket) goes first.
    pub fn insert(&mut self, program: &str, health: ProgramHealth) {
        self.programs.remove(program);
        self.programs.insert(program.to_owned(), health);
    }

    /// Drops the health of programs no longer configured.
    pub fn keep_only(&mut self, programs: &HashSet<&str>) {
        self.programs
            .retain(|name, _| programs.contains(name.as_str()));
    }
}

impl ProgramHealth {
    pub fn describe(&self) -> Option<String> {
        let mut text = self.status_text.clone();
        if let Some(e) = self.errno.filter(|&e| e != 0) {
            let errno = nix::errno::Errno::from_raw(e);
            let note = format!("errno {e} ({})", errno.desc());
            text = Some(match text {
                Some(t) => format!("{t}; {note}"),
                None => note,
            });
        }
        text
    }
}

impl Health {
    /// After a transition of program `p`: arm, re-arm or drop its checks for its new state.
    pub fn sync(&mut self, p: &Program, now: Instant) {
        let target = match p.state {
            State::Starting { pid, .. } => Some((pid, false)),
            State::Running { pid, .. } => Some((pid, true)),
            _ => None,
        };
        let h = self.of(p.cfg.name.as_str());
        // What a process said of itself ends with it (kept while it stops).
        if !matches!(
            p.state,
            State::Starting { .. } | State::Running { .. } | State::Stopping { .. }
        ) {
            h.main_pid = None;
            h.status_text = None;
            h.errno = None;
        }
        if target == h.armed_for {
            return;
        }
        let new_spawn = target.map(|(pid, _)| pid) != h.armed_for.map(|(pid, _)| pid);
        h.armed_for = target;
        h.ready_poll = None;
        h.liveness = None;
        h.watchdog = None;
        if let Some(armed) = &h.log_armed {
            armed.store(0, Ordering::Release);
        }
        if let Some(socket) = &h.notify {
            let group = match p.state {
                State::Starting { pid, .. }
                | State::Running { pid, .. }
                | State::Stopping { pid, .. } => Some((pid, h.main_pid)),
                _ => None,
            };
            socket.group.send_replace(group);
        }
        let Some((_, running)) = target else {
            h.healthy = None;
            return;
        };
        if new_spawn {
            h.run += 1;
            h.status_text = None;
            *h.last_line
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = (String::new(), None);
            h.errno = None;
            h.main_pid = None;
            h.watchdog_override = None;
            if let Some(socket) = &h.notify {
                socket
                    .group
                    .send_replace(target.map(|(pid, _)| (pid, None)));
            }
        }
        if !running {
            match &p.cfg.ready {
                Ready::Log(_) => {
                    if let Some(armed) = &h.log_armed {
                        armed.store(h.run, Ordering::Release);
                    }
                }
                Ready::Probe(spec) => h.ready_poll = Some(Schedule::new(spec.interval, now)),
                Ready::Started | Ready::Notify => {}
            }
            return;
        }
        if let Some(check) = &p.cfg.healthcheck {
            h.liveness = Some(Liveness::new(check, now));
        }
        if let Some(timeout) = h.watchdog_override.or(p.cfg.watchdog) {
            h.watchdog = Some(Watchdog::new(timeout, now));
        }
        h.healthy = (h.liveness.is_some() || h.watchdog.is_some()).then_some(true);
    }

    /// The health timers of programs: probes due, watchdogs.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.programs.values().flat_map(|h| {
            [
                h.ready_poll.as_ref().and_then(Schedule::deadline),
                h.liveness.as_ref().and_then(|l| l.schedule.deadline()),
                h.watchdog.as_ref().map(Watchdog::deadline),
            ]
            .into_iter()
            .flatten()
        })
    }

    /// Watchdogs that expired (the program is unhealthy), and probes that are due (the core
    /// runs them).
    pub fn tick(&mut self, programs: &[Program], now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for p in programs {
            let name = p.cfg.name.as_str();
            let h = self.of(name);
            if let Some(reason) = h.watchdog.as_ref().and_then(|w| w.expired(now)) {
                h.watchdog = None;
                actions.push(Action::Unhealthy(name.to_owned(), reason));
                continue;
            }
            let run = h.run;
            if h.ready_poll.as_mut().is_some_and(|s| s.start_if_due(now)) {
                if let Ready::Probe(spec) = &p.cfg.ready {
                    actions.push(Action::Probe(ProbeRun {
                        program: name.to_owned(),
                        run,
                        kind: ProbeKind::Ready,
                        probe: spec.probe.clone(),
                        timeout: spec.timeout,
                    }));
                }
            }
            if h.liveness
                .as_mut()
                .is_some_and(|l| l.schedule.start_if_due(now))
            {
                if let Some(check) = &p.cfg.healthcheck {
                    actions.push(Action::Probe(ProbeRun {
                        program: name.to_owned(),
                        run,
                        kind: ProbeKind::Live,
                        probe: check.probe.clone(),
                        timeout: check.timeout,
                    }));
                }
            }
        }
        actions
    }

    /// A probe of program `p`'s spawn `run` finished: ready, healthy again, failing, or
    /// unhealthy. A result of an older spawn is dropped.
    pub fn result(
        &mut self,
        p: &Program,
        run: u64,
        kind: ProbeKind,
        result: Result<(), ProbeError>,
        now: Instant,
    ) -> Vec<Action> {
        let program = p.cfg.name.as_str();
        let h = self.of(program);
        if h.run != run {
            return Vec::new();
        }
        if result.is_err() {
            h.failures += 1;
        }
        match kind {
            ProbeKind::Ready => {
                let Some(schedule) = h.ready_poll.as_mut() else {
                    return Vec::new();
                };
                schedule.finished(now);
                match result {
                    Ok(()) => {
                        tracing::info!(program = %program, "ready: its probe passed");
                        vec![Action::Feed(program.to_owned(), LifeEvent::Ready)]
                    }
                    Err(e) => {
                        tracing::debug!(program = %program, error = %e, "not ready yet");
                        Vec::new()
                    }
                }
            }
            ProbeKind::Live => {
                let what = match &p.cfg.healthcheck {
                    Some(check) => check.probe.to_string(),
                    None => return Vec::new(),
                };
                let Some(liveness) = h.liveness.as_mut() else {
                    return Vec::new();
                };
                match liveness.finish(&result, &what, now) {
                    Verdict::Healthy if h.healthy == Some(false) => {
                        h.healthy = Some(true);
                        tracing::info!(program = %program, "healthy again");
                        vec![health_event(program, true, format!("{what} passed"))]
                    }
                    Verdict::Healthy => Vec::new(),
                    Verdict::Failing { count } => {
                        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                        tracing::warn!(program = %program, failures = count, error = %error, "health check failed");
                        if h.healthy != Some(false) {
                            h.healthy = Some(false);
                            vec![health_event(program, false, error)]
                        } else {
                            Vec::new()
                        }
                    }
                    Verdict::Unhealthy(reason) => {
                        vec![Action::Unhealthy(program.to_owned(), reason)]
                    }
                }
            }
        }
    }

    /// What program `p` said on its notify socket (from `sender`).
    pub fn notified(
        &mut self,
        p: &Program,
        sender: i32,
        message: Message,
        now: Instant,
    ) -> Vec<Action> {
        let name = p.cfg.name.as_str();
        let h = self.of(name);
        let feed = |event| vec![Action::Feed(name.to_owned(), event)];
        match message {
            Message::Ready => {
                if matches!(p.state, State::Starting { .. }) {
                    tracing::info!(program = %name, sender, "ready: READY=1");
                }
                if h.status_text.as_deref() == Some("reloading") {
                    h.status_text = None;
                }
                return feed(LifeEvent::Ready);
            }
            Message::Reloading => h.status_text = Some("reloading".into()),
            Message::Stopping => h.status_text = Some("stopping".into()),
            Message::Status(text) => {
                h.status_text = Some(text);
                h.status_at = Some(now);
            }
            Message::Errno(e) => h.errno = Some(e),
            Message::Watchdog => {
                if let Some(w) = h.watchdog.as_mut() {
                    w.ping(now);
                }
            }
            Message::WatchdogTrigger => {
                if matches!(p.state, State::Starting { .. } | State::Running { .. }) {
                    let reason = "the program triggered its watchdog".to_owned();
                    return vec![Action::Unhealthy(name.to_owned(), reason)];
                }
            }
            Message::WatchdogUsec(timeout) => {
                h.watchdog_override = Some(timeout);
                if let Some(w) = h.watchdog.as_mut() {
                    *w = Watchdog::new(timeout, now);
                } else if matches!(p.state, State::Running { .. }) {
                    h.watchdog = Some(Watchdog::new(timeout, now));
                    h.healthy.get_or_insert(true);
                }
            }
            Message::ExtendTimeout(more) => return feed(LifeEvent::ExtendTimeout(more)),
            Message::MainPid(pid) => {
                let pid = Pid::from_raw(pid);
                let leader = p.state.pid();
                let in_group = leader.is_some_and(|l| {
                    pid == l || nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g == l)
                });
                if in_group && Some(pid) != leader {
                    tracing::info!(program = %name, main_pid = pid.as_raw(), "MAINPID: its main process");
                    h.main_pid = Some(pid);
                    if let Some(socket) = &h.notify {
                        socket.group.send_replace(leader.map(|l| (l, Some(pid))));
                    }
                    return vec![Action::MainProcess(name.to_owned(), pid)];
                } else if !in_group {
                    tracing::warn!(program = %name, main_pid = pid.as_raw(), "MAINPID outside the program's process group; ignored");
                }
            }
        }
        Vec::new()
    }

    /// Whether program `p` waits for its log line from spawn `run`.
    pub fn waits_for_log(&self, p: &Program, run: u64) -> bool {
        let h = self.get(p.cfg.name.as_str());
        h.is_some_and(|h| h.run == run) && matches!(p.state, State::Starting { .. })
    }

    /// The environment a spawn of `p` gets for its notify socket and watchdog.
    pub fn env(&self, p: &Program) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let notify = self
            .get(p.cfg.name.as_str())
            .and_then(|h| h.notify.as_ref());
        if let Some(socket) = notify {
            env.push((
                "NOTIFY_SOCKET".to_owned(),
                socket.path.to_string_lossy().into_owned(),
            ));
            if let Some(w) = p.cfg.watchdog {
                env.push(("WATCHDOG_USEC".to_owned(), w.as_micros().to_string()));
            }
        }
        env
    }
}

/// A program's health changed, for the event stream.
fn health_event(program: &str, healthy: bool, message: String) -> Action {
    Action::Event(Event::Health {
        program: program.to_owned(),
        healthy,
        message,
        at_ms: unix_ms(SystemTime::now()),
    })
}

/// A probe the core is to run: the program's spawn `run`, for readiness or liveness.
pub(super) struct ProbeRun {
    pub program: String,
    pub run: u64,
    pub kind: ProbeKind,
    pub probe: Probe,
    pub timeout: Duration,
}

impl Daemon {
    /// Runs a probe the health asked for: HTTP and TCP as tasks, a command as a child of the
    /// actor's; each reports back.
    pub(super) fn start_probe(&mut self, probe: ProbeRun) {
        let ProbeRun {
            program,
            run,
            kind,
            probe,
            timeout,
        } = probe;
        let Some(idx) = self.index(&program) else {
            return;
        };
        let reports = self.reports.clone();
        let name = self.programs[idx].cfg.name.clone();
        let task = move |result: Result<(), ProbeError>| Report::Probe {
            program: name,
            run,
            kind,
            result,
        };
        match probe {
            Probe::Http { addr, host, path } => {
                tokio::spawn(async move {
                    let result = probe::http(addr, &host, &path, timeout).await;
                    let _ = reports.send(task(result)).await;
                });
            }
            Probe::Tcp(addr) => {
                tokio::spawn(async move {
                    let result = probe::tcp(addr, timeout).await;
                    let _ = reports.send(task(result)).await;
                });
            }
            Probe::Command(argv) => match self.spawn_probe(&self.programs[idx].cfg, &argv) {
                Ok(pid) => {
                    let now = Instant::now();
                    self.children.add(
                        pid,
                        Child::Probe(CommandProbe {
                            program,
                            run,
                            kind,
                            deadline: later(now, timeout),
                            timeout,
                            timed_out: false,
                        }),
                    );
                }
                Err(e) => {
                    let failed = Err(ProbeError::Spawn(e.to_string()));
                    self.probe_result(&program, run, kind, failed);
                }
            },
        }
    }

    /// A command probe runs as its program does: user, folder, environment; its output is
    /// dropped.
    fn spawn_probe(&self, cfg: &ProgramConfig, argv: &[String]) -> std::io::Result<Pid> {
        let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        let devnull = std::os::fd::OwnedFd::from(devnull);
        process::spawn_spec(
            &Spec {
                argv,
                directory: cfg.directory.as_deref(),
                environment: &cfg.environment,
                pass_env: &cfg.pass_env,
                user: cfg.user.as_ref(),
                stdin: None,
                stdout: &devnull,
                stderr: &devnull,
                rlimits: &cfg.rlimits,
                oom_score_adj: cfg.oom_score_adj,
            },
            self.nofile,
        )
    }

    /// Command probes past their timeout are killed (their exits are still reaped).
    pub(super) fn kill_late_probes(&mut self, now: Instant) {
        for (pid, c) in self.children.probes_mut() {
            if !c.timed_out && now >= c.deadline {
                c.timed_out = true;
                let _ = process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }

    /// A command probe was reaped.
    pub(super) fn probe_exited(&mut self, c: CommandProbe, reason: ExitReason) {
        let result = match reason {
            _ if c.timed_out => Err(ProbeError::CommandTimedOut(c.timeout)),
            ExitReason::Exited(0) => Ok(()),
            other => Err(ProbeError::Exited(other)),
        };
        self.probe_result(&c.program, c.run, c.kind, result);
    }

    fn probe_result(
        &mut self,
        program: &str,
        run: u64,
        kind: ProbeKind,
        result: Result<(), ProbeError>,
    ) {
        let Some(idx) = self.index(program) else {
            return;
        };
        let actions = self
            .health
            .result(&self.programs[idx], run, kind, result, Instant::now());
        self.perform(actions);
    }

    /// What came back from the tasks: probes, notify sockets, log lines, samples.
    pub(super) fn health_report(&mut self, report: Report) {
        match report {
            Report::Usage { at, groups, usage } => {
                let limited = ceilings::limited(&self.programs);
                let breaches = self.ceilings.sample(&limited, at, &groups, &usage);
                self.perform(breaches);
            }
            Report::LogsCleared => self.reopen.send_modify(|generation| *generation += 1),
            Report::Notify {
                program,
                sender,
                messages,
            } => {
                // One at a time: READY=1 changes the state the next one sees.
                for m in messages {
                    let Some(idx) = self.index(program.as_str()) else {
                        return;
                    };
                    let p = &self.programs[idx];
                    let actions = self.health.notified(p, sender, m, Instant::now());
                    self.perform(actions);
                }
            }
            Report::LogReady { program, run } => {
                let waiting = |idx: &usize| self.health.waits_for_log(&self.programs[*idx], run);
                if let Some(idx) = self.index(program.as_str()).filter(waiting) {
                    tracing::info!(program = %program, "ready: its log line appeared");
                    self.feed(idx, LifeEvent::Ready);
                }
            }
            Report::Probe {
                program,
                run,
                kind,
                result,
            } => self.probe_result(program.as_str(), run, kind, result),
        }
    }

    /// Program `idx` failed its liveness (a check, its watchdog, a ceiling): marked, told,
    /// alerted and restarted.
    pub(super) fn unhealthy(&mut self, idx: usize, reason: String) {
        let p = &self.programs[idx];
        let name = p.cfg.name.to_string();
        self.health.of(&name).healthy = Some(false);
        tracing::warn!(program = %name, reason = %reason, "unhealthy; restarting it");
        self.perform([health_event(&name, false, format!("unhealthy: {reason}"))]);
        let seen = alerts::seen(&self.programs[idx]);
        self.alerts.unhealthy(&seen, &reason);
        self.feed(idx, LifeEvent::Unhealthy(reason));
    }

    /// Folders for a spawn (`state_dirs`), made for the program's user.
    pub(super) fn prepare_dirs(cfg: &ProgramConfig) -> std::io::Result<()> {
        cfg.state_dirs
            .iter()
            .try_for_each(|d| dirs::prepare(d, 0o750, cfg.user.as_ref(), dirs::Existing::Adopt))
            .map_err(std::io::Error::other)
    }
}
