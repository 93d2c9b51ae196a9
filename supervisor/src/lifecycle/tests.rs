use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;
use crate::config::health::StartLimit;
use crate::config::{AutoRestart, Backoff};

const P: Pid = Pid::from_raw(100);
const P2: Pid = Pid::from_raw(200);

fn policy() -> Policy {
    Policy {
        startsecs: Duration::from_secs(1),
        startretries: 3,
        autorestart: AutoRestart::Unexpected,
        exitcodes: vec![0],
        fatal_exitcodes: vec![78],
        stopsignal: Signal::SIGTERM,
        stopwaitsecs: Duration::from_secs(10),
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            multiplier: 2.0,
            jitter: 0.0,
            reset: Duration::from_secs(60),
        },
        ready_timeout: None,
        start_limit: None,
    }
}

/// A `ready = "notify"` (or log, or probe) program: RUNNING on [`Event::Ready`], a failed start
/// after 5 s without it.
fn waiting() -> Policy {
    Policy {
        ready_timeout: Some(secs(5)),
        ..policy()
    }
}

type Outcome = (State, Option<Effect>);

fn cx(now: Instant) -> Context {
    Context {
        now,
        shutting_down: false,
        jitter: 0.0,
        start_budget_spent: false,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every (state, event) pair, with `now` two seconds after the states' reference time: past the
/// STARTING and BACKOFF deadlines, before the STOPPING one.
#[test]
fn every_state_and_event() {
    let t0 = Instant::now();
    let now = t0 + secs(2);
    let stopped = State::Stopped { last: None };
    let spawning = State::Spawning {
        failed_starts: 0,
        streak: 0,
    };
    let starting = State::Starting {
        pid: P,
        since: t0,
        failed_starts: 0,
        streak: 0,
        extended: None,
    };
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 0,
    };
    let backoff = State::Backoff {
        until: t0 + secs(1),
        failed_starts: 1,
        streak: 1,
        last: ExitReason::Exited(1),
    };
    let stopping = State::Stopping {
        pid: P,
        deadline: Some(t0 + secs(10)),
        last: None,
        then: Then::Stop,
    };
    let exited = State::Exited {
        at: t0,
        reason: ExitReason::Exited(0),
        expected: true,
    };
    let fatal = State::Fatal {
        reason: TOO_QUICK.into(),
    };

    let start = Event::Start;
    let stop = Event::Stop;
    let spawned = Event::Spawned(P2);
    let spawn_failed = Event::SpawnFailed("no such file".into());
    let exit = Event::Exited {
        pid: P,
        reason: ExitReason::Exited(1),
    };
    let gone = Event::GroupGone;
    let tick = Event::Tick;
    let auto = Event::AutoStart;
    let ready = Event::Ready;
    let sick = Event::Unhealthy("GET /ping failed".into());
    let extend = Event::ExtendTimeout(secs(20));
    let unhealthy = ExitReason::Unhealthy("GET /ping failed".into());
    let stop_for = |then: Then| {
        (
            State::Stopping {
                pid: P,
                deadline: Some(now + secs(10)),
                last: None,
                then,
            },
            Some(Effect::SignalGroup(P, Signal::SIGTERM)),
        )
    };

    let fresh = (spawning.clone(), Some(Effect::Spawn));
    let stop_now = (
        State::Stopping {
            pid: P,
            deadline: Some(now + secs(10)),
            last: None,
            then: Then::Stop,
        },
        Some(Effect::SignalGroup(P, Signal::SIGTERM)),
    );
    let same = |s: &State| (s.clone(), None);

    #[rustfmt::skip]
    let table: Vec<(&State, &Event, Outcome)> = vec![
        (&stopped, &start, fresh.clone()),
        (&stopped, &stop, same(&stopped)),
        (&stopped, &spawned, same(&stopped)),
        (&stopped, &spawn_failed, same(&stopped)),
        (&stopped, &exit, same(&stopped)),
        (&stopped, &gone, same(&stopped)),
        (&stopped, &tick, same(&stopped)),
        (&stopped, &auto, fresh.clone()),
        (&stopped, &ready, same(&stopped)),
        (&stopped, &sick, same(&stopped)),
        (&stopped, &extend, same(&stopped)),

        (&spawning, &start, same(&spawning)),
        (&spawning, &stop, same(&spawning)),
        (&spawning, &spawned, (State::Starting { pid: P2, since: now, failed_starts: 0, streak: 0, extended: None }, None)),
        (&spawning, &spawn_failed, (State::Backoff { until: now + secs(1), failed_starts: 1, streak: 1,
            last: ExitReason::SpawnFailed("no such file".into()) }, None)),
        (&spawning, &exit, same(&spawning)),
        (&spawning, &gone, same(&spawning)),
        (&spawning, &tick, same(&spawning)),
        (&spawning, &auto, same(&spawning)),
        (&spawning, &ready, same(&spawning)),
        (&spawning, &sick, same(&spawning)),
        (&spawning, &extend, same(&spawning)),

        (&starting, &start, same(&starting)),
        (&starting, &stop, stop_now.clone()),
        (&starting, &spawned, same(&starting)),
        (&starting, &spawn_failed, same(&starting)),
        (&starting, &exit, (State::Backoff { until: now + secs(1), failed_starts: 1, streak: 1,
            last: ExitReason::Exited(1) }, None)),
        (&starting, &gone, same(&starting)),
        (&starting, &tick, (State::Running { pid: P, since: t0, streak: 0 }, None)),
        (&starting, &auto, same(&starting)),
        // With ready = "started", only startsecs makes it RUNNING.
        (&starting, &ready, same(&starting)),
        (&starting, &sick, stop_for(Then::Retry { failed_starts: 0, streak: 0, reason: unhealthy.clone() })),
        (&starting, &extend, same(&starting)),

        (&running, &start, same(&running)),
        (&running, &stop, stop_now.clone()),
        (&running, &spawned, same(&running)),
        (&running, &spawn_failed, same(&running)),
        (&running, &exit, (State::Backoff { until: now + secs(1), failed_starts: 0, streak: 1,
            last: ExitReason::Exited(1) }, None)),
        (&running, &gone, same(&running)),
        (&running, &tick, same(&running)),
        (&running, &auto, same(&running)),
        (&running, &ready, same(&running)),
        (&running, &sick, stop_for(Then::Restart { streak: 1, reason: unhealthy.clone() })),
        (&running, &extend, same(&running)),

        (&backoff, &start, fresh.clone()),
        (&backoff, &stop, (State::Stopped { last: Some(ExitReason::Exited(1)) }, None)),
        (&backoff, &spawned, same(&backoff)),
        (&backoff, &spawn_failed, same(&backoff)),
        (&backoff, &exit, same(&backoff)),
        (&backoff, &gone, same(&backoff)),
        (&backoff, &tick, (State::Spawning { failed_starts: 1, streak: 1 }, Some(Effect::Spawn))),
        (&backoff, &auto, same(&backoff)),
        (&backoff, &ready, same(&backoff)),
        (&backoff, &sick, same(&backoff)),
        (&backoff, &extend, same(&backoff)),

        (&stopping, &start, same(&stopping)),
        (&stopping, &stop, same(&stopping)),
        (&stopping, &spawned, same(&stopping)),
        (&stopping, &spawn_failed, same(&stopping)),
        (&stopping, &exit, (State::Stopping { pid: P, deadline: Some(t0 + secs(10)),
            last: Some(ExitReason::Exited(1)), then: Then::Stop }, Some(Effect::ProbeGroup(P)))),
        (&stopping, &gone, same(&stopping)),
        (&stopping, &tick, same(&stopping)),
        (&stopping, &auto, same(&stopping)),
        (&stopping, &ready, same(&stopping)),
        (&stopping, &sick, same(&stopping)),
        (&stopping, &extend, (State::Stopping { pid: P, deadline: Some(now + secs(20)), last: None,
            then: Then::Stop }, None)),

        (&exited, &start, fresh.clone()),
        (&exited, &stop, same(&exited)),
        (&exited, &spawned, same(&exited)),
        (&exited, &spawn_failed, same(&exited)),
        (&exited, &exit, same(&exited)),
        (&exited, &gone, same(&exited)),
        (&exited, &tick, same(&exited)),
        (&exited, &auto, fresh.clone()),
        (&exited, &ready, same(&exited)),
        (&exited, &sick, same(&exited)),
        (&exited, &extend, same(&exited)),

        (&fatal, &start, fresh.clone()),
        (&fatal, &stop, same(&fatal)),
        (&fatal, &spawned, same(&fatal)),
        (&fatal, &spawn_failed, same(&fatal)),
        (&fatal, &exit, same(&fatal)),
        (&fatal, &gone, same(&fatal)),
        (&fatal, &tick, same(&fatal)),
        // FATAL waits for a start by hand.
        (&fatal, &auto, same(&fatal)),
        (&fatal, &ready, same(&fatal)),
        (&fatal, &sick, same(&fatal)),
        (&fatal, &extend, same(&fatal)),
    ];
    assert_eq!(table.len(), 8 * 11, "every pair is in the table");
    for (state, event, expected) in table {
        let got = transition(state, event, &policy(), cx(now));
        assert_eq!(got, expected, "{} + {event:?}", state.name());
    }
}

/// Drives one program through spawns and immediate exits; returns the spawn count and the end
/// state.
fn crash_loop(policy: &Policy, exit: ExitReason, max_steps: usize) -> (u32, State) {
    let mut now = Instant::now();
    let mut state = State::initial();
    let mut spawns = 0;
    let mut pid = 1000;
    let (s, mut effect) = transition(&state, &Event::Start, policy, cx(now));
    state = s;
    for _ in 0..max_steps {
        match effect.take() {
            Some(Effect::Spawn) => {
                spawns += 1;
                pid += 1;
                let (s, e) =
                    transition(&state, &Event::Spawned(Pid::from_raw(pid)), policy, cx(now));
                assert!(e.is_none());
                // Exits at once.
                let (s, e) = transition(
                    &s,
                    &Event::Exited {
                        pid: Pid::from_raw(pid),
                        reason: exit.clone(),
                    },
                    policy,
                    cx(now),
                );
                state = s;
                effect = e;
            }
            None => match state.deadline(policy) {
                Some(at) => {
                    now = at;
                    let (s, e) = transition(&state, &Event::Tick, policy, cx(now));
                    state = s;
                    effect = e;
                }
                None => break,
            },
            Some(other) => panic!("unexpected effect {other:?}"),
        }
    }
    (spawns, state)
}

#[test]
fn startretries_three_means_exactly_four_spawns_then_fatal() {
    let (spawns, state) = crash_loop(&policy(), ExitReason::Exited(1), 100);
    assert_eq!(spawns, 4);
    assert_eq!(
        state,
        State::Fatal {
            reason: TOO_QUICK.into()
        }
    );
    let mut zero = policy();
    zero.startretries = 0;
    assert_eq!(crash_loop(&zero, ExitReason::Exited(1), 100).0, 1);
}

#[test]
fn fatal_exit_code_is_fatal_at_once() {
    let (spawns, state) = crash_loop(&policy(), ExitReason::Exited(78), 100);
    assert_eq!(spawns, 1);
    assert_eq!(
        state,
        State::Fatal {
            reason: "exited with fatal exit code 78".into()
        }
    );
    // Also after the program was RUNNING.
    let t0 = Instant::now();
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 0,
    };
    let exit = Event::Exited {
        pid: P,
        reason: ExitReason::Exited(78),
    };
    let (s, e) = transition(&running, &exit, &policy(), cx(t0 + secs(100)));
    assert!(matches!(s, State::Fatal { .. }) && e.is_none());
}

#[test]
fn failed_starts_back_off_exponentially() {
    let p = policy();
    let t0 = Instant::now();
    let mut state = State::Spawning {
        failed_starts: 0,
        streak: 0,
    };
    let mut delays = Vec::new();
    for _ in 0..3 {
        let (s, _) = transition(&state, &Event::SpawnFailed("x".into()), &p, cx(t0));
        let State::Backoff { until, .. } = s else {
            panic!("expected BACKOFF, got {s:?}");
        };
        delays.push(until - t0);
        let (s, e) = transition(&s, &Event::Tick, &p, cx(until));
        assert_eq!(e, Some(Effect::Spawn));
        state = s;
    }
    assert_eq!(delays, [secs(1), secs(2), secs(4)]);
    let (s, _) = transition(&state, &Event::SpawnFailed("x".into()), &p, cx(t0));
    assert_eq!(
        s,
        State::Fatal {
            reason: "spawn error: x".into()
        }
    );
}

#[test]
fn crashes_after_running_back_off_until_a_stable_run() {
    let p = policy();
    let t0 = Instant::now();
    let exit = |pid| Event::Exited {
        pid,
        reason: ExitReason::Killed(Signal::SIGKILL),
    };
    // Ran 5 s (< reset): second consecutive crash waits 2 s.
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 1,
    };
    let (s, e) = transition(&running, &exit(P), &p, cx(t0 + secs(5)));
    assert_eq!(
        s,
        State::Backoff {
            until: t0 + secs(7),
            failed_starts: 0,
            streak: 2,
            last: ExitReason::Killed(Signal::SIGKILL)
        }
    );
    assert_eq!(e, None);
    // Ran past `reset`: recovered, restarted at once.
    let (s, e) = transition(&running, &exit(P), &p, cx(t0 + secs(61)));
    assert_eq!(
        s,
        State::Spawning {
            failed_starts: 0,
            streak: 0
        }
    );
    assert_eq!(e, Some(Effect::Spawn));
}

#[test]
fn autorestart_follows_supervisord() {
    let t0 = Instant::now();
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 0,
    };
    let exit = |code| Event::Exited {
        pid: P,
        reason: ExitReason::Exited(code),
    };
    let now = t0 + secs(100);
    for (mode, code, restarts) in [
        (AutoRestart::Unexpected, 0, false),
        (AutoRestart::Unexpected, 1, true),
        (AutoRestart::Always, 0, true),
        (AutoRestart::Never, 1, false),
    ] {
        let mut p = policy();
        p.autorestart = mode;
        let (s, e) = transition(&running, &exit(code), &p, cx(now));
        if restarts {
            assert_eq!(e, Some(Effect::Spawn), "{mode:?} {code}");
        } else {
            assert_eq!(
                s,
                State::Exited {
                    at: now,
                    reason: ExitReason::Exited(code),
                    expected: code == 0
                },
                "{mode:?} {code}"
            );
        }
    }
}

#[test]
fn nothing_restarts_during_shutdown() {
    let t0 = Instant::now();
    let shutting = Context {
        start_budget_spent: false,
        now: t0 + secs(2),
        shutting_down: true,
        jitter: 0.0,
    };
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 0,
    };
    let exit = Event::Exited {
        pid: P,
        reason: ExitReason::Exited(1),
    };
    let (s, e) = transition(&running, &exit, &policy(), shutting);
    assert!(matches!(s, State::Exited { .. }) && e.is_none(), "{s:?}");
    let backoff = State::Backoff {
        until: t0,
        failed_starts: 1,
        streak: 1,
        last: ExitReason::Exited(1),
    };
    assert_eq!(
        transition(&backoff, &Event::Tick, &policy(), shutting),
        (backoff.clone(), None)
    );
    assert_eq!(
        transition(&State::initial(), &Event::Start, &policy(), shutting),
        (State::initial(), None)
    );
}

#[test]
fn stop_escalates_to_sigkill_and_waits_for_the_group() {
    let p = policy();
    let t0 = Instant::now();
    let running = State::Running {
        pid: P,
        since: t0,
        streak: 0,
    };
    let (s, e) = transition(&running, &Event::Stop, &p, cx(t0));
    assert_eq!(e, Some(Effect::SignalGroup(P, Signal::SIGTERM)));
    // Before the deadline a tick does nothing.
    assert_eq!(
        transition(&s, &Event::Tick, &p, cx(t0 + secs(9))),
        (s.clone(), None)
    );
    let (s, e) = transition(&s, &Event::Tick, &p, cx(t0 + secs(10)));
    assert_eq!(e, Some(Effect::SignalGroup(P, Signal::SIGKILL)));
    assert_eq!(s.deadline(&p), None);
    let (s, e) = transition(
        &s,
        &Event::Exited {
            pid: P,
            reason: ExitReason::Killed(Signal::SIGKILL),
        },
        &p,
        cx(t0 + secs(10)),
    );
    assert_eq!(e, Some(Effect::ProbeGroup(P)));
    assert_eq!(s.name(), "STOPPING");
    let (s, e) = transition(&s, &Event::GroupGone, &p, cx(t0 + secs(10)));
    assert_eq!(
        (s, e),
        (
            State::Stopped {
                last: Some(ExitReason::Killed(Signal::SIGKILL))
            },
            None
        )
    );
}

#[test]
fn startsecs_zero_is_running_at_once_and_stale_pids_are_ignored() {
    let mut p = policy();
    p.startsecs = Duration::ZERO;
    let t0 = Instant::now();
    let spawning = State::Spawning {
        failed_starts: 0,
        streak: 0,
    };
    let (s, _) = transition(&spawning, &Event::Spawned(P), &p, cx(t0));
    assert_eq!(
        s,
        State::Running {
            pid: P,
            since: t0,
            streak: 0
        }
    );
    let stale = Event::Exited {
        pid: P2,
        reason: ExitReason::Exited(1),
    };
    assert_eq!(transition(&s, &stale, &p, cx(t0)), (s.clone(), None));
}

#[test]
fn deadlines_saturate_instead_of_overflowing() {
    let now = Instant::now();
    assert_eq!(
        later(now, Duration::from_secs(5)),
        now + Duration::from_secs(5)
    );
    assert!(later(now, Duration::MAX) > now + Duration::from_secs(86_400));
}

/// The pairs that differ when RUNNING waits for readiness (`ready = "notify"`, a log line or a
/// probe), and what follows a stop made for a restart.
#[test]
fn readiness_pairs() {
    let t0 = Instant::now();
    let w = waiting();
    let starting = State::Starting {
        pid: P,
        since: t0,
        failed_starts: 0,
        streak: 0,
        extended: None,
    };
    let spawning = State::Spawning {
        failed_starts: 0,
        streak: 0,
    };
    let not_ready = ExitReason::NotReady(secs(5));
    let unhealthy = ExitReason::Unhealthy("no WATCHDOG=1 within 30s".into());
    let retry = Then::Retry {
        failed_starts: 0,
        streak: 0,
        reason: not_ready.clone(),
    };
    let restart = Then::Restart {
        streak: 1,
        reason: unhealthy.clone(),
    };
    let stopped_for = |then: Then| State::Stopping {
        pid: P,
        deadline: Some(t0 + secs(20)),
        last: Some(ExitReason::Killed(Signal::SIGTERM)),
        then,
    };
    let at = |n: u64| cx(t0 + secs(n));

    #[rustfmt::skip]
    let table: Vec<(&str, State, Event, Context, Outcome)> = vec![
        ("startsecs does not apply", spawning.clone(), Event::Spawned(P), at(0),
            (starting.clone(), None)),
        ("READY=1 makes it RUNNING", starting.clone(), Event::Ready, at(2),
            (State::Running { pid: P, since: t0 + secs(2), streak: 0 }, None)),
        ("startsecs passing is not ready", starting.clone(), Event::Tick, at(2),
            (starting.clone(), None)),
        ("not ready after ready_timeout", starting.clone(), Event::Tick, at(5),
            (State::Stopping { pid: P, deadline: Some(t0 + secs(15)), last: None, then: retry.clone() },
             Some(Effect::SignalGroup(P, Signal::SIGTERM)))),
        ("EXTEND_TIMEOUT_USEC moves the deadline", starting.clone(), Event::ExtendTimeout(secs(20)), at(2),
            (State::Starting { pid: P, since: t0, failed_starts: 0, streak: 0, extended: Some(t0 + secs(22)) }, None)),
        ("the old deadline no longer acts",
            State::Starting { pid: P, since: t0, failed_starts: 0, streak: 0, extended: Some(t0 + secs(22)) },
            Event::Tick, at(6),
            (State::Starting { pid: P, since: t0, failed_starts: 0, streak: 0, extended: Some(t0 + secs(22)) }, None)),
        ("a stop request wins over a pending retry", stopped_for(retry.clone()), Event::Stop, at(6),
            (stopped_for(Then::Stop), None)),
        ("not ready is a failed start", stopped_for(retry.clone()), Event::GroupGone, at(6),
            (State::Backoff { until: t0 + secs(7), failed_starts: 1, streak: 1, last: not_ready.clone() }, None)),
        ("not ready too often is FATAL, with why",
            stopped_for(Then::Retry { failed_starts: 3, streak: 3, reason: not_ready.clone() }),
            Event::GroupGone, at(6),
            (State::Fatal { reason: "not ready after 5s".into() }, None)),
        ("unhealthy restarts like a crash", stopped_for(restart.clone()), Event::GroupGone, at(6),
            (State::Backoff { until: t0 + secs(7), failed_starts: 0, streak: 1, last: unhealthy.clone() }, None)),
        ("nothing restarts during shutdown", stopped_for(restart.clone()), Event::GroupGone,
            Context { shutting_down: true, ..at(6) },
            (State::Exited { at: t0 + secs(6), reason: unhealthy.clone(), expected: false }, None)),
        ("the start budget stops automatic starts", State::Stopped { last: None }, Event::AutoStart,
            Context { start_budget_spent: true, ..at(0) },
            (State::Fatal { reason: "started 10 times in 24h: start_limit reached; `supervisor start` tries again".into() }, None)),
        ("and respawns after a backoff",
            State::Backoff { until: t0, failed_starts: 0, streak: 1, last: ExitReason::Exited(1) },
            Event::Tick, Context { start_budget_spent: true, ..at(0) },
            (State::Fatal { reason: "started 10 times in 24h: start_limit reached; `supervisor start` tries again".into() }, None)),
        ("but not a start by hand", State::Fatal { reason: "x".into() }, Event::Start,
            Context { start_budget_spent: true, ..at(0) },
            (spawning.clone(), Some(Effect::Spawn))),
    ];
    let budget = Policy {
        start_limit: Some(StartLimit {
            burst: 10,
            interval: secs(86_400),
        }),
        ..w.clone()
    };
    for (what, state, event, cx, expected) in table {
        assert_eq!(transition(&state, &event, &budget, cx), expected, "{what}");
    }
    // With autorestart = "never", an unhealthy program is stopped, not restarted.
    let never = Policy {
        autorestart: AutoRestart::Never,
        ..w
    };
    assert_eq!(
        transition(&stopped_for(restart), &Event::GroupGone, &never, at(6)).0,
        State::Exited {
            at: t0 + secs(6),
            reason: unhealthy,
            expected: false
        }
    );
}
