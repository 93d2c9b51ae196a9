//! Reaping: every exit the kernel reports, told to what the pid was (a program, its declared
//! main process, a deploy step, a poll, a probe) or counted as an orphan's.

use nix::unistd::Pid;

use super::Daemon;
use super::children::Child;
use crate::lifecycle::{Event as LifeEvent, ExitReason, State};
use crate::process;

impl Daemon {
    pub(super) fn reap(&mut self) {
        while let Some(reaped) = process::reap_one() {
            let (pid, reason) = (reaped.pid, reaped.reason);
            match self.children.take(pid) {
                Some(Child::Probe(probe)) => self.probe_exited(probe, reason),
                Some(Child::Poll(program)) => {
                    let deploydir = &self.config.supervisor.deploydir;
                    let deploy =
                        self.polls
                            .exited(&program, pid, reason, deploydir, &mut self.jitter);
                    self.perform(deploy);
                }
                Some(Child::Step(program)) => {
                    self.deploy_step_exited(&program, pid, reason, reaped.written_bytes)
                }
                Some(Child::MainProcess(program)) => {
                    self.main_process_exited(&program, pid, reason)
                }
                Some(Child::Program(idx))
                    if self
                        .health
                        .get(self.programs[idx].cfg.name.as_str())
                        .and_then(|h| h.main_pid)
                        .is_some_and(|m| self.children.is_main_process(m)) =>
                {
                    tracing::info!(program = %self.programs[idx].cfg.name, pid = pid.as_raw(), reason = %reason,
                        "the group leader exited; its declared main process carries on");
                }
                Some(Child::Program(idx)) => {
                    tracing::info!(program = %self.programs[idx].cfg.name, pid = pid.as_raw(), reason = %reason, "exited");
                    self.programs[idx].last_exit = Some(reason.clone());
                    self.feed(idx, LifeEvent::Exited { pid, reason });
                }
                None => {
                    self.orphans += 1;
                    tracing::debug!(pid = pid.as_raw(), reason = %reason, total = self.orphans, "reaped an orphan");
                }
            }
        }
        // A stopping program whose leader is gone is done when its group is empty; the last
        // member's exit was just reaped if it was an orphan of ours.
        for i in 0..self.programs.len() {
            let gone = matches!(self.programs[i].state,
                State::Stopping { pid, last: Some(_), .. } if !process::group_alive(pid));
            if gone {
                self.feed(i, LifeEvent::GroupGone);
            }
        }
    }

    /// A program's declared main process ended: that is the program's exit.
    pub(super) fn main_process_exited(&mut self, program: &str, pid: Pid, reason: ExitReason) {
        let main = self.index(program).and_then(|idx| {
            let p = &self.programs[idx];
            let main = self.health.get(program).and_then(|h| h.main_pid);
            let leader = p.state.pid().filter(|_| main == Some(pid));
            leader.map(|leader| (idx, leader))
        });
        if let Some((idx, leader)) = main {
            tracing::info!(program = %program, pid = pid.as_raw(), reason = %reason, "main process exited");
            self.health.of(program).main_pid = None;
            self.programs[idx].last_exit = Some(reason.clone());
            self.feed(
                idx,
                LifeEvent::Exited {
                    pid: leader,
                    reason,
                },
            );
        }
    }
}
