//! Control requests, a module per verb or family of verbs: each answers from the actor's state
//! at once, or hands the work to a task that replies when it is done (waiters for start, stop
//! and restart; a blocking thread for file work), so the actor never waits.
//!
//! # Layout
//! - this file: the dispatch of a request to its verb's handler, and what verbs share
//!   (selecting programs by name or group, the result and error shapes).
//! - [`status`]: `status` and `pid`.
//! - [`actions`]: `start`, `stop`, `restart`, `signal`, and the waiters.
//! - [`logs`]: `tail` and `clear`.
//! - [`deploys`]: `deploy` and `rollback` (the history, `deploys`, is read in `daemon/deploy.rs`).
//! - [`alerts`]: `alerts` and `raise`.
//! - [`check`]: `check`, the configuration file validated again.
//! - `reread`, `update`, `reload`, `add`, `remove`: in `daemon/update.rs`, beside the code that
//!   applies a changed configuration.

mod actions;
mod alerts;
mod check;
mod deploys;
mod logs;
mod status;

use supervisor_proto::{
    ActionResult, ErrorBody, ErrorKind, Failure, Outcome, PROTOCOL_VERSION, Reply, Request,
};
use tokio::sync::oneshot;

use self::actions::Action;
use super::Daemon;
use crate::control::ControlRequest;

/// Where a request's answer goes.
type Replier = oneshot::Sender<Result<Reply, ErrorBody>>;

/// Answers with what `work` returns, run on a blocking thread (file reads, user lookups):
/// never on the actor's.
fn off_thread(reply: Replier, work: impl FnOnce() -> Result<Reply, ErrorBody> + Send + 'static) {
    tokio::spawn(async move {
        let answer = tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(error(
                ErrorKind::Internal,
                format!("the request failed: {e}"),
            ))
        });
        // The client may have gone; nothing to do about it.
        let _ = reply.send(answer);
    });
}

pub(super) fn error(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        kind,
        message: message.into(),
    }
}

pub(super) fn result(name: &str, outcome: Outcome, message: impl Into<String>) -> ActionResult {
    ActionResult {
        name: name.to_owned(),
        outcome,
        failure: None,
        message: message.into(),
    }
}

pub(super) fn failed(name: &str, failure: Failure, message: impl Into<String>) -> ActionResult {
    ActionResult {
        name: name.to_owned(),
        outcome: Outcome::Failed,
        failure: Some(failure),
        message: message.into(),
    }
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
            } => return self.tail(&name, stream, lines, reply),
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
            Request::Check => return self.check(reply),
            Request::Deploy {
                name,
                trigger,
                force,
                commit,
                branch,
            } => self.deploy_request(uid, &name, trigger, force, commit, branch),
            Request::Rollback { name } => self.rollback_request(uid, &name),
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
    pub(super) fn targets(&self, names: &[String]) -> Result<Vec<usize>, ErrorBody> {
        match self.select(names, false)? {
            ids if ids.is_empty() => Err(error(
                ErrorKind::BadRequest,
                "name a program, several, or all",
            )),
            ids => Ok(ids),
        }
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
}
