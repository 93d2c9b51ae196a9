//! Control requests: answered at once from the actor's state, or, for start, stop and restart,
//! by waiters that settle when the programs reach the state asked for.
//!
//! Why this file is past 600 lines: one `match` dispatches every verb beside its answer; #39
//! splits verbs into a module each.

use std::time::Instant;

use supervisor_proto::{
    ActionResult, ErrorBody, ErrorKind, Failure, Outcome, PROTOCOL_VERSION, ProgramInfo,
    ProgramPid, Reply, Request, Stream, SupervisorInfo,
};
use tokio::sync::oneshot;

use super::{Daemon, Program, WaitKind, Waiter};
use crate::config::units::parse_signal;
use crate::control::ControlRequest;
use crate::lifecycle::{Event as LifeEvent, ExitReason, State};
use crate::process;
use crate::status::{describe, unix_ms};
use nix::unistd::Pid;

/// The longest message `raise` takes, in characters.
const RAISE_MESSAGE_MAX: usize = 1500;

const TAIL_MAX_LINES: u32 = 1000;

fn error(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        kind,
        message: message.into(),
    }
}

fn result(name: &str, outcome: Outcome, message: impl Into<String>) -> ActionResult {
    ActionResult {
        name: name.to_owned(),
        outcome,
        failure: None,
        message: message.into(),
    }
}

fn failed(name: &str, failure: Failure, message: impl Into<String>) -> ActionResult {
    ActionResult {
        name: name.to_owned(),
        outcome: Outcome::Failed,
        failure: Some(failure),
        message: message.into(),
    }
}

#[derive(Clone, Copy)]
enum Action {
    Start,
    Stop,
    Restart,
}

impl Daemon {
    pub(super) fn handle(&mut self, request: ControlRequest) {
        let ControlRequest {
            uid,
            request,
            reply,
        } = request;
        tracing::debug!(uid, verb = %request.verb(), "control request");
        let answer = match request {
            Request::Status { names } => self.select(&names, true).map(|ids| self.status(&ids)),
            Request::Start { names } => return self.act(&names, Action::Start, reply),
            Request::Stop { names } => return self.act(&names, Action::Stop, reply),
            Request::Restart { names } => return self.act(&names, Action::Restart, reply),
            Request::Signal { signal, names } => self.signal(&signal, &names),
            Request::Clear { names } => return self.clear(&names, reply),
            Request::Pid { names } => self.select(&names, false).map(|ids| self.pids(&ids)),
            Request::Tail {
                name,
                stream,
                lines,
            } => self.tail(&name, stream, lines),
            Request::Reread => self.reread(),
            Request::Update => self.update(),
            Request::Reload => self.reload(),
            Request::Add { name } => self.add(&name),
            Request::Remove { name } => self.remove(&name),
            Request::Events | Request::Audit { .. } => Err(error(
                ErrorKind::Internal,
                "events and the audit trail are served by the connection, not the daemon",
            )),
            Request::Shutdown => {
                self.begin_shutdown(format!("shutdown requested by uid {uid}"), 0);
                Ok(Reply::ShuttingDown)
            }
            Request::Version => Ok(Reply::Version {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::Check => Ok(self.check()),
            Request::Deploy {
                name,
                trigger,
                force,
                commit,
                branch,
            } => {
                let trigger = trigger.unwrap_or_else(|| format!("uid {uid}"));
                let pushed = match branch {
                    Some(branch) => self.refuse_other_branch(&name, &branch),
                    None => Ok(()),
                };
                let held = pushed.and_then(|()| match (&commit, force) {
                    (Some(commit), false) => self.refuse_held_back(&name, commit),
                    _ => Ok(()),
                });
                held.and_then(|()| {
                    let kind = supervisor_proto::DeployKind::Deploy;
                    self.request_deploy(&name, kind, trigger, force, commit)
                })
            }
            Request::Rollback { name } => self.request_deploy(
                &name,
                supervisor_proto::DeployKind::Rollback,
                format!("rollback by uid {uid}"),
                false,
                None,
            ),
            Request::Deploys { names, limit } => self.deploys_reply(&names, limit),
            Request::Alerts { limit } => Ok(Reply::Alerts {
                records: self.alerts.newest(limit as usize),
            }),
            Request::Raise {
                subject,
                message,
                severity,
                critical,
            } => self.raise_request(subject, message, severity, critical),
        };
        // The client may have gone; nothing to do about it.
        let _ = reply.send(answer);
    }

    /// The programs an action names: at least one.
    fn targets(&self, names: &[String]) -> Result<Vec<usize>, ErrorBody> {
        match self.select(names, false)? {
            ids if ids.is_empty() => Err(error(
                ErrorKind::BadRequest,
                "name a program, several, or all",
            )),
            ids => Ok(ids),
        }
    }

    /// `clear`: each program's log files emptied and their rotated backups deleted, on a
    /// blocking thread; then every writer reopens its file (its size starts again from 0).
    fn clear(&mut self, names: &[String], reply: oneshot::Sender<Result<Reply, ErrorBody>>) {
        let ids = match self.targets(names) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let targets: Vec<(String, Vec<(std::path::PathBuf, u32)>)> = ids
            .iter()
            .map(|&i| {
                let cfg = &self.programs[i].cfg;
                let files = [&cfg.stdout, &cfg.stderr]
                    .into_iter()
                    .filter_map(|t| t.path.clone().map(|p| (p, t.backups)))
                    .collect();
                (cfg.name.to_string(), files)
            })
            .collect();
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let cleared = tokio::task::spawn_blocking(move || {
                targets
                    .into_iter()
                    .map(|(name, files)| match clear_files(&files) {
                        Ok(()) => result(&name, Outcome::Cleared, "cleared"),
                        Err(e) => failed(&name, Failure::Other, format!("ERROR ({e})")),
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let answer = match cleared {
                Ok(results) => {
                    let _ = reports.send(crate::health::Report::LogsCleared).await;
                    Ok(Reply::Actions { results })
                }
                Err(e) => Err(error(ErrorKind::Internal, format!("clearing logs: {e}"))),
            };
            let _ = reply.send(answer);
        });
    }

    /// `raise`: a client's alert, checked like everything else that ends up in a channel.
    fn raise_request(
        &mut self,
        subject: String,
        message: String,
        severity: supervisor_proto::Severity,
        critical: bool,
    ) -> Result<Reply, ErrorBody> {
        supervisor_proto::ProgramName::new(&subject)
            .map_err(|e| error(ErrorKind::BadRequest, format!("subject: {e}")))?;
        let message = message.trim();
        if message.is_empty() {
            return Err(error(ErrorKind::BadRequest, "the message is empty"));
        }
        // Discord takes 2,000 characters; the bot prefixes a line of its own.
        if message.chars().count() > RAISE_MESSAGE_MAX {
            return Err(error(
                ErrorKind::BadRequest,
                format!("the message is longer than {RAISE_MESSAGE_MAX} characters"),
            ));
        }
        let alert = self.raise_about(
            subject,
            critical,
            supervisor_proto::AlertKind::Reported,
            severity,
            message.to_owned(),
        );
        Ok(Reply::Alerts {
            records: vec![alert],
        })
    }

    /// Program indices for `names`: `all`, names, or (if `empty_is_all`) nothing for all.
    pub(super) fn select(
        &self,
        names: &[String],
        empty_is_all: bool,
    ) -> Result<Vec<usize>, ErrorBody> {
        if (names.is_empty() && empty_is_all) || names.iter().any(|n| n == "all") {
            return Ok((0..self.programs.len()).collect());
        }
        let mut ids = Vec::new();
        for n in names {
            // A name, or supervisorctl's `group:*` and `group:name`.
            let found: Vec<usize> = (0..self.programs.len())
                .filter(|&i| {
                    let cfg = &self.programs[i].cfg;
                    supervisor_proto::selects(n, cfg.name.as_str(), cfg.group.as_deref())
                })
                .collect();
            if found.is_empty() {
                return Err(error(
                    ErrorKind::UnknownProgram,
                    format!("{n}: ERROR (no such process)"),
                ));
            }
            for i in found {
                if !ids.contains(&i) {
                    ids.push(i);
                }
            }
        }
        Ok(ids)
    }

    fn status(&self, ids: &[usize]) -> Reply {
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
                    let mut row = info(p, now, self.ceilings.restarts(name), poll_error);
                    row.schedule = self.schedule_info(name);
                    if let Some(next) = row.schedule.as_ref().and_then(|s| s.next_run_ms) {
                        row.description = with_next_run(&row.description, next);
                    }
                    row
                })
                .collect(),
        }
    }

    fn pids(&self, ids: &[usize]) -> Reply {
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

    fn signal(&mut self, signal: &str, names: &[String]) -> Result<Reply, ErrorBody> {
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

    fn tail(&self, name: &str, stream: Stream, lines: u32) -> Result<Reply, ErrorBody> {
        let idx = self.index(name).ok_or_else(|| {
            error(
                ErrorKind::UnknownProgram,
                format!("{name}: ERROR (no such process)"),
            )
        })?;
        let cfg = &self.programs[idx].cfg;
        let target = match stream {
            Stream::Stdout => &cfg.stdout,
            Stream::Stderr if cfg.redirect_stderr => {
                return Err(error(
                    ErrorKind::BadRequest,
                    format!("{name} sends stderr to its stdout log (redirect_stderr); tail stdout"),
                ));
            }
            Stream::Stderr => &cfg.stderr,
        };
        let stream_name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let path = target.path.as_ref().ok_or_else(|| {
            error(
                ErrorKind::BadRequest,
                format!(
                    "{name} keeps no {stream_name} log file ({stream_name}_logfile = \"NONE\")"
                ),
            )
        })?;
        let text =
            crate::logs::tail::last_lines_of(path, lines.min(TAIL_MAX_LINES)).map_err(|e| {
                error(
                    ErrorKind::Internal,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
        Ok(Reply::Tail {
            name: name.to_owned(),
            stream,
            path: path.display().to_string(),
            text,
        })
    }

    fn check(&self) -> Reply {
        let errors = match crate::config::load(&self.config.path) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        };
        Reply::Check {
            path: self.config.path.display().to_string(),
            errors,
        }
    }

    /// Start, stop or restart: each program's result arrives when it settles; one task
    /// gathers them into the reply, so the actor never waits.
    fn act(
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

    pub(super) fn begin_start(&mut self, idx: usize, mut w: Waiter) {
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
    pub(super) fn settle_waiters(&mut self, idx: usize) {
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
    pub(super) fn run_restarts(&mut self) {
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

fn running_pid(state: &State) -> Option<u32> {
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

fn info(p: &Program, now: Instant, limit_restarts: u64, poll_error: Option<String>) -> ProgramInfo {
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
                p.health.describe(),
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
        status_text: p.health.describe(),
        healthy: p.health.healthy,
        check_failures: p.health.failures,
        notify_rejected: p
            .health
            .notify
            .as_ref()
            .map_or(0, |n| n.rejected.load(std::sync::atomic::Ordering::Relaxed)),
        limit_restarts,
        schedule: None,
        poll_error,
    }
}

/// Empties each log file (the writers append, so they go on from its start) and deletes its
/// rotated backups (`name.log.1` ...). A file not written yet is nothing to clear.
fn clear_files(files: &[(std::path::PathBuf, u32)]) -> std::io::Result<()> {
    for (path, backups) in files {
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => f.set_len(0)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in 1..=*backups {
            match std::fs::remove_file(crate::logs::rotation::backup(path, n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}
