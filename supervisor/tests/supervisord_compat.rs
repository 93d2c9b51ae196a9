//! A drop-in for supervisord: the binary called as `supervisord` and `supervisorctl` (symlinks,
//! as in an image), a supervisord.conf run as it is, `--strict`, and bad INI input.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fixture::*;

/// Two `sleep` workers (`numprocs`), in group `worker`.
fn conf() -> String {
    supervisord_conf(
        "\n[program:worker]\ncommand=/bin/sleep 1000\nprocess_name=%(program_name)s_%(process_num)d\nnumprocs=2\n",
    )
}

/// A folder with `supervisord.conf` = `conf` and `bin/supervisord`, `bin/supervisorctl`
/// linked to the supervisor binary.
fn folder(conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    for name in ["supervisord", "supervisorctl"] {
        std::os::unix::fs::symlink(BIN, dir.path().join("bin").join(name)).unwrap();
    }
    std::fs::write(dir.path().join("supervisord.conf"), conf).unwrap();
    dir
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(dir.join("bin").join(program))
        .args(args)
        .current_dir(dir)
        .env_remove("SUPERVISOR_CONFIG")
        .env_remove("SUPERVISOR_SOCKET")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The image's CMD, unchanged: `supervisord -n -c supervisord.conf` in `root`.
fn supervisord(root: &Path) -> std::process::Child {
    Command::new(root.join("bin/supervisord"))
        .args(["-n", "-c"])
        .arg(root.join("supervisord.conf"))
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGTERM, as `docker stop` sends it, and how it ended.
fn stopped(daemon: &mut std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap()
}

#[test]
fn supervisord_and_supervisorctl_by_their_names() {
    let dir = folder(&conf());
    let root = dir.path();
    // The image's CMD, unchanged.
    let mut daemon = supervisord(root);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let o = run(root, "supervisorctl", &["-c", "supervisord.conf", "status"]);
        // Exit 0 from STARTING on, as supervisorctl's; wait for both to be RUNNING.
        if o.status.code() == Some(0) && text(&o).matches("RUNNING").count() == 2 {
            break o;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = text(&status);
    assert!(
        out.contains("worker:worker_0")
            && out.contains("worker:worker_1")
            && out.contains("RUNNING"),
        "{out}"
    );
    // The socket from [unix_http_server], also as supervisorctl's -s URL.
    let sock = format!("unix://{}", root.join("run/supervisor.sock").display());
    let o = run(
        root,
        "supervisorctl",
        &["-s", &sock, "status", "worker:worker_1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(
        root,
        "supervisorctl",
        &["-c", "supervisord.conf", "restart", "worker:*"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("worker:worker_0: stopped") || text(&o).contains("started"),
        "{}",
        text(&o)
    );
    // [supervisord] pidfile: written while it runs (what kills supervisord by it finds us),
    // gone after.
    let pidfile = root.join("run/supervisord.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", daemon.id())
    );
    assert!(stopped(&mut daemon).success());
    assert!(!pidfile.exists(), "the pid file is removed at exit");
}

#[test]
fn supervisorctl_without_c_finds_the_daemon_as_supervisorctl_does() {
    let dir = folder(&conf());
    let root = dir.path();
    let mut daemon = supervisord(root);
    // Its search finds ./supervisord.conf, whose [supervisorctl] serverurl names the socket.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let o = run(root, "supervisorctl", &["status"]);
        if o.status.code() == Some(0) {
            assert!(text(&o).contains("worker:worker_1"), "{}", text(&o));
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
    // serverurl before [unix_http_server] file, as supervisorctl reads them: from a folder
    // whose supervisord.conf names the socket only in its serverurl.
    let other = root.join("etc");
    std::fs::create_dir_all(&other).unwrap();
    let socket = root.join("run/supervisor.sock");
    std::fs::write(
        other.join("supervisord.conf"),
        format!(
            "[unix_http_server]\nfile=/nonexistent/supervisor.sock\n\n[supervisorctl]\nserverurl=unix://{}\n",
            socket.display()
        ),
    )
    .unwrap();
    let o = Command::new(root.join("bin/supervisorctl"))
        .arg("pid")
        .current_dir(&other)
        .env_remove("SUPERVISOR_CONFIG")
        .env_remove("SUPERVISOR_SOCKET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        daemon.id().to_string()
    );
    assert!(stopped(&mut daemon).success());
}

#[test]
fn supervisord_options_that_do_not_apply_are_refused_by_name() {
    let dir = folder(&conf());
    let o = run(
        dir.path(),
        "supervisord",
        &["-c", "supervisord.conf", "-l", "/var/log/x.log"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("supervisord: -l: not supported here: the supervisor logs to stderr"),
        "{}",
        text(&o)
    );
    let o = run(
        dir.path(),
        "supervisorctl",
        &["-s", "http://127.0.0.1:9001", "status"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("only unix:///path"), "{}", text(&o));
}

#[test]
fn what_is_not_carried_over_is_said_at_start_and_strict_refuses_it() {
    let conf = conf().replace(
        "numprocs=2\n",
        "numprocs=2\numask=002\nstdout_syslog=true\n",
    );
    let dir = folder(&conf);
    let root = dir.path();
    // `timeout`: a supervisor that started anyway would run for ever.
    let o = Command::new("timeout")
        .args(["20", BIN, "run", "--strict", "-c", "supervisord.conf"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--strict: 2 supervisord option(s) would lose behaviour"),
        "{}",
        text(&o)
    );
    assert!(
        !root.join("run/supervisor.sock").exists(),
        "nothing started"
    );
    // Without --strict: said once, with file and line, and it runs.
    let o = Command::new(BIN)
        .args(["check", "-c", "supervisord.conf"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let conf_path = root.join("supervisord.conf");
    assert!(
        text(&o).contains(&format!(
            "{}:21: [program:worker] umask: not supported",
            conf_path.display()
        )),
        "{}",
        text(&o)
    );
    let sup = Supervisor::start_with(dir, Mode::Plain, "supervisord.conf");
    let lost = sup.log_events(|e| {
        msg(e) == "supervisord option not carried over" && field(e, "severity") == "Unsupported"
    });
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!(lost[0]["line"], 21);
    sup.wait_state("worker_0", "RUNNING");
}

#[test]
fn bad_ini_input_is_reported_with_file_and_line_and_nothing_starts() {
    for (conf, expected) in [
        (
            "[supervisord]\nnodaemon=true\n[program:x\ncommand=/bin/true\n",
            "supervisord.conf:3:",
        ),
        (
            "[supervisord]\n[include]\nfiles=/nonexistent/dir/*.conf /nonexistent/one.conf\n[program:x]\ncommand=/bin/true\n",
            "supervisord.conf:",
        ),
        (
            "[supervisord]\n[program:x]\nautorestart=sometimes\ncommand=/bin/true\n",
            "supervisord.conf:3:",
        ),
        (
            "[supervisord]\n[program:x]\ncommand=/bin/true\n[programs:y]\ncommand=/bin/true\n",
            "supervisord.conf:4: [programs:y]: unknown section",
        ),
    ] {
        let dir = folder(conf);
        let o = Command::new("timeout")
            .args(["20", BIN, "run", "-c", "supervisord.conf"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{conf}: {}", text(&o));
        assert!(text(&o).contains(expected), "{conf}: {}", text(&o));
        assert!(
            !dir.path().join("data").exists() && !dir.path().join("run/supervisor.sock").exists(),
            "nothing started"
        );
    }
}

/// Laravel's documented queue-worker configuration: eight processes, one log file.
#[test]
fn laravel_queue_workers_share_their_log_file() {
    let dir = folder(
        r#"[supervisord]
nodaemon=true

[program:laravel-worker]
process_name=%(program_name)s_%(process_num)02d
command=/bin/sh -c "echo worker %(process_num)02d up; exec sleep 1000"
autostart=true
autorestart=true
stopasgroup=true
killasgroup=true
numprocs=8
redirect_stderr=true
stdout_logfile=%(here)s/worker.log
stopwaitsecs=3600
"#,
    );
    let root = dir.path().to_owned();
    let o = Command::new(BIN)
        .args(["check", "-c", "supervisord.conf"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let sup = Supervisor::start_with(dir, Mode::Plain, "supervisord.conf");
    wait_until("eight workers in one log", || {
        let log = std::fs::read_to_string(root.join("worker.log")).unwrap_or_default();
        (0..8).all(|n| log.lines().any(|l| l == format!("worker {n:02} up")))
    });
    let (_, out, _) = ctl_at(&sup, &root.join("data/supervisor.sock"), &["status"]);
    assert_eq!(
        out.matches("laravel-worker:laravel-worker_0").count(),
        8,
        "{out}"
    );
}

/// `ctl`, with the socket given.
fn ctl_at(_sup: &Supervisor, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("-s")
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn root_supervisord_user_is_applied() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let conf = conf().replace("nodaemon=true\n", "nodaemon=true\nuser=nobody\n");
    let dir = folder(&conf);
    let root = dir.path();
    // What the supervisor writes, nobody must be able to write.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for sub in ["run", "logs"] {
        nix::unistd::chown(&root.join(sub), Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let mut daemon = Command::new(root.join("bin/supervisord"))
        .args(["-n", "-c"])
        .arg(root.join("supervisord.conf"))
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let o = run(root, "supervisorctl", &["-c", "supervisord.conf", "status"]);
        if text(&o).matches("RUNNING").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The supervisor and what it started run as nobody.
    let uid_of = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|u| u.split_whitespace().next().unwrap().to_owned())
            })
            .unwrap()
    };
    assert_eq!(uid_of(daemon.id()), nobody.uid.to_string());
    let o = run(
        root,
        "supervisorctl",
        &["-c", "supervisord.conf", "pid", "worker:worker_0"],
    );
    let worker: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert_eq!(uid_of(worker), nobody.uid.to_string());
    assert!(stopped(&mut daemon).success());
}

#[test]
fn relative_paths_of_a_supervisord_file_are_the_working_directorys() {
    // supervisord resolves them against where it was started, not where its file is.
    let dir = tempfile::tempdir().unwrap();
    let (conf, work) = (dir.path().join("etc"), dir.path().join("work"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        conf.join("supervisord.conf"),
        "[unix_http_server]\nfile=run.sock\n[supervisord]\nchildlogdir=logs\n[program:a]\ncommand=/bin/sh -c 'echo hello; exec sleep 100'\nstdout_logfile=out/a.log\n",
    )
    .unwrap();
    let mut daemon = Command::new(BIN)
        .args(["run", "-c", "../etc/supervisord.conf"])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the log in the working directory", || {
        std::fs::read_to_string(work.join("out/a.log")).is_ok_and(|t| t == "hello\n")
    });
    assert!(work.join("run.sock").exists());
    assert!(!conf.join("out").exists() && !conf.join("run.sock").exists());
    assert!(stopped(&mut daemon).success());
}
