//! Readiness, liveness and the start budget with real parts: Debian's `systemd-notify`, raw
//! datagrams from inside and outside a program's process group, HTTP and TCP servers on
//! 127.0.0.1 (one answering 500, one that never answers), command probes, crash loops and a
//! restarted supervisor.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use fixture::*;
use serde_json::Value;

/// The program's row of `status --json`.
fn status_of(sup: &Supervisor, name: &str) -> Value {
    // 3 (LSB's "not running") when some program is not RUNNING.
    let (code, out, err) = ctl(sup, &["status", "--json"]);
    assert!(code == 0 || code == 3, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {out}"))
}

fn has_systemd_notify() -> bool {
    std::process::Command::new("systemd-notify")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn systemd_notify_makes_it_running_with_its_status() {
    assert!(
        has_systemd_notify(),
        "scripts/test installs systemd-notify (package systemd)"
    );
    let dir = Supervisor::dir_with(
        r#"
[program.n]
command = ["@DIR@/n.sh"]
ready = "notify"
ready_timeout = "20s"
"#,
    );
    script(
        dir.path(),
        "n.sh",
        "echo \"$NOTIFY_SOCKET\" > \"$(dirname \"$0\")/socket\"\nsleep 0.5\nsystemd-notify --ready --status='connected to 3 guilds'\nexec sleep 60",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("n", "STARTING");
    // Up for longer than startsecs (1 s by default would have made it RUNNING), not ready yet.
    assert_eq!(status_of(&sup, "n")["state"], "STARTING");
    let running = sup.wait_state("n", "RUNNING");
    let _ = running;
    let n = status_of(&sup, "n");
    assert_eq!(n["status_text"], "connected to 3 guilds");
    let (_, table, _) = ctl(&sup, &["status", "n"]);
    assert!(table.contains("; connected to 3 guilds"), "{table}");
    let socket = std::fs::read_to_string(sup.path("socket")).unwrap();
    assert_eq!(
        socket.trim(),
        sup.path("data/notify/n.sock").to_str().unwrap()
    );
}

#[test]
fn not_ready_in_time_is_a_failed_start_then_fatal() {
    let dir = Supervisor::dir_with(
        r#"
[program.mute]
command = ["@DIR@/mute.sh"]
ready = "notify"
ready_timeout = "300ms"
startretries = 1
backoff = { initial = "10ms", max = "10ms" }
stopwaitsecs = 2
"#,
    );
    script(
        dir.path(),
        "mute.sh",
        "echo spawn >> \"$(dirname \"$0\")/spawns\"\nexec sleep 60",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("mute", "FATAL");
    assert_eq!(field(&fatal, "reason"), "not ready after 300ms");
    assert_eq!(lines(&sup.path("spawns")).len(), 2, "one retry");
    let (_, table, _) = ctl(&sup, &["status", "mute"]);
    assert!(table.contains("not ready after 300ms"), "{table}");
}

/// Sends `messages` as separate datagrams to `NOTIFY_SOCKET` from this test binary, run by the
/// supervisor as the program itself (so, inside its process group), then sleeps.
#[test]
#[ignore = "run by raw_datagrams_every_message as a program"]
fn raw_sender() {
    let socket = std::env::var("NOTIFY_SOCKET").unwrap();
    let plan = std::env::var("RAW_PLAN").unwrap();
    let tx = UnixDatagram::unbound().unwrap();
    for step in plan.split('|') {
        if let Some(ms) = step.strip_prefix("sleep ") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        } else if step == "garbage" {
            tx.send_to(&[0xff, 0x00, 0x13, 0x37], &socket).unwrap();
        } else if step == "huge" {
            // Larger than any notification; the send itself may be refused by the kernel.
            let _ = tx.send_to(&vec![b'A'; 64 * 1024], &socket);
        } else {
            tx.send_to(step.replace("\\n", "\n").as_bytes(), &socket)
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(60));
}

fn raw_program(plan: &str, extra: &str) -> tempfile::TempDir {
    let exe = std::env::current_exe().unwrap();
    Supervisor::dir_with(&format!(
        r#"
[program.raw]
command = ["{exe}", "raw_sender", "--exact", "--ignored", "--nocapture", "--test-threads=1"]
ready = "notify"
ready_timeout = "20s"
environment = {{ RAW_PLAN = "{plan}" }}
{extra}
"#,
        exe = exe.display()
    ))
}

#[test]
fn raw_datagrams_every_message() {
    let plan = [
        "garbage",
        "huge",
        "STATUS=warming up",
        "EXTEND_TIMEOUT_USEC=30000000",
        "ERRNO=0",
        "MAINPID=1",
        "RELOADING=1",
        "sleep 300",
        "READY=1\\nSTATUS=serving",
        "WATCHDOG=1",
        "WATCHDOG_USEC=600000",
        "sleep 200",
        "WATCHDOG=1",
        "STOPPING=1",
        "ERRNO=2",
    ]
    .join("|");
    let sup = Supervisor::start(raw_program(&plan, ""), Mode::Plain);
    sup.wait_state("raw", "STARTING");
    sup.wait_log("the garbage and the 64 KiB datagram to be dropped", |e| {
        msg(e) == "notification ignored" && field(e, "program") == "raw"
    });
    sup.wait_state("raw", "RUNNING");
    sup.wait_log("MAINPID=1 (not in the group) refused", |e| {
        msg(e).starts_with("MAINPID outside")
    });
    wait_until("ERRNO=2 and STOPPING=1 to show", || {
        status_of(&sup, "raw")["status_text"]
            .as_str()
            .is_some_and(|s| s == "stopping; errno 2 (No such file or directory)")
    });
    let raw = status_of(&sup, "raw");
    assert!(raw["notify_rejected"].as_u64().unwrap() >= 1, "{raw}");
    // WATCHDOG_USEC=600000 armed a watchdog that nobody pings after the last WATCHDOG=1.
    let unhealthy = sup.wait_log("the watchdog it asked for to expire", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "raw"
    });
    assert_eq!(field(&unhealthy, "reason"), "no WATCHDOG=1 within 600ms");
}

#[test]
fn strangers_garbage_and_floods_change_nothing() {
    // A program that is never ready on its own: everything below comes from outside it.
    let sup = Supervisor::start(raw_program("sleep 1", ""), Mode::Plain);
    sup.wait_state("raw", "STARTING");
    let socket = sup.path("data/notify/raw.sock");
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(b"READY=1", &socket).unwrap();
    tx.send_to(b"WATCHDOG=trigger", &socket).unwrap();
    tx.send_to(&[0u8; 3000], &socket).unwrap();
    let _ = tx.send_to(&vec![b'X'; 64 * 1024], &socket);
    let started = Instant::now();
    let mut sent = 0;
    tx.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..10_000 {
        let m = if i % 2 == 0 {
            "READY=1"
        } else {
            "STATUS=pwned"
        };
        if tx.send_to(m.as_bytes(), &socket).is_ok() {
            sent += 1;
        }
    }
    assert!(sent >= 10_000 - 10, "sent {sent}");
    wait_until("the daemon to count the flood", || {
        status_of(&sup, "raw")["notify_rejected"]
            .as_u64()
            .unwrap_or(0)
            >= 10_000
    });
    let raw = status_of(&sup, "raw");
    assert_eq!(raw["state"], "STARTING", "{raw}");
    assert!(raw.get("status_text").is_none(), "{raw}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The daemon is well and the program still waits for its own READY=1.
    assert_eq!(ctl(&sup, &["pid"]).0, 0);
}

/// A loopback HTTP server: each connection gets `status` after `delay` (None: never answers).
fn http_server(status: u16, delay: Option<Duration>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(200) {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            match delay {
                None => held.push(conn),
                Some(d) => {
                    std::thread::sleep(d);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    (addr, handle)
}

#[test]
fn http_probes_ready_then_unhealthy_on_500_and_on_a_hang() {
    let (ok, _a) = http_server(200, Some(Duration::ZERO));
    let (error, _b) = http_server(500, Some(Duration::ZERO));
    let (hang, _c) = http_server(200, None);
    let dir = Supervisor::dir_with(&format!(
        r#"
[program.ok]
command = ["sleep", "60"]
ready = {{ http = "http://{ok}/ready", interval = "50ms" }}
healthcheck = {{ http = "http://{ok}/ping", interval = "50ms", retries = 2 }}

[program.error]
command = ["sleep", "60"]
healthcheck = {{ http = "http://{error}/ping", interval = "50ms", retries = 2 }}
startsecs = 0
backoff = {{ initial = "10s", max = "10s" }}

[program.hang]
command = ["sleep", "60"]
healthcheck = {{ http = "http://{hang}/ping", interval = "50ms", timeout = "200ms", retries = 2 }}
startsecs = 0
backoff = {{ initial = "10s", max = "10s" }}
"#
    ));
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("ok", "RUNNING");
    let e = sup.wait_log("error to be unhealthy", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "error"
    });
    assert_eq!(
        field(&e, "reason"),
        "GET http://{error}/ping failed 2 times in a row (last: GET /ping answered 500)"
            .replace("{error}", &error)
    );
    let h = sup.wait_log("hang to be unhealthy", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "hang"
    });
    assert!(
        field(&h, "reason").ends_with("(last: GET /ping timed out after 200ms)"),
        "{h}"
    );
    // Restarted through the normal path: STOPPING, then BACKOFF with the reason.
    let b = sup.wait_log("error to back off", |e| {
        msg(e) == "state changed" && field(e, "program") == "error" && field(e, "to") == "BACKOFF"
    });
    assert!(field(&b, "reason").starts_with("unhealthy: GET"), "{b}");
    let ok = status_of(&sup, "ok");
    assert_eq!(ok["healthy"], true, "{ok}");
    assert_eq!(ok["state"], "RUNNING");
}

#[test]
fn tcp_and_command_probes_and_a_log_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = Supervisor::dir_with(&format!(
        r#"
[program.tcp]
command = ["sleep", "60"]
ready = {{ tcp = "127.0.0.1:{port}", interval = "50ms" }}

[program.cmd]
command = ["sleep", "60"]
startsecs = 0
healthcheck = {{ command = ["@DIR@/check.sh"], interval = "50ms", retries = 1 }}
backoff = {{ initial = "10s", max = "10s" }}

[program.logline]
command = ["@DIR@/slow.sh"]
ready = {{ log = "^listening on :[0-9]+$" }}
"#
    ));
    // Passes while the file exists.
    script(
        dir.path(),
        "check.sh",
        "test -e \"$(dirname \"$0\")/alive\"",
    );
    script(
        dir.path(),
        "slow.sh",
        "echo starting\nsleep 0.5\necho 'listening on :8080'\nexec sleep 60",
    );
    std::fs::write(dir.path().join("alive"), "").unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("tcp", "RUNNING");
    let started = sup.wait_state("logline", "STARTING");
    let ready = sup.wait_state("logline", "RUNNING");
    let _ = (started, ready);
    assert!(
        sup.log_events(|e| msg(e) == "ready: its log line appeared")
            .len()
            == 1,
        "one readiness line"
    );
    // The command probe passes, then fails once the file is gone.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_of(&sup, "cmd")["healthy"], true);
    std::fs::remove_file(sup.path("alive")).unwrap();
    let u = sup.wait_log("cmd to be unhealthy", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "cmd"
    });
    assert!(
        field(&u, "reason").contains("failed once (last: exit status 1)"),
        "{u}"
    );
    drop(listener);
}

#[test]
fn the_start_budget_holds_across_a_supervisor_restart() {
    let config = r#"
[program.loop]
command = ["@DIR@/loop.sh"]
startsecs = 0
autorestart = true
backoff = { initial = "10ms", max = "10ms" }
start_limit = { burst = 3, interval = "1h" }
"#;
    let dir = Supervisor::dir_with(config);
    script(
        dir.path(),
        "loop.sh",
        "echo spawn >> \"$(dirname \"$0\")/spawns\"\nexit 1",
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("loop", "FATAL");
    assert_eq!(
        field(&fatal, "reason"),
        "started 3 times in 1h: start_limit reached; `supervisor start` tries again"
    );
    assert_eq!(lines(&sup.path("spawns")).len(), 3);
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    // A new supervisor on the same data: the budget is still spent, nothing spawns.
    let dir = sup.take_dir();
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("loop", "FATAL");
    assert!(field(&fatal, "reason").starts_with("started 3 times in 1h"));
    assert_eq!(
        lines(&sup.path("spawns")).len(),
        3,
        "no spawn after the restart"
    );
    // A start by hand gives the budget back.
    let _ = ctl(&sup, &["start", "loop"]);
    wait_until("three more spawns", || {
        lines(&sup.path("spawns")).len() == 6
    });
    sup.wait_log("FATAL again", |e| {
        msg(e) == "state changed" && field(e, "to") == "FATAL" && {
            lines(&sup.path("spawns")).len() == 6
        }
    });
}

#[test]
fn a_watchdog_that_stops_being_pinged_restarts_the_program() {
    let dir = Supervisor::dir_with(
        r#"
[program.dog]
command = ["sh", "@DIR@/dog.sh"]
ready = "notify"
watchdog = "400ms"
backoff = { initial = "10s", max = "10s" }
"#,
    );
    // Ready, pings a few times, then hangs without pinging: what a stalled gateway looks like.
    std::fs::write(
        dir.path().join("dog.sh"),
        "echo \"$$ $WATCHDOG_PID $WATCHDOG_USEC\" > \"$(dirname \"$0\")/env\"\nsystemd-notify --ready\nfor i in 1 2 3 4 5 6; do systemd-notify WATCHDOG=1; sleep 0.1; done\nexec sleep 60\n",
    )
    .unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    let running = sup.wait_state("dog", "RUNNING");
    let t = Instant::now();
    let _ = running;
    let u = sup.wait_log("the watchdog to expire", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "dog"
    });
    assert_eq!(field(&u, "reason"), "no WATCHDOG=1 within 400ms");
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "the pings kept it alive first"
    );
    let env = std::fs::read_to_string(sup.path("env")).unwrap();
    let words: Vec<&str> = env.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{env}");
    assert_eq!(
        words[0], words[1],
        "WATCHDOG_PID is the program's own pid: {env}"
    );
    assert_eq!(words[2], "400000");
    let b = sup.wait_log("BACKOFF with the reason", |e| {
        msg(e) == "state changed" && field(e, "program") == "dog" && field(e, "to") == "BACKOFF"
    });
    assert_eq!(field(&b, "reason"), "unhealthy: no WATCHDOG=1 within 400ms");
}

#[test]
fn depends_on_waits_until_the_dependency_is_ready() {
    let dir = Supervisor::dir_with(
        r#"
[program.db]
command = ["sh", "@DIR@/db.sh"]
ready = { log = "accepting connections" }

[program.app]
command = ["sleep", "60"]
depends_on = ["db"]
startsecs = 0
"#,
    );
    // Up at once, ready only after a while: what a database does.
    std::fs::write(
        dir.path().join("db.sh"),
        "sleep 1.5\necho 'ready: accepting connections'\nexec sleep 60\n",
    )
    .unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    let db_running = sup.wait_state("db", "RUNNING");
    let app_starting = sup.wait_log("app to start", |e| {
        msg(e) == "state changed" && field(e, "program") == "app" && field(e, "from") == "STOPPED"
    });
    // The app's start comes after the database became ready, not after it was spawned.
    let at = |e: &Value| e["timestamp"].as_str().unwrap().to_owned();
    assert!(
        at(&app_starting) >= at(&db_running),
        "{app_starting} before {db_running}"
    );
    let spawned = sup.log_events(|e| msg(e) == "spawned" && field(e, "program") == "db");
    assert!(at(&spawned[0]) < at(&db_running));
}

/// `update` replaces a changed notify program's socket at the same path: the old socket's
/// cleanup must not remove the new one's file, or the program can never report ready again.
#[test]
fn a_notify_program_updated_ten_times_is_ready_every_time() {
    assert!(
        has_systemd_notify(),
        "scripts/test installs systemd-notify (package systemd)"
    );
    let config = |round: u32| {
        format!(
            r#"
[program.n]
command = ["@DIR@/n.sh"]
ready = "notify"
ready_timeout = "10s"
environment = {{ ROUND = "{round}" }}
"#
        )
    };
    let dir = Supervisor::dir_with(&config(0));
    script(
        dir.path(),
        "n.sh",
        "systemd-notify --ready --status=\"round $ROUND\"\nexec sleep 60",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("n", "RUNNING");
    for round in 1..=10 {
        let text = config(round).replace(
            "@DIR@",
            sup.path("").to_str().unwrap().trim_end_matches('/'),
        );
        std::fs::write(sup.path("supervisor.toml"), text).unwrap();
        let (code, out, err) = ctl(&sup, &["update"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "n: stopped\nn: updated process group\n"),
            "{err}"
        );
        let want = format!("round {round}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = status_of(&sup, "n");
            if n["state"] == "RUNNING" && n["status_text"] == want.as_str() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "update {round}: not RUNNING with {want:?}; last seen {n}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            sup.path("data/notify/n.sock").exists(),
            "update {round}: the notify socket file is gone"
        );
    }
}

/// A program waited on for a log line that writes nothing at all (Python's block-buffered
/// `print()` to a pipe): its reason says the output may be buffered. One that writes something
/// else gets the plain reason.
#[test]
fn a_silent_program_waited_on_for_a_line_is_told_its_output_may_be_buffered() {
    let dir = Supervisor::dir_with(
        r#"
[program.silent]
command = ["sleep", "60"]
ready = { log = "Logged in as" }
ready_timeout = "300ms"
startretries = 0

[program.chatty]
command = ["/bin/sh", "-c", "echo connecting; exec sleep 60"]
ready = { log = "Logged in as" }
ready_timeout = "300ms"
startretries = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("silent", "FATAL");
    assert_eq!(
        field(&fatal, "reason"),
        "not ready after 300ms, and it wrote nothing: its output may be buffered (Python: PYTHONUNBUFFERED=1)"
    );
    let fatal = sup.wait_state("chatty", "FATAL");
    assert_eq!(field(&fatal, "reason"), "not ready after 300ms");
}

/// A program that gives up says why: FATAL's reason (in `status`, the alert, statusd's
/// `/health`) carries the newer of its last stderr line and what it last sent as `STATUS=`.
#[test]
fn fatal_carries_the_programs_last_words() {
    let dir = Supervisor::dir_with(
        r#"
[program.bot]
command = ["/bin/sh", "-c", "echo 'connecting' >&2; sleep 0.3; echo 'Discord refused the token (close code 4004)' >&2; exit 78"]
fatal_exitcodes = [78]
startsecs = 0

[program.said]
command = ["@DIR@/said.sh"]
ready = "notify"
ready_timeout = "10s"
fatal_exitcodes = [78]
"#,
    );
    script(
        dir.path(),
        "said.sh",
        "echo 'an older line' >&2\nsleep 0.2\nsystemd-notify --ready --status='Discord logins: 3 left, resets in 5 h'\nsleep 0.5\nexit 78",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let alert = sup.wait_log("the bot's FATAL alert", |e| {
        field(e, "program") == "bot" && msg(e).starts_with("bot is FATAL")
    });
    assert_eq!(
        msg(&alert),
        "bot is FATAL: exited with fatal exit code 78: Discord refused the token (close code 4004)"
    );
    let bot = status_of(&sup, "bot");
    assert_eq!(
        bot["description"],
        "exited with fatal exit code 78: Discord refused the token (close code 4004)"
    );
    let alert = sup.wait_log("the FATAL alert of the one that said STATUS=", |e| {
        field(e, "program") == "said" && msg(e).starts_with("said is FATAL")
    });
    assert_eq!(
        msg(&alert),
        "said is FATAL: exited with fatal exit code 78: Discord logins: 3 left, resets in 5 h"
    );
}
