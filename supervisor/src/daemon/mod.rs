//! The daemon: one actor that owns every program's state and reacts to signals, child exits,
//! timers and control requests. It spawns and reaps on the same thread (see
//! [`crate::process`]), applies the pure [`lifecycle`](crate::lifecycle) transitions and
//! performs their effects.
//!
//! # Layout
//! The core (this file, [`action`], [`reap`], [`reports`], [`shutdown`], [`requests`],
//! [`update`], [`deploy`]) acts: on programs' lifecycles, children, channels and files. The
//! components own their state, by program name, and decide from it and a read-only view of the
//! programs; they return [`action::Action`]s for the core to perform, and are unit-tested
//! without a daemon.
//! - this file: the event loop, the lifecycle's effects (`feed`), the timers.
//! - [`reap`]: every exit, told to what the pid was.
//! - [`reports`]: what the actor's tasks report back, and the probes the core runs.
//! - [`shutdown`]: stopping in dependency order, the timeout, the drain, the exit code.
//! - [`action`]: what a component may ask of the core, and the core doing it.
//! - [`start`]: start-up, before the loop's first turn: socket, signals, servers, programs.
//! - [`program`]: a program as the actor holds it, and the log files its streams share.
//! - [`children`]: every process the actor waits for, by pid, and what it is.
//! - [`requests`]: control requests, a module per verb or family of verbs.
//! - [`update`]: `reread` and `update` (also SIGHUP): applying a changed configuration; a
//!   program set up and the set reindexed (at start too).
//! - [`deploy`]: the deploy machine's effects: steps, the release switch, restarts, history.
//!
//! Components:
//! - [`health`]: readiness and liveness: notify sockets, probes, watchdogs (the core runs the
//!   probes it asks for).
//! - [`alerts`]: what owners should hear about, raised as it happens.
//! - [`poll`]: the deploy poll trigger (`git ls-remote` on a timer, run by the core).
//! - [`listeners`]: supervisord's event listeners: events, pools, their pipes.
//! - [`ceilings`]: `limits`: memory and CPU sampled off the thread, breaches held.
//! - [`schedule`]: scheduled programs: slots, overlap, missed runs, the runs' history.

mod action;
mod alerts;
mod ceilings;
mod children;
mod deploy;
mod health;
mod listeners;
mod poll;
mod program;
mod reap;
mod reports;
mod requests;
mod schedule;
mod shutdown;
mod start;
mod update;

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use nix::sys::signal::Signal;
use supervisor_proto::{Event, ProgramState};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use self::program::{LogFiles, Program, Retire, WaitKind, Waiter};
use self::shutdown::Shutdown;
use self::start::Started;
use crate::backoff::Jitter;
use crate::config::{Config, OnFatal, ProgramConfig};
use crate::control::Acl;
use crate::health::Report;
use crate::health::budget;
use crate::lifecycle::{Context, Effect, Event as LifeEvent, ExitReason, State, transition};
use crate::logs::capture::EchoSender;
use crate::process::{self, Outputs};
use crate::status::{describe, unix_ms};

/// Exit code after a program with `on_fatal = "shutdown"` went FATAL.
pub const EXIT_FATAL: i32 = 1;

/// Runs the daemon until a shutdown (a signal, a `shutdown` request, or `shutdown` resolving)
/// has stopped every program. Returns the process exit code.
/// `nofile` is the open-files limit the supervisor was started with, for its children
/// (process::raise_nofile).
pub async fn run(
    config: Config,
    nofile: Option<libc::rlimit>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<i32> {
    let Started {
        mut daemon,
        mut signals,
        mut requests,
        mut reports,
        mut listener_output,
        server,
        http_server,
        echo_done,
        socket,
        _lock,
        _pidfile,
    } = start::start(config, nofile)?;
    let running = crate::listener::EventType::SupervisorStateChangeRunning;
    daemon.listeners.supervisor_state(&daemon.programs, running);
    tokio::pin!(shutdown);
    let mut asked = false;
    daemon.drive();
    daemon.log_files.open_pending();
    tokio::spawn(start::release_startup_code());
    while !daemon.finished() {
        let deadline = daemon.next_deadline();
        let sleep = tokio::time::sleep_until(
            deadline.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
        );
        tokio::select! {
            _ = signals.chld.recv() => daemon.reap(),
            _ = signals.term.recv() => daemon.shutdown_signal(Signal::SIGTERM),
            _ = signals.int.recv() => daemon.shutdown_signal(Signal::SIGINT),
            _ = signals.quit.recv() => daemon.shutdown_signal(Signal::SIGQUIT),
            _ = signals.hup.recv() => daemon.sighup(),
            _ = signals.usr2.recv() => daemon.reopen_logs(),
            _ = signals.usr1.recv() => tracing::info!("SIGUSR1 has no meaning here; ignored"),
            Some(request) = requests.recv() => daemon.handle(request),
            Some(report) = reports.recv() => daemon.health_report(report),
            Some(output) = listener_output.recv() => daemon.listeners.output(&daemon.programs, output),
            _ = sleep, if deadline.is_some() => daemon.tick(),
            _ = &mut shutdown, if !asked => {
                asked = true;
                daemon.begin_shutdown("requested".into(), 0);
            }
        }
        daemon.drive();
        daemon.log_files.open_pending();
    }
    // FATAL alerts still waiting for last words go out now.
    daemon.alert_tick(None);
    server.abort();
    if let Some(http_server) = http_server {
        http_server.abort();
    }
    drop(requests);
    let _ = std::fs::remove_file(&socket);
    Ok(daemon.finish(echo_done).await)
}

struct Daemon {
    config: Config,
    programs: Vec<Program>,
    /// Every process the actor waits for: programs, main processes, steps, polls, probes.
    children: children::Children,
    /// `[program.NAME.deploy] poll`: each polling program's polls.
    polls: poll::Polls,
    /// The deploys (and rollbacks) running.
    deploys: deploy::Runs,
    shutdown: Option<Shutdown>,
    exit_code: i32,
    jitter: Jitter,
    nofile: Option<libc::rlimit>,
    reopen: watch::Sender<u64>,
    echo: EchoSender,
    captures: Vec<JoinHandle<()>>,
    events: broadcast::Sender<std::sync::Arc<Event>>,
    acl: watch::Sender<Acl>,
    /// The configuration in force, for what the control socket answers without the actor
    /// (supervisord's XML-RPC: log paths, `getAllConfigInfo`).
    published: watch::Sender<std::sync::Arc<Config>>,
    started: (Instant, SystemTime),
    orphans: u64,
    /// Restarts whose stop is done, to start on the next drive.
    restarts: Vec<(String, Waiter)>,
    /// Inputs for deploy machines, handled by `drain_deploys` (never from inside `feed`);
    /// `None`: tell it the program's state as it is then.
    deploy_inputs: VecDeque<(String, Option<crate::deploy::machine::Input>)>,
    deploys_started: u64,
    /// Health reports come back through this (probes, notify sockets, log lines).
    reports: mpsc::Sender<Report>,
    alerts: alerts::Alerts,
    log_files: LogFiles,
    starts_writer: budget::Writer,
    listeners: listeners::Listeners,
    /// `limits`: the samples and what they said.
    ceilings: ceilings::Watch,
    /// Scheduled programs' next runs.
    plans: schedule::Plans,
    /// Each program's readiness and liveness: notify sockets, probes, watchdogs.
    health: health::Health,
}

impl Daemon {
    fn new(
        config: Config,
        nofile: Option<libc::rlimit>,
        echo: EchoSender,
        events: broadcast::Sender<std::sync::Arc<Event>>,
        (acl, published): (watch::Sender<Acl>, watch::Sender<std::sync::Arc<Config>>),
        reports: mpsc::Sender<Report>,
        listeners: listeners::Listeners,
    ) -> anyhow::Result<Self> {
        let (reopen, _) = watch::channel(0u64);
        let starts_writer = budget::Writer::start().context("starting the start-times writer")?;
        let alerts_file = config.supervisor.statedir.join("alerts.jsonl");
        let alerts = alerts::Alerts::start(alerts_file, events.clone())
            .context("starting the alerts' writer")?;
        let mut daemon = Self {
            programs: Vec::with_capacity(config.programs.len()),
            config,
            children: children::Children::default(),
            polls: poll::Polls::default(),
            deploys: deploy::Runs::default(),
            shutdown: None,
            exit_code: 0,
            jitter: Jitter::seeded(),
            nofile,
            reopen,
            echo,
            captures: Vec::new(),
            events,
            acl,
            published,
            started: (Instant::now(), SystemTime::now()),
            orphans: 0,
            restarts: Vec::new(),
            deploy_inputs: VecDeque::new(),
            deploys_started: 0,
            reports,
            alerts,
            log_files: LogFiles::default(),
            starts_writer,
            listeners,
            ceilings: ceilings::Watch::default(),
            plans: schedule::Plans::default(),
            health: health::Health::default(),
        };
        for cfg in daemon.config.programs.clone() {
            daemon.add_program(cfg)?;
        }
        daemon.reindex();
        daemon.recover_interrupted_deploys();
        daemon.schedule_sync();
        Ok(daemon)
    }

    /// Shutting down, nothing left running, and no FATAL alert still waiting (at most
    /// `FATAL_SETTLE`) for the last line its program wrote.
    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && !self.programs.iter().any(|p| p.state.is_live())
            && !self.alerts.fatal_pending()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.programs
            .iter()
            .position(|p| p.cfg.name.as_str() == name)
    }

    /// Starts what may start, retires what `update` removed or changed, and during shutdown
    /// stops the next level.
    fn drive(&mut self) {
        self.drain_deploys();
        self.drive_programs();
        // Starting programs may have changed what a deploy watches.
        self.drain_deploys();
    }

    fn drive_programs(&mut self) {
        self.retire();
        self.run_restarts();
        if self.shutdown.is_some() {
            self.drive_shutdown();
            return;
        }
        loop {
            let ready: Vec<usize> = (0..self.programs.len())
                .filter(|&i| {
                    let p = &self.programs[i];
                    p.pending_start
                        && !p.state.is_live()
                        && p.cfg.depends_on.iter().all(|d| {
                            self.index(d.as_str()).is_some_and(|j| {
                                let dep = &self.programs[j];
                                // Ordering, as systemd's After=: a dependency that is not
                                // set to start (autostart = false, not asked, not running:
                                // it runs elsewhere, such as its own container) is not
                                // waited for.
                                matches!(dep.state, State::Running { .. })
                                    || (!dep.cfg.autostart
                                        && !dep.pending_start
                                        && !dep.state.is_live())
                            })
                        })
                })
                .collect();
            if ready.is_empty() {
                return;
            }
            for i in ready {
                self.programs[i].pending_start = false;
                self.feed(i, LifeEvent::AutoStart);
            }
        }
    }

    /// Applies `event` to program `idx`, then every event its effects produce.
    fn feed(&mut self, idx: usize, event: LifeEvent) {
        let mut changed = Vec::new();
        let mut queue = VecDeque::from([(idx, event)]);
        while let Some((idx, event)) = queue.pop_front() {
            let p = &mut self.programs[idx];
            if event == LifeEvent::Start {
                // A start by hand (or a deploy) gives the start budget back.
                p.starts.reset();
            }
            let cx = Context {
                now: Instant::now(),
                shutting_down: self.shutdown.is_some(),
                jitter: self.jitter.sample(),
                start_budget_spent: p.starts.spent(SystemTime::now()),
            };
            let (mut next, effect) = transition(&p.state, &event, &p.cfg.policy, cx);
            // What it said last (`STATUS=`) goes with it: kept for its FATAL reason.
            if matches!(next, State::Fatal { .. }) && !matches!(p.state, State::Fatal { .. }) {
                let h = self.health.of(p.cfg.name.as_str());
                self.alerts.watch(p.cfg.name.as_str()).fatal_status = h
                    .status_text
                    .clone()
                    .filter(|s| !s.is_empty())
                    .zip(h.status_at);
            }
            // Not ready, waited on for a log line, and not a byte came: say why that may be.
            if let State::Stopping {
                then: crate::lifecycle::Then::Retry { reason, .. },
                ..
            } = &mut next
            {
                let h = self.health.of(p.cfg.name.as_str());
                let silent = h
                    .log_heard
                    .as_ref()
                    .is_some_and(|heard| heard.load(std::sync::atomic::Ordering::Acquire) != h.run);
                if let (&mut ExitReason::NotReady(after), true) = (&mut *reason, silent) {
                    *reason = ExitReason::NotReadySilent(after);
                }
            }
            let became_fatal =
                matches!(next, State::Fatal { .. }) && !matches!(p.state, State::Fatal { .. });
            let previous = std::mem::replace(&mut p.state, next);
            if previous.name() != p.state.name() {
                p.changed_at = SystemTime::now();
                log_change(&p.cfg, &previous, &p.state, cx.now);
                self.emit_state(idx, previous.name(), cx.now);
                self.listeners.state_change(&self.programs, idx, &previous);
                let deploying = self.deploys.runs(self.programs[idx].cfg.name.as_str());
                let p = alerts::seen(&self.programs[idx]);
                self.alerts
                    .on_change(&p, previous.name(), deploying, Instant::now());
                if let Some(s) = schedule::scheduled_one(&self.programs[idx]) {
                    let statedir = &self.config.supervisor.statedir;
                    let shutting_down = self.shutdown.is_some();
                    let runs = self.plans.changed(&s, &previous, statedir, shutting_down);
                    self.perform(runs);
                }
                self.settle_waiters(idx);
                if !changed.contains(&idx) {
                    changed.push(idx);
                }
            }
            self.health
                .sync(self.programs[idx].checked(), Instant::now());
            let extra_env = match effect {
                Some(Effect::Spawn) => {
                    let mut env = self.health.env(self.programs[idx].checked());
                    let socket = &self.config.supervisor.socket;
                    env.extend(listeners::Listeners::env(&self.programs[idx], socket));
                    env
                }
                _ => Vec::new(),
            };
            let p = &mut self.programs[idx];
            match effect {
                None => {}
                Some(Effect::Spawn) => {
                    // An event listener gets fresh pipes for stdin and stdout at each spawn:
                    // the protocol starts over with the process.
                    let pipes = p
                        .cfg
                        .listener
                        .as_ref()
                        .map(|_| listeners::Pipes::new())
                        .transpose();
                    let spawned = pipes.and_then(|pipes| {
                        let outputs = Outputs {
                            stdin: pipes.as_ref().map(|x| &x.child_stdin),
                            stdout: pipes.as_ref().map_or(&p.stdout, |x| &x.child_stdout),
                            stderr: &p.stderr,
                        };
                        Self::prepare_dirs(&p.cfg)
                            .and_then(|()| process::spawn(&p.cfg, &extra_env, outputs, self.nofile))
                            .map(|pid| (pid, pipes))
                    });
                    match spawned {
                        Ok((pid, pipes)) => {
                            if let Some(pipes) = pipes {
                                self.listeners.connect(&p.cfg.name, p.spawns + 1, pipes);
                            }
                            p.spawns += 1;
                            p.starts.record(SystemTime::now());
                            tracing::info!(program = %p.cfg.name, pid = pid.as_raw(), spawns = p.spawns, ready = p.cfg.ready.kind(), "spawned");
                            self.children.add(pid, children::Child::Program(idx));
                            queue.push_back((idx, LifeEvent::Spawned(pid)));
                        }
                        Err(e) => {
                            tracing::warn!(program = %p.cfg.name, error = %e, "spawn failed");
                            p.last_exit = Some(ExitReason::SpawnFailed(e.to_string()));
                            queue.push_back((idx, LifeEvent::SpawnFailed(e.to_string())));
                        }
                    }
                }
                Some(Effect::SignalGroup(pid, sig)) => {
                    tracing::info!(program = %p.cfg.name, pid = pid.as_raw(), signal = %sig, "signalling process group");
                    if let Err(e) = process::signal_group(pid, sig) {
                        tracing::warn!(program = %p.cfg.name, pid = pid.as_raw(), error = %e, "cannot signal process group");
                    }
                }
                Some(Effect::ProbeGroup(pid)) if !process::group_alive(pid) => {
                    queue.push_back((idx, LifeEvent::GroupGone));
                }
                Some(Effect::ProbeGroup(_)) => {}
            }
            if became_fatal && self.programs[idx].cfg.on_fatal == OnFatal::Shutdown {
                let name = self.programs[idx].cfg.name.clone();
                self.begin_shutdown(
                    format!("{name} is FATAL and has on_fatal = \"shutdown\""),
                    EXIT_FATAL,
                );
            }
        }
        // A deploy watching these programs reacts once their transitions are all done.
        for idx in changed {
            self.deploy_program_changed(idx);
        }
    }

    fn emit_state(&self, idx: usize, from: ProgramState, now: Instant) {
        let p = &self.programs[idx];
        // No subscriber is fine: the send result only says whether anyone listened.
        let _ = self.events.send(std::sync::Arc::new(Event::State {
            program: p.cfg.name.to_string(),
            from,
            to: p.state.name(),
            pid: p.state.pid().map(|pid| pid.as_raw() as u32),
            description: describe(&p.state, p.changed_at, p.spawns > 0, now),
            at_ms: unix_ms(p.changed_at),
        }));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let drain_until = self.shutdown.as_ref().map(|s| s.listeners_until);
        let programs = self
            .programs
            .iter()
            .filter_map(|p| p.state.deadline(&p.cfg.policy));
        let shutdown = self
            .shutdown
            .as_ref()
            .filter(|s| !s.forced)
            .map(|s| s.deadline);
        programs
            .chain(shutdown)
            .chain(self.deploy_deadlines())
            .chain(self.health.deadlines())
            .chain(
                self.children
                    .probes()
                    .filter(|c| !c.timed_out)
                    .map(|c| c.deadline),
            )
            .chain(self.polls.deadlines())
            .chain(self.alerts.deadlines())
            .chain(self.listeners.deadline(&self.programs))
            .chain(self.listeners.drain_deadline(&self.programs, drain_until))
            .chain(self.ceilings.deadline(
                ceilings::limited(&self.programs).next().is_some(),
                Instant::now(),
            ))
            .chain(self.plans.deadlines())
            .min()
    }

    fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.programs.len() {
            let p = &self.programs[i];
            if p.state.deadline(&p.cfg.policy).is_some_and(|d| d <= now) {
                self.feed(i, LifeEvent::Tick);
            }
        }
        self.deploy_tick(now);
        let due = self
            .health
            .tick(self.programs.iter().map(Program::checked), now);
        self.perform(due);
        self.kill_late_probes(now);
        let stopping = self.shutdown.is_some();
        let deploys = &self.deploys;
        let due = self
            .polls
            .tick(now, |p| stopping || deploys.runs(p), &mut self.jitter);
        self.perform(due);
        self.alert_tick(Some(now));
        self.listeners.tick(&self.programs);
        let limited: Vec<_> = ceilings::limited(&self.programs).collect();
        let sample = self.ceilings.tick(&limited, now);
        self.perform(sample);
        let scheduled = schedule::scheduled(&self.programs);
        let statedir = &self.config.supervisor.statedir;
        let runs = self.plans.tick(&scheduled, now, statedir, &mut self.jitter);
        self.perform(runs);
        if self
            .shutdown
            .as_ref()
            .is_some_and(|s| !s.forced && s.deadline <= now)
        {
            tracing::warn!(timeout = ?self.config.supervisor.shutdown_timeout, "shutdown_timeout reached; killing what is left");
            self.force_kill();
        }
    }

    fn reopen_logs(&mut self) {
        tracing::info!("SIGUSR2: reopening log files");
        self.reopen.send_modify(|generation| *generation += 1);
    }
}

fn log_change(cfg: &ProgramConfig, from: &State, to: &State, now: Instant) {
    // The states as their wire names: the log shows `from="STOPPED"`, as always.
    let (name, from, to_name) = (&cfg.name, from.name().as_str(), to.name().as_str());
    match to {
        State::Backoff { until, last, .. } => tracing::info!(
            program = %name, from, to = to_name, reason = %last,
            delay_ms = until.saturating_duration_since(now).as_millis() as u64,
            "state changed"
        ),
        State::Fatal { reason } => {
            tracing::warn!(program = %name, from, to = to_name, reason = %reason, "state changed")
        }
        State::Exited {
            reason, expected, ..
        } => tracing::info!(
            program = %name, from, to = to_name, reason = %reason, expected = *expected,
            "state changed"
        ),
        State::Stopped { last: Some(reason) } => {
            tracing::info!(program = %name, from, to = to_name, reason = %reason, "state changed")
        }
        _ => tracing::info!(program = %name, from, to = to_name, "state changed"),
    }
}
