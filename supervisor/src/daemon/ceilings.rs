//! `limits`: the memory and CPU of each program that has them, summed over its process group,
//! sampled from /proc off the actor's thread (one walk of /proc for all of them), each ceiling
//! held for its `*_for` before it counts: a short spike is not a restart. A breach is a
//! liveness failure: restarted with backoff, with the reason in `status`, the history, the
//! alert and the events. No program with `limits` alive: no sample, no timer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use supervisor_proto::resources::{Usage, usage_by_group};

use super::Daemon;
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

impl Daemon {
    /// Programs with limits that are running now: (index, process group).
    fn watched(&self) -> Vec<(usize, u32)> {
        self.programs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.cfg.limits.is_set())
            .filter_map(|(i, p)| match p.state {
                State::Running { pid, .. } => Some((i, pid.as_raw() as u32)),
                _ => None,
            })
            .collect()
    }

    /// When the watch wants a tick: the next sample, or now when a program with limits runs
    /// and no sample is planned yet.
    pub(super) fn ceiling_deadlines(&self) -> Option<Instant> {
        if self.ceilings.sampling {
            return None;
        }
        match self.ceilings.next {
            Some(next) => Some(next),
            None if self
                .programs
                .iter()
                .any(|p| p.cfg.limits.is_set() && matches!(p.state, State::Running { .. })) =>
            {
                Some(Instant::now())
            }
            None => None,
        }
    }

    /// Takes a sample when one is due: /proc is read on a blocking thread, and the figures
    /// come back as a [`Report::Usage`].
    pub(super) fn ceiling_tick(&mut self, now: Instant) {
        if self.ceilings.sampling || self.ceilings.next.is_some_and(|n| n > now) {
            return;
        }
        let watched = self.watched();
        if watched.is_empty() {
            self.ceilings.next = None;
            self.ceilings.trackers.clear();
            return;
        }
        let every = watched
            .iter()
            .map(|&(i, _)| self.programs[i].cfg.limits.sample_every())
            .min()
            .unwrap_or(Duration::from_secs(5));
        self.ceilings.next = Some(now + every);
        self.ceilings.sampling = true;
        let groups: Vec<u32> = watched.iter().map(|&(_, g)| g).collect();
        let reports = self.reports.clone();
        tokio::task::spawn_blocking(move || {
            let usage = usage_by_group(&groups);
            let _ = reports.blocking_send(Report::Usage {
                at: Instant::now(),
                groups,
                usage,
            });
        });
    }

    /// A sample came back: each watched program judged; a breach restarts it.
    pub(super) fn ceiling_sample(
        &mut self,
        at: Instant,
        groups: &[u32],
        usage: &HashMap<u32, Usage>,
    ) {
        self.ceilings.sampling = false;
        let watched = self.watched();
        self.ceilings.trackers.retain(|name, _| {
            watched
                .iter()
                .any(|&(i, _)| self.programs[i].cfg.name.as_str() == name)
        });
        for (idx, pgid) in watched {
            // Sampled for another process (it restarted meanwhile), or the group is empty.
            let Some(u) = usage.get(&pgid).filter(|_| groups.contains(&pgid)) else {
                continue;
            };
            let p = &self.programs[idx];
            let tracker = self
                .ceilings
                .trackers
                .entry(p.cfg.name.to_string())
                .or_default();
            if tracker.pgid != pgid {
                *tracker = Tracker {
                    pgid,
                    ..Tracker::default()
                };
            }
            if let Some(reason) = judge(&p.cfg.limits, tracker, at, *u) {
                *self
                    .ceilings
                    .breaches
                    .entry(p.cfg.name.to_string())
                    .or_default() += 1;
                self.unhealthy(idx, reason);
            }
        }
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
}
