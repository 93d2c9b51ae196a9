//! The control socket and the CLI verbs, end to end against a real daemon.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn status_json(sup: &Supervisor) -> Value {
    let (_, out, _) = ctl(sup, &["status", "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn program<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

fn pid_of(sup: &Supervisor, name: &str) -> u64 {
    program(&status_json(sup), name)["pid"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn status_shows_supervisorctl_columns_and_exit_codes() {
    let dir = Supervisor::dir_with(
        r#"
[program.web]
command = ["sleep", "60"]
startsecs = 0
group = "front"
[program.idle]
command = ["sleep", "60"]
autostart = false
group = "front"
[program.broken]
command = ["/bin/sh", "-c", "exit 1"]
startretries = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("web", "RUNNING");
    sup.wait_state("broken", "FATAL");
    let pid = pid_of(&sup, "web");
    let (code, out, _) = ctl(&sup, &["status"]);
    assert_eq!(code, 3, "some are not running");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "broken                           FATAL     Exited too quickly (process log may have details)"
    );
    // Programs of a group are `group:name`, as supervisorctl shows them.
    assert_eq!(
        lines[1],
        "front:idle                       STOPPED   Not started"
    );
    assert!(
        lines[2].starts_with(&format!(
            "front:web                        RUNNING   pid {pid}, uptime 0:00:0"
        )),
        "{out}"
    );
    assert_eq!(lines.len(), 3);
    assert_eq!(
        ctl(&sup, &["status", "front:web"]).0,
        0,
        "all shown are running"
    );
    // A group's member is `group:name`, as supervisorctl names it; its bare name is unknown.
    let (code, out, _) = ctl(&sup, &["status", "web"]);
    assert_eq!((code, out.as_str()), (4, "web: ERROR (no such process)\n"));
    let (code, out, _) = ctl(&sup, &["status", "front:web", "nope"]);
    assert_eq!(code, 4);
    assert!(out.ends_with("nope: ERROR (no such process)\n"), "{out}");
    let (code, out, _) = ctl(&sup, &["status", "front:*"]);
    assert_eq!(code, 3);
    assert_eq!(
        out.lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["front:idle", "front:web"]
    );
    assert_eq!(ctl(&sup, &["status", "front:web"]).0, 0);
    // A group's members by their namespec; what was already started is not reported.
    assert_eq!(ctl(&sup, &["start", "front:*"]).1, "front:idle: started\n");
    let status = status_json(&sup);
    assert_eq!(program(&status, "broken")["spawns"], 1);
    assert_eq!(program(&status, "broken")["last_exit_code"], 1);
}

#[test]
fn no_daemon_is_exit_4_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["status", "-s"])
        .arg(dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("cannot connect to the supervisor at "),
        "{err}"
    );
    assert!(err.contains("is it running?"), "{err}");
}

#[test]
fn start_stop_restart_signal_and_pid() {
    let dir = Supervisor::dir_with(
        r#"
[program.app]
command = ["@DIR@/app.sh"]
startsecs = "300ms"
autostart = false
[program.failing]
command = ["/bin/sh", "-c", "exit 1"]
autostart = false
startsecs = 1
backoff = { initial = "5s" }
"#,
    );
    script(
        dir.path(),
        "app.sh",
        r#"trap 'echo hup >> "$(dirname "$0")/signals"' HUP
trap 'exit 0' TERM
while :; do sleep 0.05; done"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    // start waits for RUNNING (startsecs)
    let t0 = Instant::now();
    assert_eq!(
        ctl(&sup, &["start", "app"]),
        (0, "app: started\n".into(), String::new())
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        ctl(&sup, &["start", "app"]),
        (0, "app: ERROR (already started)\n".into(), String::new())
    );
    // A program that would not start: supervisorctl's 7 (LSB "not running").
    let (code, out, _) = ctl(&sup, &["start", "failing"]);
    assert_eq!(
        (code, out.as_str()),
        (7, "failing: ERROR (abnormal termination: exit status 1)\n")
    );
    let first = pid_of(&sup, "app");
    assert_eq!(ctl(&sup, &["pid", "app"]).1, format!("{first}\n"));
    assert_eq!(ctl(&sup, &["pid"]).1, format!("{}\n", sup.pid));
    assert_eq!(ctl(&sup, &["signal", "HUP", "app"]).1, "app: signalled\n");
    wait_until("the HUP", || lines(&sup.path("signals")) == ["hup"]);
    assert_eq!(
        ctl(&sup, &["restart", "app"]),
        (0, "app: stopped\napp: started\n".into(), String::new())
    );
    let second = pid_of(&sup, "app");
    assert_ne!(first, second);
    assert_eq!(
        ctl(&sup, &["stop", "app"]),
        (0, "app: stopped\n".into(), String::new())
    );
    assert_eq!(
        ctl(&sup, &["stop", "app"]),
        (0, "app: ERROR (not running)\n".into(), String::new())
    );
    assert_eq!(ctl(&sup, &["pid", "app"]).1, "0\n");
    // supervisorctl's codes and lines: a signal to a program not running is 7, an unknown
    // name or signal 1.
    assert_eq!(ctl(&sup, &["signal", "HUP", "app"]).0, 7);
    let (code, out, _) = ctl(&sup, &["start", "ghost"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "ghost: ERROR (no such process)\n")
    );
    let (code, out, _) = ctl(&sup, &["signal", "NOPE", "app"]);
    assert_eq!((code, out.as_str()), (1, "app: ERROR (bad signal name)\n"));
}

#[test]
fn tail_and_tail_follow_across_rotation() {
    let dir = Supervisor::dir_with(
        r#"
[program.ticker]
command = ["@DIR@/ticker.sh"]
startsecs = 0
echo_output = false
stdout_logfile_maxbytes = 200
stdout_logfile_backups = 50
"#,
    );
    // Writes the lines of each request file it finds, so the test controls the timing.
    script(
        dir.path(),
        "ticker.sh",
        r#"d="$(dirname "$0")"
while :; do
  if [ -e "$d/go" ]; then cat "$d/go"; rm "$d/go"; fi
  sleep 0.02
done"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let go = sup.path("go");
    let say = |from: usize, to: usize| {
        let text: String = (from..to).map(|i| format!("line {i:04}\n")).collect();
        std::fs::write(sup.path("go.tmp"), text).unwrap();
        std::fs::rename(sup.path("go.tmp"), &go).unwrap();
        wait_until("the ticker to take the lines", || !go.exists());
    };
    say(0, 5);
    let log = sup.path("data/logs/ticker.log");
    wait_until("5 lines", || lines(&log).len() == 5);
    assert_eq!(
        ctl(&sup, &["tail", "-n", "2", "ticker"]).1,
        "line 0003\nline 0004\n"
    );

    let mut follower = Command::new(BIN)
        .args(["tail", "-f", "-n", "1", "ticker", "-s"])
        .arg(sup.path("data/supervisor.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "line 0004\n");
    // 10 bytes a line, 200 bytes a file: 100 lines rotate several times.
    say(5, 105);
    let mut seen = Vec::new();
    for _ in 5..105 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        seen.push(line.trim_end().to_owned());
    }
    let want: Vec<String> = (5..105).map(|i| format!("line {i:04}")).collect();
    assert_eq!(seen, want);
    assert!(
        sup.path("data/logs/ticker.log.3").exists(),
        "the log rotated"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[test]
fn reread_and_update_keep_unchanged_programs_running() {
    let dir = Supervisor::dir_with(
        r#"
[program.same]
command = ["sleep", "60"]
startsecs = 0
[program.edit]
command = ["sleep", "60"]
startsecs = 0
[program.drop]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    for name in ["same", "edit", "drop"] {
        sup.wait_state(name, "RUNNING");
    }
    assert_eq!(ctl(&sup, &["reread"]).1, "No config updates to processes\n");
    let (same, edit) = (pid_of(&sup, "same"), pid_of(&sup, "edit"));
    std::fs::write(
        sup.path("supervisor.toml"),
        "[program.same]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n\
         [program.edit]\ncommand = [\"sleep\", \"61\"]\nstartsecs = 0\n\
         [program.add]\ncommand = [\"sleep\", \"62\"]\nstartsecs = 0\n",
    )
    .unwrap();
    assert_eq!(
        ctl(&sup, &["reread"]).1,
        "add: available\ndrop: disappeared\nedit: changed\n"
    );
    assert_eq!(pid_of(&sup, "edit"), edit, "reread changes nothing");
    assert_eq!(
        ctl(&sup, &["update"]).1,
        "drop: stopped\ndrop: removed process group\nedit: stopped\nedit: updated process group\nadd: added process group\n"
    );
    wait_until("edit back with its new command", || {
        let s = status_json(&sup);
        let p = program(&s, "edit");
        p["state"] == "RUNNING" && p["pid"].as_u64() != Some(edit)
    });
    wait_until("add running", || {
        program(&status_json(&sup), "add")["state"] == "RUNNING"
    });
    let status = status_json(&sup);
    assert_eq!(
        program(&status, "same")["pid"].as_u64(),
        Some(same),
        "unchanged keeps its pid"
    );
    let names: Vec<&str> = status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "edit", "same"]);
    // A bad file changes nothing and says why.
    std::fs::write(sup.path("supervisor.toml"), "[program.same]\ncommand = 5\n").unwrap();
    let (code, _, err) = ctl(&sup, &["update"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("supervisor.toml:2: program.same.command: expected an array of strings"),
        "{err}"
    );
    assert_eq!(
        program(&status_json(&sup), "same")["pid"].as_u64(),
        Some(same)
    );
}

#[test]
fn events_stream_state_changes_and_shutdown_ends_everything() {
    let dir = Supervisor::dir_with(
        r#"
[program.app]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let mut events = Command::new(BIN)
        .args(["events", "-s"])
        .arg(sup.path("data/supervisor.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(events.stdout.take().unwrap());
    sup.wait_log("the subscription", |e| msg(e) == "events subscriber added");
    assert_eq!(ctl(&sup, &["stop", "app"]).0, 0);
    let mut got = Vec::new();
    while got.len() < 2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        got.push((v["program"].clone(), v["from"].clone(), v["to"].clone()));
    }
    assert_eq!(
        got,
        [
            (json!("app"), json!("RUNNING"), json!("STOPPING")),
            (json!("app"), json!("STOPPING"), json!("STOPPED"))
        ]
    );
    assert_eq!(
        ctl(&sup, &["version"]).1,
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(ctl(&sup, &["shutdown"]).1, "Shut down\n");
    assert!(sup.wait_exit(PATIENCE).success());
    // The event stream ends with the supervisor.
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"type\":\"shutting_down\""), "{rest}");
    assert!(events.wait().unwrap().success());
    assert!(
        !sup.path("data/supervisor.sock").exists(),
        "the socket is removed"
    );
}

#[test]
fn root_peer_credentials_grant_verbs_per_uid() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another uid");
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[supervisor]
socket_mode = "0666"
[control.allow]
status = ["nobody"]
restart = ["nobody:app"]
[program.app]
command = ["sleep", "60"]
startsecs = 0
[program.other]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    // Let the other uid reach the socket through the temporary folder.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::set_permissions(
        dir.path().join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let (code, out, _) = ctl_as(&sup, &["status", "app"], Some(nobody));
    assert_eq!(code, 0, "status is granted");
    assert!(out.starts_with("app "), "{out}");
    let (code, out, err) = ctl_as(&sup, &["stop", "app"], Some(nobody));
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        format!(
            "uid {nobody} may not use \"stop\" on app (grant it with [control.allow] stop = [...] in supervisor.toml)\n"
        )
    );
    assert_eq!(program(&status_json(&sup), "app")["state"], "RUNNING");
    // A grant narrowed to one program: that one, and no other (nor `all`).
    let pid = pid_of(&sup, "app");
    let (code, out, err) = ctl_as(&sup, &["restart", "app"], Some(nobody));
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(pid_of(&sup, "app"), pid, "app was restarted");
    for target in ["other", "all"] {
        let (code, _, err) = ctl_as(&sup, &["restart", target], Some(nobody));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("may not use \"restart\""), "{err}");
    }
    // The audit trail has each of them, who asked and what came of it; nobody may not read it.
    let (code, out, _) = ctl(&sup, &["audit", "--json", "-n", "10"]);
    assert_eq!(code, 0);
    let records: Vec<Value> = serde_json::from_str(&out).unwrap();
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["uid"], r["process"], r["verb"], r["targets"][0], r["ok"]
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            format!("{nobody} \"supervisor\" \"restart\" \"all\" false"),
            format!("{nobody} \"supervisor\" \"restart\" \"other\" false"),
            format!("{nobody} \"supervisor\" \"restart\" \"app\" true"),
            format!("{nobody} \"supervisor\" \"stop\" \"app\" false"),
        ],
        "{out}"
    );
    let (code, _, err) = ctl_as(&sup, &["audit"], Some(nobody));
    assert_eq!(code, 1, "{err}");
    let mode = std::fs::metadata(sup.path("data/logs/audit.jsonl"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
}

/// A raw protocol connection, for what the client library would never send.
fn raw(sup: &Supervisor) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(sup.path("data/supervisor.sock")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

fn read_frame(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

const HELLO: &str = "{\"hello\":{\"protocol\":1,\"client\":\"test\"}}\n";

#[test]
fn bad_clients_get_errors_and_the_daemon_carries_on() {
    let dir = Supervisor::dir_with(
        r#"
[program.flappy]
command = ["/bin/sh", "-c", "sleep 0.05; exit 1"]
startsecs = 0
autorestart = true
backoff = { initial = "10ms", max = "20ms", reset = "1h" }
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);

    // Garbage instead of a hello.
    let (mut r, mut w) = raw(&sup);
    w.write_all(b"\x00\x01garbage\n").unwrap();
    assert_eq!(read_frame(&mut r)["error"]["kind"], "bad_request");

    // A wrong protocol version.
    let (mut r, mut w) = raw(&sup);
    w.write_all(b"{\"hello\":{\"protocol\":99,\"client\":\"future\"}}\n")
        .unwrap();
    assert_eq!(read_frame(&mut r)["error"]["kind"], "unsupported_version");

    // After a good hello: a bad request is answered, and the connection still works.
    let (mut r, mut w) = raw(&sup);
    w.write_all(HELLO.as_bytes()).unwrap();
    assert_eq!(read_frame(&mut r)["hello"]["protocol"], 1);
    w.write_all(b"{\"id\":7,\"verb\":\"explode\"}\n").unwrap();
    let e = read_frame(&mut r);
    assert_eq!(
        (e["id"].clone(), e["error"]["kind"].clone()),
        (json!(7), json!("bad_request"))
    );
    w.write_all(b"not json at all\n").unwrap();
    assert_eq!(read_frame(&mut r)["error"]["kind"], "bad_request");
    // A program name that is not UTF-8.
    w.write_all(b"{\"id\":9,\"verb\":\"status\",\"names\":[\"fl\xffppy\"]}\n")
        .unwrap();
    assert_eq!(read_frame(&mut r)["error"]["kind"], "bad_request");
    w.write_all(b"{\"id\":8,\"verb\":\"version\"}\n").unwrap();
    assert_eq!(read_frame(&mut r)["ok"]["type"], "version");

    // Oversized: an error, then the connection is closed.
    let (mut r, mut w) = raw(&sup);
    w.write_all(HELLO.as_bytes()).unwrap();
    read_frame(&mut r);
    let big = vec![b'x'; 2 << 20];
    let _ = w.write_all(&big);
    assert_eq!(read_frame(&mut r)["error"]["kind"], "too_large");

    // Truncated: half a frame, then gone.
    let (_, mut w) = raw(&sup);
    w.write_all(b"{\"hello\":{\"proto").unwrap();
    drop(w);

    // Silent: dropped after the handshake timeout, with a word.
    let (mut silent, _keep) = raw(&sup);
    let silent_since = Instant::now();

    // 100 clients at once, 20 requests each, while a program restarts all the time.
    let socket = sup.path("data/supervisor.sock");
    let workers: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&socket).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                w.write_all(HELLO.as_bytes()).unwrap();
                read_frame(&mut r);
                for id in 0..20 {
                    w.write_all(format!("{{\"id\":{id},\"verb\":\"status\"}}\n").as_bytes())
                        .unwrap();
                    let f = read_frame(&mut r);
                    assert_eq!(f["id"], id);
                    assert_eq!(f["ok"]["type"], "status");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let e = read_frame(&mut silent);
    assert_eq!(e["error"]["kind"], "bad_request", "{e}");
    assert_eq!(e["error"]["message"], "no hello within 5 s; closing");
    // Within the documented 5 s (and some slack), not 5 s for each side of the socket.
    assert!(
        silent_since.elapsed() < Duration::from_secs(8),
        "{:?}",
        silent_since.elapsed()
    );
    assert!(
        sup.log_events(|e| msg(e) == "spawned").len() > 5,
        "the program kept restarting"
    );
    // Still alive and answering.
    assert_eq!(ctl(&sup, &["version"]).0, 0);
    sup.signal(Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
}

#[test]
fn one_supervisor_per_socket_and_stale_sockets_are_taken_over() {
    let dir = Supervisor::dir_with("[program.app]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n");
    let config = dir.path().join("supervisor.toml");
    let sup = Supervisor::start(dir, Mode::Plain);
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another supervisor is already running on") && err.contains("Stop it first"),
        "{err}"
    );
    assert_eq!(ctl(&sup, &["status"]).0, 0, "the first one is untouched");
    drop(sup);

    // A socket file left by a crash: nobody listens on it.
    let dir = Supervisor::dir_with("[program.app]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let stale = dir.path().join("data/supervisor.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(Path::new(&stale).exists());
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_log("the takeover", |e| {
        msg(e) == "removing a stale control socket"
    });
    assert_eq!(ctl(&sup, &["status"]).0, 0);
}

#[test]
fn connections_are_capped_per_uid_and_a_client_that_never_reads_is_dropped() {
    let dir = Supervisor::dir_with(
        r#"
[program.flappy]
command = ["/bin/sh", "-c", "sleep 0.002"]
startsecs = 0
autorestart = true
backoff = { initial = "1ms", max = "1ms" }
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    // 128 connections from this uid are served; the 129th is told why it is refused.
    let mut held = Vec::new();
    for _ in 0..128 {
        let (mut r, mut w) = raw(&sup);
        w.write_all(HELLO.as_bytes()).unwrap();
        assert!(read_frame(&mut r).get("hello").is_some());
        held.push((r, w));
    }
    let (mut r, mut w) = raw(&sup);
    let _ = w.write_all(HELLO.as_bytes());
    let refused = read_frame(&mut r);
    assert_eq!(refused["error"]["kind"], "busy", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already has 128 connections open")
    );
    // A place given back is free again.
    held.pop();
    wait_until("a freed place", || {
        let (mut r, mut w) = raw(&sup);
        let _ = w.write_all(HELLO.as_bytes());
        read_frame(&mut r).get("hello").is_some()
    });
    drop(held);

    // An events subscriber that never reads: once its buffer is full, the daemon gives up on
    // it after the write timeout instead of holding it (and its events) forever.
    let (mut r, mut w) = raw(&sup);
    w.write_all(HELLO.as_bytes()).unwrap();
    assert!(read_frame(&mut r).get("hello").is_some());
    w.write_all(b"{\"id\":1,\"verb\":\"events\"}\n").unwrap();
    std::thread::sleep(Duration::from_secs(14));
    r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Read what was buffered; the stream must end (EOF) rather than go on.
    let started = Instant::now();
    let mut total = 0;
    let mut chunk = [0u8; 64 * 1024];
    let ended = loop {
        match r.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(_) => break false,
        }
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    assert!(
        ended,
        "the stream was still open after {:?} ({total} bytes read); {}",
        started.elapsed(),
        ctl(&sup, &["status"]).1
    );
    // Meanwhile everyone else is served.
    assert_eq!(
        ctl(&sup, &["status", "flappy"]).1.split_whitespace().next(),
        Some("flappy")
    );
}

/// Two supervisors started at once on a stale socket: the lock beside the socket lets exactly
/// one take it over; the other says another supervisor runs.
#[test]
fn two_supervisors_racing_for_a_stale_socket_leave_one() {
    for _ in 0..5 {
        let dir =
            Supervisor::dir_with("[program.app]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        drop(
            std::os::unix::net::UnixListener::bind(dir.path().join("data/supervisor.sock"))
                .unwrap(),
        );
        let config = dir.path().join("supervisor.toml");
        let mut children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(BIN)
                    .args(["run", "-c"])
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // One of them fails quickly; the other runs until stopped.
        let deadline = Instant::now() + PATIENCE;
        let failed = loop {
            let exited: Vec<usize> = (0..2)
                .filter(|&i| children[i].try_wait().unwrap().is_some())
                .collect();
            if exited.len() == 1 {
                break exited[0];
            }
            assert!(exited.len() < 2, "both supervisors exited");
            assert!(
                Instant::now() < deadline,
                "neither supervisor refused the other"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        children[failed]
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            err.contains("another supervisor is already running"),
            "{err}"
        );
        let winner = &mut children[1 - failed];
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            winner.try_wait().unwrap().is_none(),
            "the winner keeps running"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(winner.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap();
        winner.wait().unwrap();
    }
}

/// The client verbs read only the socket's path from the configuration: an error elsewhere in
/// the file does not send them to the wrong socket, and a file they cannot read is named.
#[test]
fn the_cli_finds_the_socket_despite_errors_elsewhere() {
    let dir = Supervisor::dir_with(
        "[supervisor]\nsocket = \"${SOCK_DIR:-run}/ctl.sock\"\n[program.app]\ncommand = [\"sleep\", \"60\"]\nstartsecs = 0\n",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    // The same file, with a mistake the daemon would refuse.
    let broken = sup.path("broken.toml");
    let text = std::fs::read_to_string(sup.path("supervisor.toml")).unwrap();
    std::fs::write(&broken, format!("{text}startsec = 5\n")).unwrap();
    let out = Command::new(BIN)
        .args(["status", "-c"])
        .arg(&broken)
        .env_remove("SUPERVISOR_SOCKET")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("app "));
    // No file: said, and the default tried.
    let out = Command::new(BIN)
        .args(["status", "-c"])
        .arg(sup.path("missing.toml"))
        .env_remove("SUPERVISOR_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read") && err.contains("missing.toml") && err.contains("trying"),
        "{err}"
    );
}

#[test]
fn status_resources_count_the_whole_process_group() {
    let dir = Supervisor::dir_with(
        r#"
[program.busy]
command = ["/bin/sh", "-c", "(while :; do :; done) & exec sleep 1000"]
startsecs = 0

[program.idle]
command = ["sleep", "1000"]
startsecs = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("busy", "RUNNING");
    sup.wait_state("idle", "RUNNING");
    let (code, out, _) = ctl(&sup, &["status", "--resources", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let busy = program(&v, "busy");
    let idle = program(&v, "idle");
    // The busy loop is the leader's child: only the group's total sees it.
    assert!(busy["cpu_percent"].as_f64().unwrap() > 30.0, "{busy}");
    assert!(idle["cpu_percent"].as_f64().unwrap() < 30.0, "{idle}");
    assert!(busy["memory_bytes"].as_u64().unwrap() > 100_000, "{busy}");
    let (_, text, _) = ctl(&sup, &["status", "-r", "idle"]);
    assert!(
        text.starts_with("idle                             RUNNING   cpu "),
        "{text}"
    );
    assert!(text.contains(" MiB  pid "), "{text}");
}
