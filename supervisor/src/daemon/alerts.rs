//! Alerts: what an owner should hear about, raised by the actor as it sees it happen (a program
//! FATAL or out of start budget, restarting in a loop, unhealthy, a deploy that failed, rolled
//! back or was refused, and the recovery after any of these). Each goes on the event stream and
//! into `STATEDIR/alerts.jsonl` (written by a thread of its own, rotated at 1 MiB), and the
//! newest are kept in memory for the `alerts` verb, so a bot that restarts can post what it
//! missed without posting anything twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use supervisor_proto::{Alert, AlertKind, Event, ProgramState, Severity};

use super::Daemon;
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
    seq: u64,
    /// By program name.
    watches: HashMap<String, Watch>,
}

impl Alerts {
    pub fn start(path: PathBuf) -> std::io::Result<Self> {
        let mut recent: Vec<Alert> = crate::jsonl::newest(&path, KEEP);
        recent.reverse();
        let (writer, rx) = mpsc::channel::<Alert>();
        std::thread::Builder::new()
            .name("alerts".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for alert in rx {
                    if let Err(e) = crate::jsonl::append(&path, &alert) {
                        tracing::error!(path = %path.display(), error = %e, "cannot keep an alert");
                    }
                }
            })?;
        Ok(Self {
            recent: recent.into(),
            writer,
            seq: 0,
            watches: HashMap::new(),
        })
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

    /// The newest `limit`, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Alert> {
        self.recent.iter().rev().take(limit).cloned().collect()
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
    pub(super) fn raise(
        &mut self,
        idx: usize,
        kind: AlertKind,
        severity: Severity,
        message: String,
    ) {
        let p = &self.programs[idx];
        let (program, critical) = (p.cfg.name.to_string(), p.cfg.critical);
        self.raise_about(program, critical, kind, severity, message);
    }

    /// An alert about `program` (a program's name, or a client's subject for `raise`): on the
    /// event stream, in memory and on disk.
    pub(super) fn raise_about(
        &mut self,
        program: String,
        critical: bool,
        kind: AlertKind,
        severity: Severity,
        message: String,
    ) -> Alert {
        let now = SystemTime::now();
        self.alerts.seq += 1;
        let alert = Alert {
            id: format!("{}-{}-{}", unix_ms(now), program, self.alerts.seq),
            program,
            kind,
            severity,
            message,
            at_ms: unix_ms(now),
            critical,
        };
        tracing::warn!(program = %alert.program, kind = %kind, severity = %severity, message = %alert.message, "alert");
        let _ = self.alerts.writer.send(alert.clone());
        self.alerts.recent.push_back(alert.clone());
        while self.alerts.recent.len() > KEEP {
            self.alerts.recent.pop_front();
        }
        let _ = self
            .events
            .send(std::sync::Arc::new(Event::Alert(alert.clone())));
        alert
    }

    /// After a state change of program `idx` (from `from`).
    pub(super) fn alert_on_change(&mut self, idx: usize, from: ProgramState) {
        let now = Instant::now();
        let p = &self.programs[idx];
        let name = p.cfg.name.to_string();
        let w = self.alerts.watch(&name);
        match &p.state {
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
                ) && !self.deploys.runs(&name) =>
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
                    self.raise(
                        idx,
                        AlertKind::CrashLoop,
                        Severity::Warning,
                        format!(
                            "{name} restarted {n} times in {} (last: {last})",
                            crate::config::units::format_duration(LOOP_WINDOW)
                        ),
                    );
                }
            }
            State::Running { .. } => {
                if w.trouble.is_some() {
                    let stable = p.cfg.policy.backoff.reset.min(STABLE_AT_MOST);
                    w.recover_at = Some(crate::lifecycle::later(now, stable));
                }
            }
            _ => w.recover_at = None,
        }
    }

    /// When a program in trouble will have stayed RUNNING long enough.
    pub(super) fn alert_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.alerts
            .watches
            .values()
            .flat_map(|w| [w.recover_at, w.fatal_at])
            .flatten()
    }

    /// Recoveries whose time has come.
    /// A FATAL program's reason with its last words: the newer of what it last sent as
    /// `STATUS=` and its last stderr line (`exited with fatal exit code 78: DISCORD_TOKEN is
    /// not set`).
    fn amend_fatal_reason(&mut self, idx: usize) {
        let status = self
            .alerts
            .watched(self.programs[idx].cfg.name.as_str())
            .and_then(|w| w.fatal_status.take());
        let p = &mut self.programs[idx];
        let line = self
            .health
            .of(p.cfg.name.as_str())
            .last_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let line = line.1.map(|at| (line.0, at));
        // Both are read by tasks of their own, in no set order: a line read within this of a
        // `STATUS=` may have been written after it, and an error line is a program's last word.
        const TOGETHER: Duration = Duration::from_millis(100);
        let said = match (status, line) {
            (Some(s), Some(l)) => Some(if l.1 + TOGETHER > s.1 { l.0 } else { s.0 }),
            (s, l) => s.or(l).map(|(text, _)| text),
        };
        if let (State::Fatal { reason }, Some(said)) = (&mut p.state, said) {
            if !said.is_empty() && !reason.contains(said.as_str()) {
                *reason = format!("{reason}: {said}");
            }
        }
    }

    /// The FATAL alert, once the program's last words are in: its reason then carries them.
    fn raise_fatal(&mut self, idx: usize) {
        self.amend_fatal_reason(idx);
        let p = &self.programs[idx];
        let State::Fatal { reason } = &p.state else {
            return;
        };
        let (name, reason) = (p.cfg.name.to_string(), reason.clone());
        let budget = p
            .cfg
            .policy
            .start_limit
            .as_ref()
            .is_some_and(|l| reason.starts_with(&crate::lifecycle::budget_reason(l)));
        let kind = if budget {
            AlertKind::StartLimit
        } else {
            AlertKind::Fatal
        };
        self.raise(
            idx,
            kind,
            Severity::Critical,
            format!("{name} is FATAL: {reason}"),
        );
    }

    /// Before the supervisor exits: FATAL alerts still waiting for last words go out now.
    pub(super) fn flush_fatal_alerts(&mut self) {
        for idx in 0..self.programs.len() {
            let name = self.programs[idx].cfg.name.as_str();
            let settling = self.alerts.watched(name).and_then(|w| w.fatal_at.take());
            if settling.is_some() && matches!(self.programs[idx].state, State::Fatal { .. }) {
                self.raise_fatal(idx);
            }
        }
    }

    pub(super) fn alert_tick(&mut self, now: Instant) {
        for idx in 0..self.programs.len() {
            let name = self.programs[idx].cfg.name.as_str();
            let due = self
                .alerts
                .watched(name)
                .and_then(|w| w.fatal_at.take_if(|t| *t <= now));
            if due.is_some() && matches!(self.programs[idx].state, State::Fatal { .. }) {
                self.raise_fatal(idx);
            }
        }
        for idx in 0..self.programs.len() {
            let p = &self.programs[idx];
            let Some(w) = self.alerts.watched(p.cfg.name.as_str()) else {
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
            let name = p.cfg.name.to_string();
            let down = now.duration_since(since).as_secs();
            let after = if down >= 120 {
                format!("{} min", down / 60)
            } else {
                format!("{down} s")
            };
            self.raise(
                idx,
                AlertKind::Recovered,
                Severity::Info,
                format!("{name} is RUNNING again after {after} (it was {what})"),
            );
        }
    }

    /// A liveness check or the watchdog found program `idx` unhealthy.
    pub(super) fn alert_unhealthy(&mut self, idx: usize, reason: &str) {
        let name = self.programs[idx].cfg.name.to_string();
        self.alerts
            .watch(&name)
            .trouble
            .get_or_insert((Instant::now(), "unhealthy".into()));
        self.raise(
            idx,
            AlertKind::Unhealthy,
            Severity::Warning,
            format!("{name} is unhealthy and restarted: {reason}"),
        );
    }
}
