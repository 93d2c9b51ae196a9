//! The deploy machine ([`crate::deploy::machine`]) in the actor: requests start one, its
//! effects are performed here, and what happened goes back to it as input.
//!
//! Inputs are queued and handled by [`Daemon::drain_deploys`], which `drive` calls: a program's
//! state change during `feed` only queues an input, and an effect that feeds the lifecycle
//! (stop, start) queues the answer, so the machine and the lifecycle never call into each other.
//! Steps are children of the actor like the programs: spawned and reaped on this thread, each in
//! its own process group, killed with it at `step_timeout`.
//!
//! Why this file is past 600 lines: performing every effect, the step spawner and the start-up
//! recovery of an interrupted deploy share the run's state; the recovery is the part to move out
//! next (beside `deploy::history`).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use supervisor_proto::{
    AlertKind, DeployKind, DeployRecord, DeployResult, DeployStage, ErrorBody, ErrorKind, Event,
    Reply, Severity,
};

use super::Daemon;
use super::children::Child;
use crate::deploy::git::Commit;
use crate::deploy::git::{self, is_commit, redact_url, step_environment};
use crate::deploy::history::{self, Quarantined};
use crate::deploy::machine::{Effect, Input, Machine, Observed, Setup};
use crate::deploy::release;
use crate::dirs::{self, Existing};
use crate::lifecycle::{Event as LifeEvent, ExitReason, State, later};
use crate::process::{self, Spec};
use crate::status::unix_ms;

/// A git command or build step that is running.
#[derive(Debug)]
struct Step {
    name: String,
    pid: Pid,
    started: Instant,
    timeout: Duration,
    deadline: Instant,
    /// The kernel's OOM kills when it started: more at its end means memory ran out meanwhile.
    oom_kills: Option<u64>,
    /// Where its stdout goes when the machine wants it.
    output: Option<PathBuf>,
    /// Killed for running past its deadline.
    timed_out: bool,
}

/// A deploy asked for while one runs: done after it, once.
#[derive(Debug)]
pub(super) struct Followup {
    pub trigger: String,
    pub force: bool,
    /// The newest push's commit, when the request named one.
    pub commit: Option<String>,
}

/// Failed deploys of a commit within `retry_failed_after`, with how long ago, from the newest
/// records.
fn failed_recently(
    deploydir: &std::path::Path,
    name: &str,
    cfg: &crate::config::DeployConfig,
) -> Vec<(String, Duration)> {
    let now_ms = unix_ms(SystemTime::now());
    let window_ms = u64::try_from(cfg.retry_failed_after.as_millis()).unwrap_or(u64::MAX);
    if window_ms == 0 {
        return Vec::new();
    }
    history::read(deploydir, name, 20)
        .into_iter()
        .filter(|r| r.kind == DeployKind::Deploy && r.result == DeployResult::Failed)
        .filter_map(|r| {
            let ended = r.started_ms.saturating_add(r.duration_ms);
            let ago = now_ms.saturating_sub(ended);
            let commit = r.new_commit.filter(|_| ago < window_ms)?;
            Some((commit, Duration::from_millis(ago)))
        })
        .collect()
}

/// The deploys running, by program name.
#[derive(Debug, Default)]
pub(super) struct Runs(HashMap<String, DeployRun>);

impl Runs {
    pub fn get_mut(&mut self, program: &str) -> Option<&mut DeployRun> {
        self.0.get_mut(program)
    }

    /// Whether `program` is being deployed (or rolled back).
    pub fn runs(&self, program: &str) -> bool {
        self.0.contains_key(program)
    }

    /// A program set up anew, or no longer configured: a deploy it had is dropped with its old
    /// configuration (its step, if one runs, is still reaped, and its result ignored).
    pub fn forget(&mut self, program: &str) {
        self.0.remove(program);
    }

    pub fn keep_only(&mut self, programs: &HashSet<&str>) {
        self.0.retain(|name, _| programs.contains(name.as_str()));
    }
}

/// One deploy or rollback of one program: the machine and what the daemon keeps for it.
#[derive(Debug)]
pub(super) struct DeployRun {
    pub id: String,
    trigger: String,
    started: (Instant, SystemTime),
    program: String,
    machine: Machine,
    step: Option<Step>,
    log_path: PathBuf,
    log: Option<File>,
    pub followup: Option<Followup>,
    /// `CARGO_BUILD_JOBS` for its steps (from the memory available when it started), unless
    /// the deploy table sets it.
    build_jobs: Option<usize>,
}

/// An id that sorts by time: `20261124T130501Z-bot-3`.
fn new_id(program: &str, n: u64) -> String {
    let now: chrono::DateTime<chrono::Utc> = SystemTime::now().into();
    format!("{}-{program}-{n}", now.format("%Y%m%dT%H%M%SZ"))
}

impl DeployRun {
    fn say(&mut self, line: &str) {
        if let Some(log) = self.log.as_mut() {
            let now: chrono::DateTime<chrono::Utc> = SystemTime::now().into();
            let _ = writeln!(log, "[{}] {line}", now.format("%H:%M:%S%.3f"));
        }
    }

    fn record(&self, result: DeployResult, message: &str) -> DeployRecord {
        let m = &self.machine;
        let id = |c: &Option<Commit>| c.as_ref().map(|c| c.id.clone());
        let subject = |c: &Option<Commit>| c.as_ref().and_then(|c| c.subject.clone());
        DeployRecord {
            id: self.id.clone(),
            program: self.program.clone(),
            kind: m.kind,
            trigger: self.trigger.clone(),
            started_ms: unix_ms(self.started.1),
            duration_ms: self.started.0.elapsed().as_millis() as u64,
            old_commit: id(&m.old),
            new_commit: id(&m.new),
            old_subject: subject(&m.old),
            new_subject: subject(&m.new),
            result,
            message: message.to_owned(),
            steps: m.steps.clone(),
            written_bytes: m.steps.iter().map(|s| s.written_bytes).sum(),
            log: self.log_path.display().to_string(),
        }
    }

    fn emit(
        &self,
        events: &tokio::sync::broadcast::Sender<std::sync::Arc<Event>>,
        stage: DeployStage,
        message: &str,
        commit: Option<String>,
    ) {
        // Nobody listening is fine.
        let _ = events.send(std::sync::Arc::new(Event::Deploy {
            program: self.program.clone(),
            id: self.id.clone(),
            stage,
            message: message.to_owned(),
            commit,
            at_ms: unix_ms(SystemTime::now()),
        }));
    }
}

/// How the machine sees a program's state.
fn observe(state: &State) -> Observed {
    match state {
        State::Running { since, .. } => Observed::Running { since: *since },
        State::Spawning { .. } | State::Starting { .. } | State::Stopping { .. } => Observed::Busy,
        State::Fatal { reason } => Observed::Down {
            why: reason.clone(),
        },
        State::Backoff { last, .. } => Observed::Down {
            why: last.to_string(),
        },
        State::Exited { reason, .. } => Observed::Down {
            why: reason.to_string(),
        },
        State::Stopped { .. } => Observed::Down {
            why: state.name().to_string(),
        },
    }
}

fn deploy_error(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        kind,
        message: message.into(),
    }
}

impl Daemon {
    /// `deploy` and `rollback`: start one, or queue a follow-up behind the running one.
    pub(super) fn request_deploy(
        &mut self,
        name: &str,
        kind: DeployKind,
        trigger: String,
        force: bool,
        commit: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        let idx = self.index(name).ok_or_else(|| {
            deploy_error(
                ErrorKind::UnknownProgram,
                format!("{name}: ERROR (no such process)"),
            )
        })?;
        if self.shutdown.is_some() {
            return Err(deploy_error(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down",
            ));
        }
        let cfg = self.deploy_config(name)?;
        if let Some(run) = self.deploys.get_mut(name) {
            if kind == DeployKind::Rollback {
                return Err(deploy_error(
                    ErrorKind::BadRequest,
                    format!(
                        "deploy {} of {name} is running; roll back when it is done",
                        run.id
                    ),
                ));
            }
            let force = force || run.followup.as_ref().is_some_and(|f| f.force);
            run.followup = Some(Followup {
                trigger,
                force,
                commit,
            });
            return Ok(Reply::Deploy {
                program: name.to_owned(),
                id: run.id.clone(),
                queued: true,
            });
        }
        self.deploys_started += 1;
        let id = new_id(name, self.deploys_started);
        let deploydir = self.config.supervisor.deploydir.clone();
        let dir = deploydir.join(name);
        let log_path = dir.join(format!("{id}.log"));
        history::prune_logs(&dir);
        let log = std::fs::create_dir_all(&dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&log_path))
            .map_err(|e| {
                deploy_error(
                    ErrorKind::Internal,
                    format!("cannot write {}: {e}", log_path.display()),
                )
            })?;
        // The folders the deploy's user writes: made for it when missing (its steps cannot
        // create them inside folders only root may write).
        // (`artifact_url` needs no repository.)
        let repo = Some(&cfg.repo).filter(|r| !r.as_os_str().is_empty());
        for dir in repo.into_iter().chain([&cfg.releases]) {
            if let Err(message) = dirs::prepare(dir, 0o755, cfg.user.as_ref(), Existing::Require) {
                return Err(deploy_error(ErrorKind::Internal, message.to_string()));
            }
        }
        // What the machine needs to know from disk, read now.
        let rollback_to = match kind {
            DeployKind::Rollback => history::read(&deploydir, name, 100)
                .into_iter()
                .find(|r| r.result == DeployResult::Succeeded && r.old_commit.is_some())
                .and_then(|r| {
                    Some(Commit {
                        id: r.old_commit?,
                        subject: r.old_subject,
                    })
                }),
            DeployKind::Deploy => None,
        };
        let failed_recently = match kind {
            DeployKind::Deploy => failed_recently(&deploydir, name, &cfg),
            DeployKind::Rollback => Vec::new(),
        };
        // How many crates its build may compile at once, from the memory free now.
        let build_jobs = (!cfg.steps.is_empty() && !git::sets_variable(&cfg, "CARGO_BUILD_JOBS"))
            .then(|| {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                git::build_jobs(process::memory_available().unwrap_or(u64::MAX), cpus)
            });
        let setup = Setup {
            failed_recently,
            kind,
            program: name.to_owned(),
            commit,
            init: kind == DeployKind::Deploy
                && cfg.url.is_some()
                && !cfg.repo.join(".git").exists(),
            current_release: release::current(&cfg.releases),
            rollback_release_kept: rollback_to
                .as_ref()
                .is_some_and(|c| cfg.releases.join(&c.id).exists()),
            rollback_to,
            quarantined: history::quarantined(&deploydir, name)
                .into_iter()
                .map(|q| q.commit)
                .collect(),
            force,
            cfg,
        };
        let (machine, effects) = Machine::start(setup);
        let mut run = DeployRun {
            id: id.clone(),
            trigger,
            started: (Instant::now(), SystemTime::now()),
            program: name.to_owned(),
            machine,
            step: None,
            log_path,
            log: Some(log),
            followup: None,
            build_jobs,
        };
        let forced = if force { ", forced" } else { "" };
        run.say(&format!(
            "{kind} {id} of {name}, asked by {}{forced}",
            run.trigger
        ));
        let marker_text = serde_json::json!({ "id": id, "trigger": run.trigger, "started_ms": unix_ms(run.started.1) });
        let _ = std::fs::write(history::marker(&deploydir, name), marker_text.to_string());
        tracing::info!(program = name, id = %id, trigger = %run.trigger, kind = ?kind, force, "deploy started");
        self.deploys.0.insert(name.to_owned(), run);
        self.perform_deploy(idx, effects);
        Ok(Reply::Deploy {
            program: name.to_owned(),
            id,
            queued: false,
        })
    }

    /// A program's deploy settings, or why it cannot be deployed.
    fn deploy_config(&self, name: &str) -> Result<crate::config::DeployConfig, ErrorBody> {
        let idx = self.index(name).ok_or_else(|| {
            deploy_error(
                ErrorKind::UnknownProgram,
                format!("{name}: ERROR (no such process)"),
            )
        })?;
        self.programs[idx].cfg.deploy.clone().ok_or_else(|| {
            deploy_error(
                ErrorKind::NotDeployable,
                format!("{name} has no [program.{name}.deploy] table"),
            )
        })
    }

    /// A push to `branch` deploys nothing unless it is the program's deploy branch.
    pub(super) fn refuse_other_branch(&self, name: &str, branch: &str) -> Result<(), ErrorBody> {
        let cfg = self.deploy_config(name)?;
        if branch == cfg.branch {
            return Ok(());
        }
        Err(deploy_error(
            ErrorKind::OtherBranch,
            format!("a push to {branch}; {} is the deployed branch", cfg.branch),
        ))
    }

    /// A deploy asked for a known commit that is held back: refused now, with nothing fetched,
    /// recorded or announced (a forge redelivering a push of a broken commit).
    pub(super) fn refuse_held_back(&self, name: &str, commit: &str) -> Result<(), ErrorBody> {
        let cfg = self.deploy_config(name)?;
        let deploydir = &self.config.supervisor.deploydir;
        let same = |c: &str| !commit.is_empty() && c == commit;
        let short = crate::deploy::git::short(commit);
        if history::quarantined(deploydir, name)
            .iter()
            .any(|q| same(&q.commit))
        {
            return Err(deploy_error(
                ErrorKind::Refused,
                format!(
                    "{short} failed its health gate before and is quarantined; push a fix, or deploy --force"
                ),
            ));
        }
        if let Some((_, ago)) = failed_recently(deploydir, name, &cfg)
            .into_iter()
            .find(|(c, _)| same(c))
        {
            return Err(deploy_error(
                ErrorKind::Refused,
                format!(
                    "{short} failed to deploy {} ago; it is not built again before {} have passed (retry_failed_after)",
                    crate::config::units::format_duration(Duration::from_secs(ago.as_secs())),
                    crate::config::units::format_duration(cfg.retry_failed_after)
                ),
            ));
        }
        Ok(())
    }

    /// Queues an input for `program`'s deploy (handled by [`Self::drain_deploys`]).
    fn deploy_input(&mut self, program: &str, input: Input) {
        self.deploy_inputs
            .push_back((program.to_owned(), Some(input)));
    }

    /// Queues a look at `program`'s state for its deploy: the machine is told the state as
    /// it is when the note is handled, never a stale one, and once for several changes.
    fn deploy_look(&mut self, program: &str) {
        let queued = self
            .deploy_inputs
            .iter()
            .any(|(p, input)| p == program && input.is_none());
        if !queued {
            self.deploy_inputs.push_back((program.to_owned(), None));
        }
    }

    /// Hands queued inputs to their machines and performs the effects, until none is left.
    pub(super) fn drain_deploys(&mut self) {
        while let Some((program, input)) = self.deploy_inputs.pop_front() {
            let Some(idx) = self.index(&program) else {
                continue;
            };
            let observed = observe(&self.programs[idx].state);
            let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
                continue;
            };
            let effects = run
                .machine
                .handle(input.unwrap_or(Input::Program(observed)));
            self.perform_deploy(idx, effects);
        }
    }

    fn perform_deploy(&mut self, idx: usize, effects: Vec<Effect>) {
        for effect in effects {
            let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
                return;
            };
            let program = run.program.clone();
            match effect {
                Effect::Say(line) => run.say(&line),
                Effect::Emit {
                    stage,
                    message,
                    commit,
                } => run.emit(&self.events, stage, &message, commit),
                Effect::Spawn {
                    name,
                    argv,
                    capture,
                    timeout,
                } => self.spawn_step(idx, &name, &argv, capture, timeout),
                Effect::Switch(target) => {
                    let result = release::point_current(&run.machine.cfg.releases, &target)
                        .map_err(|e| e.to_string());
                    self.deploy_input(&program, Input::Switched(result));
                }
                Effect::StopProgram => {
                    let p = &mut self.programs[idx];
                    p.pending_start = false;
                    if matches!(
                        p.state,
                        State::Starting { .. } | State::Running { .. } | State::Backoff { .. }
                    ) {
                        self.feed(idx, LifeEvent::Stop);
                    }
                    self.deploy_look(&program);
                }
                Effect::StartProgram => {
                    let p = &mut self.programs[idx];
                    p.pending_start = false;
                    if !p.state.is_live() {
                        self.feed(idx, LifeEvent::Start);
                    }
                    self.deploy_look(&program);
                }
                Effect::Quarantine { commit, reason } => {
                    run.say(&format!("quarantined {commit}: {reason}"));
                    let entry = Quarantined {
                        commit,
                        at_ms: unix_ms(SystemTime::now()),
                        deploy: run.id.clone(),
                        reason,
                    };
                    history::quarantine(&self.config.supervisor.deploydir, &program, &entry);
                }
                Effect::Finish { result, message } => self.finish_deploy(idx, result, &message),
            }
        }
    }

    fn spawn_step(
        &mut self,
        idx: usize,
        name: &str,
        argv: &[String],
        capture: bool,
        timeout: Duration,
    ) {
        let nofile = self.nofile;
        let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
            return;
        };
        let shown: Vec<_> = argv.iter().map(|a| redact_url(a)).collect();
        run.say(&format!("$ {}", shown.join(" ")));
        let output = capture.then(|| run.log_path.with_extension("out"));
        let fds = (|| -> std::io::Result<(OwnedFd, OwnedFd)> {
            let log = run
                .log
                .as_ref()
                .ok_or_else(|| std::io::Error::other("no log"))?
                .try_clone()?;
            let out = match &output {
                Some(path) => File::create(path)?,
                None => log.try_clone()?,
            };
            Ok((out.into(), log.into()))
        })();
        let cfg = &run.machine.cfg;
        let mut environment = step_environment(cfg);
        if let Some(jobs) = run.build_jobs {
            environment.push(("CARGO_BUILD_JOBS".to_owned(), jobs.to_string()));
        }
        let spawned = fds.and_then(|(stdout, stderr)| {
            process::spawn_spec(
                &Spec {
                    argv,
                    directory: Some(cfg.step_directory()),
                    environment: &environment,
                    pass_env: &cfg.pass_env,
                    user: cfg.user.as_ref(),
                    stdin: None,
                    stdout: &stdout,
                    stderr: &stderr,
                    rlimits: &[],
                    oom_score_adj: process::STEP_OOM_SCORE_ADJ,
                },
                nofile,
            )
        });
        match spawned {
            Ok(pid) => {
                let now = Instant::now();
                run.step = Some(Step {
                    name: name.to_owned(),
                    pid,
                    started: now,
                    timeout,
                    deadline: later(now, timeout),
                    oom_kills: process::oom_kills(),
                    output,
                    timed_out: false,
                });
                let program = run.program.clone();
                self.children.add(pid, Child::Step(program));
            }
            Err(e) => {
                let program = run.program.clone();
                self.deploy_input(&program, Input::StepNotRun(e.to_string()));
            }
        }
    }

    /// A git command or step ended (reaped by the actor).
    pub(super) fn deploy_step_exited(
        &mut self,
        program: &str,
        pid: Pid,
        reason: ExitReason,
        written_bytes: u64,
    ) {
        let Some(idx) = self.index(program) else {
            return;
        };
        let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
            return;
        };
        let Some(step) = run.step.take_if(|s| s.pid == pid) else {
            return;
        };
        let took = step.started.elapsed();
        let why = if step.timed_out {
            format!(
                "timed out after {}",
                crate::config::units::format_duration(step.timeout)
            )
        } else if reason != ExitReason::Exited(0)
            && process::oom_kills()
                .zip(step.oom_kills)
                .is_some_and(|(now, then)| now > then)
        {
            // A build killed for memory (its compiler, or the step itself: steps are first in
            // the OOM killer's order) names it, so the owner knows what to change.
            format!("out of memory: the kernel's OOM killer ran during the step ({reason})")
        } else {
            reason.to_string()
        };
        run.say(&format!("{}: {why} ({} ms)", step.name, took.as_millis()));
        // Small (a commit id and a subject), read once.
        let output = step.output.as_ref().map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            text.trim().to_owned()
        });
        let input = Input::StepEnded {
            ok: reason == ExitReason::Exited(0) && !step.timed_out,
            why,
            took_ms: took.as_millis() as u64,
            output,
            written_bytes,
        };
        self.deploy_input(program, input);
    }

    /// After `feed` changed program `idx`'s state: its deploy (if any) hears of it.
    pub(super) fn deploy_program_changed(&mut self, idx: usize) {
        if self.deploys.runs(self.programs[idx].cfg.name.as_str()) {
            let program = self.programs[idx].cfg.name.to_string();
            self.deploy_look(&program);
        }
    }

    /// The deadlines of running steps and gates.
    pub(super) fn deploy_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.deploys.0.values().filter_map(|run| match &run.step {
            Some(step) if !step.timed_out => Some(step.deadline),
            Some(_) => None,
            None => run.machine.deadline(),
        })
    }

    /// Timers: kill a step past its timeout; tell a gate the time.
    pub(super) fn deploy_tick(&mut self, now: Instant) {
        for idx in 0..self.programs.len() {
            let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
                continue;
            };
            if let Some(step) = run.step.as_mut() {
                if !step.timed_out && now >= step.deadline {
                    step.timed_out = true;
                    let (name, pid) = (step.name.clone(), step.pid);
                    run.say(&format!("{name} timed out; killing its process group"));
                    let _ = process::signal_group(pid, Signal::SIGKILL);
                }
                continue;
            }
            if run.machine.deadline().is_some_and(|d| d <= now) {
                let program = run.program.clone();
                self.deploy_input(&program, Input::Tick(now));
            }
        }
    }

    fn finish_deploy(&mut self, idx: usize, result: DeployResult, message: &str) {
        let deploydir = self.config.supervisor.deploydir.clone();
        let Some(mut run) = self.deploys.0.remove(self.programs[idx].cfg.name.as_str()) else {
            return;
        };
        if let Some(step) = run.step.take() {
            // Only an abort finishes with a step still running.
            let _ = process::signal_group(step.pid, Signal::SIGKILL);
        }
        run.say(&format!("{result}: {message}"));
        let record = run.record(result, message);
        let commit = run.machine.new.as_ref().map(|c| c.id.clone());
        run.emit(&self.events, result.into(), message, commit);
        let followup = run.followup.take();
        let program = run.program.clone();
        tracing::info!(program = %program, id = %record.id, result = %result, message, "deploy finished");
        history::append(&deploydir, &record);
        let _ = std::fs::remove_file(history::marker(&deploydir, &program));
        let commit = |c: &Option<String>| {
            c.as_deref()
                .map(|c| crate::deploy::git::short(c).to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let alert = match result {
            DeployResult::Failed => Some((
                AlertKind::DeployFailed,
                Severity::Warning,
                format!("deploy of {program} failed: {message}"),
            )),
            DeployResult::RolledBack => Some((
                AlertKind::RolledBack,
                Severity::Warning,
                format!(
                    "{program}: {} failed its health gate ({message}); rolled back to {}",
                    commit(&record.new_commit),
                    commit(&record.old_commit)
                ),
            )),
            DeployResult::Quarantined => Some((
                AlertKind::Quarantined,
                Severity::Info,
                format!("{program}: not deployed: {message}"),
            )),
            _ => None,
        };
        if let Some((kind, severity, text)) = alert {
            self.raise(idx, kind, severity, text);
        }
        // A deploy leaves the program as wanted: running.
        if !self.programs[idx].state.is_live()
            && !matches!(result, DeployResult::Unchanged | DeployResult::Quarantined)
            && self.shutdown.is_none()
        {
            self.programs[idx].pending_start = true;
        }
        if let Some(f) = followup.filter(|_| self.shutdown.is_none()) {
            let trigger = format!("{} (queued)", f.trigger);
            let kind = DeployKind::Deploy;
            let _ = self.request_deploy(&program, kind, trigger, f.force, f.commit);
        }
    }

    /// `deploys`: the history of the named programs (all with a deploy table when none),
    /// newest first.
    pub(super) fn deploys_reply(&self, names: &[String], limit: u32) -> Result<Reply, ErrorBody> {
        let ids = self.select(names, true)?;
        let mut records = Vec::new();
        for i in ids {
            let p = &self.programs[i];
            if p.cfg.deploy.is_some() {
                records.extend(history::read(
                    &self.config.supervisor.deploydir,
                    p.cfg.name.as_str(),
                    limit,
                ));
            }
        }
        records.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
        records.truncate(limit as usize);
        Ok(Reply::Deploys { records })
    }

    /// At start: a deploy that was running when the supervisor stopped is recorded as
    /// interrupted, and a working tree it left on an unproven commit goes back to the one that
    /// ran before (read from the history, so the tree and the release agree again).
    pub(super) fn recover_interrupted_deploys(&mut self) {
        let deploydir = self.config.supervisor.deploydir.clone();
        for idx in 0..self.programs.len() {
            let Some(cfg) = self.programs[idx].cfg.deploy.clone() else {
                continue;
            };
            let name = self.programs[idx].cfg.name.to_string();
            let path = history::marker(&deploydir, &name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let info: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let field = |k: &str| {
                info.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let mut message = "the supervisor stopped during this deploy".to_owned();
            // The commit the last good deploy left running.
            let good = history::read(&deploydir, &name, 100)
                .into_iter()
                .find(DeployRecord::is_conclusive)
                .and_then(|r| r.running_commit().0.map(str::to_owned));
            let good = good.filter(|c: &String| {
                cfg.artifact.is_none() && cfg.download.is_none() && is_commit(c)
            });
            if let Some(good) = good {
                // As every deploy step: the deploy's user, its environment, its own process
                // group, within the step timeout (at most a minute: the daemon is starting).
                let argv = git::checkout(&good);
                let environment = step_environment(&cfg);
                let null = OpenOptions::new().write(true).open("/dev/null");
                let restored = null.and_then(|null| {
                    let null: OwnedFd = null.into();
                    process::run_bounded(
                        &Spec {
                            argv: &argv,
                            directory: Some(&cfg.repo),
                            environment: &environment,
                            pass_env: &cfg.pass_env,
                            user: cfg.user.as_ref(),
                            stdin: None,
                            stdout: &null,
                            stderr: &null,
                            rlimits: &[],
                            oom_score_adj: process::STEP_OOM_SCORE_ADJ,
                        },
                        self.nofile,
                        cfg.step_timeout.min(std::time::Duration::from_secs(60)),
                    )
                });
                message = match restored {
                    Ok(ExitReason::Exited(0)) => {
                        format!("{message}; working tree restored to {good}")
                    }
                    Ok(reason) => {
                        format!("{message}; restoring the working tree to {good} failed ({reason})")
                    }
                    Err(e) => {
                        format!("{message}; restoring the working tree to {good} failed ({e})")
                    }
                };
            }
            let record = DeployRecord {
                id: field("id"),
                program: name.clone(),
                kind: DeployKind::Deploy,
                trigger: field("trigger"),
                started_ms: info.get("started_ms").and_then(|v| v.as_u64()).unwrap_or(0),
                duration_ms: 0,
                old_commit: None,
                new_commit: None,
                old_subject: None,
                new_subject: None,
                result: DeployResult::Interrupted,
                message,
                steps: Vec::new(),
                written_bytes: 0,
                log: deploydir
                    .join(&name)
                    .join(format!("{}.log", field("id")))
                    .display()
                    .to_string(),
            };
            tracing::warn!(program = %name, id = %record.id, message = %record.message, "deploy interrupted");
            history::append(&deploydir, &record);
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Shutdown: kill running steps; the history says the deploy was interrupted.
    pub(super) fn abort_deploys(&mut self) {
        for idx in 0..self.programs.len() {
            let Some(run) = self.deploys.get_mut(self.programs[idx].cfg.name.as_str()) else {
                continue;
            };
            let effects = run.machine.handle(Input::Abort);
            self.perform_deploy(idx, effects);
        }
    }
}
