//! The deploy engine's gate, quarantine, poll trigger and recovery, end to end with real git,
//! real programs (readiness through Debian's `systemd-notify`) and the real CLI.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::path::Path;
use std::time::Duration;

use fixture::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use testkit::git;

/// Commits `run.sh` with `body` in `work` and pushes it to main; returns the commit.
fn push(root: &Path, body: &str) -> String {
    let work = root.join("work");
    std::fs::write(work.join("run.sh"), body).unwrap();
    git(&work, &["add", "run.sh"]);
    let subject = body.lines().next().unwrap_or("x");
    git(&work, &["commit", "-q", "--allow-empty", "-m", subject]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(&work, &["rev-parse", "HEAD"])
}

/// A version that says it is ready.
fn ready(n: &str) -> String {
    format!("echo \"version {n}\"\nsystemd-notify --ready\nexec sleep 1000\n")
}

/// A version that runs but never becomes ready (a bot that never reaches Discord's READY).
fn never_ready(n: &str) -> String {
    format!("echo \"version {n}\"\nexec sleep 1000\n")
}

/// remote.git, a `work` clone to push from, an `app` clone to deploy into, on `first`.
fn setup(config: &str, first: &str) -> (tempfile::TempDir, String) {
    let dir = Supervisor::dir_with(config);
    let root = dir.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["clone", "-q", "remote.git", "work"]);
    let v1 = push(root, first);
    git(root, &["clone", "-q", "remote.git", "app"]);
    (dir, v1)
}

fn history(sup: &Supervisor) -> Vec<Value> {
    let (_, out, _) = ctl(sup, &["deploys", "--json"]);
    serde_json::from_str(&out).unwrap()
}

const NOTIFY: &str = r#"
[program.app]
command = ["/bin/sh", "@DIR@/app/run.sh"]
ready = "notify"
ready_timeout = "1s"
startretries = 0
stopwaitsecs = 2
backoff = { initial = "100ms" }

[program.app.deploy]
repo = "@DIR@/app"
healthy_after = "300ms"
"#;

#[test]
fn a_version_never_ready_is_rolled_back_and_quarantined_until_a_fix() {
    let (dir, v1) = setup(NOTIFY, &ready("1"));
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let bad = push(&root, &never_ready("2"));
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("app: rolling_back: not ready after 1s\n"),
        "{out}"
    );
    assert!(
        out.contains("app: ready: RUNNING; passing if it stays so for 300ms"),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with("the new version failed; the previous one runs again"),
        "{out}"
    );
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v1);
    // The same tip again (a second webhook, a poll): nothing is done.
    let spawns = |sup: &Supervisor| sup.log_events(|e| msg(e) == "spawned").len();
    let before = spawns(&sup);
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "app: quarantined {}: {} failed its health gate before and is quarantined; push a fix, or deploy --force",
            &bad[..12],
            &bad[..12]
        )),
        "{out}"
    );
    assert_eq!(spawns(&sup), before, "nothing restarted");
    let records = history(&sup);
    assert_eq!(
        records
            .iter()
            .map(|r| r["result"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["quarantined", "rolled_back"]
    );
    // --force tries it anyway (and it fails the same way).
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait", "--force"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    // A fix pushed after it deploys.
    let fix = push(&root, &ready("3"));
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), fix);
    let quarantine =
        std::fs::read_to_string(root.join("data/deploys/app.quarantine.jsonl")).unwrap();
    assert!(
        quarantine.contains(&bad) && quarantine.contains("not ready after 1s"),
        "{quarantine}"
    );
}

#[test]
fn the_old_process_is_gone_before_the_new_one_starts() {
    let (dir, _) = setup(NOTIFY, &ready("1"));
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    // A version that takes its time to stop: the new one must still wait for it.
    push(
        &root,
        "trap 'sleep 0.3; exit 0' TERM\necho \"version slow\"\nsystemd-notify --ready\nwhile :; do sleep 0.05; done\n",
    );
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0);
    push(&root, &ready("3"));
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0);
    // Every spawn of app comes after the exit of the process before it.
    let events = sup.log_events(|e| {
        field(e, "program") == "app" && (msg(e) == "spawned" || msg(e) == "exited")
    });
    let kinds: Vec<&str> = events.iter().map(msg).collect();
    assert_eq!(
        kinds,
        ["spawned", "exited", "spawned", "exited", "spawned"],
        "{events:#?}"
    );
    for pair in events.windows(2) {
        assert!(pair[0]["timestamp"].as_str() <= pair[1]["timestamp"].as_str());
    }
}

#[test]
fn a_poll_deploys_a_pushed_commit_without_a_webhook() {
    let config = format!("{NOTIFY}poll = \"1s\"\n");
    let (dir, _) = setup(&config, &ready("1"));
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let v2 = push(&root, &ready("2"));
    wait_until("the poll to deploy version 2", || {
        sup.stdout().contains("app | version 2")
            && history(&sup)
                .first()
                .is_some_and(|r| r["result"] == "succeeded")
    });
    let r = &history(&sup)[0];
    assert_eq!(r["new_commit"].as_str(), Some(v2.as_str()));
    assert_eq!(
        r["trigger"].as_str(),
        Some(format!("poll: {}", &v2[..12]).as_str())
    );
    // An unchanged remote deploys nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(history(&sup).len(), 1);
}

#[test]
fn an_unreachable_remote_backs_off_and_says_so() {
    let config = NOTIFY.replace(
        "healthy_after = \"300ms\"",
        "healthy_after = \"300ms\"\nurl = \"@DIR@/gone.git\"\npoll = \"1s\"",
    );
    let (dir, _) = setup(&config, &ready("1"));
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let failed = |e: &Value| msg(e) == "deploy poll failed";
    let first = sup.wait_log("a failed poll", failed);
    assert!(
        field(&first, "error").starts_with("git ls-remote: exit status"),
        "{first}"
    );
    let second = sup.wait_log("a second failed poll", |e| failed(e) && e["failures"] == 2);
    // Backing off: 1 s, then 2 s, then 4 s.
    assert_eq!(
        (first["retry_in_s"].as_u64(), second["retry_in_s"].as_u64()),
        (Some(2), Some(4))
    );
    let (_, out, _) = ctl(&sup, &["status", "app"]);
    assert!(
        out.contains("; deploy poll failing (2 in a row: git ls-remote: exit status"),
        "{out}"
    );
    assert!(history(&sup).is_empty(), "no deploy from a failing poll");
}

/// Kills the supervisor (PID 1 of its namespace: everything in it dies with it) once
/// `wait_for` shows in the deploy's log, then starts a new one on the same data and checks that
/// the record says interrupted, the tree is back on what ran, and that version runs.
/// `marker` is made in `bin/` before the second deploy (`slow`: git fetches slowly;
/// `slow-build`: the build step is slow).
fn kill_during(stage: &str, config: &str, wait_for: &str, marker: &str) {
    if !is_root() {
        eprintln!("skipped: needs root (a PID namespace)");
        return;
    }
    let (dir, _) = setup(config, &ready("1"));
    let root = dir.path().to_owned();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    script(
        &root.join("bin"),
        "git",
        "if [ \"$1\" = fetch ] && [ -e \"$(dirname \"$0\")/slow\" ]; then sleep 30; fi\nexec /usr/bin/git \"$@\"",
    );
    let mut sup = Supervisor::start(dir, Mode::Pid1);
    sup.wait_state("app", "RUNNING");
    // A good deploy first, so that the history says what runs.
    let good = push(&root, &ready("good"));
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0, "{stage}");
    push(&root, &ready("cut short"));
    std::fs::write(root.join("bin").join(marker), "").unwrap();
    assert_eq!(ctl(&sup, &["deploy", "app"]).0, 0);
    // In the log of this deploy (the newest), not the first one's.
    wait_until(&format!("the {stage} stage"), || {
        std::fs::read_dir(root.join("data/deploys/app"))
            .ok()
            .and_then(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            })
            .is_some_and(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(wait_for)
            })
    });
    sup.signal(Signal::SIGKILL);
    sup.wait_exit(PATIENCE);
    std::fs::remove_file(root.join("bin").join(marker)).unwrap();
    let dir = sup.take_dir();
    let sup = Supervisor::start(dir, Mode::Pid1);
    sup.wait_state("app", "RUNNING");
    let last = &history(&sup)[0];
    assert_eq!(last["result"], "interrupted", "{stage}: {last}");
    assert_eq!(
        git(&root.join("app"), &["rev-parse", "HEAD"]),
        good,
        "{stage}: the tree is back on what ran"
    );
    wait_until(&format!("{stage}: the good version runs"), || {
        sup.stdout().contains("app | version good")
    });
}

/// The deploy's steps find `bin/git` (a wrapper that can make fetches slow) first.
fn with_git_wrapper(config: &str) -> String {
    format!("{config}environment = {{ PATH = \"@DIR@/bin:/usr/bin:/bin\" }}\n")
}

#[test]
fn kill_9_during_a_fetch() {
    kill_during("fetch", &with_git_wrapper(NOTIFY), "$ git fetch", "slow");
}

#[test]
fn kill_9_during_a_build_step() {
    // Slow only once `bin/slow-build` exists: the first, good deploy builds at once.
    let config = format!(
        "{NOTIFY}steps = [[\"sh\", \"-c\", \"if [ -e ../bin/slow-build ]; then sleep 30; fi\"]]\n"
    );
    kill_during(
        "build step",
        &with_git_wrapper(&config),
        "then sleep 30",
        "slow-build",
    );
}

#[test]
fn kill_9_during_the_gate() {
    // Long enough to be killed in, short enough for the first, good deploy to pass.
    let config = NOTIFY.replace("healthy_after = \"300ms\"", "healthy_after = \"3s\"");
    kill_during(
        "gate",
        &with_git_wrapper(&config),
        "restarting the program",
        "nothing-slow",
    );
}
