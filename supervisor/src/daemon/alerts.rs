//! Alerts: what an owner should hear about, raised by the actor as it sees it happen (a program
//! FATAL or out of start budget, restarting in a loop, unhealthy, a deploy that failed, rolled
//! back or was refused, and the recovery after any of these). Each goes on the event stream and
//! into `STATEDIR/alerts.jsonl` (written by a thread of its own, rotated at 1 MiB), and the
//! newest are kept in memory for the `alerts` verb, so a bot that restarts can post what it
//! missed without posting anything twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use supervisor_proto::{Alert, AlertKind, Event, ProgramState, Severity};
use tokio::sync::broadcast;

use super::Daemon;
use super::program::Program;
use crate::config::health::StartLimit;
use crate::lifecycle::State;
use crate::status::unix_ms;

/// Alerts kept in memory (and read back at start).
const KEEP: usize = 200;
/// A crash loop: this many restarts within [`LOOP_WINDOW`].
const LOOP_RESTARTS: usize = 5;
const LOOP_WINDOW: Duration = Duration::from_secs(600);

/// The supervisor's recent alerts, the thread that keeps them on disk, and what it remembers
/// of each program to raise them.
#[derive(Debug)]
pub(super) struct Alerts {
    recent: VecDeque<Alert>,
    writer: mpsc::Sender<Alert>,
    /// Resolves once the writer thread has written every alert it was given.
    written: tokio::sync::oneshot::Receiver<()>,
    events: broadcast::Sender<Arc<Event>>,
    seq: u64,
    /// By program name.
    watches: HashMap<String, Watch>,
}

impl Alerts {
    pub fn start(path: PathBuf, events: broadcast::Sender<Arc<Event>>) -> std::io::Result<Self> {
        let mut recent: Vec<Alert> = crate::jsonl::newest(&path, KEEP);
        recent.reverse();
        let (writer, rx) = mpsc::channel::<Alert>();
        let (done, written) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("alerts".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for alert in rx {
                    if let Err(e) = crate::jsonl::append(&path, &alert) {
                        tracing::error!(path = %path.display(), error = %e, "cannot keep an alert");
                    }
                }
                let _ = done.send(());
            })?;
        Ok(Self {
            recent: recent.into(),
            writer,
            written,
            events,
            seq: 0,
            watches: HashMap::new(),
        })
    }

    /// Takes no more alerts; what it returns resolves once those taken are on disk (so that
    /// the supervisor does not exit with an alert still in the writer's queue).
    pub fn close(self) -> tokio::sync::oneshot::Receiver<()> {
        self.written
    }

    /// What is remembered of `program`, to change it (made on its first state change).
    pub fn watch(&mut self, program: &str) -> &mut Watch {
        self.watches.entry(program.to_owned()).or_default()
    }

    /// What is remembered of `program`, if anything (a program never in trouble has nothing).
    fn watched(&mut self, program: &str) -> Option<&mut Watch> {
        self.watches.get_mut(program)
    }

    /// Forgets the programs no longer configured; a program added anew starts afresh.
    pub fn keep_only(&mut self, programs: &HashSet<&str>) {
        self.watches
            .retain(|name, _| programs.contains(name.as_str()));
    }

    /// An alert about `subject` (a program's name, or a client's subject for `raise`): on the
    /// event stream, in memory and on disk.
    pub fn raise(
        &mut self,
        subject: String,
        critical: bool,
        kind: AlertKind,
        severity: Severity,
        message: String,
    ) -> Alert {
        let now = SystemTime::now();
        self.seq += 1;
        let alert = Alert {
            id: format!("{}-{}-{}", unix_ms(now), subject, self.seq),
            program: subject,
            kind,
            severity,
            message,
            at_ms: unix_ms(now),
            critical,
        };
        tracing::warn!(program = %alert.program, kind = %kind, severity = %severity, message = %alert.message, "alert");
        let _ = self.writer.send(alert.clone());
        self.recent.push_back(alert.clone());
        while self.recent.len() > KEEP {
            self.recent.pop_front();
        }
        let _ = self.events.send(Arc::new(Event::Alert(alert.clone())));
        alert
    }

    fn about(&mut self, p: &Seen<'_>, kind: AlertKind, severity: Severity, message: String) {
        self.raise(p.name.to_owned(), p.critical, kind, severity, message);
    }

    /// After a state change of program `p` (from `from`); `deploying`: a deploy of it runs.
    pub fn on_change(&mut self, p: &Seen<'_>, from: ProgramState, deploying: bool, now: Instant) {
        let name = p.name.to_owned();
        let w = self.watch(&name);
        match p.state {
            State::Fatal { .. } => {
                w.trouble = Some((now, "FATAL".into()));
                w.fatal_at = Some(now + FATAL_SETTLE);
            }
            // A restart: after an exit or failed start, waiting or spawning again. Not while a
            // deploy runs: the new version's failure is the deploy's (rolled back, alerted as
            // such), not a crash loop of the program.
            State::Backoff { last, .. }
                if matches!(
                    from,
                    ProgramState::Running | ProgramState::Starting | ProgramState::Stopping
                ) && !deploying =>
            {
                let last = last.to_string();
                w.restarts.push_back(now);
                while w
                    .restarts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > LOOP_WINDOW)
                {
                    w.restarts.pop_front();
                }
                let looping = w.restarts.len() >= LOOP_RESTARTS
                    && w.loop_alerted
                        .is_none_or(|t| now.duration_since(t) > LOOP_WINDOW);
                if looping {
                    w.loop_alerted = Some(now);
                    w.trouble
                        .get_or_insert((now, "restarting in a loop".into()));
                    let n = w.restarts.len();
                    let message = format!(
                        "{name} restarted {n} times in {} (last: {last})",
                        crate::config::units::format_duration(LOOP_WINDOW)
                    );
                    self.about(p, AlertKind::CrashLoop, Severity::Warning, message);
                }
            }
            State::Running { .. } => {
                if w.trouble.is_some() {
                    let stable = p.reset.min(STABLE_AT_MOST);
                    w.recover_at = Some(crate::lifecycle::later(now, stable));
                }
            }
            _ => w.recover_at = None,
        }
    }

    /// When a program in trouble will have stayed RUNNING long enough, or a FATAL alert's
    /// wait for last words ends.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.watches
            .values()
            .flat_map(|w| [w.recover_at, w.fatal_at])
            .flatten()
    }

    /// Whether a FATAL alert still waits for its program's last words.
    pub fn fatal_pending(&self) -> bool {
        self.watches.values().any(|w| w.fatal_at.is_some())
    }

    /// Whether the FATAL alert of `program` is due (`now`; `None`: at once, at exit); it is
    /// then taken, to be raised once.
    pub fn fatal_due(&mut self, program: &str, now: Option<Instant>) -> bool {
        self.watched(program)
            .and_then(|w| w.fatal_at.take_if(|t| now.is_none_or(|now| *t <= now)))
            .is_some()
    }

    /// The FATAL alert, once the program's last words are in its reason.
    pub fn fatal(&mut self, p: &Seen<'_>) {
        let State::Fatal { reason } = p.state else {
            return;
        };
        let budget = p
            .start_limit
            .is_some_and(|l| reason.starts_with(&crate::lifecycle::budget_reason(l)));
        let kind = if budget {
            AlertKind::StartLimit
        } else {
            AlertKind::Fatal
        };
        let message = format!("{} is FATAL: {reason}", p.name);
        self.about(p, kind, Severity::Critical, message);
    }

    /// Recoveries whose time has come.
    pub fn recoveries(&mut self, programs: &[Seen<'_>], now: Instant) {
        for p in programs {
            let Some(w) = self.watched(p.name) else {
                continue;
            };
            if w.recover_at.is_none_or(|t| t > now) {
                continue;
            }
            w.recover_at = None;
            if !matches!(p.state, State::Running { .. }) {
                continue;
            }
            let Some((since, what)) = w.trouble.take() else {
                continue;
            };
            let down = now.duration_since(since).as_secs();
            let after = if down >= 120 {
                format!("{} min", down / 60)
            } else {
                format!("{down} s")
            };
            let message = format!("{} is RUNNING again after {after} (it was {what})", p.name);
            self.about(p, AlertKind::Recovered, Severity::Info, message);
        }
    }

    /// A liveness check, the watchdog or a ceiling found program `p` unhealthy.
    pub fn unhealthy(&mut self, p: &Seen<'_>, reason: &str) {
        let name = p.name.to_owned();
        self.watch(&name)
            .trouble
            .get_or_insert((Instant::now(), "unhealthy".into()));
        let message = format!("{name} is unhealthy and restarted: {reason}");
        self.about(p, AlertKind::Unhealthy, Severity::Warning, message);
    }

    /// The newest `limit`, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Alert> {
        self.recent.iter().rev().take(limit).cloned().collect()
    }
}

/// A program as the alerts see it.
pub(super) struct Seen<'a> {
    pub name: &'a str,
    pub critical: bool,
    pub state: &'a State,
    /// Its `backoff.reset`: how long a run must last to be stable.
    pub reset: Duration,
    pub start_limit: Option<&'a StartLimit>,
}

pub(super) fn seen(p: &Program) -> Seen<'_> {
    Seen {
        name: p.cfg.name.as_str(),
        critical: p.cfg.critical,
        state: &p.state,
        reset: p.cfg.policy.backoff.reset,
        start_limit: p.cfg.policy.start_limit.as_ref(),
    }
}

/// What the actor remembers per program to raise alerts.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Since when, and why, the program has been in trouble (for the recovery alert).
    trouble: Option<(Instant, String)>,
    /// Recent restarts, for the crash-loop alert.
    restarts: VecDeque<Instant>,
    loop_alerted: Option<Instant>,
    /// RUNNING again after trouble: recovered if it is still RUNNING then.
    recover_at: Option<Instant>,
    /// FATAL: the alert goes out then, once the program's last words have arrived.
    fatal_at: Option<Instant>,
    /// What it last sent as `STATUS=` before it went FATAL, and when.
    pub(super) fatal_status: Option<(String, Instant)>,
}

/// How long a FATAL alert waits for the program's last output line, which may still be in its
/// pipe when its exit is reaped (the capture gathers for 2 ms at most).
const FATAL_SETTLE: Duration = Duration::from_millis(50);

/// How long a program in trouble must stay RUNNING to count as recovered: its `backoff.reset`
/// (a stable run), at most this.
const STABLE_AT_MOST: Duration = Duration::from_secs(60);

impl Daemon {
    /// An alert about program `idx`.
    pub(super) fn raise(
        &mut self,
        idx: usize,
        kind: AlertKind,
        severity: Severity,
        message: String,
    ) {
        self.alerts
            .about(&seen(&self.programs[idx]), kind, severity, message);
    }

    /// A FATAL program's reason with its last words: the newer of what it last sent as
    /// `STATUS=` and its last stderr line (`exited with fatal exit code 78: DISCORD_TOKEN is
    /// not set`). The reason is the program's state, so the core amends it; then the alert.
    fn raise_fatal(&mut self, idx: usize) {
        let p = &mut self.programs[idx];
        let name = p.cfg.name.as_str();
        let status = self
            .alerts
            .watched(name)
            .and_then(|w| w.fatal_status.take());
        let line = self
            .health
            .of(name)
            .last_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let line = line.1.map(|at| (line.0, at));
        if let (State::Fatal { reason }, Some(said)) = (&mut p.state, last_words(status, line)) {
            if !said.is_empty() && !reason.contains(said.as_str()) {
                *reason = format!("{reason}: {said}");
            }
        }
        self.alerts.fatal(&seen(&self.programs[idx]));
    }

    /// FATAL alerts whose wait for last words is over (`now`; `None`: at once, before the
    /// supervisor exits), then recoveries whose time has come.
    pub(super) fn alert_tick(&mut self, now: Option<Instant>) {
        for idx in 0..self.programs.len() {
            let p = &self.programs[idx];
            let fatal = matches!(p.state, State::Fatal { .. });
            if self.alerts.fatal_due(p.cfg.name.as_str(), now) && fatal {
                self.raise_fatal(idx);
            }
        }
        if let Some(now) = now {
            let programs: Vec<Seen<'_>> = self.programs.iter().map(seen).collect();
            self.alerts.recoveries(&programs, now);
        }
    }
}

/// Of what a program last sent as `STATUS=` and its last stderr line, each with when it came:
/// the newer. Both are read by tasks of their own, in no set order: a line read within 100 ms
/// of a `STATUS=` may have been written after it, and an error line is a program's last word.
fn last_words(
    status: Option<(String, Instant)>,
    line: Option<(String, Instant)>,
) -> Option<String> {
    const TOGETHER: Duration = Duration::from_millis(100);
    match (status, line) {
        (Some(s), Some(l)) => Some(if l.1 + TOGETHER > s.1 { l.0 } else { s.0 }),
        (s, l) => s.or(l).map(|(text, _)| text),
    }
}

#[cfg(test)]
mod tests {
    use nix::unistd::Pid;

    use super::*;
    use crate::lifecycle::ExitReason;

    fn bot<'a>(state: &'a State, limit: Option<&'a StartLimit>) -> Seen<'a> {
        Seen {
            name: "bot",
            critical: true,
            state,
            reset: Duration::from_secs(30),
            start_limit: limit,
        }
    }

    /// The alerts alone, without a daemon: five restarts within ten minutes are one crash-loop
    /// alert (none while a deploy runs); RUNNING after trouble is a recovery once the run is
    /// stable, not before; a FATAL alert waits for last words and says when the start budget
    /// ran out. Each reaches the event stream and the `alerts` verb.
    #[test]
    fn restarts_fatal_and_recovery_are_each_alerted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (events, mut rx) = broadcast::channel(64);
        let mut alerts = Alerts::start(dir.path().join("alerts.jsonl"), events).unwrap();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let backoff = State::Backoff {
            until: t0,
            failed_starts: 0,
            streak: 0,
            last: ExitReason::Exited(1),
        };
        for s in 0..4 {
            alerts.on_change(&bot(&backoff, None), ProgramState::Running, false, at(s));
        }
        // A deploy's failing version is the deploy's to alert of.
        alerts.on_change(&bot(&backoff, None), ProgramState::Running, true, at(4));
        assert!(alerts.newest(10).is_empty());
        alerts.on_change(&bot(&backoff, None), ProgramState::Running, false, at(5));
        alerts.on_change(&bot(&backoff, None), ProgramState::Running, false, at(6));
        let kinds = |a: &Alerts| a.newest(10).iter().map(|a| a.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&alerts), [AlertKind::CrashLoop], "once per window");
        assert!(
            alerts.newest(1)[0]
                .message
                .starts_with("bot restarted 5 times in 10m (last: ")
        );
        // RUNNING again: recovered once it has run for its `backoff.reset`.
        let running = State::Running {
            pid: Pid::from_raw(7),
            since: at(7),
            streak: 0,
        };
        alerts.on_change(&bot(&running, None), ProgramState::Starting, false, at(7));
        assert_eq!(alerts.deadlines().min(), Some(at(37)));
        alerts.recoveries(&[bot(&running, None)], at(36));
        assert_eq!(kinds(&alerts).len(), 1, "not stable yet");
        alerts.recoveries(&[bot(&running, None)], at(37));
        assert_eq!(kinds(&alerts)[0], AlertKind::Recovered);
        assert_eq!(alerts.deadlines().next(), None);
        // FATAL: due after the settle time, then the alert names the start budget.
        let limit = StartLimit {
            burst: 3,
            interval: Duration::from_secs(60),
        };
        let fatal = State::Fatal {
            reason: crate::lifecycle::budget_reason(&limit),
        };
        alerts.on_change(
            &bot(&fatal, Some(&limit)),
            ProgramState::Backoff,
            false,
            at(40),
        );
        assert!(!alerts.fatal_due("bot", Some(at(40))));
        assert!(alerts.fatal_due("bot", Some(at(41))));
        assert!(!alerts.fatal_due("bot", None), "taken once");
        alerts.fatal(&bot(&fatal, Some(&limit)));
        let newest = &alerts.newest(1)[0];
        assert_eq!(
            (newest.kind, newest.severity),
            (AlertKind::StartLimit, Severity::Critical)
        );
        assert!(newest.critical);
        let mut streamed = 0;
        while let Ok(event) = rx.try_recv() {
            assert!(matches!(*event, Event::Alert(_)));
            streamed += 1;
        }
        assert_eq!(streamed, 3);
    }

    #[test]
    fn the_newer_of_status_and_last_line_is_the_last_word() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        let status = |at| Some(("STATUS".to_owned(), at));
        let line = |at| Some(("line".to_owned(), at));
        assert_eq!(last_words(status(t), line(later)).as_deref(), Some("line"));
        assert_eq!(
            last_words(status(later), line(t)).as_deref(),
            Some("STATUS")
        );
        // Read by two tasks in no set order: a line within 100 ms counts as the later one.
        let near = t + Duration::from_millis(50);
        assert_eq!(last_words(status(near), line(t)).as_deref(), Some("line"));
        assert_eq!(last_words(None, line(t)).as_deref(), Some("line"));
        assert_eq!(last_words(None, None), None);
    }
}
