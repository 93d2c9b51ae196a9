//! A program's lifecycle as a pure state machine: state + event + now → new state + effect.
//!
//! States carry their own data and are named as supervisord names them. Nothing here reads a
//! clock or touches a process: the daemon performs the returned [`Effect`] and feeds back what
//! happened as the next [`Event`] (a spawn's pid, a reaped exit, a timer that fired).
//!
//! Why this file is past 600 lines: the one `transition` function covers every (state, event)
//! pair, readiness and restarts-after-stop included, in one place, as its table test does.

use std::fmt;
use std::time::{Duration, Instant};
use supervisor_proto::ProgramState;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::backoff::delay;
use crate::config::AutoRestart;
pub use crate::config::Policy;
use crate::config::health::StartLimit;
use crate::config::units::signal_name;

/// Why a process is no longer running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    Exited(i32),
    Killed(Signal),
    /// It never ran: fork, credentials, directory or exec failed; the OS error as text.
    SpawnFailed(String),
    /// It was stopped because it did not become ready within `ready_timeout`.
    NotReady(Duration),
    /// As `NotReady`, for a program waited on for a log line that wrote nothing at all: its
    /// output is probably held in its own buffer (Python's `print()` to a pipe).
    NotReadySilent(Duration),
    /// It was stopped because a liveness check or its watchdog failed; what failed.
    Unhealthy(String),
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exit status {code}"),
            ExitReason::Killed(sig) => write!(f, "terminated by SIG{}", signal_name(*sig)),
            ExitReason::SpawnFailed(e) => write!(f, "spawn error: {e}"),
            ExitReason::NotReady(after) => {
                write!(
                    f,
                    "not ready after {}",
                    crate::config::units::format_duration(*after)
                )
            }
            ExitReason::NotReadySilent(after) => write!(
                f,
                "not ready after {}, and it wrote nothing: its output may be buffered (Python: PYTHONUNBUFFERED=1)",
                crate::config::units::format_duration(*after)
            ),
            ExitReason::Unhealthy(what) => write!(f, "unhealthy: {what}"),
        }
    }
}

/// Where a program is in its life. `failed_starts` counts consecutive exits before `startsecs`
/// (against `startretries`); `streak` counts consecutive restarts without a stable run (for the
/// backoff delay).
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running, by configuration or request.
    Stopped { last: Option<ExitReason> },
    /// A spawn was asked for and its result is not yet known (never seen outside the daemon).
    Spawning { failed_starts: u32, streak: u32 },
    /// Up, but not yet for `startsecs`, or not yet ready. `extended` is a later readiness
    /// deadline the program asked for (`EXTEND_TIMEOUT_USEC=`).
    Starting {
        pid: Pid,
        since: Instant,
        failed_starts: u32,
        streak: u32,
        extended: Option<Instant>,
    },
    Running {
        pid: Pid,
        since: Instant,
        streak: u32,
    },
    /// Waiting to respawn after a failure.
    Backoff {
        until: Instant,
        failed_starts: u32,
        streak: u32,
        last: ExitReason,
    },
    /// Stop signal sent to the process group; waiting for the group to be empty. The leader's
    /// exit is `last` once reaped; `deadline` is when SIGKILL follows (`None` once sent);
    /// `then` is what follows once the group is gone.
    Stopping {
        pid: Pid,
        deadline: Option<Instant>,
        last: Option<ExitReason>,
        then: Then,
    },
    /// Ended on its own and is not restarted (`expected`: the exit code was in `exitcodes`).
    Exited {
        at: Instant,
        reason: ExitReason,
        expected: bool,
    },
    /// Gave up: too many failed starts, or a fatal exit code. Only a `start` request leaves it.
    Fatal { reason: String },
}

/// What a stopping program does once its process group is gone.
#[derive(Clone, Debug, PartialEq)]
pub enum Then {
    /// Stays stopped (a request, or shutdown).
    Stop,
    /// It did not become ready: a failed start, counted against `startretries`.
    Retry {
        failed_starts: u32,
        streak: u32,
        reason: ExitReason,
    },
    /// It was unhealthy while RUNNING: restarted like a crash (backoff applies).
    Restart { streak: u32, reason: ExitReason },
}

/// Something that happened to a program.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Start requested by a client or a deploy: not bound by `start_limit`.
    Start,
    /// Started because of `autostart` (or `depends_on` catching up): bound by `start_limit`.
    AutoStart,
    /// Stop requested (a client or shutdown).
    Stop,
    Spawned(Pid),
    SpawnFailed(String),
    /// The process `pid` was reaped.
    Exited {
        pid: Pid,
        reason: ExitReason,
    },
    /// No process is left in the stopping program's group.
    GroupGone,
    /// A timer fired; acts only on a deadline that `now` has reached.
    Tick,
    /// The program is ready (`READY=1`, its log line, its probe passed).
    Ready,
    /// A liveness check or the watchdog failed; what failed.
    Unhealthy(String),
    /// The program asks for more time to become ready or to stop (`EXTEND_TIMEOUT_USEC=`).
    ExtendTimeout(Duration),
}

/// What the daemon must do after a transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Spawn,
    /// Send a signal to the process group led by this pid.
    SignalGroup(Pid, Signal),
    /// Check whether the group led by this pid still has members; answer with `GroupGone`.
    ProbeGroup(Pid),
}

/// What the transition may know besides the state and the event.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub now: Instant,
    /// During shutdown nothing is restarted.
    pub shutting_down: bool,
    /// A random sample in -1.0..=1.0 that scales the backoff jitter.
    pub jitter: f64,
    /// `start_limit` allows no further spawn now (automatic spawns become FATAL).
    pub start_budget_spent: bool,
}

/// `at + d`, or a moment as far ahead as the clock allows: a deadline never overflows (the
/// configuration bounds durations too; this holds whatever a caller passes).
pub fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

pub const TOO_QUICK: &str = "Exited too quickly (process log may have details)";

/// The FATAL reason when `start_limit` stops a program.
pub fn budget_reason(limit: &StartLimit) -> String {
    format!(
        "started {} times in {}: start_limit reached; `supervisor start` tries again",
        limit.burst,
        crate::config::units::format_duration(limit.interval)
    )
}

impl State {
    pub fn initial() -> Self {
        State::Stopped { last: None }
    }

    /// supervisord's name for the state.
    pub fn name(&self) -> ProgramState {
        match self {
            State::Stopped { .. } => ProgramState::Stopped,
            State::Spawning { .. } | State::Starting { .. } => ProgramState::Starting,
            State::Running { .. } => ProgramState::Running,
            State::Backoff { .. } => ProgramState::Backoff,
            State::Stopping { .. } => ProgramState::Stopping,
            State::Exited { .. } => ProgramState::Exited,
            State::Fatal { .. } => ProgramState::Fatal,
        }
    }

    /// The pid of the process group leader, while there is one to signal.
    pub fn pid(&self) -> Option<Pid> {
        match self {
            State::Starting { pid, .. } | State::Running { pid, .. } => Some(*pid),
            State::Stopping {
                pid, last: None, ..
            } => Some(*pid),
            _ => None,
        }
    }

    /// True while a process of this program may be alive.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            State::Spawning { .. }
                | State::Starting { .. }
                | State::Running { .. }
                | State::Stopping { .. }
        )
    }

    /// When this state wants a [`Event::Tick`].
    pub fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self {
            State::Starting {
                since, extended, ..
            } => Some(match (policy.ready_timeout, extended) {
                (None, _) => later(*since, policy.startsecs),
                (Some(t), None) => later(*since, t),
                (Some(t), Some(e)) => later(*since, t).max(*e),
            }),
            State::Backoff { until, .. } => Some(*until),
            State::Stopping { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

/// The lifecycle: one pure function.
pub fn transition(
    state: &State,
    event: &Event,
    policy: &Policy,
    cx: Context,
) -> (State, Option<Effect>) {
    use Event as E;
    use State as S;
    let now = cx.now;
    let stay = || (state.clone(), None);
    match (state, event) {
        (S::Stopped { .. } | S::Exited { .. } | S::Fatal { .. } | S::Backoff { .. }, E::Start) => {
            if cx.shutting_down {
                return stay();
            }
            (
                S::Spawning {
                    failed_starts: 0,
                    streak: 0,
                },
                Some(Effect::Spawn),
            )
        }
        (S::Stopped { .. } | S::Exited { .. }, E::AutoStart) => {
            if cx.shutting_down {
                return stay();
            }
            spawn(0, 0, policy, cx)
        }
        (S::Spawning { streak, .. }, E::Spawned(pid))
            if policy.startsecs.is_zero() && policy.ready_timeout.is_none() =>
        {
            (
                S::Running {
                    pid: *pid,
                    since: now,
                    streak: *streak,
                },
                None,
            )
        }
        (
            S::Spawning {
                failed_starts,
                streak,
            },
            E::Spawned(pid),
        ) => (
            S::Starting {
                pid: *pid,
                since: now,
                failed_starts: *failed_starts,
                streak: *streak,
                extended: None,
            },
            None,
        ),
        (
            S::Spawning {
                failed_starts,
                streak,
            },
            E::SpawnFailed(error),
        ) => failed_start(
            *failed_starts,
            *streak,
            ExitReason::SpawnFailed(error.clone()),
            policy,
            cx,
        ),
        (S::Starting { .. }, E::Tick) if state.deadline(policy).is_some_and(|d| now >= d) => {
            let S::Starting {
                pid,
                since,
                failed_starts,
                streak,
                ..
            } = state
            else {
                return stay();
            };
            match policy.ready_timeout {
                None => (
                    S::Running {
                        pid: *pid,
                        since: *since,
                        streak: *streak,
                    },
                    None,
                ),
                Some(timeout) => stop(
                    *pid,
                    Then::Retry {
                        failed_starts: *failed_starts,
                        streak: *streak,
                        reason: ExitReason::NotReady(timeout),
                    },
                    policy,
                    now,
                ),
            }
        }
        (S::Starting { pid, streak, .. }, E::Ready) if policy.ready_timeout.is_some() => (
            S::Running {
                pid: *pid,
                since: now,
                streak: *streak,
            },
            None,
        ),
        (
            S::Starting {
                pid,
                since,
                failed_starts,
                streak,
                ..
            },
            E::ExtendTimeout(more),
        ) if policy.ready_timeout.is_some() => (
            S::Starting {
                pid: *pid,
                since: *since,
                failed_starts: *failed_starts,
                streak: *streak,
                extended: Some(later(now, *more)),
            },
            None,
        ),
        (
            S::Starting {
                pid,
                failed_starts,
                streak,
                ..
            },
            E::Unhealthy(what),
        ) => stop(
            *pid,
            Then::Retry {
                failed_starts: *failed_starts,
                streak: *streak,
                reason: ExitReason::Unhealthy(what.clone()),
            },
            policy,
            now,
        ),
        (
            S::Starting {
                pid,
                failed_starts,
                streak,
                ..
            },
            E::Exited { pid: p, reason },
        ) if p == pid => match fatal_code(reason, policy) {
            Some(fatal) => (S::Fatal { reason: fatal }, None),
            None => failed_start(*failed_starts, *streak, reason.clone(), policy, cx),
        },
        (S::Running { pid, since, streak }, E::Exited { pid: p, reason }) if p == pid => {
            if let Some(fatal) = fatal_code(reason, policy) {
                return (S::Fatal { reason: fatal }, None);
            }
            let expected = matches!(reason, ExitReason::Exited(c) if policy.exitcodes.contains(c));
            let restart = match policy.autorestart {
                AutoRestart::Always => true,
                AutoRestart::Never => false,
                AutoRestart::Unexpected => !expected,
            };
            if !restart || cx.shutting_down {
                return (
                    S::Exited {
                        at: now,
                        reason: reason.clone(),
                        expected,
                    },
                    None,
                );
            }
            respawn(
                0,
                next_streak(*since, *streak, policy, now),
                reason.clone(),
                policy,
                cx,
            )
        }
        (S::Running { pid, since, streak }, E::Unhealthy(what)) => stop(
            *pid,
            Then::Restart {
                streak: next_streak(*since, *streak, policy, now),
                reason: ExitReason::Unhealthy(what.clone()),
            },
            policy,
            now,
        ),
        (
            S::Backoff {
                until,
                failed_starts,
                streak,
                ..
            },
            E::Tick,
        ) if now >= *until && !cx.shutting_down => spawn(*failed_starts, *streak, policy, cx),
        (S::Starting { pid, .. } | S::Running { pid, .. }, E::Stop) => {
            stop(*pid, Then::Stop, policy, now)
        }
        (S::Backoff { last, .. }, E::Stop) => (
            S::Stopped {
                last: Some(last.clone()),
            },
            None,
        ),
        // A stop request while stopping for a restart: it stays stopped.
        (
            S::Stopping {
                pid,
                deadline,
                last,
                then,
            },
            E::Stop,
        ) if *then != Then::Stop => (
            S::Stopping {
                pid: *pid,
                deadline: *deadline,
                last: last.clone(),
                then: Then::Stop,
            },
            None,
        ),
        (
            S::Stopping {
                pid,
                deadline: Some(deadline),
                last,
                then,
            },
            E::ExtendTimeout(more),
        ) => (
            S::Stopping {
                pid: *pid,
                deadline: Some((*deadline).max(later(now, *more))),
                last: last.clone(),
                then: then.clone(),
            },
            None,
        ),
        (
            S::Stopping {
                pid,
                deadline,
                last: None,
                then,
            },
            E::Exited { pid: p, reason },
        ) if p == pid => (
            S::Stopping {
                pid: *pid,
                deadline: *deadline,
                last: Some(reason.clone()),
                then: then.clone(),
            },
            Some(Effect::ProbeGroup(*pid)),
        ),
        (
            S::Stopping {
                last: Some(last),
                then,
                ..
            },
            E::GroupGone,
        ) => match then {
            Then::Stop => (
                S::Stopped {
                    last: Some(last.clone()),
                },
                None,
            ),
            Then::Retry {
                failed_starts,
                streak,
                reason,
            } => failed_start(*failed_starts, *streak, reason.clone(), policy, cx),
            Then::Restart { reason, .. }
                if cx.shutting_down || policy.autorestart == AutoRestart::Never =>
            {
                (
                    S::Exited {
                        at: now,
                        reason: reason.clone(),
                        expected: false,
                    },
                    None,
                )
            }
            Then::Restart { streak, reason } => respawn(0, *streak, reason.clone(), policy, cx),
        },
        (
            S::Stopping {
                pid,
                deadline: Some(deadline),
                last,
                then,
            },
            E::Tick,
        ) if now >= *deadline => (
            S::Stopping {
                pid: *pid,
                deadline: None,
                last: last.clone(),
                then: then.clone(),
            },
            Some(Effect::SignalGroup(*pid, Signal::SIGKILL)),
        ),
        _ => stay(),
    }
}

/// Sends the stop signal to the group; SIGKILL follows after `stopwaitsecs`.
fn stop(pid: Pid, then: Then, policy: &Policy, now: Instant) -> (State, Option<Effect>) {
    (
        State::Stopping {
            pid,
            deadline: Some(later(now, policy.stopwaitsecs)),
            last: None,
            then,
        },
        Some(Effect::SignalGroup(pid, policy.stopsignal)),
    )
}

/// The restart streak after a run that began at `since`: reset by a stable run.
fn next_streak(since: Instant, streak: u32, policy: &Policy, now: Instant) -> u32 {
    let stable = now.saturating_duration_since(since) >= policy.backoff.reset;
    if stable { 0 } else { streak + 1 }
}

/// An automatic spawn, unless `start_limit` is spent.
fn spawn(failed_starts: u32, streak: u32, policy: &Policy, cx: Context) -> (State, Option<Effect>) {
    match &policy.start_limit {
        Some(limit) if cx.start_budget_spent => (
            State::Fatal {
                reason: budget_reason(limit),
            },
            None,
        ),
        _ => (
            State::Spawning {
                failed_starts,
                streak,
            },
            Some(Effect::Spawn),
        ),
    }
}

fn fatal_code(reason: &ExitReason, policy: &Policy) -> Option<String> {
    match reason {
        ExitReason::Exited(code) if policy.fatal_exitcodes.contains(code) => {
            Some(format!("exited with fatal exit code {code}"))
        }
        _ => None,
    }
}

/// An exit (or spawn failure, or not becoming ready) before RUNNING: retry with backoff, or
/// give up.
fn failed_start(
    failed_starts: u32,
    streak: u32,
    reason: ExitReason,
    policy: &Policy,
    cx: Context,
) -> (State, Option<Effect>) {
    let failed_starts = failed_starts + 1;
    if failed_starts > policy.startretries {
        let reason = match reason {
            ExitReason::Exited(_) | ExitReason::Killed(_) => TOO_QUICK.to_owned(),
            other => other.to_string(),
        };
        return (State::Fatal { reason }, None);
    }
    if cx.shutting_down {
        return (
            State::Exited {
                at: cx.now,
                reason,
                expected: false,
            },
            None,
        );
    }
    respawn(failed_starts, streak + 1, reason, policy, cx)
}

fn respawn(
    failed_starts: u32,
    streak: u32,
    last: ExitReason,
    policy: &Policy,
    cx: Context,
) -> (State, Option<Effect>) {
    let wait = delay(&policy.backoff, streak, cx.jitter);
    if wait.is_zero() {
        spawn(failed_starts, streak, policy, cx)
    } else {
        (
            State::Backoff {
                until: later(cx.now, wait),
                failed_starts,
                streak,
                last,
            },
            None,
        )
    }
}

#[cfg(test)]
mod tests;
