//! The supervisor as PID 1 of a real PID namespace (`unshare --pid --fork --mount-proc`; root).
//! Where the kernel would clean up after PID 1 anyway, the same behaviour is also checked as a
//! child subreaper in `lifecycle.rs`.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::time::{Duration, Instant};

use fixture::*;
use nix::sys::signal::Signal;

/// Skips (with a note) where namespaces cannot be made; CI runs as root, where they can.
fn namespaces_available() -> bool {
    if !is_root() {
        eprintln!("skipped: PID namespaces need root");
        return false;
    }
    true
}

#[test]
fn root_pid1_reaps_a_thousand_orphans() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.orphanage]
command = ["@DIR@/orphans.sh"]
startsecs = 0
autorestart = false
"#,
    );
    // Each subshell starts `true` in the background and exits at once: `true` is orphaned and
    // handed to PID 1 (or was already a zombie that PID 1 inherits).
    script(
        dir.path(),
        "orphans.sh",
        "i=0\nwhile [ $i -lt 1000 ]; do ( /bin/true & ); i=$((i+1)); done\necho done\nexec sleep 60",
    );
    let sup = Supervisor::start(dir, Mode::Pid1);
    sup.wait_log("1000 orphans reaped", |e| {
        msg(e) == "reaped an orphan" && e["total"] == 1000
    });
    wait_until("no zombie left under PID 1", || {
        zombies_of(sup.pid).is_empty()
    });
    wait_until("the program's last words", || {
        sup.stdout().contains("orphanage | done")
    });
}

/// TERM, INT and QUIT each stop the programs gracefully and exit 0.
#[test]
fn root_pid1_shuts_down_gracefully_on_term_int_and_quit() {
    if !namespaces_available() {
        return;
    }
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let dir = Supervisor::dir_with(
            r#"
[program.app]
command = ["@DIR@/app.sh"]
startsecs = 0
"#,
        );
        script(
            dir.path(),
            "app.sh",
            "trap 'echo got-term > \"$(dirname \"$0\")/app.out\"; exit 0' TERM\necho ready\nwhile :; do sleep 0.05; done",
        );
        let mut sup = Supervisor::start(dir, Mode::Pid1);
        wait_until("app ready", || sup.stdout().contains("app | ready"));
        let t0 = Instant::now();
        sup.signal(sig);
        let status = sup.wait_exit(PATIENCE);
        assert!(status.success(), "{sig}: {status:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{sig}: took {:?}",
            t0.elapsed()
        );
        assert_eq!(lines(&sup.path("app.out")), ["got-term"], "{sig}");
        sup.wait_log("shutdown reason", |e| {
            msg(e) == "shutting down" && field(e, "reason") == format!("received {sig}")
        });
    }
}

#[test]
fn root_pid1_second_signal_kills_at_once() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.slow]
command = ["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
startsecs = 0
stopwaitsecs = 60
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Pid1);
    wait_until("ready", || sup.stdout().contains("slow | ready"));
    let t0 = Instant::now();
    sup.signal(Signal::SIGTERM);
    sup.wait_state("slow", "STOPPING");
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn root_pid1_sigkill_after_stopwaitsecs_for_a_program_ignoring_term() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.deaf]
command = ["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
startsecs = 0
stopwaitsecs = 1
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Pid1);
    wait_until("ready", || sup.stdout().contains("deaf | ready"));
    let t0 = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    sup.wait_log("the SIGKILL", |e| {
        msg(e) == "state changed"
            && field(e, "to") == "STOPPED"
            && field(e, "reason") == "terminated by SIGKILL"
    });
}

#[test]
fn root_pid1_hup_applies_a_valid_config_and_refuses_a_bad_one() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.keep]
command = ["sleep", "60"]
startsecs = 0
[program.app]
command = ["sleep", "60"]
startsecs = 0
[program.gone]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Pid1);
    for name in ["keep", "app", "gone"] {
        sup.wait_state(name, "RUNNING");
    }
    let config = sup.path("supervisor.toml");
    std::fs::write(
        &config,
        "[program.keep]\ncommand = [\"sleep\", \"60\"]\nstartsecs = -5\n",
    )
    .unwrap();
    sup.signal(Signal::SIGHUP);
    let bad = sup.wait_log("an invalid-config report", |e| {
        msg(e) == "SIGHUP: configuration not applied"
    });
    assert!(
        field(&bad, "errors").ends_with(
            "supervisor.toml:3: program.keep.startsecs: -5 is negative; durations cannot be"
        ),
        "{bad}"
    );
    std::fs::write(
        &config,
        "[program.keep]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n\
         [program.app]\ncommand = [\"sleep\", \"61\"]\nstartsecs = 0\n\
         [program.new]\ncommand = [\"sleep\", \"62\"]\nstartsecs = 0\n",
    )
    .unwrap();
    sup.signal(Signal::SIGHUP);
    let good = sup.wait_log("the update", |e| msg(e) == "configuration updated");
    assert_eq!(field(&good, "added"), "[\"new\"]");
    assert_eq!(field(&good, "changed"), "[\"app\"]");
    assert_eq!(field(&good, "removed"), "[\"gone\"]");
    wait_until("app restarted with its new command", || {
        sup_spawns(&sup, "app") == 2
    });
    sup.wait_state("new", "RUNNING");
    sup.wait_state("gone", "STOPPED");
    // The unchanged program was not touched.
    assert_eq!(sup_spawns(&sup, "keep"), 1);
}

fn sup_spawns(sup: &Supervisor, program: &str) -> usize {
    sup.log_events(|e| msg(e) == "spawned" && field(e, "program") == program)
        .len()
}

#[test]
fn root_pid1_usr2_reopens_log_files() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.ticker]
command = ["@DIR@/ticker.sh"]
startsecs = 0
echo_output = false
"#,
    );
    // Writes one line each time it finds a request file, so the test controls the timing.
    script(
        dir.path(),
        "ticker.sh",
        r#"d="$(dirname "$0")"
n=0
while :; do
  if [ -e "$d/go" ]; then n=$((n+1)); echo "line $n"; rm "$d/go"; fi
  sleep 0.02
done"#,
    );
    let sup = Supervisor::start(dir, Mode::Pid1);
    let log = sup.path("data/logs/ticker.log");
    let go = sup.path("go");
    let say = |n: usize| {
        std::fs::write(&go, "").unwrap();
        wait_until("the line to be consumed", || !go.exists());
        let _ = n;
    };
    say(1);
    wait_until("line 1 in the log", || lines(&log) == ["line 1"]);
    // An external rotation moves the file away; until USR2 the old file keeps growing.
    let moved = sup.path("data/logs/ticker.log.old");
    std::fs::rename(&log, &moved).unwrap();
    say(2);
    wait_until("line 2 in the moved file", || lines(&moved).len() == 2);
    sup.signal(Signal::SIGUSR2);
    sup.wait_log("the reopen", |e| msg(e) == "SIGUSR2: reopening log files");
    say(3);
    wait_until("line 3 in a new file", || lines(&log) == ["line 3"]);
    assert_eq!(lines(&moved), ["line 1", "line 2"]);
}

#[test]
fn root_pid1_on_fatal_shutdown_exits_non_zero() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.critical]
command = ["/bin/sh", "-c", "exit 78"]
fatal_exitcodes = [78]
on_fatal = "shutdown"
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Pid1);
    assert_eq!(sup.wait_exit(PATIENCE).code(), Some(1));
}

#[test]
fn root_pid1_a_grandchild_in_the_group_is_killed_before_exit() {
    if !namespaces_available() {
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.parent]
command = ["@DIR@/parent.sh"]
startsecs = 0
stopwaitsecs = "500ms"
"#,
    );
    script(
        dir.path(),
        "parent.sh",
        r#"sh -c 'trap "" TERM; echo ready; while :; do sleep 0.05; done' &
wait"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Pid1);
    wait_until("the grandchild", || sup.stdout().contains("parent | ready"));
    let t0 = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    // The parent exits on TERM at once; PID 1 still waits for the group and kills it, rather
    // than leaving the kernel to do it when PID 1 exits.
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "took {:?}",
        t0.elapsed()
    );
    let stopped = sup.wait_state("parent", "STOPPED");
    let kill = sup.wait_log("SIGKILL to the group", |e| {
        msg(e) == "signalling process group" && field(e, "signal") == "SIGKILL"
    });
    assert!(field(&kill, "timestamp") <= field(&stopped, "timestamp"));
}
