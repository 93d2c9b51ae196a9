//! The deploy engine (DESIGN.md decision 3): fetch the branch, check out exactly the fetched
//! tip, build, switch releases, restart the program, and hold it to a health gate; put the
//! previous release back if it fails. Git and the build steps are children of the actor like
//! the programs, spawned and reaped on the same thread, each in its own process group, killed
//! with it on timeout.
//!
//! Why this file is long: phase changes and their I/O are still methods of the actor here. The
//! next step is a pure deploy machine (phase + event + now → phase + effects, table-tested, as
//! `lifecycle` is) with `release` and history as plain I/O beside it.
//!
//! Two ways to release: with `artifact`, the build output is copied into
//! `releases/<commit>/` and the `releases/current` symlink is switched atomically (the running
//! version is never touched by a build); without it, the working tree itself is what the program
//! runs, and the checkout is the switch (restored if a step fails).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use supervisor_proto::{
    DeployKind, DeployRecord, DeployResult, DeployStage, ErrorBody, ErrorKind, Event, Reply,
    StepRecord,
};
use tokio::sync::broadcast;

use super::Daemon;
use crate::config::DeployConfig;
use crate::dirs::{self, Existing};
use crate::lifecycle::{Event as LifeEvent, ExitReason, State, later};
use crate::process::{self, Spec};
use crate::status::unix_ms;

#[derive(Debug)]
enum Phase {
    /// `repo` is not a repository yet and `url` is set: `git init` it.
    Init,
    Fetch,
    ResolveOld,
    ResolveNew,
    Checkout,
    Build(usize),
    /// Artifact mode: the release step (`supervisor release-copy`, as the deploy's user) copies
    /// the build output into `releases/<commit>/` and prunes old releases.
    Release,
    /// A step failed in working-tree mode: put the old commit back before reporting.
    Restore,
    /// Stopping (if it ran) and starting the program; `rollback` when putting back.
    Restart {
        rollback: bool,
        stopping: bool,
    },
    /// RUNNING, and must stay up until `until`.
    Gate {
        rollback: bool,
    },
    /// Working-tree mode rollback: checking the old commit out again.
    RollbackCheckout,
}

/// A git command or build step that is running.
#[derive(Debug)]
struct Step {
    name: String,
    pid: Pid,
    started: Instant,
    deadline: Instant,
    /// Where its stdout goes when we need it (a commit id).
    output: Option<PathBuf>,
    /// Killed for running past its deadline.
    timed_out: bool,
}

/// One deploy or rollback of one program.
#[derive(Debug)]
pub(super) struct DeployRun {
    pub id: String,
    kind: DeployKind,
    trigger: String,
    started: (Instant, SystemTime),
    cfg: DeployConfig,
    program: String,
    old: Option<String>,
    new: Option<String>,
    old_subject: Option<String>,
    new_subject: Option<String>,
    phase: Phase,
    step: Option<Step>,
    steps: Vec<StepRecord>,
    log_path: PathBuf,
    log: Option<File>,
    /// Artifact mode: where `current` pointed before the switch.
    previous_release: Option<PathBuf>,
    /// Someone asked for another deploy while this one ran.
    pub followup: Option<String>,
}

/// An id that sorts by time: `20261124T130501Z-bot-3`.
fn new_id(program: &str, n: u64) -> String {
    let now: chrono::DateTime<chrono::Utc> = SystemTime::now().into();
    format!("{}-{program}-{n}", now.format("%Y%m%dT%H%M%SZ"))
}

fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git log -1 --format=%H%n%s` output: the commit id (when it is one) and its subject.
fn split_commit(output: Option<String>) -> (Option<String>, Option<String>) {
    let Some(text) = output else {
        return (None, None);
    };
    let mut lines = text.lines();
    let commit = lines.next().map(str::trim).filter(|c| is_commit(c));
    let subject = lines.next().map(str::trim).filter(|s| !s.is_empty());
    match commit {
        Some(c) => (Some(c.to_owned()), subject.map(str::to_owned)),
        None => (None, None),
    }
}

fn marker(deploydir: &Path, program: &str) -> PathBuf {
    deploydir.join(format!("{program}.inflight"))
}

fn history(deploydir: &Path, program: &str) -> PathBuf {
    deploydir.join(format!("{program}.jsonl"))
}

impl DeployRun {
    fn say(&mut self, line: &str) {
        if let Some(log) = self.log.as_mut() {
            let now: chrono::DateTime<chrono::Utc> = SystemTime::now().into();
            let _ = writeln!(log, "[{}] {line}", now.format("%H:%M:%S%.3f"));
        }
    }

    fn current_link(&self) -> PathBuf {
        self.cfg.releases.join("current")
    }

    fn record(&self, result: DeployResult, message: &str) -> DeployRecord {
        DeployRecord {
            id: self.id.clone(),
            program: self.program.clone(),
            kind: self.kind,
            trigger: self.trigger.clone(),
            started_ms: unix_ms(self.started.1),
            duration_ms: self.started.0.elapsed().as_millis() as u64,
            old_commit: self.old.clone(),
            new_commit: self.new.clone(),
            old_subject: self.old_subject.clone(),
            new_subject: self.new_subject.clone(),
            result,
            message: message.to_owned(),
            steps: self.steps.clone(),
            log: self.log_path.display().to_string(),
        }
    }
}

impl Daemon {
    fn deploy_error(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind,
            message: message.into(),
        }
    }

    /// `deploy` and `rollback`: start one, or queue a follow-up behind the running one.
    pub(super) fn request_deploy(
        &mut self,
        name: &str,
        kind: DeployKind,
        trigger: String,
    ) -> Result<Reply, ErrorBody> {
        let idx = self.index(name).ok_or_else(|| {
            Self::deploy_error(
                ErrorKind::UnknownProgram,
                format!("{name}: ERROR (no such process)"),
            )
        })?;
        if self.shutdown.is_some() {
            return Err(Self::deploy_error(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down",
            ));
        }
        let p = &mut self.programs[idx];
        let Some(cfg) = p.cfg.deploy.clone() else {
            return Err(Self::deploy_error(
                ErrorKind::BadRequest,
                format!("{name} has no [program.{name}.deploy] table"),
            ));
        };
        if let Some(run) = p.deploy.as_mut() {
            if kind == DeployKind::Rollback {
                return Err(Self::deploy_error(
                    ErrorKind::BadRequest,
                    format!(
                        "deploy {} of {name} is running; roll back when it is done",
                        run.id
                    ),
                ));
            }
            run.followup = Some(trigger);
            return Ok(Reply::Deploy {
                program: name.to_owned(),
                id: run.id.clone(),
                queued: true,
            });
        }
        self.deploys_started += 1;
        let id = new_id(name, self.deploys_started);
        let dir = self.config.supervisor.deploydir.join(name);
        let log_path = dir.join(format!("{id}.log"));
        prune_deploy_logs(&dir);
        let log = std::fs::create_dir_all(&dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&log_path))
            .map_err(|e| {
                Self::deploy_error(
                    ErrorKind::Internal,
                    format!("cannot write {}: {e}", log_path.display()),
                )
            })?;
        // The folders the deploy's user writes: made for it when missing (its steps cannot
        // create them inside folders only root may write).
        for dir in [&cfg.repo, &cfg.releases] {
            if let Err(message) = dirs::prepare(dir, 0o755, cfg.user.as_ref(), Existing::Require) {
                return Err(Self::deploy_error(ErrorKind::Internal, message));
            }
        }
        let init =
            kind == DeployKind::Deploy && cfg.url.is_some() && !cfg.repo.join(".git").exists();
        let mut run = DeployRun {
            id: id.clone(),
            kind,
            trigger,
            started: (Instant::now(), SystemTime::now()),
            cfg,
            program: name.to_owned(),
            old: None,
            new: None,
            old_subject: None,
            new_subject: None,
            phase: match kind {
                DeployKind::Deploy if init => Phase::Init,
                DeployKind::Deploy => Phase::Fetch,
                DeployKind::Rollback => Phase::ResolveOld,
            },
            step: None,
            steps: Vec::new(),
            log_path,
            log: Some(log),
            previous_release: None,
            followup: None,
        };
        run.say(&format!("{kind} {id} of {name}, asked by {}", run.trigger));
        let marker_text = serde_json::json!({ "id": id, "trigger": run.trigger, "started_ms": unix_ms(run.started.1) });
        let _ = std::fs::write(
            marker(&self.config.supervisor.deploydir, name),
            marker_text.to_string(),
        );
        tracing::info!(program = name, id = %id, trigger = %run.trigger, kind = ?kind, "deploy started");
        self.programs[idx].deploy = Some(run);
        self.emit_deploy(idx, DeployStage::Started, "", None);
        self.advance_deploy(idx);
        Ok(Reply::Deploy {
            program: name.to_owned(),
            id,
            queued: false,
        })
    }

    fn emit_deploy(&self, idx: usize, stage: DeployStage, message: &str, commit: Option<String>) {
        if let Some(run) = self.programs[idx].deploy.as_ref() {
            emit(&self.events, run, stage, message, commit);
        }
    }

    /// Runs the current phase: spawns its command, or does its in-process work.
    fn advance_deploy(&mut self, idx: usize) {
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        if run.step.is_some() {
            return;
        }
        let cfg = run.cfg.clone();
        let git = |args: &[&str]| -> Vec<String> {
            std::iter::once("git")
                .chain(args.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        let checkout = |commit: &str| git(&["checkout", "--force", "--detach", commit]);
        // The commit id, then its subject line: what the history and the announcements show.
        let describe = |rev: &str| git(&["log", "-1", "--format=%H%n%s", rev, "--"]);
        match run.phase {
            Phase::Init => self.spawn_step(idx, "git init", git(&["init", "-q"]), None),
            Phase::Fetch => {
                let refspec = format!(
                    "+refs/heads/{0}:refs/remotes/{1}/{0}",
                    cfg.branch, cfg.remote
                );
                let from = cfg.url.as_deref().unwrap_or(&cfg.remote);
                // A repository on this machine is usually another user's (root's, or a mounted
                // forge's), which git refuses to read as the deploy's user ("dubious
                // ownership"). Its reader is trusted for this one fetch; git clears `-c` and
                // GIT_CONFIG_* for local transports, so it goes on the upload-pack command.
                let local = cfg
                    .url
                    .as_deref()
                    .is_some_and(|u| is_local_path(u) || u.starts_with("file://"));
                let argv = if local {
                    let pack = "--upload-pack=git -c 'safe.directory=*' upload-pack";
                    git(&["fetch", "--no-tags", pack, "--", from, &refspec])
                } else {
                    git(&["fetch", "--no-tags", "--", from, &refspec])
                };
                self.spawn_step(idx, "git fetch", argv, None);
            }
            Phase::ResolveOld => {
                let out = run.log_path.with_extension("old");
                self.spawn_step(idx, "git log -1 HEAD", describe("HEAD"), Some(out));
            }
            Phase::ResolveNew => {
                let out = run.log_path.with_extension("new");
                let tip = format!("refs/remotes/{}/{}^{{commit}}", cfg.remote, cfg.branch);
                self.spawn_step(idx, "git log -1 (fetched tip)", describe(&tip), Some(out));
            }
            Phase::Checkout => match run.new.clone() {
                Some(new) => self.spawn_step(idx, "git checkout", checkout(&new), None),
                None => self.finish_deploy(idx, DeployResult::Failed, "no commit to check out"),
            },
            Phase::Build(i) if i < cfg.steps.len() => {
                let argv = cfg.steps[i].clone();
                let name = argv.join(" ");
                self.spawn_step(idx, &name, argv, None);
            }
            Phase::Build(_) => match (&cfg.artifact, run.new.clone()) {
                // Every step passed: the release step copies the artifact, as the build's user
                // and off the actor's thread.
                (Some(artifact), Some(new)) => {
                    run.phase = Phase::Release;
                    let argv = vec![
                        SELF_EXE.to_owned(),
                        "release-copy".to_owned(),
                        cfg.repo.join(artifact).display().to_string(),
                        cfg.releases.display().to_string(),
                        new,
                        cfg.keep_releases.to_string(),
                    ];
                    self.spawn_step(idx, "release", argv, None);
                }
                // Working-tree mode: the checkout was the switch.
                _ => self.switched(idx),
            },
            Phase::Release => {}
            Phase::Restore => match run.old.clone() {
                Some(old) => self.spawn_step(idx, "git checkout (restore)", checkout(&old), None),
                None => self.finish_deploy(
                    idx,
                    DeployResult::Failed,
                    "a step failed; no previous commit to restore",
                ),
            },
            Phase::RollbackCheckout => match run.old.clone() {
                Some(old) => self.spawn_step(idx, "git checkout (rollback)", checkout(&old), None),
                None => self.finish_deploy(
                    idx,
                    DeployResult::Failed,
                    "no previous commit to roll back to",
                ),
            },
            Phase::Restart { .. } | Phase::Gate { .. } => {}
        }
    }

    fn spawn_step(&mut self, idx: usize, name: &str, argv: Vec<String>, output: Option<PathBuf>) {
        let nofile = self.nofile;
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        let shown: Vec<_> = argv.iter().map(|a| redact_url(a)).collect();
        run.say(&format!("$ {}", shown.join(" ")));
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
        let environment = step_environment(&run.cfg);
        let spawned = fds.and_then(|(stdout, stderr)| {
            process::spawn_spec(
                &Spec {
                    argv: &argv,
                    directory: Some(&run.cfg.repo),
                    environment: &environment,
                    pass_env: &run.cfg.pass_env,
                    user: run.cfg.user.as_ref(),
                    stdout: &stdout,
                    stderr: &stderr,
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
                    deadline: later(now, run.cfg.step_timeout),
                    output,
                    timed_out: false,
                });
                let program = run.program.clone();
                self.step_pids.insert(pid, program);
            }
            Err(e) => {
                run.say(&format!("cannot run {name}: {e}"));
                run.steps.push(StepRecord {
                    name: name.to_owned(),
                    duration_ms: 0,
                    ok: false,
                });
                let message = format!("{name}: {e}");
                self.step_failed(idx, &message);
            }
        }
    }

    /// A git command or step ended (reaped by the actor).
    pub(super) fn deploy_step_exited(&mut self, program: &str, pid: Pid, reason: ExitReason) {
        let Some(idx) = self.index(program) else {
            return;
        };
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        let Some(step) = run.step.take_if(|s| s.pid == pid) else {
            return;
        };
        let took = step.started.elapsed();
        let ok = reason == ExitReason::Exited(0);
        run.steps.push(StepRecord {
            name: step.name.clone(),
            duration_ms: took.as_millis() as u64,
            ok,
        });
        let timed_out = step.timed_out;
        let why = if timed_out {
            format!("timed out after {:?}", run.cfg.step_timeout)
        } else {
            reason.to_string()
        };
        run.say(&format!("{}: {why} ({} ms)", step.name, took.as_millis()));
        let output = step.output.as_ref().map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            text.trim().to_owned()
        });
        match run.phase {
            Phase::Init if ok => run.phase = Phase::Fetch,
            Phase::Fetch if ok => run.phase = Phase::ResolveOld,
            Phase::ResolveOld => {
                // A repository without commits has no HEAD: that is fine.
                let (old, subject) = split_commit(output.filter(|_| ok));
                run.old = old;
                run.old_subject = subject;
                run.phase = match run.kind {
                    DeployKind::Deploy => Phase::ResolveNew,
                    DeployKind::Rollback => return self.begin_rollback_on_request(idx),
                };
            }
            Phase::ResolveNew if ok => {
                let (new, subject) = split_commit(output);
                run.new_subject = subject;
                let Some(new) = new else {
                    return self.finish_deploy(
                        idx,
                        DeployResult::Failed,
                        "the fetched branch did not resolve to a commit",
                    );
                };
                run.new = Some(new.clone());
                let current = match &run.cfg.artifact {
                    Some(_) => std::fs::read_link(run.current_link())
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())),
                    None => run.old.clone(),
                };
                if current.as_deref() == Some(new.as_str()) {
                    return self.finish_deploy(
                        idx,
                        DeployResult::Unchanged,
                        "already running the branch tip",
                    );
                }
                run.phase = Phase::Checkout;
                self.emit_deploy(idx, DeployStage::Fetched, "", Some(new));
            }
            Phase::Checkout if ok => run.phase = Phase::Build(0),
            Phase::Release if ok => return self.switched(idx),
            Phase::Build(i) if ok => run.phase = Phase::Build(i + 1),
            Phase::Restore => {
                let message = if ok {
                    "a step failed; the working tree is back on the running commit"
                } else {
                    "a step failed, and restoring the working tree failed too"
                };
                return self.finish_deploy(idx, DeployResult::Failed, message);
            }
            Phase::RollbackCheckout if ok => {
                self.restart_for_deploy(idx, true);
                return;
            }
            _ => {
                let message = format!("{} failed: {why}", step.name);
                return self.step_failed(idx, &message);
            }
        }
        self.advance_deploy(idx);
    }

    fn step_failed(&mut self, idx: usize, message: &str) {
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        match run.phase {
            // Working-tree mode: the checkout changed what the program runs; put it back.
            Phase::Build(_) if run.cfg.artifact.is_none() && run.old.is_some() => {
                run.say(message);
                run.phase = Phase::Restore;
                self.advance_deploy(idx);
            }
            Phase::RollbackCheckout => self.finish_deploy(
                idx,
                DeployResult::Failed,
                &format!("rollback failed: {message}"),
            ),
            _ => self.finish_deploy(idx, DeployResult::Failed, message),
        }
    }

    /// The new version is in place (artifact mode: copied by the release step): point
    /// `releases/current` at it, then restart the program.
    fn switched(&mut self, idx: usize) {
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        let new = run.new.clone();
        if let (Some(_), Some(new)) = (&run.cfg.artifact, &new) {
            run.previous_release = std::fs::read_link(run.current_link()).ok();
            if let Err(e) = point_current(&run.cfg.releases, Path::new(new)) {
                let message = format!("cannot switch releases: {e}");
                return self.finish_deploy(idx, DeployResult::Failed, &message);
            }
            run.say(&format!("releases/current -> {new}"));
        }
        self.emit_deploy(idx, DeployStage::Switched, "", new);
        self.restart_for_deploy(idx, false);
    }

    /// `rollback`: the release (or commit) before the current one, from the history.
    fn begin_rollback_on_request(&mut self, idx: usize) {
        let deploydir = self.config.supervisor.deploydir.clone();
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        let last = read_history(&deploydir, &run.program, 100)
            .into_iter()
            .find(|r| r.result == DeployResult::Succeeded && r.old_commit.is_some());
        let Some(last) = last else {
            return self.finish_deploy(
                idx,
                DeployResult::Failed,
                "no earlier release to go back to",
            );
        };
        let target = last.old_commit.clone();
        run.new = target.clone();
        run.new_subject = last.old_subject.clone();
        match &run.cfg.artifact {
            Some(_) => {
                let Some(target) = target else { return };
                if !run.cfg.releases.join(&target).exists() {
                    let message = format!("release {target} is no longer kept");
                    return self.finish_deploy(idx, DeployResult::Failed, &message);
                }
                run.previous_release = std::fs::read_link(run.current_link()).ok();
                if let Err(e) = point_current(&run.cfg.releases, Path::new(&target)) {
                    let message = format!("cannot switch releases: {e}");
                    return self.finish_deploy(idx, DeployResult::Failed, &message);
                }
                self.restart_for_deploy(idx, false);
            }
            None => {
                // Check the earlier commit out, then restart as a deploy of it.
                std::mem::swap(&mut run.old, &mut run.new);
                run.phase = Phase::RollbackCheckout;
                self.advance_deploy(idx);
            }
        }
    }

    /// Stop the program if it runs, then start it; the gate follows.
    fn restart_for_deploy(&mut self, idx: usize, rollback: bool) {
        let stopping = matches!(
            self.programs[idx].state,
            State::Starting { .. } | State::Running { .. } | State::Backoff { .. }
        );
        if let Some(run) = self.programs[idx].deploy.as_mut() {
            run.phase = Phase::Restart { rollback, stopping };
            run.say(if rollback {
                "restarting the previous version"
            } else {
                "restarting the program"
            });
        }
        self.emit_deploy(idx, DeployStage::Restarting, "", None);
        self.programs[idx].pending_start = false;
        if stopping {
            self.feed(idx, LifeEvent::Stop);
        } else if !self.programs[idx].state.is_live() {
            self.feed(idx, LifeEvent::Start);
        }
        self.deploy_program_changed(idx);
    }

    /// The program changed state: the restart and the gate watch it.
    pub(super) fn deploy_program_changed(&mut self, idx: usize) {
        let state = self.programs[idx].state.clone();
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        match run.phase {
            Phase::Restart {
                rollback,
                stopping: true,
            } if !state.is_live() => {
                run.phase = Phase::Restart {
                    rollback,
                    stopping: false,
                };
                self.feed(idx, LifeEvent::Start);
            }
            Phase::Restart {
                rollback,
                stopping: false,
            }
            | Phase::Gate { rollback } => match state {
                State::Running { .. } | State::Starting { .. } | State::Spawning { .. } => {
                    if let State::Running { .. } = state {
                        run.phase = Phase::Gate { rollback };
                    }
                }
                other if !other.is_live() => {
                    let why = match &other {
                        State::Fatal { reason } => reason.clone(),
                        State::Backoff { last, .. } => last.to_string(),
                        State::Exited { reason, .. } => reason.to_string(),
                        _ => other.name().to_string(),
                    };
                    if rollback {
                        let message = format!("the previous version did not stay up either: {why}");
                        self.finish_deploy(idx, DeployResult::Failed, &message);
                    } else {
                        run.say(&format!(
                            "the new version did not stay up: {why}; rolling back"
                        ));
                        self.roll_back(idx, &why);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The new version failed its gate: put the previous release back.
    fn roll_back(&mut self, idx: usize, why: &str) {
        let Some(run) = self.programs[idx].deploy.as_mut() else {
            return;
        };
        run.followup = None; // the same tip would fail again
        let message = why.to_owned();
        match &run.cfg.artifact {
            Some(_) => match run.previous_release.clone() {
                Some(previous) => {
                    if let Err(e) = point_current(&run.cfg.releases, &previous) {
                        let message = format!("cannot roll back: {e}");
                        return self.finish_deploy(idx, DeployResult::Failed, &message);
                    }
                    self.emit_deploy(idx, DeployStage::RollingBack, &message, None);
                    self.restart_for_deploy(idx, true);
                }
                None => self.finish_deploy(
                    idx,
                    DeployResult::Failed,
                    &format!("{why}; no previous release to go back to"),
                ),
            },
            None => {
                if run.old.is_none() {
                    return self.finish_deploy(
                        idx,
                        DeployResult::Failed,
                        &format!("{why}; no previous commit to go back to"),
                    );
                }
                run.phase = Phase::RollbackCheckout;
                self.emit_deploy(idx, DeployStage::RollingBack, &message, None);
                self.advance_deploy(idx);
            }
        }
    }

    /// The deadlines of running steps and gates.
    pub(super) fn deploy_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.programs.iter().filter_map(|p| {
            let run = p.deploy.as_ref()?;
            match (&run.step, &run.phase, &p.state) {
                (Some(step), _, _) if !step.timed_out => Some(step.deadline),
                (Some(_), _, _) => None,
                (None, Phase::Gate { .. }, State::Running { since, .. }) => {
                    Some(later(*since, run.cfg.healthy_after))
                }
                _ => None,
            }
        })
    }

    /// Timers: kill a step past its timeout; pass a gate that held.
    pub(super) fn deploy_tick(&mut self, now: Instant) {
        for idx in 0..self.programs.len() {
            let state = self.programs[idx].state.clone();
            let Some(run) = self.programs[idx].deploy.as_mut() else {
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
            if let (Phase::Gate { rollback }, State::Running { since, .. }) = (&run.phase, &state)
                && now >= later(*since, run.cfg.healthy_after)
            {
                let (result, message) = if *rollback {
                    (
                        DeployResult::RolledBack,
                        "the new version failed; the previous one runs again",
                    )
                } else {
                    (
                        DeployResult::Succeeded,
                        "the new version passed its health gate",
                    )
                };
                self.finish_deploy(idx, result, message);
            }
        }
    }

    fn finish_deploy(&mut self, idx: usize, result: DeployResult, message: &str) {
        let deploydir = self.config.supervisor.deploydir.clone();
        let Some(mut run) = self.programs[idx].deploy.take() else {
            return;
        };
        run.say(&format!("{result}: {message}"));
        let record = run.record(result, message);
        emit(&self.events, &run, result.into(), message, run.new.clone());
        let followup = run.followup.take();
        let program = run.program.clone();
        tracing::info!(program = %program, id = %record.id, result = %result, message, "deploy finished");
        append_history(&deploydir, &record);
        let _ = std::fs::remove_file(marker(&deploydir, &program));
        // A deploy leaves the program as wanted: running.
        if !self.programs[idx].state.is_live()
            && result != DeployResult::Unchanged
            && self.shutdown.is_none()
        {
            self.programs[idx].pending_start = true;
        }
        if let Some(trigger) = followup
            && self.shutdown.is_none()
        {
            let _ =
                self.request_deploy(&program, DeployKind::Deploy, format!("{trigger} (queued)"));
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
                records.extend(read_history(
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
            let path = marker(&deploydir, &name);
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
            let good = read_history(&deploydir, &name, 100)
                .into_iter()
                .find(DeployRecord::is_conclusive)
                .and_then(|r| r.running_commit().0.map(str::to_owned));
            if cfg.artifact.is_none()
                && let Some(good) = good.filter(|c: &String| is_commit(c))
            {
                // As every deploy step: the deploy's user, its environment, its own process
                // group, within the step timeout (at most a minute: the daemon is starting).
                let argv: Vec<String> = ["git", "checkout", "--force", "--detach", good.as_str()]
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect();
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
                            stdout: &null,
                            stderr: &null,
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
                log: deploydir
                    .join(&name)
                    .join(format!("{}.log", field("id")))
                    .display()
                    .to_string(),
            };
            tracing::warn!(program = %name, id = %record.id, message = %record.message, "deploy interrupted");
            append_history(&deploydir, &record);
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The pids of running steps, for the reaper.
    pub(super) fn deploy_step_program(&mut self, pid: Pid) -> Option<String> {
        self.step_pids.remove(&pid)
    }

    /// Shutdown: kill running steps; the history says the deploy was interrupted.
    pub(super) fn abort_deploys(&mut self) {
        for idx in 0..self.programs.len() {
            let Some(run) = self.programs[idx].deploy.as_mut() else {
                continue;
            };
            if let Some(step) = &run.step {
                let _ = process::signal_group(step.pid, Signal::SIGKILL);
            }
            run.step = None;
            self.finish_deploy(
                idx,
                DeployResult::Interrupted,
                "the supervisor is shutting down",
            );
        }
    }
}

/// The environment of every git command and build step (beyond config::environ's base and the
/// deploy's `pass_env`; no secrets). No terminal, no password prompt, no agent: a git that
/// needs credentials fails fast. No system-wide git configuration, and only transports that
/// fetch (never `ext::`, which runs a command). Then what the deploy table sets.
fn step_environment(cfg: &DeployConfig) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = [
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_ASKPASS", "true"),
        ("SSH_ASKPASS", "true"),
        ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    environment.extend(cfg.environment.iter().cloned());
    environment
}

/// The supervisor's own binary, for the release step: the running image even when the file
/// was replaced since (an upgrade), resolved in the child, after it took the deploy's user.
const SELF_EXE: &str = "/proc/self/exe";

/// An argument as the deploy log shows it: a URL's user information (`https://user:token@`)
/// replaced, so a credential in `url` is never written down.
fn redact_url(arg: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = arg.split_once("://") else {
        return arg.into();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]).into(),
        None => arg.into(),
    }
}

/// Whether a git URL is a local path (`/srv/bot.git`, `../bot.git`), not `scheme://...` or
/// scp-like `host:path`.
fn is_local_path(url: &str) -> bool {
    !url.contains("://")
        && url
            .split_once(':')
            .is_none_or(|(before, _)| before.contains('/'))
}

/// Sends a deploy event for `run`; nobody listening is fine.
fn emit(
    events: &broadcast::Sender<Event>,
    run: &DeployRun,
    stage: DeployStage,
    message: &str,
    commit: Option<String>,
) {
    let _ = events.send(Event::Deploy {
        program: run.program.clone(),
        id: run.id.clone(),
        stage,
        message: message.to_owned(),
        commit,
        at_ms: unix_ms(SystemTime::now()),
    });
}

/// Points `releases/current` at `target` with one rename, so it is never missing or half made.
fn point_current(releases: &Path, target: &Path) -> std::io::Result<()> {
    let tmp = releases.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, releases.join("current"))
}

/// Per-deploy logs kept for each program (the oldest are removed as new deploys start).
const KEEP_DEPLOY_LOGS: usize = 50;

fn append_history(deploydir: &Path, record: &DeployRecord) {
    let path = history(deploydir, &record.program);
    if let Err(e) = crate::jsonl::append(&path, record) {
        tracing::error!(path = %path.display(), error = %e, "cannot record the deploy");
    }
}

/// Removes a program's oldest deploy logs beyond [`KEEP_DEPLOY_LOGS`] (their names sort by
/// time). A directory listing and a few unlinks: quick enough for the actor.
fn prune_deploy_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    if logs.len() <= KEEP_DEPLOY_LOGS {
        return;
    }
    logs.sort();
    for old in &logs[..logs.len() - KEEP_DEPLOY_LOGS] {
        let _ = std::fs::remove_file(old);
    }
}

/// The last `limit` records of a program's history, newest first; unreadable lines are skipped.
fn read_history(deploydir: &Path, program: &str, limit: u32) -> Vec<DeployRecord> {
    crate::jsonl::newest(&history(deploydir, program), limit as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_not_shown() {
        assert_eq!(
            redact_url("https://bot:t0ken@gitea.example/me/bot.git"),
            "https://***@gitea.example/me/bot.git"
        );
        assert_eq!(
            redact_url("https://gitea.example/a@b"),
            "https://gitea.example/a@b"
        );
        assert_eq!(redact_url("--no-tags"), "--no-tags");
    }

    #[test]
    fn local_paths_are_told_from_urls() {
        for local in ["/srv/bot.git", "../bot.git", "bot.git", "/a:b/c"] {
            assert!(is_local_path(local), "{local}");
        }
        for remote in [
            "https://gitea/x.git",
            "git@host:x.git",
            "ssh://h/x",
            "file:///x",
        ] {
            assert!(!is_local_path(remote), "{remote}");
        }
    }

    #[test]
    fn old_deploy_logs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..60 {
            std::fs::write(dir.path().join(format!("2026{n:04}-bot-{n}.log")), "").unwrap();
        }
        prune_deploy_logs(dir.path());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), KEEP_DEPLOY_LOGS);
        assert_eq!(left[0], "20260010-bot-10.log");
    }
}
