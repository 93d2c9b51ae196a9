//! A deploy as a pure state machine: phase + input → new phase + effects, as
//! [`crate::lifecycle`] is for a program. Nothing here reads a clock, a file or a process: the
//! daemon performs each [`Effect`] (spawns a git command or a build step, points `current`,
//! stops or starts the program, writes the history) and feeds what happened back as the next
//! [`Input`]. Everything the machine must know from disk (the release `current` points at, the
//! target of a rollback, the quarantined commits) is read before it starts ([`Setup`]); the
//! supervisor's own path, which its release steps run, the daemon reads once at start.
//!
//! A deploy: `git init` (first deploy only) → fetch → resolve the running and the fetched
//! commit → (nothing new: `unchanged`; quarantined: `quarantined`) → checkout → build steps →
//! release copy (artifact mode) → switch `current` → stop the old process → start the new one →
//! gate: RUNNING (which means ready) for `healthy_after`. A failed gate quarantines the commit
//! and puts the previous version back, gated the same way. A prebuilt release (`artifact_url`)
//! takes another way to the switch: the named commit (or the remote's tip, `ls-remote`) → the
//! same checks → wait for its release → download, verify and unpack it.
//!
//! Why this file is past 600 lines: one `match` per input over every phase, kept together so
//! that each transition reads beside its neighbours; its tests are in `machine/tests.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use supervisor_proto::{DeployKind, DeployResult, DeployStage, StepRecord};

use super::git::{self, Commit};
use crate::config::DeployConfig;
use crate::lifecycle::later;

/// What the machine needs to know from disk, read by the daemon before it starts.
#[derive(Clone, Debug)]
pub struct Setup {
    pub kind: DeployKind,
    /// The program's name: what a single-file prebuilt release is saved as.
    pub program: String,
    pub cfg: DeployConfig,
    /// The commit the request named (a webhook's push): with `artifact_url`, the one deployed
    /// without asking the remote.
    pub commit: Option<String>,
    /// `repo` is not a git repository yet and `url` is set: `git init` it first.
    pub init: bool,
    /// Artifact mode: the name of the release `current` points at.
    pub current_release: Option<String>,
    /// A rollback: the commit the last succeeded deploy replaced, and whether its release is
    /// still kept (artifact mode).
    pub rollback_to: Option<Commit>,
    pub rollback_release_kept: bool,
    /// Commits that failed their gate: not deployed again unless `force`.
    pub quarantined: Vec<String>,
    /// Commits whose deploy failed within `retry_failed_after`, with how long ago: not built
    /// again unless `force`.
    pub failed_recently: Vec<(String, Duration)>,
    pub force: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Init,
    Fetch,
    ResolveOld,
    ResolveNew,
    Checkout,
    Build(usize),
    /// Artifact mode: `supervisor release-copy` copies the build output into `releases/`.
    Release,
    /// `artifact_url` without a named commit: `git ls-remote` says what the branch tip is.
    Tip,
    /// `artifact_url`: `supervisor release-wait` until the release's signature is there.
    Wait,
    /// `artifact_url`: `supervisor release-fetch` downloads, verifies and unpacks it.
    Download,
    /// A step failed in working-tree mode: the old commit is checked out again.
    Restore,
    /// Working-tree mode: the commit to go back to is checked out.
    RollbackCheckout,
    /// Artifact mode: `current` is being pointed at the new release (or, `rollback`, back).
    Switch {
        rollback: bool,
    },
    /// Waiting until no process of the old version is left (never two at once).
    Stopping {
        rollback: bool,
    },
    /// Started; waiting for RUNNING, which with a `ready` rule means ready.
    Starting {
        rollback: bool,
    },
    /// RUNNING; passes once it has stayed so until `until`.
    Gate {
        rollback: bool,
        until: Instant,
    },
    Done,
}

/// What the program is doing, as the machine needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// RUNNING (ready) since then.
    Running { since: Instant },
    /// On its way (spawning, starting, stopping).
    Busy,
    /// Not alive: stopped, backing off, exited or FATAL, and why.
    Down { why: String },
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The step the machine asked for ended; `output` is its stdout when it asked for it.
    StepEnded {
        ok: bool,
        why: String,
        took_ms: u64,
        output: Option<String>,
        /// What it wrote to storage (with what it waited for).
        written_bytes: u64,
    },
    /// The step could not be started.
    StepNotRun(String),
    /// `current` now points at the target; where it pointed before. Or why it could not.
    Switched(Result<Option<PathBuf>, String>),
    /// The program's state (after each change while the machine restarts or gates it).
    Program(Observed),
    Tick(Instant),
    /// The supervisor is shutting down.
    Abort,
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A line for the deploy's log.
    Say(String),
    Emit {
        stage: DeployStage,
        message: String,
        commit: Option<String>,
    },
    /// Run a git command or build step as the deploy's user in `repo`; `capture`: its stdout
    /// comes back in [`Input::StepEnded`].
    Spawn {
        name: String,
        argv: Vec<String>,
        capture: bool,
        /// Killed after this (with its process group).
        timeout: Duration,
    },
    /// Point `releases/current` at this target; answer with [`Input::Switched`].
    Switch(PathBuf),
    /// Stop the program if any process of it is alive; answer with [`Input::Program`].
    StopProgram,
    /// Start it; answer with [`Input::Program`].
    StartProgram,
    /// Remember that this commit failed its gate.
    Quarantine { commit: String, reason: String },
    Finish {
        result: DeployResult,
        message: String,
    },
}

/// One deploy or rollback.
#[derive(Clone, Debug)]
pub struct Machine {
    pub kind: DeployKind,
    program: String,
    pub cfg: DeployConfig,
    /// The commit the request named.
    commit: Option<String>,
    pub phase: Phase,
    pub old: Option<Commit>,
    pub new: Option<Commit>,
    /// Artifact mode: where `current` pointed before the switch.
    pub previous_release: Option<PathBuf>,
    pub steps: Vec<StepRecord>,
    /// The name of the step running, for its record.
    step: Option<String>,
    /// Why the new version is being rolled back.
    rollback_reason: Option<String>,
    /// Working-tree mode: the step failure the restore follows.
    failure: Option<String>,
    current_release: Option<String>,
    rollback_to: Option<Commit>,
    rollback_release_kept: bool,
    quarantined: Vec<String>,
    failed_recently: Vec<(String, Duration)>,
    force: bool,
}

type Out = Vec<Effect>;

/// The longest a download may go without a byte (or half of `step_timeout`, when shorter).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Machine {
    /// Begins: the first effects of a deploy or rollback.
    pub fn start(setup: Setup) -> (Self, Out) {
        let download = setup.cfg.download.is_some();
        let phase = match setup.kind {
            DeployKind::Deploy if download => Phase::Tip,
            DeployKind::Deploy if setup.init => Phase::Init,
            DeployKind::Deploy => Phase::Fetch,
            DeployKind::Rollback => Phase::ResolveOld,
        };
        let mut m = Self {
            kind: setup.kind,
            program: setup.program,
            commit: setup.commit.filter(|c| git::is_commit(c)),
            cfg: setup.cfg,
            phase,
            old: None,
            new: None,
            previous_release: None,
            steps: Vec::new(),
            step: None,
            rollback_reason: None,
            failure: None,
            current_release: setup.current_release,
            rollback_to: setup.rollback_to,
            rollback_release_kept: setup.rollback_release_kept,
            quarantined: setup.quarantined,
            failed_recently: setup.failed_recently,
            force: setup.force,
        };
        let mut out = vec![Effect::Emit {
            stage: DeployStage::Started,
            message: String::new(),
            commit: None,
        }];
        if download {
            // No repository to ask: what runs is the release `current` points at.
            m.old = m.running_release().map(|id| Commit { id, subject: None });
            if m.kind == DeployKind::Rollback {
                m.rollback_on_request(&mut out);
                return (m, out);
            }
            if let Some(commit) = m.commit.clone() {
                let new = Commit {
                    id: commit,
                    subject: None,
                };
                m.consider(&mut out, new);
                return (m, out);
            }
        }
        m.run_phase(&mut out);
        (m, out)
    }

    /// When the machine wants an [`Input::Tick`].
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Gate { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the phase runs a step (git, a build step, the release copy).
    fn waits_for_step(&self) -> bool {
        matches!(
            self.phase,
            Phase::Init
                | Phase::Fetch
                | Phase::ResolveOld
                | Phase::ResolveNew
                | Phase::Checkout
                | Phase::Build(_)
                | Phase::Release
                | Phase::Tip
                | Phase::Wait
                | Phase::Download
                | Phase::Restore
                | Phase::RollbackCheckout
        )
    }

    /// Artifact mode: the commit of the release `current` points at, when it names one.
    fn running_release(&self) -> Option<String> {
        if !self.releases() {
            return None;
        }
        self.current_release
            .clone()
            .filter(|r| r.len() >= 7 && r.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Whether what runs is a release in `releases/` (`artifact` or `artifact_url`), not the
    /// working tree.
    fn releases(&self) -> bool {
        self.cfg.artifact.is_some() || self.cfg.download.is_some()
    }

    pub fn handle(&mut self, input: Input) -> Out {
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        // A step's end means something only while the machine waits for one.
        if matches!(input, Input::StepEnded { .. } | Input::StepNotRun(_)) && !self.waits_for_step()
        {
            return out;
        }
        match input {
            Input::Abort => self.finish(
                &mut out,
                DeployResult::Interrupted,
                "the supervisor is shutting down",
            ),
            Input::StepEnded {
                ok,
                why,
                took_ms,
                output,
                written_bytes,
            } => self.step_ended(&mut out, ok, &why, (took_ms, written_bytes), output),
            Input::StepNotRun(error) => {
                let name = self.step.take().unwrap_or_default();
                self.steps.push(StepRecord {
                    name: name.clone(),
                    duration_ms: 0,
                    ok: false,
                    written_bytes: 0,
                });
                out.push(Effect::Say(format!("cannot run {name}: {error}")));
                self.step_failed(&mut out, &format!("{name}: {error}"));
            }
            Input::Switched(result) => self.switched(&mut out, result),
            Input::Program(observed) => self.observed(&mut out, observed),
            Input::Tick(now) => {
                let due = match self.phase {
                    Phase::Gate { rollback, until } if now >= until => Some(rollback),
                    _ => None,
                };
                if let Some(rollback) = due {
                    let (result, message) = if rollback {
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
                    self.finish(&mut out, result, message);
                }
            }
        }
        out
    }

    /// Asks for what the current phase does: a step, or the next phase at once.
    fn run_phase(&mut self, out: &mut Out) {
        let cfg = &self.cfg;
        match self.phase {
            Phase::Init => self.spawn(out, "git init", git::init(), false),
            Phase::Fetch => self.spawn(out, "git fetch", git::fetch(cfg), false),
            // What runs: in artifact mode the release `current` points at (after a rollback
            // the working tree still holds the commit that failed), else the working tree.
            Phase::ResolveOld => match self.running_release() {
                Some(release) => {
                    let argv = git::describe(&release);
                    self.spawn(out, "git log -1 (running release)", argv, true)
                }
                None => self.spawn(out, "git log -1 HEAD", git::describe("HEAD"), true),
            },
            Phase::ResolveNew => {
                let tip = git::tip(cfg);
                self.spawn(out, "git log -1 (fetched tip)", git::describe(&tip), true);
            }
            Phase::Tip => self.spawn(out, "git ls-remote", git::ls_remote(cfg), true),
            Phase::Wait | Phase::Download => {
                let (Some(new), Some(download)) = (self.new.clone(), cfg.download.clone()) else {
                    return self.finish(out, DeployResult::Failed, "no release to download");
                };
                let url = super::url::expand(&download.url, &new.id, &cfg.branch);
                // Within the step's deadline, so that a stall is named as one.
                let read_timeout = (cfg.step_timeout / 2).min(READ_TIMEOUT);
                if self.phase == Phase::Wait {
                    let argv = git::release_wait(&url, download.wait, read_timeout);
                    let timeout = download.wait + cfg.step_timeout;
                    self.spawn_for(out, "wait for the release", argv, timeout);
                } else {
                    let argv = git::release_fetch(
                        &url,
                        &download,
                        &new.id,
                        &cfg.releases,
                        &self.program,
                        cfg.keep_releases,
                        read_timeout,
                    );
                    self.spawn(out, "download", argv, true);
                }
            }
            Phase::Checkout => match self.new.clone() {
                Some(new) => self.spawn(out, "git checkout", git::checkout(&new.id), false),
                None => self.finish(out, DeployResult::Failed, "no commit to check out"),
            },
            Phase::Build(i) if i < self.cfg.steps.len() => {
                let argv = self.cfg.steps[i].clone();
                let name = argv.join(" ");
                self.spawn(out, &name, argv, false);
            }
            Phase::Build(_) => match (&self.cfg.artifact, self.new.clone()) {
                (Some(artifact), Some(new)) => {
                    self.phase = Phase::Release;
                    let argv = git::release_copy(
                        &self.cfg.repo.join(artifact),
                        &self.cfg.releases,
                        &new.id,
                        self.cfg.keep_releases,
                    );
                    self.spawn(out, "release", argv, false);
                }
                // Working-tree mode: the checkout was the switch.
                _ => self.released(out),
            },
            Phase::Restore => match self.old.clone() {
                Some(old) => {
                    self.spawn(out, "git checkout (restore)", git::checkout(&old.id), false)
                }
                None => self.finish(
                    out,
                    DeployResult::Failed,
                    "a step failed; no previous commit to restore",
                ),
            },
            Phase::RollbackCheckout => match self.old.clone() {
                Some(old) => self.spawn(
                    out,
                    "git checkout (rollback)",
                    git::checkout(&old.id),
                    false,
                ),
                None => self.finish(
                    out,
                    DeployResult::Failed,
                    "no previous commit to roll back to",
                ),
            },
            Phase::Release
            | Phase::Switch { .. }
            | Phase::Stopping { .. }
            | Phase::Starting { .. }
            | Phase::Gate { .. }
            | Phase::Done => {}
        }
    }

    fn spawn(&mut self, out: &mut Out, name: &str, argv: Vec<String>, capture: bool) {
        self.step = Some(name.to_owned());
        out.push(Effect::Spawn {
            name: name.to_owned(),
            argv,
            capture,
            timeout: self.cfg.step_timeout,
        });
    }

    /// A step with its own deadline; its output (the reason, when it fails) comes back.
    fn spawn_for(&mut self, out: &mut Out, name: &str, argv: Vec<String>, timeout: Duration) {
        self.step = Some(name.to_owned());
        out.push(Effect::Spawn {
            name: name.to_owned(),
            argv,
            capture: true,
            timeout,
        });
    }

    fn step_ended(
        &mut self,
        out: &mut Out,
        ok: bool,
        why: &str,
        (took_ms, written_bytes): (u64, u64),
        output: Option<String>,
    ) {
        let name = self.step.take().unwrap_or_default();
        self.steps.push(StepRecord {
            name: name.clone(),
            duration_ms: took_ms,
            ok,
            written_bytes,
        });
        // A prebuilt release's steps say why they failed on their output.
        let why = match (&self.phase, &output) {
            (Phase::Wait | Phase::Download, Some(reason)) if !ok && !reason.is_empty() => {
                reason.lines().last().unwrap_or(why)
            }
            _ => why,
        };
        if matches!(
            self.phase,
            Phase::Build(_) | Phase::Release | Phase::Wait | Phase::Download
        ) {
            let message = format!("{name}: {} ({took_ms} ms)", if ok { "ok" } else { why });
            out.push(Effect::Emit {
                stage: DeployStage::Step,
                message,
                commit: None,
            });
        }
        match self.phase {
            Phase::Init if ok => self.phase = Phase::Fetch,
            Phase::Fetch if ok => self.phase = Phase::ResolveOld,
            Phase::ResolveOld => {
                // A repository without commits has no HEAD: that is fine. A release whose
                // commit the repository lacks is still the running commit, without a subject.
                self.old = git::split_commit(output.filter(|_| ok).as_deref()).or_else(|| {
                    self.running_release()
                        .map(|id| Commit { id, subject: None })
                });
                match self.kind {
                    DeployKind::Deploy => self.phase = Phase::ResolveNew,
                    DeployKind::Rollback => return self.rollback_on_request(out),
                }
            }
            Phase::ResolveNew if ok => {
                let Some(new) = git::split_commit(output.as_deref()) else {
                    return self.finish(
                        out,
                        DeployResult::Failed,
                        "the fetched branch did not resolve to a commit",
                    );
                };
                return self.consider(out, new);
            }
            Phase::Tip if ok => {
                let Some(id) = output.as_deref().and_then(git::ls_remote_commit) else {
                    let message = format!("the remote has no branch {}", self.cfg.branch);
                    return self.finish(out, DeployResult::Failed, &message);
                };
                return self.consider(out, Commit { id, subject: None });
            }
            Phase::Wait if ok => self.phase = Phase::Download,
            Phase::Download if ok => {
                // The subject the release's signature gave.
                if let (Some(new), Some(got)) =
                    (&mut self.new, git::split_commit(output.as_deref()))
                {
                    new.subject = got.subject;
                }
                let new = self.new.clone();
                out.push(Effect::Emit {
                    stage: DeployStage::Fetched,
                    message: new
                        .as_ref()
                        .and_then(|c| c.subject.clone())
                        .unwrap_or_default(),
                    commit: new.map(|c| c.id),
                });
                return self.released(out);
            }
            Phase::Checkout if ok => self.phase = Phase::Build(0),
            Phase::Build(i) if ok => self.phase = Phase::Build(i + 1),
            Phase::Release if ok => return self.released(out),
            Phase::Restore => {
                // What failed first (`cargo build failed: out of memory ...`), then the restore.
                let failed = self.failure.take();
                let failed = failed.as_deref().unwrap_or("a step failed");
                let message = if ok {
                    format!("{failed}; the working tree is back on the running commit")
                } else {
                    format!("{failed}, and restoring the working tree failed too")
                };
                return self.finish(out, DeployResult::Failed, &message);
            }
            Phase::RollbackCheckout if ok => return self.restart(out, true),
            _ => return self.step_failed(out, &format!("{name} failed: {why}")),
        }
        self.run_phase(out);
    }

    /// The commit to deploy is known: unless it runs already or is held back, get it (check it
    /// out and build it, or download it).
    fn consider(&mut self, out: &mut Out, new: Commit) {
        self.new = Some(new.clone());
        let current = if self.releases() {
            self.current_release.clone()
        } else {
            self.old.as_ref().map(|c| c.id.clone())
        };
        if current.as_deref() == Some(new.id.as_str()) {
            return self.finish(
                out,
                DeployResult::Unchanged,
                "already running the branch tip",
            );
        }
        if !self.force && self.quarantined.contains(&new.id) {
            let message = format!(
                "{} failed its health gate before and is quarantined; push a fix, or deploy --force",
                git::short(&new.id)
            );
            return self.finish(out, DeployResult::Quarantined, &message);
        }
        let failed = self.failed_recently.iter().find(|(c, _)| *c == new.id);
        if let Some((_, ago)) = failed.filter(|_| !self.force) {
            use crate::config::units::format_duration;
            let secs = |d: Duration| Duration::from_secs(d.as_secs());
            let message = format!(
                "{} failed to deploy {} ago; it is not built again before {} have passed (retry_failed_after): push a fix, or deploy --force",
                git::short(&new.id),
                format_duration(secs(*ago)),
                format_duration(self.cfg.retry_failed_after)
            );
            return self.finish(out, DeployResult::Quarantined, &message);
        }
        if self.cfg.download.is_some() {
            self.phase = Phase::Wait;
        } else {
            self.phase = Phase::Checkout;
            out.push(Effect::Emit {
                stage: DeployStage::Fetched,
                message: new.subject.clone().unwrap_or_default(),
                commit: Some(new.id),
            });
        }
        self.run_phase(out);
    }

    fn step_failed(&mut self, out: &mut Out, message: &str) {
        match self.phase {
            // Working-tree mode: the checkout changed what the program runs; put it back.
            Phase::Build(_) if self.cfg.artifact.is_none() && self.old.is_some() => {
                out.push(Effect::Say(message.to_owned()));
                self.failure = Some(message.to_owned());
                self.phase = Phase::Restore;
                self.run_phase(out);
            }
            Phase::RollbackCheckout => self.finish(
                out,
                DeployResult::Failed,
                &format!("rollback failed: {message}"),
            ),
            _ => self.finish(out, DeployResult::Failed, message),
        }
    }

    /// The new version is in place: switch `current` to it (artifact mode), then restart.
    fn released(&mut self, out: &mut Out) {
        match (self.releases(), &self.new) {
            (true, Some(new)) => {
                self.phase = Phase::Switch { rollback: false };
                out.push(Effect::Switch(PathBuf::from(&new.id)));
            }
            _ => {
                let commit = self.new.as_ref().map(|c| c.id.clone());
                out.push(Effect::Emit {
                    stage: DeployStage::Switched,
                    message: String::new(),
                    commit,
                });
                self.restart(out, false);
            }
        }
    }

    fn switched(&mut self, out: &mut Out, result: Result<Option<PathBuf>, String>) {
        let Phase::Switch { rollback } = self.phase else {
            return;
        };
        match (rollback, result) {
            (false, Ok(previous)) => {
                self.previous_release = previous;
                let commit = self.new.as_ref().map(|c| c.id.clone());
                if let Some(c) = &commit {
                    out.push(Effect::Say(format!("releases/current -> {c}")));
                }
                out.push(Effect::Emit {
                    stage: DeployStage::Switched,
                    message: String::new(),
                    commit,
                });
                self.restart(out, false);
            }
            (false, Err(e)) => self.finish(
                out,
                DeployResult::Failed,
                &format!("cannot switch releases: {e}"),
            ),
            (true, Ok(_)) => {
                out.push(Effect::Emit {
                    stage: DeployStage::RollingBack,
                    message: self.rollback_reason.clone().unwrap_or_default(),
                    commit: None,
                });
                self.restart(out, true);
            }
            (true, Err(e)) => {
                self.finish(out, DeployResult::Failed, &format!("cannot roll back: {e}"))
            }
        }
    }

    /// `rollback`: the commit the last succeeded deploy replaced.
    fn rollback_on_request(&mut self, out: &mut Out) {
        let Some(target) = self.rollback_to.clone() else {
            return self.finish(
                out,
                DeployResult::Failed,
                "no earlier release to go back to",
            );
        };
        match self.releases() {
            true => {
                if !self.rollback_release_kept {
                    let message = format!("release {} is no longer kept", target.id);
                    return self.finish(out, DeployResult::Failed, &message);
                }
                self.new = Some(target.clone());
                self.phase = Phase::Switch { rollback: false };
                out.push(Effect::Switch(PathBuf::from(&target.id)));
            }
            false => {
                // The earlier commit is checked out, then restarted and gated as a rollback.
                self.new = self.old.take();
                self.old = Some(target);
                self.phase = Phase::RollbackCheckout;
                self.run_phase(out);
            }
        }
    }

    /// Stop what runs (if anything), then start; the gate follows.
    fn restart(&mut self, out: &mut Out, rollback: bool) {
        self.phase = Phase::Stopping { rollback };
        out.push(Effect::Say(
            if rollback {
                "restarting the previous version"
            } else {
                "restarting the program"
            }
            .to_owned(),
        ));
        out.push(Effect::Emit {
            stage: DeployStage::Restarting,
            message: String::new(),
            commit: None,
        });
        out.push(Effect::StopProgram);
    }

    fn observed(&mut self, out: &mut Out, observed: Observed) {
        match (self.phase.clone(), observed) {
            (Phase::Stopping { rollback }, Observed::Down { .. }) => {
                self.phase = Phase::Starting { rollback };
                out.push(Effect::StartProgram);
            }
            (
                Phase::Starting { rollback } | Phase::Gate { rollback, .. },
                Observed::Running { since },
            ) => {
                let until = later(since, self.cfg.healthy_after);
                if self.phase != (Phase::Gate { rollback, until }) {
                    self.phase = Phase::Gate { rollback, until };
                    out.push(Effect::Emit {
                        stage: DeployStage::Ready,
                        message: format!(
                            "RUNNING; passing if it stays so for {}",
                            crate::config::units::format_duration(self.cfg.healthy_after)
                        ),
                        commit: None,
                    });
                }
            }
            (
                Phase::Starting { rollback } | Phase::Gate { rollback, .. },
                Observed::Down { why },
            ) => {
                if rollback {
                    let message = format!("the previous version did not stay up either: {why}");
                    self.finish(out, DeployResult::Failed, &message);
                } else {
                    out.push(Effect::Say(format!(
                        "the new version did not stay up: {why}; rolling back"
                    )));
                    self.roll_back(out, why);
                }
            }
            _ => {}
        }
    }

    /// The new version failed its gate: quarantine it, put the previous version back.
    fn roll_back(&mut self, out: &mut Out, why: String) {
        if let Some(new) = self
            .new
            .as_ref()
            .filter(|_| self.kind == DeployKind::Deploy)
        {
            out.push(Effect::Quarantine {
                commit: new.id.clone(),
                reason: why.clone(),
            });
        }
        match self.releases() {
            true => match self.previous_release.clone() {
                Some(previous) => {
                    self.rollback_reason = Some(why);
                    self.phase = Phase::Switch { rollback: true };
                    out.push(Effect::Switch(previous));
                }
                None => self.finish(
                    out,
                    DeployResult::Failed,
                    &format!("{why}; no previous release to go back to"),
                ),
            },
            false => {
                if self.old.is_none() {
                    return self.finish(
                        out,
                        DeployResult::Failed,
                        &format!("{why}; no previous commit to go back to"),
                    );
                }
                self.phase = Phase::RollbackCheckout;
                out.push(Effect::Emit {
                    stage: DeployStage::RollingBack,
                    message: why,
                    commit: None,
                });
                self.run_phase(out);
            }
        }
    }

    fn finish(&mut self, out: &mut Out, result: DeployResult, message: &str) {
        self.phase = Phase::Done;
        out.push(Effect::Finish {
            result,
            message: message.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests;
