//! What a component asks the actor's core to do. The components (ceilings, schedules, ...) own
//! their state and decide, from their own data and a read-only view of the programs; they
//! return actions, and only the core acts: on programs' lifecycles, on the alert channel, on
//! files and threads. A component is tested without a daemon, and what it may do is this list.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use supervisor_proto::{AlertKind, DeployKind, Event, Severity};

use super::Daemon;
use super::children::Child;
use crate::config::health::Probe;
use crate::health::{ProbeKind, Report};
use crate::lifecycle::Event as LifeEvent;
use crate::process;

pub(super) enum Action {
    /// A lifecycle event for the named program (a scheduled start, a stop for the next run).
    Feed(String, LifeEvent),
    /// The named program failed its liveness (its checks, its watchdog, a ceiling held too
    /// long): reported, alerted and restarted with the reason.
    Unhealthy(String, String),
    /// An alert about a program (or another subject).
    Alert {
        subject: String,
        critical: bool,
        kind: AlertKind,
        severity: Severity,
        message: String,
    },
    /// A small file's new content, written by the writer thread (a schedule's last slot).
    Write(PathBuf, String),
    /// A record (one line of JSON) appended to a JSON-lines history.
    Append(PathBuf, String),
    /// Work for a blocking thread, whose outcome comes back to the actor as a report.
    Blocking(Box<dyn FnOnce() -> Report + Send>),
    /// A probe to run (HTTP and TCP as tasks, a command as a child of the actor's).
    Probe(ProbeRun),
    /// An event for the event stream (a program healthy again, or failing its checks).
    Event(Event),
    /// The named program declared this process its main one (`MAINPID=`): its exit is the
    /// program's.
    MainProcess(String, Pid),
    /// A child's process group killed (a poll past its timeout, or at shutdown); its exit is
    /// still reaped.
    KillGroup(Pid),
    /// Run the named program's deploy poll (`git ls-remote`), a child of the actor's.
    Poll(String),
    /// Deploy this commit of the named program (a poll saw its branch move).
    Deploy {
        program: String,
        trigger: String,
        commit: String,
    },
}

impl Daemon {
    /// Performs what the components asked, in order.
    pub(super) fn perform(&mut self, actions: impl IntoIterator<Item = Action>) {
        for action in actions {
            match action {
                Action::Feed(program, event) => {
                    if let Some(idx) = self.index(&program) {
                        self.feed(idx, event);
                    }
                }
                Action::Unhealthy(program, reason) => {
                    if let Some(idx) = self.index(&program) {
                        self.unhealthy(idx, reason);
                    }
                }
                Action::Alert {
                    subject,
                    critical,
                    kind,
                    severity,
                    message,
                } => {
                    self.alerts
                        .raise(subject, critical, kind, severity, message);
                }
                Action::Write(path, text) => self.starts_writer.write(path, text),
                Action::Append(path, record) => {
                    // One line of a few hundred bytes (a run's record), as the deploy history's.
                    if let Err(e) = crate::jsonl::append_line(&path, &record) {
                        tracing::error!(path = %path.display(), error = %e, "cannot record it");
                    }
                }
                Action::Probe(run) => self.start_probe(run),
                Action::Event(event) => {
                    // No subscriber is fine.
                    let _ = self.events.send(std::sync::Arc::new(event));
                }
                Action::MainProcess(program, pid) => {
                    self.children.add(pid, Child::MainProcess(program));
                }
                Action::KillGroup(pid) => {
                    let _ = process::signal_group(pid, Signal::SIGKILL);
                }
                Action::Poll(program) => self.start_poll(&program),
                Action::Deploy {
                    program,
                    trigger,
                    commit,
                } => {
                    let kind = DeployKind::Deploy;
                    let by = trigger.clone();
                    let asked = self.request_deploy(&program, kind, trigger, false, Some(commit));
                    if let Err(e) = asked {
                        tracing::warn!(program = %program, trigger = %by, error = %e.message, "could not deploy");
                    }
                }
                Action::Blocking(work) => {
                    let reports = self.reports.clone();
                    tokio::task::spawn_blocking(move || {
                        let _ = reports.blocking_send(work());
                    });
                }
            }
        }
    }
}

/// A probe the core is to run: the program's spawn `run`, for readiness or liveness.
pub(super) struct ProbeRun {
    pub program: String,
    pub run: u64,
    pub kind: ProbeKind,
    pub probe: Probe,
    pub timeout: Duration,
}
