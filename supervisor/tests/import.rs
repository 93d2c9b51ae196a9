//! `supervisor import` on supervisord configurations like those of public Docker images: the
//! result passes `supervisor check`, and our supervisor starts the same processes, with the same
//! argv, environment, user and working directory, as supervisord 4.2.5 starts from the
//! original, compared from /proc.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::*;
use nix::sys::signal::Signal;

/// What a started process looks like from outside.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    argv: Vec<String>,
    uid: u32,
    cwd: String,
    env: BTreeMap<String, String>,
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn seen(pid: i32) -> Option<Seen> {
    let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).ok();
    let split = |b: Vec<u8>| -> Vec<String> {
        b.split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let argv = split(read("cmdline")?);
    let env = split(read("environ")?)
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        // Each supervisor names itself to its children, and the test sets its own log level.
        .filter(|(k, _)| !k.starts_with("SUPERVISOR_") && k != "RUST_LOG")
        .collect();
    let status = String::from_utf8(read("status")?).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()?
        .display()
        .to_string();
    Some(Seen {
        argv,
        uid,
        cwd,
        env,
    })
}

/// Waits until `pid` has `n` children that run our stand-in programs (shell scripts), and
/// describes them. A child caught between fork and exec still shows its parent's argv.
fn processes(pid: i32, n: usize) -> Vec<Seen> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut all: Vec<Seen> = children(pid)
            .into_iter()
            .filter_map(seen)
            .filter(|s| s.argv.first().is_some_and(|a| a == "/bin/sh"))
            .collect();
        if all.len() == n && all.iter().all(|s| s.argv.len() > 1) {
            all.sort();
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} programs under {pid}, saw {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stand_ins(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for name in names {
        // Loops without exec, so that /proc shows the argv the supervisor gave.
        script(&dir.join("bin"), name, "while :; do sleep 1; done");
    }
    // Other users must reach the scripts.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs supervisord on `conf`, then our supervisor on its import, and compares what started.
fn same_processes(dir: tempfile::TempDir, n: usize) {
    let conf = dir.path().join("supervisord.conf");
    assert!(
        Command::new("supervisord")
            .arg("--version")
            .output()
            .is_ok(),
        "these tests compare with supervisord: install Debian's `supervisor` package (scripts/test does, as root)"
    );
    let mut theirs = Command::new("supervisord")
        .args(["-n", "-c"])
        .arg(&conf)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let expected = processes(theirs.id() as i32, n);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(theirs.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    theirs.wait().unwrap();

    let out = Command::new(BIN)
        .args(["import"])
        .arg(&conf)
        .arg("-o")
        .arg(dir.path().join("supervisor.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new(BIN)
        .args(["check", "-c"])
        .arg(dir.path().join("supervisor.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut sup = Supervisor::start(dir, Mode::Plain);
    let ours = processes(sup.pid, n);
    assert_eq!(ours, expected, "imported");
    // The same supervisord.conf run as it is, without the import step: the same processes.
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    let dir = sup.take_dir();
    std::fs::remove_file(dir.path().join("supervisor.toml")).unwrap();
    let sup = Supervisor::start_with(dir, Mode::Plain, "supervisord.conf");
    let direct = processes(sup.pid, n);
    assert_eq!(direct, expected, "run directly");
}

#[test]
fn nginx_php_fpm_and_cron() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path(), &["nginx", "php-fpm", "cron"]);
    std::fs::write(
        dir.path().join("supervisord.conf"),
        r#"[supervisord]
nodaemon=true
logfile=/dev/null
logfile_maxbytes=0
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s/logs

[program:nginx]
command=%(here)s/bin/nginx -g "daemon off;"
autorestart=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true

[program:php-fpm]
command=%(here)s/bin/php-fpm -F --fpm-config %(here)s/php-fpm.conf   ; foreground
autorestart=true
priority=5

[program:cron]
command = %(here)s/bin/cron -f -L 15
autorestart = true
"#,
    )
    .unwrap();
    same_processes(dir, 3);
}

#[test]
fn celery_workers_with_numprocs() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path(), &["celery", "beat"]);
    std::fs::write(
        dir.path().join("supervisord.conf"),
        r#"[supervisord]
nodaemon=true
childlogdir=%(here)s/logs
environment=CELERY_BROKER_URL="redis://redis:6379/0",TZ=UTC

[program:celery]
command=%(here)s/bin/celery -A proj worker --loglevel=INFO --concurrency=2 -n worker%(process_num)d@%%h
process_name=%(program_name)s_%(process_num)02d
numprocs=3
numprocs_start=1
directory=%(here)s
environment=C_FORCE_ROOT="true",
    QUEUE="default,priority"
stopwaitsecs=600
stopasgroup=true
killasgroup=true

[program:celerybeat]
command=%(here)s/bin/beat -A proj beat --schedule=%(here)s/celerybeat-schedule
directory=%(here)s
"#,
    )
    .unwrap();
    same_processes(dir, 4);
}

#[test]
fn root_django_with_environment_and_user() {
    if !is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path(), &["gunicorn", "worker"]);
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(
        dir.path().join("supervisord.conf"),
        r#"[supervisord]
nodaemon=true
user=root
childlogdir=%(here)s/logs

[program:django]
command=%(here)s/bin/gunicorn mysite.wsgi:application --bind 0.0.0.0:8000 --workers 3 --access-logfile -
directory=%(here)s/app
user=nobody
environment=DJANGO_SETTINGS_MODULE="mysite.settings.production",SECRET_KEY='a,b=c d',HOME="/nonexistent",PATH_PREFIX="%(here)s"
autostart=true
autorestart=true
stopsignal=QUIT

[program:rq]
command=%(here)s/bin/worker --url redis://localhost:6379 high default low
directory=%(here)s/app
user=nobody
environment=HOME="/nonexistent"
"#,
    )
    .unwrap();
    same_processes(dir, 2);
}

#[test]
fn includes_from_a_conf_d_folder() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path(), &["api", "sidekiq"]);
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("supervisord.conf"),
        "[supervisord]\nnodaemon=true\nchildlogdir=%(here)s/logs\n\n[include]\nfiles = conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/api.conf"),
        "[program:api]\ncommand=%(here)s/../bin/api --port 3000\nenvironment=RAILS_ENV=production\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/sidekiq.conf"),
        "[program:sidekiq]\ncommand=%(here)s/../bin/sidekiq -C %(here)s/sidekiq.yml -e production\n",
    )
    .unwrap();
    same_processes(dir, 2);
}

#[test]
fn groups_environment_references_and_continued_commands() {
    let dir = tempfile::tempdir().unwrap();
    stand_ins(dir.path(), &["web", "api", "mailer"]);
    std::fs::write(
        dir.path().join("supervisord.conf"),
        r#"[supervisord]
nodaemon=true
childlogdir=%(here)s/logs

[group:front]
programs=web,api

[program:web]
command=%(here)s/bin/web
    --home %(ENV_HOME)s
    --name %(program_name)s
    --group %(group_name)s
environment=WEB_HOME="%(ENV_HOME)s/web"

[program:api]
command=%(here)s/bin/api --listen 127.0.0.1:8080
  --workers 2

[program:mailer]
command=%(here)s/bin/mailer --queue %(program_name)s_%(process_num)02d
process_name=%(program_name)s_%(process_num)02d
numprocs=2
"#,
    )
    .unwrap();
    same_processes(dir, 4);
}
