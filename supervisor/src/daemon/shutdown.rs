//! Shutdown: a signal or a request begins it; dependents stop before their dependencies, one
//! level at a time; event listeners may finish their events first; `shutdown_timeout` kills
//! what is left; then the pipes drain and the exit code is returned.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use supervisor_proto::Event;
use tokio::sync::oneshot;

use super::{Daemon, listeners};
use crate::lifecycle::{Event as LifeEvent, State};
use crate::process;
use crate::status::unix_ms;

/// How long, after the last program stopped, output still in the pipes may take to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Shutdown {
    pub(super) deadline: Instant,
    pub(super) forced: bool,
    /// Until when event listeners may finish the events they have (then they stop too).
    pub(super) listeners_until: Instant,
}

impl Daemon {
    pub(super) fn shutdown_signal(&mut self, sig: Signal) {
        match &self.shutdown {
            None => self.begin_shutdown(format!("received {sig}"), 0),
            Some(s) if !s.forced => {
                tracing::warn!(signal = %sig, "second shutdown signal; killing every program now");
                self.force_kill();
            }
            Some(_) => {}
        }
    }

    pub(super) fn begin_shutdown(&mut self, reason: String, exit_code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        tracing::info!(%reason, "shutting down");
        self.exit_code = exit_code;
        self.shutdown = Some(Shutdown {
            listeners_until: crate::lifecycle::later(Instant::now(), listeners::SHUTDOWN_DRAIN),
            deadline: crate::lifecycle::later(
                Instant::now(),
                self.config.supervisor.shutdown_timeout,
            ),
            forced: false,
        });
        for p in &mut self.programs {
            p.pending_start = false;
        }
        self.abort_deploys();
        let kill = self.polls.abort();
        self.perform(kill);
        let stopping = crate::listener::EventType::SupervisorStateChangeStopping;
        self.listeners.supervisor_state(&self.programs, stopping);
        let _ = self.events.send(std::sync::Arc::new(Event::ShuttingDown {
            at_ms: unix_ms(SystemTime::now()),
        }));
    }

    pub(super) fn force_kill(&mut self) {
        if let Some(s) = self.shutdown.as_mut() {
            s.forced = true;
        }
        for i in 0..self.programs.len() {
            if matches!(
                self.programs[i].state,
                State::Starting { .. } | State::Running { .. }
            ) {
                self.feed(i, LifeEvent::Stop);
            }
            if let State::Stopping { pid, .. } = self.programs[i].state {
                let _ = process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }

    pub(super) fn drive_shutdown(&mut self) {
        // Waiting to restart is pointless now.
        for i in 0..self.programs.len() {
            if matches!(self.programs[i].state, State::Backoff { .. }) {
                self.feed(i, LifeEvent::Stop);
            }
        }
        // Dependents before their dependencies; one level at a time, in parallel within it.
        let level = self
            .programs
            .iter()
            .filter(|p| p.state.is_live())
            .map(|p| (p.depth, p.cfg.priority))
            .max();
        let Some(level) = level else {
            return;
        };
        for i in 0..self.programs.len() {
            let p = &self.programs[i];
            if (p.depth, p.cfg.priority) == level
                && matches!(p.state, State::Starting { .. } | State::Running { .. })
                && !self
                    .listeners
                    .draining(p, self.shutdown.as_ref().map(|s| s.listeners_until))
            {
                self.feed(i, LifeEvent::Stop);
            }
        }
    }

    /// After the last program stopped: let the pipes drain, then return the exit code.
    pub(super) async fn finish(self, echo_done: oneshot::Receiver<()>) -> i32 {
        let Daemon {
            captures,
            programs,
            exit_code,
            echo,
            events,
            alerts,
            ..
        } = self;
        tracing::info!(exit_code, "all programs stopped");
        // Event streams end; our copies of the pipes' write ends go, so each reader ends once
        // the last process holding its pipe is gone.
        let alerts_written = alerts.close();
        drop((programs, echo, events));
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for capture in captures {
            if tokio::time::timeout_at(deadline, capture).await.is_err() {
                tracing::warn!(
                    "output still open after shutdown (a process outside its program's group?); not waiting"
                );
                break;
            }
        }
        let _ = tokio::time::timeout_at(deadline + DRAIN_TIMEOUT, echo_done).await;
        // The last alerts (a FATAL that ended the supervisor) are kept before it exits.
        let _ = tokio::time::timeout_at(deadline + DRAIN_TIMEOUT, alerts_written).await;
        exit_code
    }
}
