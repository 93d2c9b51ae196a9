//! The poll trigger (`[program.NAME.deploy] poll = "1m"`): for a machine no forge can reach,
//! the supervisor asks the remote for the branch tip with `git ls-remote` (no fetch) and
//! deploys when it moved. Each poll is a child like a deploy step: the deploy's user and
//! environment, its own process group, killed at its timeout, reaped by the one reaper. The
//! interval is jittered (±10 %); failures back off (doubling, at most an hour) and show in
//! `status` until a poll succeeds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use supervisor_proto::DeployRecord;

use super::Daemon;
use super::action::Action;
use super::children::Child;
use crate::backoff::Jitter;
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

impl Polls {
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.0.values().filter_map(|poll| match &poll.running {
            Some(r) if !r.timed_out => Some(r.deadline),
            Some(_) => None,
            None => Some(poll.next),
        })
    }

    /// A poll past its timeout is killed (its exit is still reaped); the programs whose poll
    /// is due are named, for the core to run one each. `busy`: a deploy of the program runs
    /// (or the supervisor stops), so it looks again one interval later.
    pub fn tick(
        &mut self,
        now: Instant,
        busy: impl Fn(&str) -> bool,
        jitter: &mut Jitter,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for (name, poll) in &mut self.0 {
            if let Some(r) = poll.running.as_mut() {
                if !r.timed_out && now >= r.deadline {
                    r.timed_out = true;
                    actions.push(Action::KillGroup(r.pid));
                }
                continue;
            }
            if now < poll.next {
                continue;
            }
            if busy(name) {
                poll.next = later(now, scale(poll.interval, jitter.sample()));
                continue;
            }
            actions.push(Action::Poll(name.clone()));
        }
        actions
    }

    /// The core started `program`'s `git ls-remote` as `pid`, writing to `output`.
    pub fn started(&mut self, program: &str, pid: Pid, deadline: Instant, output: PathBuf) {
        if let Some(poll) = self.0.get_mut(program) {
            poll.running = Some(Running {
                pid,
                deadline,
                output,
                timed_out: false,
            });
        }
    }

    /// A poll's `git ls-remote` was reaped: the tip it read, or why there is none. A tip that
    /// moved is a deploy of it.
    pub fn exited(
        &mut self,
        program: &str,
        pid: Pid,
        reason: ExitReason,
        deploydir: &Path,
        jitter: &mut Jitter,
    ) -> Vec<Action> {
        let Some(poll) = self.0.get_mut(program) else {
            return Vec::new();
        };
        let Some(r) = poll.running.take_if(|r| r.pid == pid) else {
            return Vec::new();
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
            Ok(tip) => self.polled(program, tip, deploydir, jitter),
            Err(message) => {
                self.failed(program, message, jitter);
                Vec::new()
            }
        }
    }

    fn polled(
        &mut self,
        name: &str,
        tip: String,
        deploydir: &Path,
        jitter: &mut Jitter,
    ) -> Vec<Action> {
        let now = Instant::now();
        let Some(poll) = self.0.get_mut(name) else {
            return Vec::new();
        };
        if poll.failures > 0 {
            tracing::info!(program = %name, failures = poll.failures, "deploy poll works again");
        }
        poll.failures = 0;
        poll.last_error = None;
        poll.next = later(now, scale(poll.interval, jitter.sample()));
        let moved = match &poll.seen {
            Some(seen) => *seen != tip,
            // The first poll compares with what the history says runs (or was last tried).
            None => {
                let last = history::read(deploydir, name, 20);
                let tried = last.first().and_then(|r| r.new_commit.clone());
                let running = last
                    .iter()
                    .find(|r| r.is_conclusive())
                    .and_then(|r: &DeployRecord| r.running_commit().0.map(str::to_owned));
                tried.as_deref() != Some(tip.as_str()) && running.as_deref() != Some(tip.as_str())
            }
        };
        poll.seen = Some(tip.clone());
        if !moved {
            return Vec::new();
        }
        tracing::info!(program = %name, tip = %tip, "deploy poll: the branch moved");
        vec![Action::Deploy {
            program: name.to_owned(),
            trigger: format!("poll: {}", crate::deploy::git::short(&tip)),
            commit: tip,
        }]
    }

    /// A poll failed: tried again after a backoff (doubling, at most an hour), and `status`
    /// says why until one succeeds.
    pub fn failed(&mut self, name: &str, message: String, jitter: &mut Jitter) {
        let now = Instant::now();
        let Some(poll) = self.0.get_mut(name) else {
            return;
        };
        poll.failures += 1;
        let wait = poll
            .interval
            .saturating_mul(1 << poll.failures.min(12))
            .min(MAX_BACKOFF)
            .max(poll.interval);
        poll.next = later(now, scale(wait, jitter.sample()));
        tracing::warn!(program = %name, failures = poll.failures, error = %message,
            retry_in_s = wait.as_secs(), "deploy poll failed");
        poll.last_error = Some(message);
    }

    /// Shutdown: running polls are killed (their exits are still reaped).
    pub fn abort(&self) -> Vec<Action> {
        self.0
            .values()
            .filter_map(|poll| poll.running.as_ref().map(|r| Action::KillGroup(r.pid)))
            .collect()
    }
}

impl Daemon {
    /// Runs `name`'s `git ls-remote` (the component asked for it): a child like a deploy step.
    pub(super) fn start_poll(&mut self, name: &str) {
        let Some(idx) = self.index(name) else {
            return;
        };
        let Some(cfg) = self.programs[idx].cfg.deploy.clone() else {
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
                let deadline = later(Instant::now(), POLL_TIMEOUT.min(cfg.step_timeout));
                self.polls.started(name, pid, deadline, output);
                self.children.add(pid, Child::Poll(name.to_owned()));
            }
            Err(e) => {
                let message = format!("cannot run git ls-remote: {e}");
                self.polls.failed(name, message, &mut self.jitter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIP: &str = "0123456789abcdef0123456789abcdef01234567";

    /// The polls alone, without a daemon: a due poll is asked of the core (not while a deploy
    /// runs), one past its timeout is killed, a tip that moved is a deploy of it, the same tip
    /// again is nothing, and failures back off and show in `status`.
    #[test]
    fn a_poll_is_asked_for_killed_at_its_timeout_and_deploys_a_moved_tip() {
        let dir = tempfile::tempdir().unwrap();
        let mut jitter = Jitter::seeded();
        let mut polls = Polls::default();
        let minute = Duration::from_secs(60);
        let t0 = Instant::now();
        polls.set("bot", Some(minute), 0.0);
        let first = polls.deadlines().next().unwrap();
        assert!(
            first >= t0 + minute / 2 && first < t0 + minute,
            "half an interval first"
        );
        assert!(
            polls.tick(t0, |_| false, &mut jitter).is_empty(),
            "not due yet"
        );
        let due = polls.tick(first, |_| true, &mut jitter);
        assert!(due.is_empty(), "a deploy runs: looked at again later");
        let next = polls.deadlines().next().unwrap();
        assert!(next > first + minute / 2);
        let due = polls.tick(next, |_| false, &mut jitter);
        assert!(matches!(due.as_slice(), [Action::Poll(name)] if name == "bot"));
        // The core ran it; it overruns its timeout.
        let output = dir.path().join("bot.poll.out");
        std::fs::write(&output, format!("{TIP}\trefs/heads/main\n")).unwrap();
        let pid = Pid::from_raw(4242);
        polls.started("bot", pid, next + POLL_TIMEOUT, output.clone());
        assert_eq!(polls.deadlines().next(), Some(next + POLL_TIMEOUT));
        let kill = polls.tick(next + POLL_TIMEOUT, |_| false, &mut jitter);
        assert!(matches!(kill.as_slice(), [Action::KillGroup(p)] if *p == pid));
        assert_eq!(polls.deadlines().next(), None, "waits for the reaper");
        let killed = ExitReason::Killed(nix::sys::signal::Signal::SIGKILL);
        assert!(
            polls
                .exited("bot", pid, killed, dir.path(), &mut jitter)
                .is_empty()
        );
        let why = polls.describe("bot", Instant::now()).unwrap();
        assert!(
            why.starts_with("deploy poll failing (1 in a row: git ls-remote timed out after 1m)"),
            "{why}"
        );
        // The next one reads the tip: it moved (no deploy on record), so it is deployed.
        std::fs::write(&output, format!("{TIP}\trefs/heads/main\n")).unwrap();
        polls.started("bot", pid, Instant::now() + POLL_TIMEOUT, output.clone());
        let deploy = polls.exited("bot", pid, ExitReason::Exited(0), dir.path(), &mut jitter);
        match deploy.as_slice() {
            [
                Action::Deploy {
                    program,
                    trigger,
                    commit,
                },
            ] => {
                assert_eq!((program.as_str(), commit.as_str()), ("bot", TIP));
                assert_eq!(trigger, "poll: 0123456789ab");
            }
            _ => panic!("expected one deploy, got {} actions", deploy.len()),
        }
        assert!(!output.exists(), "its output is removed");
        assert_eq!(polls.describe("bot", Instant::now()), None, "works again");
        // The same tip again: nothing.
        std::fs::write(&output, format!("{TIP}\trefs/heads/main\n")).unwrap();
        polls.started("bot", pid, Instant::now() + POLL_TIMEOUT, output.clone());
        assert!(
            polls
                .exited("bot", pid, ExitReason::Exited(0), dir.path(), &mut jitter)
                .is_empty()
        );
        // Shutdown kills a running one.
        polls.started("bot", pid, Instant::now() + POLL_TIMEOUT, output);
        assert!(matches!(polls.abort().as_slice(), [Action::KillGroup(p)] if *p == pid));
    }
}
