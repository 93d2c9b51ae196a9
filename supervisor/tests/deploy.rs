//! The deploy engine with real git: a bare repository as the remote, a clone as the working
//! tree, real programs, the real CLI.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::path::Path;
use std::process::Command;

use fixture::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use testkit::git;

/// Commits `run.sh` with `body` in `work` and pushes it to `branch`; returns the commit.
fn push(root: &Path, branch: &str, body: &str) -> String {
    let work = root.join("work");
    std::fs::write(work.join("run.sh"), body).unwrap();
    git(&work, &["add", "run.sh"]);
    git(
        &work,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            body.lines().next().unwrap_or("x"),
        ],
    );
    git(
        &work,
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    );
    git(&work, &["rev-parse", "HEAD"])
}

fn version(n: &str) -> String {
    format!("echo \"version {n}\"\nexec sleep 1000\n")
}

/// remote.git, a `work` clone to push from, an `app` clone to deploy into (on version 1), and
/// supervisor.toml from `config` (`@DIR@` is the folder).
fn setup(config: &str) -> (tempfile::TempDir, String) {
    let dir = Supervisor::dir_with(config);
    let root = dir.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["clone", "-q", "remote.git", "work"]);
    let v1 = push(root, "main", &version("1"));
    git(root, &["clone", "-q", "remote.git", "app"]);
    (dir, v1)
}

fn history(sup: &Supervisor) -> Vec<Value> {
    let (_, out, _) = ctl(sup, &["deploys", "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn running_pid(sup: &Supervisor) -> u64 {
    let (_, out, _) = ctl(sup, &["status", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["programs"][0]["pid"].as_u64().unwrap_or(0)
}

const TREE: &str = r#"
[program.app]
command = ["/bin/sh", "@DIR@/app/run.sh"]
startsecs = "200ms"
backoff = { initial = "100ms" }

[program.app.deploy]
repo = "@DIR@/app"
branch = "main"
healthy_after = "500ms"
"#;

#[test]
fn a_deploy_runs_the_fetched_tip_and_records_it() {
    let (dir, v1) = setup(TREE);
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    wait_until("version 1", || sup.stdout().contains("app | version 1"));
    let v2 = push(&root, "main", &version("2"));
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("app: fetched {}", &v2[..12])),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!(
            "app: succeeded {}: the new version passed its health gate",
            &v2[..12]
        )),
        "{out}"
    );
    wait_until("version 2", || sup.stdout().contains("app | version 2"));
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v2);
    let records = history(&sup);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r["result"].as_str(),
            r["old_commit"].as_str(),
            r["new_commit"].as_str()
        ),
        (Some("succeeded"), Some(v1.as_str()), Some(v2.as_str()))
    );
    assert!(r["trigger"].as_str().unwrap().starts_with("cli"), "{r}");
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("$ git fetch --no-tags -- origin +refs/heads/main:refs/remotes/origin/main"),
        "{log}"
    );
    // Nothing new: unchanged, no restart.
    let pid = running_pid(&sup);
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0);
    assert!(out.contains("app: unchanged"), "{out}");
    assert_eq!(running_pid(&sup), pid);
}

#[test]
fn a_failing_step_changes_nothing() {
    let (dir, v1) = setup(&format!("{TREE}steps = [[\"false\"]]\n"));
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let pid = running_pid(&sup);
    push(&root, "main", &version("2"));
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.trim_end().ends_with(
            ": false failed: exit status 1; the working tree is back on the running commit"
        ),
        "{out}"
    );
    assert!(out.contains("app: failed "), "{out}");
    assert_eq!(
        running_pid(&sup),
        pid,
        "the running version was not touched"
    );
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v1);
    let r = &history(&sup)[0];
    assert_eq!(r["result"], "failed");
    let steps: Vec<String> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["name"].as_str().unwrap(), s["ok"]))
        .collect();
    assert_eq!(
        steps,
        [
            "git fetch true",
            "git log -1 HEAD true",
            "git log -1 (fetched tip) true",
            "git checkout true",
            "false false",
            "git checkout (restore) true"
        ]
    );
}

#[test]
fn a_version_that_crashes_is_rolled_back() {
    let (dir, v1) = setup(TREE);
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    push(&root, "main", "echo \"version broken\"\nexit 1\n");
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("app: rolling_back: exit status 1\n"), "{out}");
    assert!(out.contains("app: rolled_back "), "{out}");
    assert!(
        out.trim_end()
            .ends_with(": the new version failed; the previous one runs again"),
        "{out}"
    );
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v1);
    let (_, status, _) = ctl(&sup, &["status", "app"]);
    assert!(status.contains("RUNNING"), "{status}");
    assert_eq!(
        sup.stdout().matches("app | version 1").count(),
        2,
        "{}",
        sup.stdout()
    );
    assert_eq!(history(&sup)[0]["result"], "rolled_back");
}

#[test]
fn artifact_releases_switch_atomically_and_roll_back_on_request() {
    let (dir, _v1) = setup(
        r#"
[program.app]
command = ["/bin/sh", "@DIR@/releases/current/run.sh"]
startsecs = "200ms"
startretries = 0

[program.app.deploy]
repo = "@DIR@/app"
steps = [["cp", "run.sh", "build-run.sh"], ["mkdir", "-p", "out"], ["mv", "build-run.sh", "out/run.sh"]]
artifact = "out/run.sh"
releases = "@DIR@/releases"
healthy_after = "300ms"
keep_releases = 2
"#,
    );
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    // No release yet: the program cannot start until the first deploy.
    sup.wait_state("app", "FATAL");
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    wait_until("version 1", || sup.stdout().contains("app | version 1"));
    let v2 = push(&root, "main", &version("2"));
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0);
    wait_until("version 2", || sup.stdout().contains("app | version 2"));
    assert_eq!(
        std::fs::read_link(root.join("releases/current")).unwrap(),
        Path::new(&v2)
    );
    let (code, out, _) = ctl(&sup, &["rollback", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    wait_until("version 1 again", || {
        sup.stdout().matches("app | version 1").count() == 2
    });
    let v3 = push(&root, "main", &version("3"));
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0);
    assert_eq!(
        std::fs::read_link(root.join("releases/current")).unwrap(),
        Path::new(&v3)
    );
    let kinds: Vec<String> = history(&sup)
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["kind"].as_str().unwrap(),
                r["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "deploy succeeded",
            "rollback succeeded",
            "deploy succeeded",
            "deploy succeeded"
        ]
    );
    // keep_releases = 2 (the current and the previous are always kept).
    let kept = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && !e.path().is_symlink())
        .count();
    assert!(kept <= 3, "{kept} releases kept");
}

#[test]
fn a_burst_of_requests_coalesces_into_one_follow_up() {
    // The first deploy's build waits for `gate`, so that every request lands while it runs.
    let (dir, _) = setup(&format!(
        "{TREE}steps = [[\"sh\", \"-c\", \"while [ ! -e ../gate ]; do sleep 0.05; done\"]]\n"
    ));
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let mut last = String::new();
    for i in 0..20 {
        last = push(&root, "main", &version(&format!("2.{i}")));
        let (code, out, _) = ctl(&sup, &["deploy", "app"]);
        assert_eq!(code, 0, "{out}");
    }
    std::fs::write(root.join("gate"), "").unwrap();
    wait_until("the last push running", || {
        sup.stdout().contains("app | version 2.19") && history(&sup).len() >= 2
    });
    let records = history(&sup);
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0]["new_commit"].as_str(), Some(last.as_str()));
    assert!(records.iter().all(|r| r["result"] == "succeeded"));
}

#[test]
fn branch_names_never_reach_a_shell() {
    let branch = "rel;`touch${IFS}pwned`$(touch${IFS}pwned2)";
    let (dir, _) = setup(&TREE.replace(
        "branch = \"main\"",
        &format!("branch = {branch:?}").replace('$', "$$"),
    ));
    let root = dir.path().to_owned();
    let v2 = push(&root, branch, &version("evil-branch"));
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v2);
    for p in [
        root.join("pwned"),
        root.join("pwned2"),
        root.join("app/pwned"),
        root.join("app/pwned2"),
    ] {
        assert!(!p.exists(), "{} was created", p.display());
    }
}

#[test]
fn a_deploy_cut_short_by_a_restart_is_recorded_and_the_tree_restored() {
    let config = format!("{TREE}steps = [[\"sleep\", \"30\"]]\n");
    let (dir, v1) = setup(&config);
    let root = dir.path().to_owned();
    let mut sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    // A first, good deploy so the history knows what ran.
    push(&root, "main", &version("1b"));
    let good = {
        let mut c = config.clone();
        c = c.replace("steps = [[\"sleep\", \"30\"]]\n", "");
        c.replace("@DIR@", root.to_str().unwrap())
    };
    std::fs::write(root.join("supervisor.toml"), &good).unwrap();
    assert_eq!(ctl(&sup, &["update"]).0, 0);
    sup.wait_state("app", "RUNNING");
    assert_eq!(ctl(&sup, &["deploy", "app", "--wait"]).0, 0);
    let v1b = git(&root.join("app"), &["rev-parse", "HEAD"]);
    assert_ne!(v1b, v1);
    std::fs::write(
        root.join("supervisor.toml"),
        config.replace("@DIR@", root.to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(ctl(&sup, &["update"]).0, 0);
    sup.wait_state("app", "RUNNING");
    push(&root, "main", &version("never"));
    assert_eq!(ctl(&sup, &["deploy", "app"]).0, 0);
    wait_until("the slow step", || {
        std::fs::read_dir(root.join("data/deploys/app"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains("$ sleep 30")
                })
            })
            .unwrap_or(false)
    });
    // The supervisor dies hard; its children are left to us.
    let orphans: Vec<i64> = sup
        .log_events(|e| msg(e) == "spawned")
        .iter()
        .filter_map(|e| e["pid"].as_i64())
        .collect();
    sup.signal(Signal::SIGKILL);
    sup.wait_exit(PATIENCE);
    let _ = Command::new("pkill")
        .args(["-KILL", "-f", "sleep 30"])
        .status();
    for pid in orphans {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    assert_ne!(
        git(&root.join("app"), &["rev-parse", "HEAD"]),
        v1b,
        "the tree was left on the new commit"
    );

    let dir2 = tempfile::TempDir::new().unwrap(); // the fixture wants a TempDir; reuse the folder
    let _ = dir2;
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(root.join("supervisor.toml"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(out.id() as i32);
    let hist = root.join("data/deploys/app.jsonl");
    wait_until("the interrupted record", || {
        std::fs::read_to_string(&hist)
            .unwrap_or_default()
            .contains("\"interrupted\"")
    });
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let output = out.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&hist)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["result"], "interrupted");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains(&format!("working tree restored to {v1b}")),
        "{last}"
    );
    assert_eq!(git(&root.join("app"), &["rev-parse", "HEAD"]), v1b);
}

#[test]
fn a_first_deploy_creates_the_repository_from_its_url() {
    // A fresh data volume: no working tree yet, only where the code lives.
    let config = r#"
[program.app]
command = ["/bin/sh", "-c", "if [ -f @DIR@/data/src/run.sh ]; then exec sh @DIR@/data/src/run.sh; fi; echo 'no release yet'; exec sleep 1000"]
startsecs = "200ms"

[program.app.deploy]
repo = "@DIR@/data/src"
url = "@DIR@/remote.git"
healthy_after = "300ms"
"#;
    let (dir, _) = setup(config);
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the empty start", || {
        sup.stdout().contains("app | no release yet")
    });
    let v2 = push(&root, "main", &version("2"));
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("version 2", || sup.stdout().contains("app | version 2"));
    let r = &history(&sup)[0];
    assert_eq!(r["result"], "succeeded", "{r}");
    assert_eq!(r["old_commit"], Value::Null);
    assert_eq!(r["new_commit"].as_str(), Some(v2.as_str()));
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps[..2], ["git init", "git fetch"]);
    // The next deploy finds the repository and fetches from the URL again.
    let v3 = push(&root, "main", &version("3"));
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = &history(&sup)[0];
    assert_eq!(r["new_commit"].as_str(), Some(v3.as_str()), "{r}");
    assert_eq!(r["steps"][0]["name"], "git fetch");
}

/// What a deploy writes to storage (an SD card's wear) is in its record, per step and summed:
/// the kernel's count for each step and what it waited for (`wait4`). On the build folder's
/// file system (a disk; a tmpfs /tmp counts nothing).
#[test]
fn a_deploy_records_the_bytes_its_steps_wrote() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = format!(
        "{TREE}steps = [[\"sh\", \"-c\", \"dd if=/dev/zero of=blob bs=1M count=8 status=none && rm blob\"], [\"true\"]]\n"
    )
    .replace("@DIR@", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("supervisor.toml"), config).unwrap();
    let root = dir.path().to_owned();
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    push(&root, "main", &version("1"));
    git(&root, &["clone", "-q", "remote.git", "app"]);
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    push(&root, "main", &version("2"));
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    let r = &history(&sup)[0];
    let steps = r["steps"].as_array().unwrap();
    let dd = steps
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with("sh -c dd"))
        .unwrap();
    let written = dd["written_bytes"].as_u64().unwrap_or(0);
    assert!(written >= 8 << 20, "{dd}");
    // `true` writes nothing; the deploy's sum is its steps' (git's own writes included).
    let sum: u64 = steps
        .iter()
        .map(|s| s["written_bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(r["written_bytes"].as_u64(), Some(sum), "{r}");
    let (_, table, _) = ctl(&sup, &["deploys"]);
    assert!(table.contains(" MiB written"), "{table}");
}
