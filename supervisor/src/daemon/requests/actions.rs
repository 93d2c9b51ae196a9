//! `start`, `stop`, `restart` and `signal`: start, stop and restart are answered by waiters
//! that settle when the programs reach the state asked for (one task gathers the results, so
//! the actor never waits); a restart whose stop is done starts on the next drive.

use nix::unistd::Pid;
use supervisor_proto::{ActionResult, ErrorBody, ErrorKind, Failure, Outcome, Reply};
use tokio::sync::oneshot;

use super::super::{Daemon, WaitKind, Waiter};
use super::status::running_pid;
use super::{error, failed, result};
use crate::config::units::parse_signal;
use crate::lifecycle::{Event as LifeEvent, ExitReason, State};
use crate::process;

#[derive(Clone, Copy)]
pub(super) enum Action {
    Start,
    Stop,
    Restart,
}

impl Daemon {
    /// Start, stop or restart: each program's result arrives when it settles; one task
    /// gathers them into the reply, so the actor never waits.
    pub(super) fn act(
        &mut self,
        names: &[String],
        action: Action,
        reply: oneshot::Sender<Result<Reply, ErrorBody>>,
    ) {
        let ids = match self.targets(names) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if self.shutdown.is_some() && !matches!(action, Action::Stop) {
            let _ = reply.send(Err(error(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down and starts nothing",
            )));
            return;
        }
        // Names, not indices: a start may reorder nothing, but keep it robust.
        let names: Vec<String> = ids
            .iter()
            .map(|&i| self.programs[i].cfg.name.to_string())
            .collect();
        let mut pending = Vec::new();
        for name in names {
            let Some(idx) = self.index(&name) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter {
                kind: WaitKind::Running,
                results: Vec::new(),
                tx,
            };
            match action {
                Action::Start => self.begin_start(idx, waiter),
                Action::Stop => self.begin_stop(idx, waiter),
                Action::Restart => self.begin_restart(idx, waiter),
            }
            pending.push((name, rx));
        }
        tokio::spawn(async move {
            let mut results = Vec::new();
            for (name, rx) in pending {
                match rx.await {
                    Ok(r) => results.extend(r),
                    Err(_) => results.push(failed(
                        &name,
                        Failure::Other,
                        "ERROR (abandoned: the program was removed or the supervisor is shutting down)",
                    )),
                }
            }
            let _ = reply.send(Ok(Reply::Actions { results }));
        });
    }

    pub(in crate::daemon) fn begin_start(&mut self, idx: usize, mut w: Waiter) {
        w.kind = WaitKind::Running;
        let p = &mut self.programs[idx];
        p.pending_start = false;
        match p.state {
            State::Running { .. } => {
                let name = p.cfg.name.to_string();
                w.results.push(result(
                    &name,
                    Outcome::AlreadyStarted,
                    "ERROR (already started)",
                ));
                let _ = w.tx.send(w.results);
            }
            State::Spawning { .. } | State::Starting { .. } => p.waiters.push(w),
            State::Stopping { .. } => {
                w.kind = WaitKind::Restart;
                p.waiters.push(w);
            }
            _ => {
                self.feed(idx, LifeEvent::Start);
                let p = &mut self.programs[idx];
                p.waiters.push(w);
                // Settles at once if it is already RUNNING (startsecs = 0) or already failed.
                self.settle_waiters(idx);
            }
        }
    }

    fn begin_stop(&mut self, idx: usize, mut w: Waiter) {
        w.kind = WaitKind::Stopped;
        let p = &mut self.programs[idx];
        p.pending_start = false;
        let name = p.cfg.name.to_string();
        match p.state {
            State::Starting { .. } | State::Running { .. } => {
                p.waiters.push(w);
                self.feed(idx, LifeEvent::Stop);
            }
            State::Stopping { .. } | State::Spawning { .. } => p.waiters.push(w),
            State::Backoff { .. } => {
                self.feed(idx, LifeEvent::Stop);
                w.results.push(result(&name, Outcome::Stopped, "stopped"));
                let _ = w.tx.send(w.results);
            }
            _ => {
                w.results
                    .push(result(&name, Outcome::NotRunning, "ERROR (not running)"));
                let _ = w.tx.send(w.results);
            }
        }
    }

    fn begin_restart(&mut self, idx: usize, mut w: Waiter) {
        let p = &mut self.programs[idx];
        match p.state {
            State::Starting { .. } | State::Running { .. } => {
                p.pending_start = false;
                w.kind = WaitKind::Restart;
                p.waiters.push(w);
                self.feed(idx, LifeEvent::Stop);
            }
            State::Stopping { .. } => {
                w.kind = WaitKind::Restart;
                p.waiters.push(w);
            }
            _ => {
                if matches!(p.state, State::Backoff { .. }) {
                    self.feed(idx, LifeEvent::Stop);
                }
                self.begin_start(idx, w);
            }
        }
    }

    /// After program `idx` changed state: answer the clients whose wait is over. A restart
    /// whose stop is done is queued to start on the next drive.
    pub(in crate::daemon) fn settle_waiters(&mut self, idx: usize) {
        let p = &mut self.programs[idx];
        if p.waiters.is_empty() {
            return;
        }
        let name = p.cfg.name.to_string();
        let live = p.state.is_live();
        let mut keep = Vec::new();
        for mut w in std::mem::take(&mut p.waiters) {
            match w.kind {
                WaitKind::Running => match &p.state {
                    State::Running { .. } => {
                        w.results.push(result(&name, Outcome::Started, "started"));
                        let _ = w.tx.send(w.results);
                    }
                    State::Spawning { .. } | State::Starting { .. } | State::Stopping { .. } => {
                        keep.push(w)
                    }
                    other => {
                        w.results.push(start_failure(&name, other));
                        let _ = w.tx.send(w.results);
                    }
                },
                WaitKind::Stopped if !live => {
                    w.results.push(result(&name, Outcome::Stopped, "stopped"));
                    let _ = w.tx.send(w.results);
                }
                WaitKind::Restart if !live => {
                    w.results.push(result(&name, Outcome::Stopped, "stopped"));
                    w.kind = WaitKind::Running;
                    self.restarts.push((name.clone(), w));
                }
                _ => keep.push(w),
            }
        }
        self.programs[idx].waiters = keep;
    }

    /// Restarts whose stop completed: start them now.
    pub(in crate::daemon) fn run_restarts(&mut self) {
        for (name, w) in std::mem::take(&mut self.restarts) {
            match self.index(&name) {
                Some(idx) if self.shutdown.is_none() => self.begin_start(idx, w),
                _ => {
                    let mut w = w;
                    w.results.push(failed(
                        &name,
                        Failure::Other,
                        "ERROR (not restarted: shutting down or removed)",
                    ));
                    let _ = w.tx.send(w.results);
                }
            }
        }
    }

    pub(super) fn signal(&mut self, signal: &str, names: &[String]) -> Result<Reply, ErrorBody> {
        let sig = parse_signal(signal).map_err(|m| error(ErrorKind::BadRequest, m))?;
        let ids = self.targets(names)?;
        let results = ids
            .iter()
            .map(|&i| {
                let p = &self.programs[i];
                let name = p.cfg.name.as_str();
                match running_pid(&p.state) {
                    Some(pid) => match process::signal_process(Pid::from_raw(pid as i32), sig) {
                        Ok(()) => {
                            tracing::info!(program = name, pid, signal = %sig, "signalled on request");
                            result(name, Outcome::Signalled, "signalled")
                        }
                        Err(e) => failed(name, Failure::Other, format!("ERROR ({e})")),
                    },
                    None => failed(name, Failure::NotRunning, "ERROR (not running)"),
                }
            })
            .collect();
        Ok(Reply::Actions { results })
    }
}

/// Why a start did not reach RUNNING, as supervisorctl words it.
fn start_failure(name: &str, state: &State) -> ActionResult {
    let (failure, message) = match state {
        State::Backoff {
            last: ExitReason::SpawnFailed(e),
            ..
        } => (Failure::SpawnError, format!("ERROR (spawn error: {e})")),
        State::Backoff { last, .. } => (
            Failure::AbnormalTermination,
            format!("ERROR (abnormal termination: {last})"),
        ),
        State::Exited { reason, .. } => (
            Failure::AbnormalTermination,
            format!("ERROR (abnormal termination: {reason})"),
        ),
        State::Fatal { reason } => (Failure::Other, format!("ERROR ({reason})")),
        _ => (
            Failure::Other,
            "ERROR (stopped before it was running)".to_owned(),
        ),
    };
    failed(name, failure, message)
}
