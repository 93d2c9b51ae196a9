//! `limits`: the memory and CPU of each program that has them, summed over its process group,
//! sampled from /proc off the actor's thread (one walk of /proc for all of them), each ceiling
//! held for its `*_for` before it counts: a short spike is not a restart. A breach is a
//! liveness failure: restarted with backoff, with the reason in `status`, the history, the
//! alert and the events. No program with `limits` alive: no sample, no timer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use supervisor_proto::resources::{Usage, usage_by_group};

use super::action::Action;
use super::program::Program;
use crate::config::limits::Ceilings;
use crate::config::units::format_duration;
use crate::health::Report;
use crate::lifecycle::State;

/// The watch over every program's ceilings.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// When the next sample is due; `None` until a program with limits runs.
    next: Option<Instant>,
    /// A sample is being taken (one at a time).
    sampling: bool,
    /// Per program (by name): what the last samples said.
    trackers: HashMap<String, Tracker>,
    /// Per program: restarts for a breach since the supervisor started.
    breaches: HashMap<String, u64>,
}

impl Watch {
    /// Restarts of `program` for a breach.
    pub(super) fn restarts(&self, program: &str) -> u64 {
        self.breaches.get(program).copied().unwrap_or(0)
    }
}

/// What the samples of one program's current process said so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tracker {
    /// The process group these figures belong to; a new one starts over.
    pgid: u32,
    /// The last CPU time seen, and when.
    cpu: Option<(Instant, f64)>,
    /// Since when each ceiling has been exceeded without a break.
    rss_over: Option<Instant>,
    cpu_over: Option<Instant>,
}

/// One sample against the ceilings: the reason, when a ceiling has been exceeded for as long
/// as it must be. The tracker then starts over (the program is restarted).
pub(crate) fn judge(c: &Ceilings, t: &mut Tracker, now: Instant, usage: Usage) -> Option<String> {
    let held = |since: &mut Option<Instant>, over: bool, hold: Duration| -> bool {
        match (over, *since) {
            (false, _) => {
                *since = None;
                false
            }
            (true, None) => {
                *since = Some(now);
                hold.is_zero()
            }
            (true, Some(start)) => now.duration_since(start) >= hold,
        }
    };
    let mut breach = None;
    if let Some((limit, hold)) = c.rss {
        if held(&mut t.rss_over, usage.rss_bytes > limit, hold) {
            breach = Some(format!(
                "memory {} over its limit of {} for {}",
                mib(usage.rss_bytes),
                mib(limit),
                format_duration(hold)
            ));
        }
    }
    if let Some((limit, hold)) = c.cpu {
        let rate = t.cpu.and_then(|(then, seconds)| {
            let wall = now.duration_since(then).as_secs_f64();
            (wall > 0.0).then(|| (usage.cpu_seconds - seconds).max(0.0) / wall * 100.0)
        });
        t.cpu = Some((now, usage.cpu_seconds));
        if let Some(percent) = rate {
            if held(&mut t.cpu_over, percent > limit, hold) && breach.is_none() {
                breach = Some(format!(
                    "CPU {percent:.0}% over its limit of {limit:.0}% for {}",
                    format_duration(hold)
                ));
            }
        }
    }
    if breach.is_some() {
        *t = Tracker {
            pgid: t.pgid,
            ..Tracker::default()
        };
    }
    breach
}

/// Bytes as MiB, one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A running program with limits, as the watch sees it.
pub(super) struct Limited<'a> {
    pub name: &'a str,
    pub limits: &'a Ceilings,
    /// Its process group.
    pub pgid: u32,
}

/// The programs with limits that are running now.
pub(super) fn limited(programs: &[Program]) -> impl Iterator<Item = Limited<'_>> {
    programs
        .iter()
        .filter(|p| p.cfg.limits.is_set())
        .filter_map(|p| match p.state {
            State::Running { pid, .. } => Some(Limited {
                name: p.cfg.name.as_str(),
                limits: &p.cfg.limits,
                pgid: pid.as_raw() as u32,
            }),
            _ => None,
        })
}

impl Watch {
    /// When the watch wants a tick: the next sample, or now when a program with limits runs
    /// and no sample is planned yet.
    pub(super) fn deadline(&self, any_limited: bool, now: Instant) -> Option<Instant> {
        if self.sampling {
            return None;
        }
        self.next.or(any_limited.then_some(now))
    }

    /// Takes a sample when one is due: /proc is read on a blocking thread, and the figures
    /// come back as a [`Report::Usage`].
    pub(super) fn tick(&mut self, limited: &[Limited<'_>], now: Instant) -> Option<Action> {
        if self.sampling || self.next.is_some_and(|n| n > now) {
            return None;
        }
        if limited.is_empty() {
            self.next = None;
            self.trackers.clear();
            return None;
        }
        let every = limited
            .iter()
            .map(|l| l.limits.sample_every())
            .min()
            .unwrap_or(Duration::from_secs(5));
        self.next = Some(now + every);
        self.sampling = true;
        let groups: Vec<u32> = limited.iter().map(|l| l.pgid).collect();
        Some(Action::Blocking(Box::new(move || {
            let usage = usage_by_group(&groups);
            Report::Usage {
                at: Instant::now(),
                groups,
                usage,
            }
        })))
    }

    /// A sample came back: each program judged; a breach restarts it.
    pub(super) fn sample(
        &mut self,
        limited: &[Limited<'_>],
        at: Instant,
        groups: &[u32],
        usage: &HashMap<u32, Usage>,
    ) -> Vec<Action> {
        self.sampling = false;
        self.trackers
            .retain(|name, _| limited.iter().any(|l| l.name == name));
        let mut actions = Vec::new();
        for l in limited {
            // Sampled for another process (it restarted meanwhile), or the group is empty.
            let Some(u) = usage.get(&l.pgid).filter(|_| groups.contains(&l.pgid)) else {
                continue;
            };
            let tracker = self.trackers.entry(l.name.to_owned()).or_default();
            if tracker.pgid != l.pgid {
                *tracker = Tracker {
                    pgid: l.pgid,
                    ..Tracker::default()
                };
            }
            if let Some(reason) = judge(l.limits, tracker, at, *u) {
                *self.breaches.entry(l.name.to_owned()).or_default() += 1;
                actions.push(Action::Unhealthy(l.name.to_owned(), reason));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(rss_mib: u64, cpu_seconds: f64) -> Usage {
        Usage {
            rss_bytes: rss_mib << 20,
            cpu_seconds,
            processes: 1,
        }
    }

    #[test]
    fn memory_must_stay_over_for_the_whole_hold() {
        let c = Ceilings {
            rss: Some((300 << 20, Duration::from_secs(2))),
            cpu: None,
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracker::default();
        // A one-second spike: over, then under again.
        assert_eq!(judge(&c, &mut t, at(0), usage(500, 0.0)), None);
        assert_eq!(judge(&c, &mut t, at(1000), usage(500, 0.0)), None);
        assert_eq!(judge(&c, &mut t, at(1500), usage(100, 0.0)), None);
        assert_eq!(judge(&c, &mut t, at(2500), usage(500, 0.0)), None);
        // Over from 2.5 s on: the breach at 4.5 s, not before.
        assert_eq!(judge(&c, &mut t, at(4000), usage(410, 0.0)), None);
        assert_eq!(
            judge(&c, &mut t, at(4500), usage(412, 0.0)),
            Some("memory 412.0 MiB over its limit of 300.0 MiB for 2s".into())
        );
        assert_eq!(t.rss_over, None, "starts over");
    }

    #[test]
    fn cpu_is_a_rate_between_samples() {
        let c = Ceilings {
            rss: None,
            cpu: Some((90.0, Duration::from_secs(3))),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = Tracker::default();
        assert_eq!(
            judge(&c, &mut t, at(0), usage(1, 10.0)),
            None,
            "no rate yet"
        );
        // One core busy: 100 % for 1 s, 2 s, 3 s.
        assert_eq!(judge(&c, &mut t, at(1), usage(1, 11.0)), None);
        assert_eq!(judge(&c, &mut t, at(2), usage(1, 12.0)), None);
        assert_eq!(judge(&c, &mut t, at(3), usage(1, 13.0)), None);
        assert_eq!(
            judge(&c, &mut t, at(4), usage(1, 14.0)),
            Some("CPU 100% over its limit of 90% for 3s".into())
        );
        // Half a core never breaches; a process that left (CPU time going down) is no rate.
        let mut t = Tracker::default();
        for s in 0..10 {
            assert_eq!(judge(&c, &mut t, at(s), usage(1, s as f64 / 2.0)), None);
        }
        assert_eq!(judge(&c, &mut t, at(11), usage(1, 0.0)), None);
    }

    /// The watch alone, without a daemon: it asks for one sample at a time, and a breach held
    /// long enough comes back as the program's restart, counted; a restarted process (another
    /// group) starts over.
    #[test]
    fn the_watch_samples_one_at_a_time_and_asks_for_a_restart_on_a_breach() {
        let c = Ceilings {
            rss: Some((300 << 20, Duration::from_secs(2))),
            cpu: None,
        };
        let bot = |pgid| Limited {
            name: "bot",
            limits: &c,
            pgid,
        };
        let mut w = Watch::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(
            w.deadline(false, t0),
            None,
            "nothing limited runs: no timer"
        );
        assert_eq!(w.deadline(true, t0), Some(t0));
        assert!(matches!(w.tick(&[bot(7)], t0), Some(Action::Blocking(_))));
        assert_eq!(w.deadline(true, t0), None, "one sample at a time");
        assert!(w.tick(&[bot(7)], at(10_000)).is_none());
        let over = HashMap::from([(7, usage(400, 0.0))]);
        assert!(w.sample(&[bot(7)], at(0), &[7], &over).is_empty());
        assert_eq!(
            w.deadline(true, t0),
            Some(at(250)),
            "the next: a tenth of the hold"
        );
        assert!(w.sample(&[bot(7)], at(1000), &[7], &over).is_empty());
        // The same figures for another process of the program: it starts over.
        assert!(
            w.sample(
                &[bot(8)],
                at(2500),
                &[8],
                &HashMap::from([(8, usage(400, 0.0))])
            )
            .is_empty()
        );
        let after = w.sample(
            &[bot(8)],
            at(4500),
            &[8],
            &HashMap::from([(8, usage(400, 0.0))]),
        );
        match after.as_slice() {
            [Action::Unhealthy(name, reason)] => {
                assert_eq!(name, "bot");
                assert_eq!(
                    reason,
                    "memory 400.0 MiB over its limit of 300.0 MiB for 2s"
                );
            }
            _ => panic!("expected one restart, got {} actions", after.len()),
        }
        assert_eq!(w.restarts("bot"), 1);
        // Nothing limited runs any more: the watch forgets and stops.
        assert!(w.tick(&[], at(10_000)).is_none());
        assert_eq!(w.deadline(false, at(10_000)), None);
    }
}
