//! Every process the actor spawned and waits for, by pid: what it is and whose it is. The
//! reaper asks this one registry what a reaped pid was; each component adds what it spawns.
//!
//! A pid is in it at most once: live processes have distinct pids, and an entry leaves when its
//! process is reaped (or, for programs, when the programs are indexed anew).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::health::ProbeKind;

/// What a child is.
#[derive(Debug)]
pub(super) enum Child {
    /// The process group leader of the program at this index of `Daemon::programs`.
    Program(usize),
    /// The main process a program declared with `MAINPID=`, when it is not the leader.
    MainProcess(String),
    /// A deploy step (git, a build step) of this program's deploy.
    Step(String),
    /// A deploy poll (`git ls-remote`) of this program.
    Poll(String),
    /// A command probe.
    Probe(CommandProbe),
}

/// A command probe in flight: the child the actor reaps.
#[derive(Debug)]
pub(super) struct CommandProbe {
    pub program: String,
    pub run: u64,
    pub kind: ProbeKind,
    pub deadline: Instant,
    pub timeout: Duration,
    pub timed_out: bool,
}

#[derive(Debug, Default)]
pub(super) struct Children {
    by_pid: HashMap<Pid, Child>,
}

impl Children {
    /// Records a child spawned (or declared). A pid still recorded belongs to a process that
    /// was reaped without the registry hearing of it; the newer entry wins.
    pub(super) fn add(&mut self, pid: Pid, child: Child) {
        if let Some(old) = self.by_pid.insert(pid, child) {
            tracing::debug!(pid = pid.as_raw(), ?old, "a recorded pid was reused");
        }
    }

    /// What the reaped `pid` was, leaving the registry.
    pub(super) fn take(&mut self, pid: Pid) -> Option<Child> {
        self.by_pid.remove(&pid)
    }

    /// Whether `pid` is a program's declared main process still running.
    pub(super) fn is_main_process(&self, pid: Pid) -> bool {
        matches!(self.by_pid.get(&pid), Some(Child::MainProcess(_)))
    }

    /// The programs' leaders again, after the programs were added, removed or reordered.
    pub(super) fn index_programs(&mut self, leaders: impl Iterator<Item = (Pid, usize)>) {
        self.by_pid.retain(|_, c| !matches!(c, Child::Program(_)));
        for (pid, idx) in leaders {
            self.add(pid, Child::Program(idx));
        }
    }

    /// Command probes running.
    pub(super) fn probes(&self) -> impl Iterator<Item = &CommandProbe> {
        self.by_pid.values().filter_map(|c| match c {
            Child::Probe(p) => Some(p),
            _ => None,
        })
    }

    pub(super) fn probes_mut(&mut self) -> impl Iterator<Item = (Pid, &mut CommandProbe)> {
        self.by_pid.iter_mut().filter_map(|(pid, c)| match c {
            Child::Probe(p) => Some((*pid, p)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_programs_again_keeps_the_other_children() {
        let mut c = Children::default();
        c.add(Pid::from_raw(10), Child::Program(0));
        c.add(Pid::from_raw(11), Child::Step("bot".into()));
        c.add(Pid::from_raw(12), Child::MainProcess("bot".into()));
        c.index_programs([(Pid::from_raw(20), 1)].into_iter());
        assert!(c.take(Pid::from_raw(10)).is_none());
        assert!(matches!(c.take(Pid::from_raw(20)), Some(Child::Program(1))));
        assert!(c.is_main_process(Pid::from_raw(12)));
        assert!(matches!(c.take(Pid::from_raw(11)), Some(Child::Step(p)) if p == "bot"));
    }
}
