//! Restarts, backoff, FATAL, dependencies and shutdown order, with real child processes.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::time::{Duration, Instant};

use fixture::*;
use nix::sys::signal::Signal;

#[test]
fn startretries_three_is_exactly_four_spawns_then_fatal() {
    let dir = Supervisor::dir_with(
        r#"
[program.quick]
command = ["@DIR@/quick.sh"]
startretries = 3
backoff = { initial = "20ms", max = "100ms" }
"#,
    );
    script(
        dir.path(),
        "quick.sh",
        "echo spawn >> \"$(dirname \"$0\")/spawns\"\nexit 1",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("quick", "FATAL");
    assert_eq!(
        field(&fatal, "reason"),
        "Exited too quickly (process log may have details)"
    );
    // Nothing spawns after FATAL: give a would-be fifth spawn time to happen.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&sup.path("spawns")).len(), 4);
}

#[test]
fn backoff_delays_follow_the_formula() {
    let dir = Supervisor::dir_with(
        r#"
[program.flappy]
command = ["@DIR@/flappy.sh"]
startretries = 4
backoff = { initial = "200ms", max = "1s", multiplier = 2, jitter = 0 }
"#,
    );
    script(
        dir.path(),
        "flappy.sh",
        "date +%s%N >> \"$(dirname \"$0\")/spawns\"\nexit 1",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("flappy", "FATAL");
    let times: Vec<i64> = lines(&sup.path("spawns"))
        .iter()
        .map(|l| l.parse::<i64>().unwrap() / 1_000_000)
        .collect();
    assert_eq!(times.len(), 5, "{times:?}");
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([200, 400, 800, 1000]) {
        assert!(
            (*gap - want).abs() <= 60 + want / 10,
            "gaps {gaps:?}, wanted about [200, 400, 800, 1000]"
        );
    }
}

#[test]
fn fatal_exitcodes_are_fatal_at_once() {
    let dir = Supervisor::dir_with(
        r#"
[program.misconfigured]
command = ["@DIR@/bad.sh"]
fatal_exitcodes = [78]
"#,
    );
    script(
        dir.path(),
        "bad.sh",
        "echo spawn >> \"$(dirname \"$0\")/spawns\"\nexit 78",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("misconfigured", "FATAL");
    assert_eq!(field(&fatal, "reason"), "exited with fatal exit code 78");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&sup.path("spawns")).len(), 1);
}

#[test]
fn a_command_that_cannot_run_is_a_failed_start_not_a_crash() {
    let dir = Supervisor::dir_with(
        r#"
[program.ghost]
command = ["/nonexistent/ghost"]
startretries = 1
backoff = { initial = "10ms" }

[program.alive]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("ghost", "FATAL");
    assert!(
        field(&fatal, "reason").contains("No such file or directory"),
        "{fatal}"
    );
    sup.wait_state("alive", "RUNNING");
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
}

#[test]
fn depends_on_orders_start_and_reverse_stop() {
    let dir = Supervisor::dir_with(
        r#"
[program.db]
command = ["@DIR@/svc.sh", "db"]
startsecs = "200ms"

[program.api]
command = ["@DIR@/svc.sh", "api"]
depends_on = ["db"]
startsecs = "200ms"

[program.web]
command = ["@DIR@/svc.sh", "web"]
depends_on = ["api"]
startsecs = "200ms"
"#,
    );
    script(
        dir.path(),
        "svc.sh",
        r#"log="$(dirname "$0")/order"
echo "start $1" >> "$log"
trap 'echo "stop $1" >> "$log"; exit 0' TERM
while :; do sleep 0.05; done"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("web", "RUNNING");
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    assert_eq!(
        lines(&sup.path("order")),
        [
            "start db",
            "start api",
            "start web",
            "stop web",
            "stop api",
            "stop db"
        ]
    );
}

#[test]
fn a_dependency_that_does_not_autostart_is_not_waited_for() {
    // statusd runs in a container of its own: `autostart = false` here, and the bot, which
    // depends on it, starts anyway; a dependency that does start is still waited for.
    let dir = Supervisor::dir_with(
        r#"
[program.statusd]
command = ["sleep", "60"]
autostart = "${RUN_STATUSD:-false}"

[program.db]
command = ["sleep", "60"]
startsecs = "300ms"

[program.bot]
command = ["sleep", "60"]
depends_on = ["statusd", "db"]
startsecs = 0
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("bot", "RUNNING");
    let (_, out, _) = ctl(&sup, &["status"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("statusd") && l.contains("STOPPED")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("db") && l.contains("RUNNING")),
        "{out}"
    );
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
}

#[test]
fn on_fatal_shutdown_stops_everything_with_a_non_zero_exit() {
    let dir = Supervisor::dir_with(
        r#"
[program.critical]
command = ["/bin/sh", "-c", "exit 3"]
startretries = 0
on_fatal = "shutdown"

[program.other]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    let status = sup.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1));
    sup.wait_state("other", "STOPPED");
}

#[test]
fn a_running_program_that_crashes_is_restarted() {
    let dir = Supervisor::dir_with(
        r#"
[program.worker]
command = ["sleep", "60"]
startsecs = "100ms"
backoff = { initial = "50ms" }
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let running = sup.wait_state("worker", "RUNNING");
    let first = sup.log_events(|e| msg(e) == "spawned")[0]["pid"]
        .as_i64()
        .unwrap();
    let _ = running;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    sup.wait_log("a second spawn", |e| {
        msg(e) == "spawned" && e["spawns"] == 2
    });
    sup.wait_log("RUNNING again", |e| {
        msg(e) == "state changed"
            && field(e, "to") == "RUNNING"
            && field(e, "from") == "STARTING"
            && e["timestamp"] != running["timestamp"]
    });
}

#[test]
fn stop_escalates_to_sigkill_after_stopwaitsecs() {
    let dir = Supervisor::dir_with(
        r#"
[program.stubborn]
command = ["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
startsecs = 0
stopwaitsecs = "500ms"
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the trap to be set", || {
        sup.stdout().contains("stubborn | ready")
    });
    let t0 = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    sup.wait_log("SIGKILL", |e| {
        msg(e) == "signalling process group" && field(e, "signal") == "SIGKILL"
    });
}

#[test]
fn a_grandchild_in_the_group_is_not_left_behind() {
    let dir = Supervisor::dir_with(
        r#"
[program.parent]
command = ["@DIR@/parent.sh"]
startsecs = 0
stopwaitsecs = "500ms"
"#,
    );
    // The grandchild ignores TERM and outlives its parent: only SIGKILL to the group ends it.
    script(
        dir.path(),
        "parent.sh",
        r#"sh -c 'trap "" TERM; while :; do sleep 0.05; done' &
echo $! > "$(dirname "$0")/grandchild"
wait"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    let path = sup.path("grandchild");
    wait_until("the grandchild pid", || !lines(&path).is_empty());
    let grandchild: i32 = lines(&path)[0].parse().unwrap();
    assert!(alive(grandchild));
    let t0 = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
    // The parent died on TERM at once; the supervisor waited for its group, then killed it.
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "took {:?}",
        t0.elapsed()
    );
    sup.wait_log("SIGKILL to the group", |e| {
        msg(e) == "signalling process group" && field(e, "signal") == "SIGKILL"
    });
}

#[test]
fn children_get_a_clean_start() {
    let dir = Supervisor::dir_with(
        r#"
[program.probe]
command = ["sleep", "60"]
directory = "@DIR@/work"
environment = { GREETING = "hello" }
startsecs = 0
"#,
    );
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    let spawned = sup.wait_log("the spawn", |e| msg(e) == "spawned");
    let pid = spawned["pid"].as_i64().unwrap();
    let proc = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
    let status = proc("status");
    let masks: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:"))
        .collect();
    assert_eq!(
        masks,
        ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]
    );
    // Right after exec the dynamic loader briefly opens libraries as fd 3; an inherited
    // descriptor would stay for good.
    let fds = || {
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort();
        fds
    };
    wait_until("only fds 0, 1 and 2", || fds() == [0, 1, 2]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        std::path::Path::new("/dev/null")
    );
    let stat = proc("stat");
    let pgrp: i64 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, pid, "its own process group");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        sup.path("work")
    );
    let environ = proc("environ");
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(vars.contains(&"GREETING=hello"), "{vars:?}");
    assert!(vars.contains(&"SUPERVISOR_PROCESS_NAME=probe"), "{vars:?}");
}

#[test]
fn a_script_without_an_interpreter_line_runs_with_sh() {
    // As execvp does (and std's Command did): ENOEXEC means "a shell script".
    let dir = Supervisor::dir_with(
        r#"
[program.script]
command = ["@DIR@/plain-script", "argument"]
startsecs = 0
autorestart = false
"#,
    );
    let script = dir.path().join("plain-script");
    std::fs::write(
        &script,
        "echo \"ran with $1\" > \"$(dirname \"$0\")/out\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the script's output", || {
        std::fs::read_to_string(sup.path("out")).is_ok_and(|s| s == "ran with argument\n")
    });
}

#[test]
fn a_program_runs_as_its_user() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.unprivileged]
command = ["/bin/sh", "-c", "echo \"uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=${USER:-unset}\""]
user = "nobody"
environment = { HOME = "/nonexistent" }
autorestart = false
startsecs = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the user's output", || sup.stdout().contains("uid="));
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // As in supervisord, USER is not changed by `user`; HOME comes from `environment`.
    let user = std::env::var("USER").unwrap_or_else(|_| "unset".into());
    assert!(
        sup.stdout().contains(&format!(
            "unprivileged | uid={} gid={} groups={} home=/nonexistent user={user}",
            nobody.uid, nobody.gid, nobody.gid
        )),
        "{}",
        sup.stdout()
    );
}
