//! When to probe and what the results mean, as plain values (no I/O, no clock reads): the
//! daemon asks for [`Schedule::deadline`], starts a probe when it is due, and feeds the result
//! back.

use std::time::{Duration, Instant};

use super::probe::ProbeError;
use crate::config::health::HealthCheck;
use crate::lifecycle::later;

/// A probe repeated every `interval`, one at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    next: Instant,
    in_flight: bool,
}

impl Schedule {
    /// The first probe `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            next: later(now, interval),
            in_flight: false,
        }
    }

    /// When the next probe is due; none while one runs.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.next)
    }

    /// Whether a probe should start at `now` (and marks it started).
    pub fn start_if_due(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.next {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// The probe ended; the next one is `interval` later.
    pub fn finished(&mut self, now: Instant) {
        self.in_flight = false;
        self.next = later(now, self.interval);
    }
}

/// What a liveness result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Failed, but not yet `retries` times in a row (or within `start_period`).
    Failing {
        count: u32,
    },
    /// `retries` failures in a row: restart it; the reason says what failed.
    Unhealthy(String),
}

/// Docker's HEALTHCHECK: every `interval` once RUNNING; failures during `start_period` do not
/// count, and a success ends it; `retries` consecutive counted failures are unhealthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    pub schedule: Schedule,
    retries: u32,
    start_period_until: Option<Instant>,
    failures: u32,
}

impl Liveness {
    pub fn new(check: &HealthCheck, now: Instant) -> Self {
        Self {
            schedule: Schedule::new(check.interval, now),
            retries: check.retries.max(1),
            start_period_until: (!check.start_period.is_zero())
                .then(|| later(now, check.start_period)),
            failures: 0,
        }
    }

    pub fn finish(&mut self, result: &Result<(), ProbeError>, what: &str, now: Instant) -> Verdict {
        self.schedule.finished(now);
        match result {
            Ok(()) => {
                self.failures = 0;
                self.start_period_until = None;
                Verdict::Healthy
            }
            Err(_) if self.start_period_until.is_some_and(|until| now < until) => {
                Verdict::Failing { count: 0 }
            }
            Err(error) => {
                self.failures += 1;
                if self.failures >= self.retries {
                    let times = match self.failures {
                        1 => "once".to_owned(),
                        n => format!("{n} times in a row"),
                    };
                    Verdict::Unhealthy(format!("{what} failed {times} (last: {error})"))
                } else {
                    Verdict::Failing {
                        count: self.failures,
                    }
                }
            }
        }
    }
}

/// `watchdog`: a `WATCHDOG=1` at least every `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watchdog {
    pub timeout: Duration,
    last: Instant,
}

impl Watchdog {
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self { timeout, last: now }
    }

    pub fn ping(&mut self, now: Instant) {
        self.last = now;
    }

    pub fn deadline(&self) -> Instant {
        later(self.last, self.timeout)
    }

    /// The reason, once no ping came within the timeout.
    pub fn expired(&self, now: Instant) -> Option<String> {
        (now >= self.deadline()).then(|| {
            format!(
                "no WATCHDOG=1 within {}",
                crate::config::units::format_duration(self.timeout)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::health::Probe;

    fn check(retries: u32, start_period: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Command(vec!["true".into()]),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_secs(start_period),
        }
    }

    #[test]
    fn schedule_runs_one_probe_at_a_time() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(10), t0);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(!s.start_if_due(t0 + Duration::from_secs(9)));
        assert!(s.start_if_due(t0 + Duration::from_secs(10)));
        assert_eq!(s.deadline(), None, "no deadline while in flight");
        assert!(!s.start_if_due(t0 + Duration::from_secs(30)));
        s.finished(t0 + Duration::from_secs(12));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(22)));
    }

    #[test]
    fn retries_consecutive_failures_are_unhealthy_and_a_pass_resets() {
        let t0 = Instant::now();
        let mut l = Liveness::new(&check(3, 0), t0);
        let fail = Err(ProbeError::CommandTimedOut(Duration::from_secs(1)));
        assert_eq!(
            l.finish(&fail, "GET /ping", t0),
            Verdict::Failing { count: 1 }
        );
        assert_eq!(
            l.finish(&fail, "GET /ping", t0),
            Verdict::Failing { count: 2 }
        );
        assert_eq!(l.finish(&Ok(()), "GET /ping", t0), Verdict::Healthy);
        assert_eq!(
            l.finish(&fail, "GET /ping", t0),
            Verdict::Failing { count: 1 }
        );
        assert_eq!(
            l.finish(&fail, "GET /ping", t0),
            Verdict::Failing { count: 2 }
        );
        assert_eq!(
            l.finish(&fail, "GET /ping", t0),
            Verdict::Unhealthy(
                "GET /ping failed 3 times in a row (last: timed out after 1s)".into()
            )
        );
    }

    #[test]
    fn start_period_failures_do_not_count_until_it_ends_or_a_pass() {
        let t0 = Instant::now();
        let fail = Err(ProbeError::Spawn("refused".to_owned()));
        let mut l = Liveness::new(&check(1, 60), t0);
        assert_eq!(
            l.finish(&fail, "x", t0 + Duration::from_secs(10)),
            Verdict::Failing { count: 0 }
        );
        assert_eq!(
            l.finish(&fail, "x", t0 + Duration::from_secs(61)),
            Verdict::Unhealthy("x failed once (last: cannot run it: refused)".into())
        );
        let mut l = Liveness::new(&check(1, 60), t0);
        assert_eq!(l.finish(&Ok(()), "x", t0), Verdict::Healthy);
        assert!(
            matches!(l.finish(&fail, "x", t0), Verdict::Unhealthy(_)),
            "a pass ended the start period"
        );
    }

    #[test]
    fn watchdog_expires_without_a_ping() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(30), t0);
        assert_eq!(w.expired(t0 + Duration::from_secs(29)), None);
        w.ping(t0 + Duration::from_secs(29));
        assert_eq!(w.expired(t0 + Duration::from_secs(58)), None);
        assert_eq!(
            w.expired(t0 + Duration::from_secs(59)).as_deref(),
            Some("no WATCHDOG=1 within 30s")
        );
    }
}
