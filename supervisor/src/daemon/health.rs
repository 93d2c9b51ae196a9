//! Readiness and liveness in the actor, a component: what the `health` module's parts mean for
//! a program's lifecycle, decided here and performed by the core (`reports.rs` runs the probes
//! it asks for). Nothing here waits: probes run as tasks (HTTP, TCP) or as children reaped by
//! the actor (commands), and report back; timers are deadlines in the actor's one sleep. A
//! program without health keys has no timer and no task.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;
use supervisor_proto::Event;

use super::action::{Action, ProbeRun};
use crate::config::ProgramConfig;
use crate::config::health::Ready;
use crate::health::ProbeKind;
use crate::health::check::{Liveness, Schedule, Verdict, Watchdog};
use crate::health::notify::{Message, NotifySocket};
use crate::health::probe::ProbeError;
use crate::lifecycle::{Event as LifeEvent, State};
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

/// A program as its health sees it: its configuration and its lifecycle state.
#[derive(Clone, Copy)]
pub(super) struct Checked<'a> {
    pub cfg: &'a ProgramConfig,
    pub state: &'a State,
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
    pub fn sync(&mut self, p: Checked<'_>, now: Instant) {
        let target = match *p.state {
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
            let group = match *p.state {
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
    pub fn tick<'a>(
        &mut self,
        programs: impl IntoIterator<Item = Checked<'a>>,
        now: Instant,
    ) -> Vec<Action> {
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
        p: Checked<'_>,
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
        p: Checked<'_>,
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
    pub fn waits_for_log(&self, p: Checked<'_>, run: u64) -> bool {
        let h = self.get(p.cfg.name.as_str());
        h.is_some_and(|h| h.run == run) && matches!(p.state, State::Starting { .. })
    }

    /// The environment a spawn of `p` gets for its notify socket and watchdog.
    pub fn env(&self, p: Checked<'_>) -> Vec<(String, String)> {
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
pub(super) fn health_event(program: &str, healthy: bool, message: String) -> Action {
    Action::Event(Event::Health {
        program: program.to_owned(),
        healthy,
        message,
        at_ms: unix_ms(SystemTime::now()),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(keys: &str) -> ProgramConfig {
        let text = format!("[program.bot]\ncommand = [\"/bin/bot\"]\n{keys}");
        let mut c =
            crate::config::parse_with_env(Path::new("/x/supervisor.toml"), &text, &|_| None)
                .unwrap_or_else(|e| panic!("{e}"));
        c.programs.remove(0)
    }

    fn feeds(actions: &[Action]) -> Vec<&LifeEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Feed(_, e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The health alone, without a daemon: a probe rule is polled while STARTING, its pass is
    /// the program's readiness (an older spawn's result is dropped); once RUNNING the watchdog
    /// is armed, a ping holds it off, its expiry makes the program unhealthy; `STATUS=` is kept
    /// for `status` until the process ends.
    #[test]
    fn probes_make_a_program_ready_and_a_silent_watchdog_unhealthy() {
        let cfg =
            config("ready = { tcp = \"127.0.0.1:9\", interval = \"1s\" }\nwatchdog = \"10s\"\n");
        let mut health = Health::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let pid = Pid::from_raw(4242);
        let starting = State::Starting {
            pid,
            since: t0,
            failed_starts: 0,
            streak: 0,
            extended: None,
        };
        let p = |state| Checked { cfg: &cfg, state };
        health.sync(p(&starting), t0);
        assert_eq!(
            health.deadlines().min(),
            Some(at(1)),
            "the first probe after its interval"
        );
        let due = health.tick([p(&starting)], at(1));
        let [Action::Probe(probe)] = due.as_slice() else {
            panic!("expected one probe, got {} actions", due.len());
        };
        assert_eq!((probe.kind, probe.run), (ProbeKind::Ready, 1));
        assert!(
            health.tick([p(&starting)], at(2)).is_empty(),
            "one at a time"
        );
        let stale = health.result(p(&starting), 0, ProbeKind::Ready, Ok(()), at(2));
        assert!(stale.is_empty(), "an older spawn's result is dropped");
        let ready = health.result(p(&starting), 1, ProbeKind::Ready, Ok(()), at(2));
        assert_eq!(feeds(&ready), [&LifeEvent::Ready]);
        // RUNNING: the watchdog holds from now.
        let running = State::Running {
            pid,
            since: at(2),
            streak: 0,
        };
        health.sync(p(&running), at(2));
        assert_eq!(health.get("bot").and_then(|h| h.healthy), Some(true));
        assert_eq!(health.deadlines().min(), Some(at(12)));
        let said = health.notified(p(&running), 4242, Message::Status("serving".into()), at(5));
        assert!(said.is_empty());
        assert!(
            health
                .notified(p(&running), 4242, Message::Watchdog, at(8))
                .is_empty()
        );
        assert!(
            health.tick([p(&running)], at(12)).is_empty(),
            "pinged at 8 s"
        );
        let expired = health.tick([p(&running)], at(18));
        assert!(
            matches!(expired.as_slice(), [Action::Unhealthy(name, reason)]
                if name == "bot" && reason == "no WATCHDOG=1 within 10s"),
            "{} actions",
            expired.len()
        );
        assert_eq!(
            health.get("bot").and_then(|h| h.describe()).as_deref(),
            Some("serving")
        );
        // The process is gone: what it said goes with it, and nothing is armed.
        health.sync(p(&State::Stopped { last: None }), at(19));
        assert_eq!(health.get("bot").and_then(|h| h.describe()), None);
        assert_eq!(health.deadlines().next(), None);
    }
}
