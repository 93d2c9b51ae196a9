use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use supervisor_proto::{DeployKind, DeployResult, DeployStage};

use super::*;
use crate::config::DeployConfig;

const OLD: &str = "1111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222";

/// What a (phase, input) pair leads to.
type Outcome = (Phase, Vec<Effect>);

/// How a deploy releases: the working tree, a built artifact, a downloaded release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tree,
    Artifact,
    Download,
}

impl From<bool> for Mode {
    fn from(artifact: bool) -> Self {
        if artifact { Mode::Artifact } else { Mode::Tree }
    }
}

const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

fn cfg(mode: impl Into<Mode>) -> DeployConfig {
    let mode = mode.into();
    let download = mode == Mode::Download;
    let artifact = mode == Mode::Artifact;
    DeployConfig {
        repo: PathBuf::from("/srv/bot"),
        remote: "origin".into(),
        url: None,
        branch: "main".into(),
        steps: if download {
            Vec::new()
        } else {
            vec![vec!["cargo".into(), "build".into()]]
        },
        step_timeout: Duration::from_secs(600),
        artifact: artifact.then(|| PathBuf::from("target/bot")),
        download: download.then(|| crate::config::Download {
            url: "https://forge/bot/{commit}/bot-{arch}.tar.zst".into(),
            signing_key: KEY.into(),
            wait: Duration::from_secs(1800),
            max_size: 1000,
        }),
        releases: PathBuf::from("/srv/releases"),
        keep_releases: 3,
        healthy_after: Duration::from_secs(10),
        user: None,
        pass_env: Vec::new(),
        environment: Vec::new(),
        poll: None,
        retry_failed_after: Duration::from_secs(600),
    }
}

fn setup(kind: DeployKind, mode: impl Into<Mode>) -> Setup {
    let mode = mode.into();
    Setup {
        kind,
        program: "bot".into(),
        commit: None,
        cfg: cfg(mode),
        init: false,
        current_release: (mode != Mode::Tree).then(|| OLD.to_owned()),
        rollback_to: None,
        rollback_release_kept: false,
        quarantined: Vec::new(),
        failed_recently: Vec::new(),
        force: false,
    }
}

fn commit(id: &str) -> Option<Commit> {
    Some(Commit {
        id: id.into(),
        subject: Some(format!("subject of {}", &id[..4])),
    })
}

/// A deploy (tree mode unless `artifact`) in `phase`, with both commits known.
fn at(phase: Phase, mode: impl Into<Mode>) -> Machine {
    let mode = mode.into();
    let (mut m, _) = Machine::start(setup(DeployKind::Deploy, mode));
    m.phase = phase;
    m.old = commit(OLD);
    m.new = commit(NEW);
    m.previous_release = (mode != Mode::Tree).then(|| PathBuf::from(OLD));
    m.step = Some("the step".into());
    m
}

fn ended(ok: bool, output: Option<&str>) -> Input {
    Input::StepEnded {
        ok,
        why: if ok { "exit status 0" } else { "exit status 1" }.into(),
        took_ms: 5,
        output: output.map(str::to_owned),
        written_bytes: 0,
    }
}

fn spawn(name: &str, argv: &[&str], capture: bool) -> Effect {
    Effect::Spawn {
        name: name.into(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        capture,
        timeout: Duration::from_secs(600),
    }
}

/// The release URL of [`cfg`]'s download, for NEW.
fn release_url() -> String {
    format!(
        "https://forge/bot/{NEW}/bot-{}.tar.zst",
        crate::deploy::url::arch()
    )
}

fn wait_step() -> Effect {
    Effect::Spawn {
        name: "wait for the release".into(),
        argv: git::release_wait(
            &release_url(),
            Duration::from_secs(1800),
            Duration::from_secs(30),
        ),
        capture: true,
        timeout: Duration::from_secs(1800 + 600),
    }
}

fn download_step() -> Effect {
    let download = cfg(Mode::Download).download.unwrap();
    let argv = git::release_fetch(
        &release_url(),
        &download,
        NEW,
        Path::new("/srv/releases"),
        "bot",
        3,
        Duration::from_secs(30),
    );
    Effect::Spawn {
        name: "download".into(),
        argv,
        capture: true,
        timeout: Duration::from_secs(600),
    }
}

fn emit(stage: DeployStage, message: &str, commit: Option<&str>) -> Effect {
    Effect::Emit {
        stage,
        message: message.into(),
        commit: commit.map(str::to_owned),
    }
}

fn finish(result: DeployResult, message: &str) -> Effect {
    Effect::Finish {
        result,
        message: message.into(),
    }
}

fn step_emit(message: &str) -> Effect {
    emit(DeployStage::Step, message, None)
}

fn restart(rollback: bool) -> Vec<Effect> {
    let say = if rollback {
        "restarting the previous version"
    } else {
        "restarting the program"
    };
    vec![
        Effect::Say(say.into()),
        emit(DeployStage::Restarting, "", None),
        Effect::StopProgram,
    ]
}

#[test]
fn a_deploy_starts_with_a_fetch_and_a_first_one_with_git_init() {
    let (m, out) = Machine::start(setup(DeployKind::Deploy, false));
    assert_eq!(m.phase, Phase::Fetch);
    assert_eq!(out[0], emit(DeployStage::Started, "", None));
    assert!(matches!(&out[1], Effect::Spawn { name, .. } if name == "git fetch"));
    let (m, out) = Machine::start(Setup {
        init: true,
        ..setup(DeployKind::Deploy, false)
    });
    assert_eq!(m.phase, Phase::Init);
    assert_eq!(out[1], spawn("git init", &["git", "init", "-q"], false));
    let (m, out) = Machine::start(setup(DeployKind::Rollback, false));
    assert_eq!(m.phase, Phase::ResolveOld);
    assert!(matches!(&out[1], Effect::Spawn { capture: true, .. }));
}

/// Every (phase, input) pair: those that act are listed with what they do; every other pair
/// must change nothing and ask for nothing.
#[test]
fn every_phase_and_input() {
    let t0 = Instant::now();
    let gate = |rollback| Phase::Gate {
        rollback,
        until: t0 + Duration::from_secs(10),
    };
    let phases: Vec<(&str, Phase, Mode)> = vec![
        ("tip", Phase::Tip, Mode::Download),
        ("wait", Phase::Wait, Mode::Download),
        ("download", Phase::Download, Mode::Download),
        ("init", Phase::Init, Mode::Tree),
        ("fetch", Phase::Fetch, Mode::Tree),
        ("resolve old", Phase::ResolveOld, Mode::Tree),
        ("resolve new", Phase::ResolveNew, Mode::Tree),
        ("checkout", Phase::Checkout, Mode::Tree),
        ("build 0", Phase::Build(0), Mode::Tree),
        ("release", Phase::Release, Mode::Artifact),
        ("restore", Phase::Restore, Mode::Tree),
        ("rollback checkout", Phase::RollbackCheckout, Mode::Tree),
        ("switch", Phase::Switch { rollback: false }, Mode::Artifact),
        (
            "switch back",
            Phase::Switch { rollback: true },
            Mode::Artifact,
        ),
        ("stopping", Phase::Stopping { rollback: false }, Mode::Tree),
        ("starting", Phase::Starting { rollback: false }, Mode::Tree),
        ("gate", gate(false), Mode::Tree),
        ("gate of the old", gate(true), Mode::Tree),
        ("done", Phase::Done, Mode::Tree),
    ];
    let tip = format!("{NEW}\nsubject of 2222\n");
    let inputs: Vec<(&str, Input)> = vec![
        ("step ok", ended(true, Some(&tip))),
        ("step failed", ended(false, None)),
        ("step not run", Input::StepNotRun("no such file".into())),
        ("switched", Input::Switched(Ok(Some(PathBuf::from(OLD))))),
        ("switch failed", Input::Switched(Err("read-only".into()))),
        (
            "running",
            Input::Program(Observed::Running {
                since: t0 - Duration::from_secs(1),
            }),
        ),
        ("busy", Input::Program(Observed::Busy)),
        (
            "down",
            Input::Program(Observed::Down {
                why: "exit status 1".into(),
            }),
        ),
        ("tick early", Input::Tick(t0)),
        ("tick late", Input::Tick(t0 + Duration::from_secs(11))),
        ("abort", Input::Abort),
    ];
    let interrupted = (
        Phase::Done,
        vec![finish(
            DeployResult::Interrupted,
            "the supervisor is shutting down",
        )],
    );
    let gate_from_running = |rollback| {
        (
            Phase::Gate {
                rollback,
                until: t0 + Duration::from_secs(9),
            },
            vec![emit(
                DeployStage::Ready,
                "RUNNING; passing if it stays so for 10s",
                None,
            )],
        )
    };
    let quarantine_then_back = vec![
        Effect::Say("the new version did not stay up: exit status 1; rolling back".into()),
        Effect::Quarantine {
            commit: NEW.into(),
            reason: "exit status 1".into(),
        },
        emit(DeployStage::RollingBack, "exit status 1", None),
        spawn(
            "git checkout (rollback)",
            &["git", "checkout", "--force", "--detach", OLD],
            false,
        ),
    ];
    let restore = |message: &str| {
        (
            Phase::Restore,
            vec![
                Effect::Say(message.into()),
                spawn(
                    "git checkout (restore)",
                    &["git", "checkout", "--force", "--detach", OLD],
                    false,
                ),
            ],
        )
    };
    let mut build_ok = vec![step_emit("the step: ok (5 ms)")];
    build_ok.extend(restart(false));
    build_ok.insert(1, emit(DeployStage::Switched, "", Some(NEW)));

    #[rustfmt::skip]
    let acting: Vec<(&str, &str, Outcome)> = vec![
        // A prebuilt release: the remote's tip (not running, not held back) is waited for,
        // downloaded (its signature gives the subject), then switched to.
        ("tip", "step ok", (Phase::Wait, vec![wait_step()])),
        ("wait", "step ok", (Phase::Download, vec![step_emit("the step: ok (5 ms)"), download_step()])),
        ("wait", "step failed", (Phase::Done, vec![step_emit("the step: exit status 1 (5 ms)"), finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("download", "step ok", (Phase::Switch { rollback: false }, vec![step_emit("the step: ok (5 ms)"), emit(DeployStage::Fetched, "subject of 2222", Some(NEW)), Effect::Switch(PathBuf::from(NEW))])),
        ("download", "step failed", (Phase::Done, vec![step_emit("the step: exit status 1 (5 ms)"), finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("init", "step ok", (Phase::Fetch, vec![spawn("git fetch", &["git", "fetch", "--no-tags", "--", "origin", "+refs/heads/main:refs/remotes/origin/main"], false)])),
        ("init", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("fetch", "step ok", (Phase::ResolveOld, vec![spawn("git log -1 HEAD", &["git", "log", "-1", "--format=%H%n%s", "HEAD", "--"], true)])),
        ("fetch", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "the step failed: exit status 1")])),
        // The running commit is whatever HEAD says (nothing, for a failed step: a new repo).
        ("resolve old", "step ok", (Phase::ResolveNew, vec![spawn("git log -1 (fetched tip)", &["git", "log", "-1", "--format=%H%n%s", "refs/remotes/origin/main^{commit}", "--"], true)])),
        ("resolve old", "step failed", (Phase::ResolveNew, vec![spawn("git log -1 (fetched tip)", &["git", "log", "-1", "--format=%H%n%s", "refs/remotes/origin/main^{commit}", "--"], true)])),
        // A tip other than HEAD (OLD): fetched, checked out.
        ("resolve new", "step ok", (Phase::Checkout, vec![emit(DeployStage::Fetched, "subject of 2222", Some(NEW)), spawn("git checkout", &["git", "checkout", "--force", "--detach", NEW], false)])),
        ("resolve new", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("checkout", "step ok", (Phase::Build(0), vec![spawn("cargo build", &["cargo", "build"], false)])),
        ("checkout", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("build 0", "step ok", (Phase::Stopping { rollback: false }, build_ok.clone())),
        ("build 0", "step failed", { let (p, mut e) = restore("the step failed: exit status 1"); e.insert(0, step_emit("the step: exit status 1 (5 ms)")); (p, e) }),
        ("build 0", "step not run", { let (p, mut e) = restore("the step: no such file"); e.insert(0, Effect::Say("cannot run the step: no such file".into())); (p, e) }),
        ("release", "step ok", (Phase::Switch { rollback: false }, vec![step_emit("the step: ok (5 ms)"), Effect::Switch(PathBuf::from(NEW))])),
        ("release", "step failed", (Phase::Done, vec![step_emit("the step: exit status 1 (5 ms)"), finish(DeployResult::Failed, "the step failed: exit status 1")])),
        ("restore", "step ok", (Phase::Done, vec![finish(DeployResult::Failed, "a step failed; the working tree is back on the running commit")])),
        ("restore", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "a step failed, and restoring the working tree failed too")])),
        ("rollback checkout", "step ok", (Phase::Stopping { rollback: true }, restart(true))),
        ("rollback checkout", "step failed", (Phase::Done, vec![finish(DeployResult::Failed, "rollback failed: the step failed: exit status 1")])),
        ("rollback checkout", "step not run", (Phase::Done, vec![Effect::Say("cannot run the step: no such file".into()), finish(DeployResult::Failed, "rollback failed: the step: no such file")])),
        ("switch", "switched", (Phase::Stopping { rollback: false }, { let mut e = vec![Effect::Say(format!("releases/current -> {NEW}")), emit(DeployStage::Switched, "", Some(NEW))]; e.extend(restart(false)); e })),
        ("switch", "switch failed", (Phase::Done, vec![finish(DeployResult::Failed, "cannot switch releases: read-only")])),
        ("switch back", "switched", (Phase::Stopping { rollback: true }, { let mut e = vec![emit(DeployStage::RollingBack, "", None)]; e.extend(restart(true)); e })),
        ("switch back", "switch failed", (Phase::Done, vec![finish(DeployResult::Failed, "cannot roll back: read-only")])),
        // Never two processes at once: the start waits until the old one is down.
        ("stopping", "down", (Phase::Starting { rollback: false }, vec![Effect::StartProgram])),
        ("starting", "running", gate_from_running(false)),
        ("starting", "down", (Phase::RollbackCheckout, quarantine_then_back.clone())),
        ("gate", "running", gate_from_running(false)),
        ("gate", "down", (Phase::RollbackCheckout, quarantine_then_back.clone())),
        ("gate", "tick late", (Phase::Done, vec![finish(DeployResult::Succeeded, "the new version passed its health gate")])),
        ("gate of the old", "running", gate_from_running(true)),
        ("gate of the old", "down", (Phase::Done, vec![finish(DeployResult::Failed, "the previous version did not stay up either: exit status 1")])),
        ("gate of the old", "tick late", (Phase::Done, vec![finish(DeployResult::RolledBack, "the new version failed; the previous one runs again")])),
    ];
    let mut seen = 0;
    for (pname, phase, mode) in &phases {
        for (iname, input) in &inputs {
            let mut m = at(phase.clone(), *mode);
            let before = m.phase.clone();
            let effects = m.handle(input.clone());
            let listed = acting
                .iter()
                .find(|(p, i, _)| p == pname && i == iname)
                .map(|(_, _, o)| o.clone());
            let expected = match (listed, *iname) {
                (Some(o), _) => o,
                (None, "abort") if *pname != "done" => interrupted.clone(),
                // Any other step outcome in a step phase fails the deploy with it.
                (None, "step not run" | "step failed")
                    if !matches!(
                        before,
                        Phase::Switch { .. }
                            | Phase::Stopping { .. }
                            | Phase::Starting { .. }
                            | Phase::Gate { .. }
                            | Phase::Done
                    ) =>
                {
                    let (why, mut pre) = if *iname == "step failed" {
                        ("the step failed: exit status 1".to_owned(), Vec::new())
                    } else {
                        (
                            "the step: no such file".to_owned(),
                            vec![Effect::Say("cannot run the step: no such file".into())],
                        )
                    };
                    pre.push(finish(DeployResult::Failed, &why));
                    (Phase::Done, pre)
                }
                _ => (before.clone(), Vec::new()),
            };
            assert_eq!((m.phase.clone(), effects), expected, "{pname} + {iname}");
            seen += 1;
        }
    }
    assert_eq!(seen, phases.len() * inputs.len());
}

#[test]
fn a_new_tip_is_checked_out_an_old_one_is_unchanged_a_quarantined_one_is_refused() {
    let tip = format!("{NEW}\nAdd /ping\n");
    // Artifact mode compares with the release `current` points at (OLD): a new tip.
    let mut m = at(Phase::ResolveNew, true);
    let out = m.handle(ended(true, Some(&tip)));
    assert_eq!(m.phase, Phase::Checkout);
    assert_eq!(
        out,
        vec![
            emit(DeployStage::Fetched, "Add /ping", Some(NEW)),
            spawn(
                "git checkout",
                &["git", "checkout", "--force", "--detach", NEW],
                false
            ),
        ]
    );
    // The same tip, quarantined: refused, unless forced.
    let quarantined = Setup {
        quarantined: vec![NEW.into()],
        ..setup(DeployKind::Deploy, true)
    };
    let (mut m, _) = Machine::start(quarantined.clone());
    m.phase = Phase::ResolveNew;
    let out = m.handle(ended(true, Some(&tip)));
    assert_eq!(
        out,
        vec![finish(
            DeployResult::Quarantined,
            "222222222222 failed its health gate before and is quarantined; push a fix, or deploy --force"
        )]
    );
    let (mut m, _) = Machine::start(Setup {
        force: true,
        ..quarantined
    });
    m.phase = Phase::ResolveNew;
    m.handle(ended(true, Some(&tip)));
    assert_eq!(m.phase, Phase::Checkout, "forced");
    // The same tip failed to build 40 s ago: not built again within the window, unless forced;
    // another commit that failed is no reason to hold this one.
    let failed = Setup {
        failed_recently: vec![(NEW.into(), Duration::from_millis(40_700))],
        ..setup(DeployKind::Deploy, true)
    };
    let (mut m, _) = Machine::start(failed.clone());
    m.phase = Phase::ResolveNew;
    let out = m.handle(ended(true, Some(&tip)));
    assert_eq!(
        out,
        vec![finish(
            DeployResult::Quarantined,
            "222222222222 failed to deploy 40s ago; it is not built again before 10m have passed (retry_failed_after): push a fix, or deploy --force"
        )]
    );
    let (mut m, _) = Machine::start(Setup {
        force: true,
        ..failed.clone()
    });
    m.phase = Phase::ResolveNew;
    m.handle(ended(true, Some(&tip)));
    assert_eq!(m.phase, Phase::Checkout, "forced");
    let (mut m, _) = Machine::start(Setup {
        failed_recently: vec![(OLD.into(), Duration::from_secs(1))],
        ..failed
    });
    m.phase = Phase::ResolveNew;
    m.handle(ended(true, Some(&tip)));
    assert_eq!(m.phase, Phase::Checkout, "another commit's failure");
    // The tip that already runs (tree mode: HEAD).
    let mut m = at(Phase::ResolveNew, false);
    m.old = commit(NEW);
    let out = m.handle(ended(true, Some(&tip)));
    assert_eq!(
        out,
        vec![finish(
            DeployResult::Unchanged,
            "already running the branch tip"
        )]
    );
    // Output that is not a commit.
    let mut m = at(Phase::ResolveNew, true);
    let out = m.handle(ended(true, Some("fatal: bad revision")));
    assert_eq!(
        out,
        vec![finish(
            DeployResult::Failed,
            "the fetched branch did not resolve to a commit"
        )]
    );
}

#[test]
fn an_artifact_gate_failure_quarantines_and_switches_back() {
    let t0 = Instant::now();
    let mut m = at(Phase::Starting { rollback: false }, true);
    let out = m.handle(Input::Program(Observed::Down {
        why: "not ready after 2m".into(),
    }));
    assert_eq!(m.phase, Phase::Switch { rollback: true });
    assert_eq!(
        out,
        vec![
            Effect::Say("the new version did not stay up: not ready after 2m; rolling back".into()),
            Effect::Quarantine {
                commit: NEW.into(),
                reason: "not ready after 2m".into()
            },
            Effect::Switch(PathBuf::from(OLD)),
        ]
    );
    let out = m.handle(Input::Switched(Ok(Some(PathBuf::from(NEW)))));
    assert_eq!(
        out[0],
        emit(DeployStage::RollingBack, "not ready after 2m", None)
    );
    assert_eq!(m.phase, Phase::Stopping { rollback: true });
    m.handle(Input::Program(Observed::Down {
        why: "STOPPED".into(),
    }));
    m.handle(Input::Program(Observed::Running { since: t0 }));
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(10)));
    let out = m.handle(Input::Tick(t0 + Duration::from_secs(10)));
    assert_eq!(
        out,
        vec![finish(
            DeployResult::RolledBack,
            "the new version failed; the previous one runs again"
        )]
    );
    // Without a previous release there is nothing to go back to.
    let mut m = at(
        Phase::Gate {
            rollback: false,
            until: t0,
        },
        true,
    );
    m.previous_release = None;
    let out = m.handle(Input::Program(Observed::Down {
        why: "exit status 1".into(),
    }));
    assert_eq!(
        out.last(),
        Some(&finish(
            DeployResult::Failed,
            "exit status 1; no previous release to go back to"
        ))
    );
}

#[test]
fn a_restart_of_the_program_during_the_gate_starts_the_gate_again() {
    let t0 = Instant::now();
    let mut m = at(Phase::Starting { rollback: false }, false);
    m.handle(Input::Program(Observed::Running { since: t0 }));
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(10)));
    // Restarted at once (no backoff delay) and RUNNING again: the 10 s count from then.
    assert_eq!(m.handle(Input::Program(Observed::Busy)), vec![]);
    let again = t0 + Duration::from_secs(5);
    m.handle(Input::Program(Observed::Running { since: again }));
    assert_eq!(m.deadline(), Some(again + Duration::from_secs(10)));
    assert_eq!(m.handle(Input::Tick(t0 + Duration::from_secs(10))), vec![]);
}

#[test]
fn rollback_on_request() {
    // Tree mode: HEAD is what runs; the target is checked out and gated as a rollback.
    let (mut m, _) = Machine::start(Setup {
        rollback_to: commit(OLD),
        ..setup(DeployKind::Rollback, false)
    });
    let out = m.handle(ended(true, Some(&format!("{NEW}\nnow\n"))));
    assert_eq!(m.phase, Phase::RollbackCheckout);
    assert_eq!(m.old.as_ref().map(|c| c.id.as_str()), Some(OLD));
    assert_eq!(m.new.as_ref().map(|c| c.id.as_str()), Some(NEW));
    assert_eq!(
        out,
        vec![spawn(
            "git checkout (rollback)",
            &["git", "checkout", "--force", "--detach", OLD],
            false
        )]
    );
    // Artifact mode: `current` is switched to the kept release.
    let (mut m, _) = Machine::start(Setup {
        rollback_to: commit(OLD),
        rollback_release_kept: true,
        ..setup(DeployKind::Rollback, true)
    });
    let out = m.handle(ended(true, Some(&format!("{NEW}\nnow\n"))));
    assert_eq!(out, vec![Effect::Switch(PathBuf::from(OLD))]);
    // Nothing to go back to, or its release is gone.
    for (to, kept, message) in [
        (None, false, "no earlier release to go back to".to_owned()),
        (
            commit(OLD),
            false,
            format!("release {OLD} is no longer kept"),
        ),
    ] {
        let (mut m, _) = Machine::start(Setup {
            rollback_to: to,
            rollback_release_kept: kept,
            ..setup(DeployKind::Rollback, true)
        });
        let out = m.handle(ended(true, Some(NEW)));
        assert_eq!(out, vec![finish(DeployResult::Failed, &message)]);
    }
}

/// After an artifact rollback the working tree still holds the commit that failed: what runs
/// is the release `current` points at, and that is the deploy's old commit.
#[test]
fn in_artifact_mode_the_old_commit_is_the_running_release() {
    let mut m = at(Phase::Fetch, true);
    m.old = None;
    let out = m.handle(ended(true, None));
    assert_eq!(m.phase, Phase::ResolveOld);
    assert_eq!(
        out,
        vec![spawn(
            "git log -1 (running release)",
            &["git", "log", "-1", "--format=%H%n%s", OLD, "--"],
            true
        )]
    );
    m.handle(ended(true, Some(&format!("{OLD}\nThe good one\n"))));
    assert_eq!(
        m.old,
        Some(Commit {
            id: OLD.into(),
            subject: Some("The good one".into())
        })
    );
    // A release whose commit the repository lacks: still what runs, without a subject.
    let mut m = at(Phase::ResolveOld, true);
    m.old = None;
    m.handle(ended(false, None));
    assert_eq!(
        m.old,
        Some(Commit {
            id: OLD.into(),
            subject: None
        })
    );
    // Working-tree mode: the tree's HEAD.
    let mut m = at(Phase::Fetch, false);
    let out = m.handle(ended(true, None));
    assert_eq!(
        out,
        vec![spawn(
            "git log -1 HEAD",
            &["git", "log", "-1", "--format=%H%n%s", "HEAD", "--"],
            true
        )]
    );
}

/// `artifact_url`: no repository is asked what runs (the release `current` points at), a
/// pushed commit is taken as it is, a commit that runs or is held back is never downloaded, a
/// failed download says why, and a failed gate switches back as in artifact mode.
#[test]
fn a_prebuilt_release_is_waited_for_downloaded_and_switched_to() {
    // Without a named commit: the remote's tip.
    let (m, out) = Machine::start(setup(DeployKind::Deploy, Mode::Download));
    assert_eq!(m.phase, Phase::Tip);
    assert_eq!(m.old.as_ref().map(|c| c.id.as_str()), Some(OLD));
    assert_eq!(
        out[1],
        spawn(
            "git ls-remote",
            &["git", "ls-remote", "--", "origin", "refs/heads/main"],
            true
        )
    );
    let mut m = m;
    let out = m.handle(ended(true, Some(&format!("{NEW}\trefs/heads/main\n"))));
    assert_eq!((m.phase.clone(), out), (Phase::Wait, vec![wait_step()]));
    let out = m.handle(ended(
        false,
        Some("the release did not appear within 30m (https://forge/x.minisig: 404 Not Found)"),
    ));
    assert_eq!(
        out.last(),
        Some(&finish(
            DeployResult::Failed,
            "wait for the release failed: the release did not appear within 30m (https://forge/x.minisig: 404 Not Found)"
        ))
    );
    // A named commit (a webhook's push) is waited for at once.
    let named = Setup {
        commit: Some(NEW.into()),
        ..setup(DeployKind::Deploy, Mode::Download)
    };
    let (mut m, out) = Machine::start(named.clone());
    assert_eq!(
        (m.phase.clone(), out[1].clone()),
        (Phase::Wait, wait_step())
    );
    m.handle(ended(true, Some("")));
    assert_eq!(m.phase, Phase::Download);
    let out = m.handle(ended(
        false,
        Some("unverified: signature from another key (key id A; signing_key is B)"),
    ));
    assert_eq!(
        out,
        vec![
            step_emit(
                "download: unverified: signature from another key (key id A; signing_key is B) (5 ms)"
            ),
            finish(
                DeployResult::Failed,
                "download failed: unverified: signature from another key (key id A; signing_key is B)"
            ),
        ]
    );
    // The commit that runs, or one held back: nothing is downloaded.
    let (_, out) = Machine::start(Setup {
        commit: Some(OLD.into()),
        ..named.clone()
    });
    assert_eq!(
        out[1],
        finish(DeployResult::Unchanged, "already running the branch tip")
    );
    let (_, out) = Machine::start(Setup {
        quarantined: vec![NEW.into()],
        ..named.clone()
    });
    assert!(matches!(
        &out[1],
        Effect::Finish {
            result: DeployResult::Quarantined,
            ..
        }
    ));
    // A gate failure switches back to the previous release.
    let mut m = at(Phase::Starting { rollback: false }, Mode::Download);
    let out = m.handle(Input::Program(Observed::Down {
        why: "exit status 1".into(),
    }));
    assert_eq!(m.phase, Phase::Switch { rollback: true });
    assert_eq!(out.last(), Some(&Effect::Switch(PathBuf::from(OLD))));
    // A rollback asks nothing of git: `current` goes to the kept release.
    let (m, out) = Machine::start(Setup {
        rollback_to: commit(OLD),
        rollback_release_kept: true,
        current_release: Some(NEW.into()),
        ..setup(DeployKind::Rollback, Mode::Download)
    });
    assert_eq!(m.phase, Phase::Switch { rollback: false });
    assert_eq!(out[1], Effect::Switch(PathBuf::from(OLD)));
}
