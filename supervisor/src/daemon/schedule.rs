//! Scheduled programs (`schedule`): each run started when its slot comes, one deadline per
//! program in the actor's timer (nothing wakes between runs), what happens when a run is due
//! while the last one still runs (`overlap`), slots missed while the supervisor was down
//! (`on_missed`, from `statedir/schedule/NAME`), each run recorded in
//! `statedir/runs/NAME.jsonl`, and an alert when one fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use supervisor_proto::{AlertKind, ScheduleInfo, Severity};

use super::action::Action;
use super::program::Program;
use crate::backoff::Jitter;
use crate::config::schedule::{OnMissed, Overlap, Schedule};
use crate::lifecycle::{Event as LifeEvent, State};
use crate::status::unix_ms;

/// Slots counted when looking for missed ones, at most (a long outage of a frequent job).
const MAX_MISSED: u32 = 10_000;

/// One program's plan.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// The schedule it was made for (`text`): a changed one is planned anew.
    text: String,
    /// When the next run starts (its slot plus jitter), and the slot.
    next: Option<(Instant, Timestamp)>,
    /// A run waits for the current one to end (`overlap = "queue"`).
    queued: bool,
    /// The current run is being stopped for the next (`overlap = "kill"`).
    start_when_stopped: bool,
    /// The run in progress: when it started.
    running_since: Option<SystemTime>,
    runs: u64,
    failed: u64,
    skipped: u64,
    /// How the last run ended.
    last: Option<String>,
}

/// The plans of every scheduled program, by name.
#[derive(Debug, Default)]
pub(super) struct Plans(HashMap<String, Plan>);

/// One finished run, as `runs/NAME.jsonl` keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct RunRecord {
    program: String,
    started_ms: u64,
    ended_ms: u64,
    ok: bool,
    result: String,
}

fn state_file(statedir: &std::path::Path, program: &str) -> PathBuf {
    statedir.join("schedule").join(program)
}

/// How long from now until `at` (zero when it has passed).
fn until(at: Timestamp) -> Duration {
    let now = Timestamp::now();
    if at <= now {
        return Duration::ZERO;
    }
    Duration::try_from(at.duration_since(now)).unwrap_or_default()
}

/// A scheduled program, as the plans see it.
pub(super) struct Scheduled<'a> {
    pub name: &'a str,
    pub schedule: &'a Schedule,
    pub state: &'a State,
    pub critical: bool,
}

/// Program `p`, if it is scheduled.
pub(super) fn scheduled_one(p: &Program) -> Option<Scheduled<'_>> {
    Some(Scheduled {
        name: p.cfg.name.as_str(),
        schedule: p.cfg.schedule.as_ref()?,
        state: &p.state,
        critical: p.cfg.critical,
    })
}

/// The scheduled programs.
pub(super) fn scheduled(programs: &[Program]) -> Vec<Scheduled<'_>> {
    programs.iter().filter_map(scheduled_one).collect()
}

impl Plans {
    /// Plans every scheduled program that has no plan, or whose schedule changed; drops the
    /// plans of programs gone. At start, and after `update`.
    pub(super) fn sync(
        &mut self,
        scheduled: &[Scheduled<'_>],
        statedir: &Path,
        jitter: &mut Jitter,
    ) -> Vec<Action> {
        self.0
            .retain(|name, _| scheduled.iter().any(|s| s.name == name));
        let mut actions = Vec::new();
        for s in scheduled {
            if self
                .0
                .get(s.name)
                .is_some_and(|p| p.text == s.schedule.text)
            {
                continue;
            }
            let next = first_slot(s.name, s.schedule, statedir, jitter, &mut actions);
            let plan = self.0.entry(s.name.to_owned()).or_default();
            plan.text = s.schedule.text.clone();
            plan.next = next;
        }
        actions
    }

    pub(super) fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.0.values().filter_map(|p| p.next.map(|n| n.0))
    }

    /// The slots that came: each run starts, or the overlap rule says what instead; the next
    /// is planned.
    pub(super) fn tick(
        &mut self,
        scheduled: &[Scheduled<'_>],
        now: Instant,
        statedir: &Path,
        jitter: &mut Jitter,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for s in scheduled {
            let Some(plan) = self.0.get_mut(s.name) else {
                continue;
            };
            let Some((_, slot)) = plan.next.filter(|n| n.0 <= now) else {
                continue;
            };
            let name = s.name;
            let path = state_file(statedir, name);
            actions.push(Action::Write(path, slot.as_millisecond().to_string()));
            plan.next = slot_after(s.schedule, slot.max(Timestamp::now()), jitter);
            let busy = s.state.is_live() || matches!(s.state, State::Backoff { .. });
            if !busy {
                plan.running_since = Some(SystemTime::now());
                tracing::info!(program = name, slot = %slot, "scheduled run");
                actions.push(Action::Feed(name.to_owned(), LifeEvent::Start));
                continue;
            }
            match s.schedule.overlap {
                Overlap::Skip => {
                    plan.skipped += 1;
                    tracing::warn!(program = name, slot = %slot, "scheduled run skipped: the previous run still runs (overlap = \"skip\")");
                }
                Overlap::Queue => {
                    plan.queued = true;
                    tracing::info!(program = name, slot = %slot, "scheduled run queued behind the one still running");
                }
                Overlap::Kill => {
                    plan.start_when_stopped = true;
                    tracing::warn!(program = name, slot = %slot, "stopping the previous run for the next (overlap = \"kill\")");
                    actions.push(Action::Feed(name.to_owned(), LifeEvent::Stop));
                }
            }
        }
        actions
    }

    /// A scheduled program changed state: a run that ended is recorded (and alerted when it
    /// failed), and a queued or waiting run starts.
    pub(super) fn changed(
        &mut self,
        s: &Scheduled<'_>,
        previous: &State,
        statedir: &Path,
        shutting_down: bool,
    ) -> Vec<Action> {
        // (ok, how it ended, whether that is a failure to alert of). A stop (by hand, by the
        // supervisor's shutdown, for the next run with `overlap = "kill"`) is no failure.
        let ended = match s.state {
            State::Exited {
                reason, expected, ..
            } => Some((*expected, reason.to_string(), !*expected)),
            State::Fatal { reason } => Some((false, reason.clone(), true)),
            State::Stopped { last } => Some((
                false,
                last.as_ref()
                    .map_or_else(|| "stopped".to_owned(), |r| format!("stopped ({r})")),
                false,
            )),
            _ => None,
        };
        let Some((ok, result, alert)) =
            ended.filter(|_| previous.is_live() || matches!(previous, State::Backoff { .. }))
        else {
            return Vec::new();
        };
        let name = s.name.to_owned();
        let Some(plan) = self.0.get_mut(&name) else {
            return Vec::new();
        };
        let started = plan.running_since.take().unwrap_or_else(SystemTime::now);
        plan.runs += 1;
        if alert {
            plan.failed += 1;
        }
        plan.last = Some(if ok { "ok".to_owned() } else { result.clone() });
        let start_again =
            std::mem::take(&mut plan.queued) | std::mem::take(&mut plan.start_when_stopped);
        let mut actions = Vec::new();
        let record = RunRecord {
            program: name.clone(),
            started_ms: unix_ms(started),
            ended_ms: unix_ms(SystemTime::now()),
            ok,
            result: result.clone(),
        };
        let history = statedir.join("runs").join(format!("{name}.jsonl"));
        match serde_json::to_string(&record) {
            Ok(line) => actions.push(Action::Append(history, line)),
            Err(e) => tracing::error!(program = %name, error = %e, "cannot record the run"),
        }
        if alert && !shutting_down {
            actions.push(Action::Alert {
                subject: name.clone(),
                critical: s.critical,
                kind: AlertKind::RunFailed,
                severity: Severity::Warning,
                message: format!("scheduled run of {name} failed: {result}"),
            });
        }
        if start_again {
            plan.running_since = Some(SystemTime::now());
            tracing::info!(program = %name, "scheduled run (waited for the previous one)");
            actions.push(Action::Feed(name, LifeEvent::Start));
        }
        actions
    }

    /// What `status` tells of a program's schedule.
    pub(super) fn info(&self, name: &str) -> Option<ScheduleInfo> {
        let plan = self.0.get(name)?;
        Some(ScheduleInfo {
            schedule: plan.text.clone(),
            next_run_ms: plan
                .next
                .map(|(_, slot)| u64::try_from(slot.as_millisecond()).unwrap_or(0)),
            runs: plan.runs,
            failed: plan.failed,
            skipped: plan.skipped,
            last: plan.last.clone(),
        })
    }
}

/// The first run: a missed slot now (`on_missed = "run_once"`), else the next slot.
fn first_slot(
    name: &str,
    s: &Schedule,
    statedir: &Path,
    jitter: &mut Jitter,
    actions: &mut Vec<Action>,
) -> Option<(Instant, Timestamp)> {
    let now = Timestamp::now();
    let path = state_file(statedir, name);
    // A few bytes, once per program at start.
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    if let Some(last) = last {
        let mut missed = 0u32;
        let mut latest = None;
        let mut slot = s.next_after(last);
        while let Some(t) = slot.filter(|t| *t <= now && missed < MAX_MISSED) {
            missed += 1;
            latest = Some(t);
            slot = s.next_after(t);
        }
        if let Some(latest) = latest {
            match s.on_missed {
                OnMissed::RunOnce => {
                    tracing::info!(
                        program = name,
                        missed,
                        "slots missed while the supervisor was down; running once now"
                    );
                    return Some((Instant::now(), latest));
                }
                OnMissed::Skip => {
                    tracing::info!(
                        program = name,
                        missed,
                        "slots missed while the supervisor was down; skipped (on_missed = \"skip\")"
                    );
                }
            }
        }
    } else {
        // Remember that the schedule exists from now: a later outage counts from here.
        actions.push(Action::Write(path, now.as_millisecond().to_string()));
    }
    slot_after(s, now, jitter)
}

/// The slot after `t`, with its start delayed by a random part of `jitter`.
fn slot_after(s: &Schedule, t: Timestamp, jitter: &mut Jitter) -> Option<(Instant, Timestamp)> {
    let slot = s.next_after(t)?;
    let jitter = s.jitter.mul_f64((jitter.sample() + 1.0) / 2.0);
    Some((Instant::now() + until(slot) + jitter, slot))
}

#[cfg(test)]
mod tests {
    use nix::unistd::Pid;

    use super::*;
    use crate::config::schedule::{When, parse_when};
    use crate::lifecycle::ExitReason;

    fn every(overlap: Overlap) -> Schedule {
        Schedule {
            text: "every 1s".into(),
            when: parse_when("every 1s").unwrap_or(When::Every(Duration::from_secs(1))),
            timezone: None,
            overlap,
            on_missed: OnMissed::Skip,
            jitter: Duration::ZERO,
        }
    }

    fn feeds(actions: &[Action]) -> Vec<(&str, &LifeEvent)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Feed(name, event) => Some((name.as_str(), event)),
                _ => None,
            })
            .collect()
    }

    /// The plans alone, without a daemon: a slot starts an idle program; a busy one is
    /// skipped, queued or stopped for the next run as `overlap` says; a run's end is recorded,
    /// a failed one alerted, and a queued run started then.
    #[test]
    fn a_slot_starts_skips_queues_or_stops_as_overlap_says() {
        let dir = tempfile::tempdir().unwrap();
        let mut jitter = Jitter::seeded();
        let running = State::Running {
            pid: Pid::from_raw(4242),
            since: Instant::now(),
            streak: 0,
        };
        let idle = State::initial();
        for (overlap, busy_event) in [
            (Overlap::Skip, None),
            (Overlap::Queue, None),
            (Overlap::Kill, Some(LifeEvent::Stop)),
        ] {
            let schedule = every(overlap);
            let job = |state| Scheduled {
                name: "job",
                schedule: &schedule,
                state,
                critical: false,
            };
            let mut plans = Plans::default();
            let written = plans.sync(&[job(&idle)], dir.path(), &mut jitter);
            assert!(
                matches!(written.as_slice(), [Action::Write(path, _)] if path.ends_with("schedule/job")),
                "a new schedule's start is remembered"
            );
            let first = plans.deadlines().next().expect("a first slot");
            let later = first + Duration::from_millis(1);
            let started = plans.tick(&[job(&idle)], later, dir.path(), &mut jitter);
            assert_eq!(feeds(&started), [("job", &LifeEvent::Start)]);
            assert!(
                plans.deadlines().next().is_some_and(|n| n > first),
                "the next planned"
            );
            // The next slot finds the run still going.
            let next = plans.deadlines().next().unwrap() + Duration::from_millis(1);
            let busy = plans.tick(&[job(&running)], next, dir.path(), &mut jitter);
            let expected: Vec<(&str, &LifeEvent)> = busy_event.iter().map(|e| ("job", e)).collect();
            assert_eq!(feeds(&busy), expected, "{overlap:?}");
            // The run fails: recorded and alerted; a queued or stopped-for run starts now.
            let failed = State::Exited {
                at: Instant::now(),
                reason: ExitReason::Exited(3),
                expected: false,
            };
            let ended = plans.changed(&job(&failed), &running, dir.path(), false);
            assert!(ended.iter().any(|a| matches!(a, Action::Append(path, line)
                if path.ends_with("runs/job.jsonl") && line.contains("\"ok\":false"))));
            assert!(ended.iter().any(|a| matches!(
                a,
                Action::Alert {
                    kind: AlertKind::RunFailed,
                    ..
                }
            )));
            let again = if overlap == Overlap::Skip {
                vec![]
            } else {
                vec![("job", &LifeEvent::Start)]
            };
            assert_eq!(feeds(&ended), again, "{overlap:?}");
            let info = plans.info("job").unwrap();
            assert_eq!(
                (info.runs, info.failed, info.skipped),
                (1, 1, u64::from(overlap == Overlap::Skip))
            );
        }
    }
}
