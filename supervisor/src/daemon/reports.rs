//! What comes back to the actor from its tasks (probe results, notify messages, log lines,
//! resource samples, cleared logs), and the probes the core runs for the health component:
//! HTTP and TCP as tasks, commands as children it reaps.

use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::action::ProbeRun;
use super::children::{Child, CommandProbe};
use super::health::health_event;
use super::{Daemon, alerts, ceilings};
use crate::config::ProgramConfig;
use crate::config::health::Probe;
use crate::dirs;
use crate::health::probe::{self, ProbeError};
use crate::health::{ProbeKind, Report};
use crate::lifecycle::{Event as LifeEvent, ExitReason, later};
use crate::process::{self, Spec};

impl Daemon {
    /// Runs a probe the health asked for: HTTP and TCP as tasks, a command as a child of the
    /// actor's; each reports back.
    pub(super) fn start_probe(&mut self, probe: ProbeRun) {
        let ProbeRun {
            program,
            run,
            kind,
            probe,
            timeout,
        } = probe;
        let Some(idx) = self.index(&program) else {
            return;
        };
        let reports = self.reports.clone();
        let name = self.programs[idx].cfg.name.clone();
        let task = move |result: Result<(), ProbeError>| Report::Probe {
            program: name,
            run,
            kind,
            result,
        };
        match probe {
            Probe::Http { addr, host, path } => {
                tokio::spawn(async move {
                    let result = probe::http(addr, &host, &path, timeout).await;
                    let _ = reports.send(task(result)).await;
                });
            }
            Probe::Tcp(addr) => {
                tokio::spawn(async move {
                    let result = probe::tcp(addr, timeout).await;
                    let _ = reports.send(task(result)).await;
                });
            }
            Probe::Command(argv) => match self.spawn_probe(&self.programs[idx].cfg, &argv) {
                Ok(pid) => {
                    let now = Instant::now();
                    self.children.add(
                        pid,
                        Child::Probe(CommandProbe {
                            program,
                            run,
                            kind,
                            deadline: later(now, timeout),
                            timeout,
                            timed_out: false,
                        }),
                    );
                }
                Err(e) => {
                    let failed = Err(ProbeError::Spawn(e.to_string()));
                    self.probe_result(&program, run, kind, failed);
                }
            },
        }
    }

    /// A command probe runs as its program does: user, folder, environment; its output is
    /// dropped.
    fn spawn_probe(&self, cfg: &ProgramConfig, argv: &[String]) -> std::io::Result<Pid> {
        let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        let devnull = std::os::fd::OwnedFd::from(devnull);
        process::spawn_spec(
            &Spec {
                argv,
                directory: cfg.directory.as_deref(),
                environment: &cfg.environment,
                pass_env: &cfg.pass_env,
                user: cfg.user.as_ref(),
                stdin: None,
                stdout: &devnull,
                stderr: &devnull,
                rlimits: &cfg.rlimits,
                oom_score_adj: cfg.oom_score_adj,
            },
            self.nofile,
        )
    }

    /// Command probes past their timeout are killed (their exits are still reaped).
    pub(super) fn kill_late_probes(&mut self, now: Instant) {
        for (pid, c) in self.children.probes_mut() {
            if !c.timed_out && now >= c.deadline {
                c.timed_out = true;
                let _ = process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }

    /// A command probe was reaped.
    pub(super) fn probe_exited(&mut self, c: CommandProbe, reason: ExitReason) {
        let result = match reason {
            _ if c.timed_out => Err(ProbeError::CommandTimedOut(c.timeout)),
            ExitReason::Exited(0) => Ok(()),
            other => Err(ProbeError::Exited(other)),
        };
        self.probe_result(&c.program, c.run, c.kind, result);
    }

    fn probe_result(
        &mut self,
        program: &str,
        run: u64,
        kind: ProbeKind,
        result: Result<(), ProbeError>,
    ) {
        let Some(idx) = self.index(program) else {
            return;
        };
        let actions = self.health.result(
            self.programs[idx].checked(),
            run,
            kind,
            result,
            Instant::now(),
        );
        self.perform(actions);
    }

    /// What came back from the tasks: probes, notify sockets, log lines, samples.
    pub(super) fn health_report(&mut self, report: Report) {
        match report {
            Report::Usage { at, groups, usage } => {
                let limited: Vec<_> = ceilings::limited(&self.programs).collect();
                let breaches = self.ceilings.sample(&limited, at, &groups, &usage);
                self.perform(breaches);
            }
            Report::LogsCleared => self.reopen.send_modify(|generation| *generation += 1),
            Report::Notify {
                program,
                sender,
                messages,
            } => {
                // One at a time: READY=1 changes the state the next one sees.
                for m in messages {
                    let Some(idx) = self.index(program.as_str()) else {
                        return;
                    };
                    let p = self.programs[idx].checked();
                    let actions = self.health.notified(p, sender, m, Instant::now());
                    self.perform(actions);
                }
            }
            Report::LogReady { program, run } => {
                let waiting = |idx: &usize| {
                    self.health
                        .waits_for_log(self.programs[*idx].checked(), run)
                };
                if let Some(idx) = self.index(program.as_str()).filter(waiting) {
                    tracing::info!(program = %program, "ready: its log line appeared");
                    self.feed(idx, LifeEvent::Ready);
                }
            }
            Report::Probe {
                program,
                run,
                kind,
                result,
            } => self.probe_result(program.as_str(), run, kind, result),
        }
    }

    /// Program `idx` failed its liveness (a check, its watchdog, a ceiling): marked, told,
    /// alerted and restarted.
    pub(super) fn unhealthy(&mut self, idx: usize, reason: String) {
        let p = &self.programs[idx];
        let name = p.cfg.name.to_string();
        self.health.of(&name).healthy = Some(false);
        tracing::warn!(program = %name, reason = %reason, "unhealthy; restarting it");
        self.perform([health_event(&name, false, format!("unhealthy: {reason}"))]);
        let seen = alerts::seen(&self.programs[idx]);
        self.alerts.unhealthy(&seen, &reason);
        self.feed(idx, LifeEvent::Unhealthy(reason));
    }

    /// Folders for a spawn (`state_dirs`), made for the program's user.
    pub(super) fn prepare_dirs(cfg: &ProgramConfig) -> std::io::Result<()> {
        cfg.state_dirs
            .iter()
            .try_for_each(|d| dirs::prepare(d, 0o750, cfg.user.as_ref(), dirs::Existing::Adopt))
            .map_err(std::io::Error::other)
    }
}
