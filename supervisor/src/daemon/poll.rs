//! The poll trigger (`[program.NAME.deploy] poll = "1m"`): for a machine no forge can reach,
//! the supervisor asks the remote for the branch tip with `git ls-remote` (no fetch) and
//! deploys when it moved. Each poll is a child like a deploy step: the deploy's user and
//! environment, its own process group, killed at its timeout, reaped by the one reaper. The
//! interval is jittered (±10 %); failures back off (doubling, at most an hour) and show in
//! `status` until a poll succeeds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use supervisor_proto::{DeployKind, DeployRecord};

use super::Daemon;
use super::children::Child;
use crate::deploy::git::{self, step_environment};
use crate::deploy::history;
use crate::lifecycle::{ExitReason, later};
use crate::process::{self, Spec};

/// The longest wait between polls after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest one `git ls-remote` may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// A program's polling.
#[derive(Debug)]
pub(super) struct Poll {
    interval: Duration,
    next: Instant,
    running: Option<Running>,
    /// Consecutive failures, and the last one's message.
    failures: u32,
    last_error: Option<String>,
    /// The tip the last successful poll saw: a deploy follows only when it moves.
    seen: Option<String>,
}

#[derive(Debug)]
struct Running {
    pid: Pid,
    deadline: Instant,
    output: PathBuf,
    timed_out: bool,
}

impl Poll {
    /// The first poll comes after a (jittered) half interval: soon after a start, not at once.
    fn new(interval: Duration, now: Instant, jitter: f64) -> Self {
        Self {
            interval,
            next: later(now, scale(interval / 2, jitter)),
            running: None,
            failures: 0,
            last_error: None,
            seen: None,
        }
    }

    /// What `status` says while polls fail.
    fn describe(&self, now: Instant) -> Option<String> {
        let error = self.last_error.as_ref()?;
        let next = self.next.saturating_duration_since(now).as_secs();
        Some(format!(
            "deploy poll failing ({} in a row: {error}); next in {next}s",
            self.failures
        ))
    }
}

/// The polling of every program that polls, by program name.
#[derive(Debug, Default)]
pub(super) struct Polls(HashMap<String, Poll>);

impl Polls {
    /// A program set up (anew): polls from now if its deploy says so, else not at all.
    pub fn set(&mut self, program: &str, interval: Option<Duration>, jitter: f64) {
        match interval {
            Some(interval) => {
                let poll = Poll::new(interval, Instant::now(), jitter);
                self.0.insert(program.to_owned(), poll);
            }
            None => {
                self.0.remove(program);
            }
        }
    }

    /// Forgets the programs no longer configured (a poll still running is reaped as before,
    /// and its result dropped).
    pub fn keep_only(&mut self, programs: &HashSet<&str>) {
        self.0.retain(|name, _| programs.contains(name.as_str()));
    }

    /// What `status` says of `program`'s polls, while they fail.
    pub fn describe(&self, program: &str, now: Instant) -> Option<String> {
        self.0.get(program)?.describe(now)
    }
}

/// `d` stretched or shrunk by up to 10 % (`jitter` in -1..=1).
fn scale(d: Duration, jitter: f64) -> Duration {
    d.mul_f64((1.0 + 0.1 * jitter.clamp(-1.0, 1.0)).max(0.0))
}

impl Daemon {
    pub(super) fn poll_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.polls
            .0
            .values()
            .filter_map(|poll| match &poll.running {
                Some(r) if !r.timed_out => Some(r.deadline),
                Some(_) => None,
                None => Some(poll.next),
            })
    }

    pub(super) fn poll_tick(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (name, poll) in self.polls.0.iter_mut() {
            if let Some(r) = poll.running.as_mut() {
                if !r.timed_out && now >= r.deadline {
                    r.timed_out = true;
                    let _ = process::signal_group(r.pid, Signal::SIGKILL);
                }
                continue;
            }
            if now >= poll.next {
                due.push(name.clone());
            }
        }
        for name in due {
            let Some(idx) = self.index(&name) else {
                continue;
            };
            let busy = self.deploys.runs(&name) || self.shutdown.is_some();
            if busy {
                // A deploy runs (or we stop): look again one interval later.
                let jitter = self.jitter.sample();
                if let Some(poll) = self.polls.0.get_mut(&name) {
                    poll.next = later(now, scale(poll.interval, jitter));
                }
                continue;
            }
            self.start_poll(idx, now);
        }
    }

    fn start_poll(&mut self, idx: usize, now: Instant) {
        let p = &self.programs[idx];
        let (Some(cfg), name) = (p.cfg.deploy.clone(), p.cfg.name.to_string()) else {
            return;
        };
        let output = self
            .config
            .supervisor
            .deploydir
            .join(format!("{name}.poll.out"));
        let argv = git::ls_remote(&cfg);
        let environment = step_environment(&cfg);
        // `git ls-remote URL` needs no repository; with a remote's name it needs the tree.
        // (`artifact_url` may have no repository at all.)
        let directory = if !cfg.repo.as_os_str().is_empty() && cfg.repo.join(".git").exists() {
            cfg.repo.clone()
        } else {
            PathBuf::from("/")
        };
        let spawned = (|| {
            let out: OwnedFd = File::create(&output)?.into();
            let null: OwnedFd = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")?
                .into();
            process::spawn_spec(
                &Spec {
                    argv: &argv,
                    directory: Some(&directory),
                    environment: &environment,
                    pass_env: &cfg.pass_env,
                    user: cfg.user.as_ref(),
                    stdin: None,
                    stdout: &out,
                    stderr: &null,
                    rlimits: &[],
                    oom_score_adj: process::STEP_OOM_SCORE_ADJ,
                },
                self.nofile,
            )
        })();
        match spawned {
            Ok(pid) => {
                if let Some(poll) = self.polls.0.get_mut(&name) {
                    poll.running = Some(Running {
                        pid,
                        deadline: later(now, POLL_TIMEOUT.min(cfg.step_timeout)),
                        output,
                        timed_out: false,
                    });
                }
                self.children.add(pid, Child::Poll(name));
            }
            Err(e) => self.poll_failed(&name, format!("cannot run git ls-remote: {e}")),
        }
    }

    /// A poll's `git ls-remote` was reaped.
    pub(super) fn poll_exited(&mut self, program: &str, pid: Pid, reason: ExitReason) {
        let Some(poll) = self.polls.0.get_mut(program) else {
            return;
        };
        let Some(r) = poll.running.take_if(|r| r.pid == pid) else {
            return;
        };
        // One line of output (a commit id and a ref name): small.
        let text = std::fs::read_to_string(&r.output).unwrap_or_default();
        let _ = std::fs::remove_file(&r.output);
        let tip = match reason {
            _ if r.timed_out => Err(format!(
                "git ls-remote timed out after {}",
                crate::config::units::format_duration(POLL_TIMEOUT)
            )),
            ExitReason::Exited(0) => git::ls_remote_commit(&text)
                .ok_or_else(|| "the branch is not on the remote".to_owned()),
            other => Err(format!("git ls-remote: {other}")),
        };
        match tip {
            Ok(tip) => self.polled(program, tip),
            Err(message) => self.poll_failed(program, message),
        }
    }

    fn polled(&mut self, name: &str, tip: String) {
        let now = Instant::now();
        let jitter = self.jitter.sample();
        let deploydir = self.config.supervisor.deploydir.clone();
        let Some(poll) = self.polls.0.get_mut(name) else {
            return;
        };
        if poll.failures > 0 {
            tracing::info!(program = %name, failures = poll.failures, "deploy poll works again");
        }
        poll.failures = 0;
        poll.last_error = None;
        poll.next = later(now, scale(poll.interval, jitter));
        let moved = match &poll.seen {
            Some(seen) => *seen != tip,
            // The first poll compares with what the history says runs (or was last tried).
            None => {
                let last = history::read(&deploydir, name, 20);
                let tried = last.first().and_then(|r| r.new_commit.clone());
                let running = last
                    .iter()
                    .find(|r| r.is_conclusive())
                    .and_then(|r: &DeployRecord| r.running_commit().0.map(str::to_owned));
                tried.as_deref() != Some(tip.as_str()) && running.as_deref() != Some(tip.as_str())
            }
        };
        poll.seen = Some(tip.clone());
        if moved {
            tracing::info!(program = %name, tip = %tip, "deploy poll: the branch moved");
            let trigger = format!("poll: {}", crate::deploy::git::short(&tip));
            let kind = DeployKind::Deploy;
            if let Err(e) = self.request_deploy(name, kind, trigger, false, Some(tip.clone())) {
                tracing::warn!(program = %name, error = %e.message, "deploy poll could not deploy");
            }
        }
    }

    fn poll_failed(&mut self, name: &str, message: String) {
        let now = Instant::now();
        let jitter = self.jitter.sample();
        let Some(poll) = self.polls.0.get_mut(name) else {
            return;
        };
        poll.failures += 1;
        let wait = poll
            .interval
            .saturating_mul(1 << poll.failures.min(12))
            .min(MAX_BACKOFF)
            .max(poll.interval);
        poll.next = later(now, scale(wait, jitter));
        tracing::warn!(program = %name, failures = poll.failures, error = %message,
            retry_in_s = wait.as_secs(), "deploy poll failed");
        poll.last_error = Some(message);
    }

    /// Shutdown: a running poll is killed (its exit is still reaped).
    pub(super) fn abort_polls(&mut self) {
        for poll in self.polls.0.values() {
            if let Some(r) = &poll.running {
                let _ = process::signal_group(r.pid, Signal::SIGKILL);
            }
        }
    }
}
