//! `status` and `pid`: what each program is doing, answered from the actor's state.

use std::time::Instant;

use supervisor_proto::{ProgramInfo, ProgramPid, Reply, SupervisorInfo};

use super::super::health::ProgramHealth;
use super::super::{Daemon, Program};
use crate::lifecycle::{ExitReason, State};
use crate::status::{describe, unix_ms};

impl Daemon {
    pub(super) fn status(&self, ids: &[usize]) -> Reply {
        let now = Instant::now();
        Reply::Status {
            supervisor: SupervisorInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_ms: unix_ms(self.started.1),
                uptime_secs: now.saturating_duration_since(self.started.0).as_secs(),
                shutting_down: self.shutdown.is_some(),
            },
            programs: ids
                .iter()
                .map(|&i| {
                    let p = &self.programs[i];
                    let name = p.cfg.name.as_str();
                    let poll_error = self.polls.describe(name, now);
                    let health = self.health.get(name);
                    let mut row = info(p, health, now, self.ceilings.restarts(name), poll_error);
                    row.schedule = self.plans.info(name);
                    if let Some(next) = row.schedule.as_ref().and_then(|s| s.next_run_ms) {
                        row.description = with_next_run(&row.description, next);
                    }
                    row
                })
                .collect(),
        }
    }

    pub(super) fn pids(&self, ids: &[usize]) -> Reply {
        Reply::Pids {
            supervisor: std::process::id(),
            programs: ids
                .iter()
                .map(|&i| {
                    let p = &self.programs[i];
                    ProgramPid {
                        name: p.cfg.name.to_string(),
                        pid: running_pid(&p.state),
                    }
                })
                .collect(),
        }
    }
}

pub(super) fn running_pid(state: &State) -> Option<u32> {
    match state {
        State::Starting { pid, .. } | State::Running { pid, .. } => Some(pid.as_raw() as u32),
        _ => None,
    }
}

/// supervisorctl's description, then what the program says of itself (`STATUS=`), as
/// systemctl shows a unit's "Status:" line.
fn with_status(description: String, status: Option<String>) -> String {
    match (description.is_empty(), status) {
        (_, None) => description,
        (true, Some(s)) => s,
        (false, Some(s)) => format!("{description}; {s}"),
    }
}

/// A scheduled program's description, with its next run (`next run 20:35:00 UTC, in 3m 50s`).
fn with_next_run(description: &str, next_ms: u64) -> String {
    let now_ms = unix_ms(std::time::SystemTime::now());
    let secs = next_ms.saturating_sub(now_ms).div_ceil(1000);
    let at = jiff::Timestamp::from_millisecond(next_ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let wait = match secs {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    };
    let next = format!("next run {at}, in {wait}");
    match description.is_empty() {
        true => next,
        false => format!("{description}; {next}"),
    }
}

fn info(
    p: &Program,
    health: Option<&ProgramHealth>,
    now: Instant,
    limit_restarts: u64,
    poll_error: Option<String>,
) -> ProgramInfo {
    let uptime_secs = match &p.state {
        State::Running { since, .. } | State::Starting { since, .. } => {
            Some(now.saturating_duration_since(*since).as_secs())
        }
        _ => None,
    };
    ProgramInfo {
        name: p.cfg.name.to_string(),
        group: p.cfg.group.clone(),
        state: p.state.name(),
        description: with_status(
            with_status(
                describe(&p.state, p.changed_at, p.spawns > 0, now),
                health.and_then(ProgramHealth::describe),
            ),
            poll_error.clone(),
        ),
        pid: p.state.pid().map(|pid| pid.as_raw() as u32),
        uptime_secs,
        since_ms: unix_ms(p.changed_at),
        spawns: p.spawns,
        last_exit: p.last_exit.as_ref().map(ToString::to_string),
        last_exit_code: match p.last_exit {
            Some(ExitReason::Exited(code)) => Some(code),
            _ => None,
        },
        deploy_branch: p.cfg.deploy.as_ref().map(|d| d.branch.clone()),
        critical: p.cfg.critical,
        status_text: health.and_then(ProgramHealth::describe),
        healthy: health.and_then(|h| h.healthy),
        check_failures: health.map_or(0, |h| h.failures),
        notify_rejected: health
            .and_then(|h| h.notify.as_ref())
            .map_or(0, |n| n.rejected.load(std::sync::atomic::Ordering::Relaxed)),
        limit_restarts,
        schedule: None,
        poll_error,
    }
}
