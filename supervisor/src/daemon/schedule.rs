//! Scheduled programs (`schedule`): each run started when its slot comes, one deadline per
//! program in the actor's timer (nothing wakes between runs), what happens when a run is due
//! while the last one still runs (`overlap`), slots missed while the supervisor was down
//! (`on_missed`, from `statedir/schedule/NAME`), each run recorded in
//! `statedir/runs/NAME.jsonl`, and an alert when one fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use supervisor_proto::{AlertKind, ScheduleInfo, Severity};

use super::Daemon;
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

impl Daemon {
    /// Plans every scheduled program that has no plan, or whose schedule changed; drops the
    /// plans of programs gone. At start, and after `update`.
    pub(super) fn schedule_sync(&mut self) {
        let names: Vec<String> = self
            .programs
            .iter()
            .filter(|p| p.cfg.schedule.is_some())
            .map(|p| p.cfg.name.to_string())
            .collect();
        self.plans.0.retain(|name, _| names.contains(name));
        for idx in 0..self.programs.len() {
            let Some(schedule) = self.programs[idx].cfg.schedule.clone() else {
                continue;
            };
            let name = self.programs[idx].cfg.name.to_string();
            if self
                .plans
                .0
                .get(&name)
                .is_some_and(|p| p.text == schedule.text)
            {
                continue;
            }
            let next = self.first_slot(&name, &schedule);
            let plan = self.plans.0.entry(name).or_default();
            plan.text = schedule.text.clone();
            plan.next = next;
        }
    }

    /// The first run: a missed slot now (`on_missed = "run_once"`), else the next slot.
    fn first_slot(&mut self, name: &str, s: &Schedule) -> Option<(Instant, Timestamp)> {
        let now = Timestamp::now();
        let path = state_file(&self.config.supervisor.statedir, name);
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
            self.starts_writer
                .write(path, now.as_millisecond().to_string());
        }
        self.slot_after(s, now)
    }

    /// The slot after `t`, with its start delayed by a random part of `jitter`.
    fn slot_after(&mut self, s: &Schedule, t: Timestamp) -> Option<(Instant, Timestamp)> {
        let slot = s.next_after(t)?;
        let jitter = s.jitter.mul_f64((self.jitter.sample() + 1.0) / 2.0);
        Some((Instant::now() + until(slot) + jitter, slot))
    }

    pub(super) fn schedule_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.plans.0.values().filter_map(|p| p.next.map(|n| n.0))
    }

    pub(super) fn schedule_tick(&mut self, now: Instant) {
        let due: Vec<(String, Timestamp)> = self
            .plans
            .0
            .iter()
            .filter_map(|(name, p)| p.next.filter(|n| n.0 <= now).map(|n| (name.clone(), n.1)))
            .collect();
        for (name, slot) in due {
            self.fire(&name, slot);
        }
    }

    /// A slot came: the run starts, or the overlap rule says what instead; the next is planned.
    fn fire(&mut self, name: &str, slot: Timestamp) {
        let Some(idx) = self.index(name) else {
            return;
        };
        let Some(schedule) = self.programs[idx].cfg.schedule.clone() else {
            return;
        };
        let path = state_file(&self.config.supervisor.statedir, name);
        self.starts_writer
            .write(path, slot.as_millisecond().to_string());
        let next = self.slot_after(&schedule, slot.max(Timestamp::now()));
        let busy = self.programs[idx].state.is_live()
            || matches!(self.programs[idx].state, State::Backoff { .. });
        let Some(plan) = self.plans.0.get_mut(name) else {
            return;
        };
        plan.next = next;
        if !busy {
            plan.running_since = Some(SystemTime::now());
            tracing::info!(program = name, slot = %slot, "scheduled run");
            self.feed(idx, LifeEvent::Start);
            return;
        }
        match schedule.overlap {
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
                self.feed(idx, LifeEvent::Stop);
            }
        }
    }

    /// A scheduled program changed state: a run that ended is recorded (and alerted when it
    /// failed), and a queued or waiting run starts.
    pub(super) fn schedule_changed(&mut self, idx: usize, previous: &State) {
        let p = &self.programs[idx];
        if p.cfg.schedule.is_none() {
            return;
        }
        // (ok, how it ended, whether that is a failure to alert of). A stop (by hand, by the
        // supervisor's shutdown, for the next run with `overlap = "kill"`) is no failure.
        let ended = match &p.state {
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
            return;
        };
        let name = p.cfg.name.to_string();
        let critical = p.cfg.critical;
        let Some(plan) = self.plans.0.get_mut(&name) else {
            return;
        };
        let started = plan.running_since.take().unwrap_or_else(SystemTime::now);
        plan.runs += 1;
        if alert {
            plan.failed += 1;
        }
        plan.last = Some(if ok { "ok".to_owned() } else { result.clone() });
        let start_again =
            std::mem::take(&mut plan.queued) | std::mem::take(&mut plan.start_when_stopped);
        let record = RunRecord {
            program: name.clone(),
            started_ms: unix_ms(started),
            ended_ms: unix_ms(SystemTime::now()),
            ok,
            result: result.clone(),
        };
        let history = self
            .config
            .supervisor
            .statedir
            .join("runs")
            .join(format!("{name}.jsonl"));
        if let Err(e) = crate::jsonl::append(&history, &record) {
            tracing::error!(path = %history.display(), error = %e, "cannot record the run");
        }
        if alert && self.shutdown.is_none() {
            let text = format!("scheduled run of {name} failed: {result}");
            self.raise_about(
                name.clone(),
                critical,
                AlertKind::RunFailed,
                Severity::Warning,
                text,
            );
        }
        if start_again {
            if let Some(plan) = self.plans.0.get_mut(&name) {
                plan.running_since = Some(SystemTime::now());
            }
            tracing::info!(program = %name, "scheduled run (waited for the previous one)");
            self.feed(idx, LifeEvent::Start);
        }
    }

    /// What `status` tells of a program's schedule.
    pub(super) fn schedule_info(&self, name: &str) -> Option<ScheduleInfo> {
        let plan = self.plans.0.get(name)?;
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
