//! How a program's state reads in `status`: supervisorctl's third column.

use std::time::{Duration, Instant, SystemTime};

use crate::lifecycle::{ExitReason, State, TOO_QUICK};

/// supervisorctl's description: `pid 123, uptime 0:01:02` when RUNNING, the reason when FATAL or
/// BACKOFF, `Not started`, or the local time it stopped.
pub fn describe(state: &State, changed_at: SystemTime, ever_started: bool, now: Instant) -> String {
    match state {
        State::Running { pid, since, .. } => {
            format!(
                "pid {pid}, uptime {}",
                uptime(now.saturating_duration_since(*since))
            )
        }
        State::Spawning { .. } | State::Starting { .. } | State::Stopping { .. } => String::new(),
        State::Backoff {
            last,
            failed_starts,
            until,
            ..
        } => {
            let wait = until.saturating_duration_since(now).as_secs_f64();
            match (last, failed_starts) {
                (ExitReason::SpawnFailed(e), _) => format!("spawn error: {e}"),
                // supervisorctl's words for a start that ended too soon; a program the
                // supervisor itself stopped (not ready, unhealthy) says why.
                (ExitReason::Exited(_) | ExitReason::Killed(_), 1..) => TOO_QUICK.to_owned(),
                _ => format!("{last}; restarting in {wait:.1}s"),
            }
        }
        State::Fatal { reason } => reason.clone(),
        State::Stopped { .. } if !ever_started => "Not started".to_owned(),
        State::Stopped { .. } | State::Exited { .. } => local_time(changed_at),
    }
}

/// A duration as supervisorctl shows uptimes (see [`supervisor_proto::format_uptime`]).
pub fn uptime(d: Duration) -> String {
    supervisor_proto::format_uptime(d.as_secs())
}

/// `Nov 24 01:05 PM`, supervisorctl's format for when a program stopped.
fn local_time(at: SystemTime) -> String {
    let at: chrono::DateTime<chrono::Local> = at.into();
    at.format("%b %d %I:%M %p").to_string()
}

/// Unix time in milliseconds.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Pid;

    #[test]
    fn uptimes_read_like_supervisorctl() {
        assert_eq!(uptime(Duration::from_secs(62)), "0:01:02");
        assert_eq!(uptime(Duration::from_secs(3 * 3600 + 4)), "3:00:04");
        assert_eq!(uptime(Duration::from_secs(86_400 + 7384)), "1 day, 2:03:04");
        assert_eq!(
            uptime(Duration::from_secs(3 * 86_400 + 5)),
            "3 days, 0:00:05"
        );
    }

    #[test]
    fn descriptions() {
        let now = Instant::now();
        let at = SystemTime::now();
        let running = State::Running {
            pid: Pid::from_raw(42),
            since: now - Duration::from_secs(75),
            streak: 0,
        };
        assert_eq!(describe(&running, at, true, now), "pid 42, uptime 0:01:15");
        assert_eq!(describe(&State::initial(), at, false, now), "Not started");
        let fatal = State::Fatal {
            reason: TOO_QUICK.into(),
        };
        assert_eq!(describe(&fatal, at, true, now), TOO_QUICK);
        let backoff = State::Backoff {
            until: now + Duration::from_millis(2500),
            failed_starts: 0,
            streak: 2,
            last: ExitReason::Exited(3),
        };
        assert_eq!(
            describe(&backoff, at, true, now),
            "exit status 3; restarting in 2.5s"
        );
        let failing = State::Backoff {
            until: now,
            failed_starts: 1,
            streak: 1,
            last: ExitReason::Exited(1),
        };
        assert_eq!(describe(&failing, at, true, now), TOO_QUICK);
        // Stopped by the supervisor for not being ready: that, not "exited too quickly".
        let not_ready = State::Backoff {
            until: now + Duration::from_secs(3),
            failed_starts: 1,
            streak: 1,
            last: ExitReason::NotReady(Duration::from_secs(120)),
        };
        assert_eq!(
            describe(&not_ready, at, true, now),
            "not ready after 2m; restarting in 3.0s"
        );
        let exited = State::Exited {
            at: now,
            reason: ExitReason::Exited(0),
            expected: true,
        };
        // A local date such as "Nov 24 01:05 PM".
        let text = describe(&exited, at, true, now);
        assert!(text.ends_with(" AM") || text.ends_with(" PM"), "{text}");
    }
}
