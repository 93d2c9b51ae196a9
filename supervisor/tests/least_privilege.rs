//! Least privilege, with real processes and users: what a program's environment holds, what a
//! build as an unprivileged user can put into a release, and that the release copy never
//! holds up the actor.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::{Duration, Instant};

use fixture::*;
use testkit::git;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The lines program `name` printed (through the supervisor's echo).
fn printed(sup: &Supervisor, name: &str) -> Vec<String> {
    let prefix = format!("{name} | ");
    sup.stdout()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[test]
fn a_program_receives_only_the_variables_it_names() {
    let dir = Supervisor::dir_with(
        r#"
[supervisor]
env_file = "@DIR@/secrets.env"

[program.hook]
command = ["/bin/sh", "-c", "env; echo done; exec sleep 1000"]
startsecs = 0
pass_env = ["HOOKD_SECRET"]

[program.plain]
command = ["/bin/sh", "-c", "env; echo done; exec sleep 1000"]
startsecs = 0
environment = { OWN = "x" }
"#,
    );
    std::fs::write(
        dir.path().join("secrets.env"),
        "DISCORD_TOKEN=discord-s3cret\nHOOKD_SECRET=hook-s3cret\n",
    )
    .unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    for name in ["hook", "plain"] {
        wait_until(&format!("{name} to print its environment"), || {
            printed(&sup, name).iter().any(|l| l == "done")
        });
    }
    let hook = printed(&sup, "hook");
    assert!(
        hook.contains(&"HOOKD_SECRET=hook-s3cret".to_owned()),
        "{hook:?}"
    );
    assert!(
        !hook.iter().any(|l| l.contains("discord-s3cret")),
        "{hook:?}"
    );
    let plain = printed(&sup, "plain");
    assert!(!plain.iter().any(|l| l.contains("s3cret")), "{plain:?}");
    assert!(plain.contains(&"OWN=x".to_owned()), "{plain:?}");
    assert!(plain.iter().any(|l| l.starts_with("PATH=")), "{plain:?}");
    // Nothing of the test's own environment (RUST_LOG is set for the supervisor) but the base.
    assert!(
        !plain.iter().any(|l| l.starts_with("RUST_LOG=")),
        "{plain:?}"
    );
    let names: Vec<&str> = plain
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // What the supervisor writes is not for everyone: logs 0640 in a 0750 folder.
    let mode = |p: &str| std::fs::metadata(sup.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("data/logs"), 0o750);
    assert_eq!(mode("data/logs/plain.log"), 0o640);
    for name in &names {
        let expected = [
            "PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "OWN", "PWD", "SHLVL",
        ]
        .contains(name)
            || name.starts_with("LC_")
            || name.starts_with("SUPERVISOR_");
        assert!(
            expected,
            "{name} reached a program that did not ask for it: {names:?}"
        );
    }
}

/// A supervisor whose program `app` deploys from a local remote with a build (as `user`) that
/// makes `out/` with what `build` (a shell script) puts there; the artifact is `out`.
fn stack(user: &str, build: &str) -> Supervisor {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The deploy's user must reach the folder, the remote and the build script.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["clone", "-q", "remote.git", "work"]);
    std::fs::write(root.join("work/run.sh"), "exec sleep 1000\n").unwrap();
    git(&root.join("work"), &["add", "run.sh"]);
    git(&root.join("work"), &["commit", "-q", "-m", "1"]);
    git(
        &root.join("work"),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    script(
        root,
        "build",
        &format!("set -e\nmkdir -p out\ncp run.sh out/\n{build}"),
    );
    let config = format!(
        r#"
[program.app]
command = ["/bin/sh", "{root}/releases/current/out/run.sh"]
startsecs = 0
autostart = false

[program.app.deploy]
repo = "{root}/src"
url = "{root}/remote.git"
steps = [["{root}/build"]]
artifact = "out"
releases = "{root}/releases"
healthy_after = "100ms"
user = "{user}"
"#,
        root = root.display()
    );
    std::fs::write(root.join("supervisor.toml"), config).unwrap();
    Supervisor::start(dir, Mode::Plain)
}

/// [`stack`], and its first deploy, waited for.
fn build_as(user: &str, build: &str) -> (Supervisor, (i32, String, String)) {
    let sup = stack(user, build);
    let result = ctl(&sup, &["deploy", "app", "--wait"]);
    (sup, result)
}

/// The log of the (only) deploy so far.
fn deploy_log(sup: &Supervisor) -> String {
    let dir = sup.path("data/deploys/app");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn root_a_build_cannot_plant_setuid_files_in_a_release() {
    if !is_root() {
        eprintln!("skipped: needs root (the build runs as nobody)");
        return;
    }
    let (sup, (code, out, err)) = build_as(
        "nobody",
        "cp /bin/true out/tool\nchmod 6755 out/tool\nmkdir out/dir\nchmod 3777 out/dir\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let release = std::fs::canonicalize(sup.path("releases/current")).unwrap();
    let tool = std::fs::metadata(release.join("out/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755, "setuid and setgid dropped");
    assert_eq!(
        tool.uid(),
        65534,
        "the release belongs to the build's user, not root"
    );
    let dir = std::fs::metadata(release.join("out/dir")).unwrap();
    assert_eq!(
        dir.mode() & 0o7777,
        0o755,
        "sticky, setgid and other-write dropped"
    );
    // The working tree and the releases were made for the build's user.
    assert_eq!(std::fs::metadata(sup.path("src")).unwrap().uid(), 65534);
    assert_eq!(
        std::fs::metadata(sup.path("releases")).unwrap().uid(),
        65534
    );
}

#[test]
fn root_a_link_in_the_artifact_fails_the_deploy_and_exposes_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root (the build runs as nobody)");
        return;
    }
    // A file only root may read, and a build that links to it.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "root-only").unwrap();
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (sup, (code, out, err)) = build_as(
        "nobody",
        &format!("ln -s {} out/secret\n", secret.path().display()),
    );
    assert_ne!(code, 0, "{out}{err}");
    let log = deploy_log(&sup);
    assert!(
        log.contains("a symbolic link cannot be part of a release"),
        "{log}"
    );
    assert!(!log.contains("root-only"));
    assert!(
        !sup.path("releases/current").exists(),
        "nothing was switched"
    );
    let left: Vec<_> = std::fs::read_dir(sup.path("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "no partial release left: {left:?}");
}

#[test]
fn root_a_fifo_in_the_artifact_does_not_hang_the_supervisor() {
    if !is_root() {
        eprintln!("skipped: needs root (the build runs as nobody)");
        return;
    }
    let started = Instant::now();
    let (sup, (code, out, err)) = build_as("nobody", "mkfifo out/pipe\n");
    assert_ne!(code, 0, "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(deploy_log(&sup).contains("a FIFO cannot be part of a release"));
    // The supervisor still answers (the app, with no release, cannot start: BACKOFF, then
    // FATAL; supervisorctl's status exits 0 for the one and 3 for the other).
    let (code, out, _) = ctl(&sup, &["status", "app"]);
    assert!(
        matches!(code, 0 | 3) && out.split_whitespace().next() == Some("app"),
        "{code} {out}"
    );
    assert!(!out.contains("RUNNING"), "{out}");
}

/// While the release step copies a large artifact, the supervisor still answers at once: the
/// copy is a child process, not work on the actor's thread.
#[test]
fn the_supervisor_answers_while_a_large_release_is_copied() {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::set_permissions(big.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    {
        // Real data (not sparse), so that the copy takes a while.
        use std::io::Write as _;
        let chunk = vec![7u8; 1 << 20];
        let mut f = big.as_file();
        for _ in 0..300 {
            f.write_all(&chunk).unwrap();
        }
    }
    let sup = stack(&user, &format!("cp {} out/big\n", big.path().display()));
    assert_eq!(ctl(&sup, &["deploy", "app"]).0, 0);
    wait_until("the release step to start", || {
        deploy_log(&sup).contains("release-copy")
    });
    let mut during = Vec::new();
    loop {
        let asked = Instant::now();
        let (code, out, _) = ctl(&sup, &["status", "app"]);
        let took = asked.elapsed();
        assert!(code == 0 || code == 3, "{out}");
        if deploy_log(&sup).contains("release: exit status") {
            break;
        }
        during.push(took);
        assert!(during.len() < 10_000, "the copy never finished");
    }
    assert!(
        !during.is_empty(),
        "no status request landed during the copy"
    );
    let slowest = during.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(500),
        "status took {slowest:?} while the release was copied ({} requests)",
        during.len()
    );
    wait_until("the deploy to finish", || {
        deploy_log(&sup).contains("succeeded: ")
    });
    let copied = sup.path("releases/current/out/big");
    assert_eq!(std::fs::metadata(copied).unwrap().len(), 300 << 20);
}

/// A program running as another user reaches its own notify socket (owned by it, mode 0600)
/// and nothing else in the folder (which it may traverse but not list).
#[test]
fn a_notify_socket_belongs_to_its_programs_user() {
    if !is_root() {
        eprintln!("skipped: needs root (the program runs as nobody)");
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.n]
command = ["/bin/sh", "-c", "ls \"$(dirname \"$NOTIFY_SOCKET\")\" || echo cannot list; systemd-notify --ready --status=as-nobody; exec sleep 60"]
user = "nobody"
ready = "notify"
ready_timeout = "20s"
"#,
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("n", "RUNNING");
    let socket = std::fs::metadata(sup.path("data/notify/n.sock")).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o600);
    assert_eq!(socket.uid(), 65534, "owned by nobody");
    let folder = std::fs::metadata(sup.path("data/notify")).unwrap();
    assert_eq!(folder.mode() & 0o777, 0o711);
    assert!(
        printed(&sup, "n").iter().any(|l| l == "cannot list"),
        "{:?}",
        printed(&sup, "n")
    );
    let (_, out, _) = ctl(&sup, &["status", "n"]);
    assert!(out.contains("; as-nobody"), "{out}");
}

/// The socket's group lets a program connect, where each verb is checked; it must not open the
/// logs and the audit trail on disk around the `tail` and `audit` grants.
#[test]
fn root_the_socket_group_does_not_read_the_files() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[supervisor]
socket_mode = "0660"
socket_group = "daemon"
[control.allow]
status = ["daemon"]
[program.p]
command = ["/bin/sh", "-c", "echo private-output; exec sleep 1000"]
startsecs = 0
"#,
    );
    for d in [dir.path().to_owned(), dir.path().join("data")] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("p", "RUNNING");
    let log = sup.path("data/logs/p.log");
    wait_until("p's output in its log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("private-output"))
    });
    // An audited request, so that the audit trail exists.
    assert_eq!(ctl(&sup, &["restart", "p"]).0, 0);
    let audit = sup.path("data/logs/audit.jsonl");
    wait_until("the audit trail", || audit.exists());
    // As a member of the socket's group: the socket answers what is granted...
    let (code, out, err) = ctl_as(&sup, &["status", "p"], Some(1));
    assert!(code == 0 || code == 3, "{out}{err}");
    assert!(out.starts_with("p "), "{out}{err}");
    // ...and the files stay closed.
    for file in [&log, &audit] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=daemon", "--regid=daemon", "--init-groups", "cat"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{} is readable by the socket's group: {}",
            file.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let logs = std::fs::metadata(sup.path("data/logs")).unwrap();
    assert_eq!(logs.mode() & 0o7777, 0o750);
    assert_eq!(logs.gid(), nix::unistd::getegid().as_raw());
}
