//! supervisord's event listeners, run by our supervisor: the events a listener receives are
//! the ones supervisord 4.2.5 sends for the same configuration; listeners that no one here
//! wrote (superlance's `crashmail` and `fatalmailbatch`) send their mail; and the common Docker
//! pattern, a listener that stops the container when a program goes FATAL, stops it.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::*;
use nix::sys::signal::Signal;

/// A listener that writes each event it gets (header | payload) to `events.txt`.
const RECORDER: &str = r#"
while :; do
  printf 'READY\n'
  read -r header || exit 0
  len=${header##*len:}
  payload=$(head -c "$len")
  printf '%s | %s\n' "$header" "$payload" >> "$(dirname "$0")/events.txt"
  printf 'RESULT 2\nOK'
done"#;

const CONF: &str = "\
[supervisord]
logfile=@DIR@/supervisord.log
pidfile=@DIR@/supervisord.pid
childlogdir=@DIR@/logs
[unix_http_server]
file=@DIR@/supervisor.sock
[eventlistener:rec]
command=@DIR@/recorder
events=PROCESS_STATE,SUPERVISOR_STATE_CHANGE,PROCESS_GROUP
buffer_size=50
[program:fail]
command=sh -c 'exit 3'
startsecs=5
startretries=1
[program:crash]
command=sh -c 'sleep 1.2; exit 4'
startsecs=1
autorestart=false
[program:done]
command=sh -c 'sleep 1.2; exit 0'
startsecs=1
";

fn folder(conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("supervisord.conf"),
        conf.replace("@DIR@", root),
    )
    .unwrap();
    script(dir.path(), "recorder", RECORDER);
    dir
}

/// The recorded events, serials and pids taken out: event name and payload.
fn recorded(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("events.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(" | "))
        .map(|(header, payload)| {
            let name = header
                .split_whitespace()
                .find_map(|w| w.strip_prefix("eventname:"))
                .unwrap_or_default()
                .to_owned();
            let payload = payload
                .split_whitespace()
                .filter(|w| !w.starts_with("pid:"))
                .collect::<Vec<_>>()
                .join(" ");
            (name, payload)
        })
        .collect()
}

/// Waits until the recorder has seen what every scenario ends with.
fn wait_for_the_end(dir: &Path) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = recorded(dir);
        let has = |name: &str, what: &str| {
            seen.iter()
                .any(|(n, p)| n == name && p.contains(&format!("processname:{what} ")))
        };
        if has("PROCESS_STATE_FATAL", "fail")
            && has("PROCESS_STATE_EXITED", "crash")
            && has("PROCESS_STATE_EXITED", "done")
        {
            return;
        }
        assert!(Instant::now() < deadline, "the recorder saw {seen:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each process's events in order, the supervisor's and the groups' apart (the order between
/// processes is a race in both supervisors).
fn by_process(events: &[(String, String)]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, payload) in events {
        let key = payload
            .split_whitespace()
            .find_map(|w| w.strip_prefix("processname:"))
            .map_or_else(|| "(supervisor)".to_owned(), str::to_owned);
        out.entry(key)
            .or_default()
            .push((name.clone(), payload.clone()));
    }
    // What the recorder hears about itself while it is being stopped depends on when its
    // stop signal lands.
    if let Some(own) = out.get_mut("rec") {
        own.retain(|(n, _)| n != "PROCESS_STATE_STOPPING" && n != "PROCESS_STATE_STOPPED");
    }
    out
}

#[test]
fn a_listener_gets_the_events_supervisord_sends() {
    // supervisord 4.2.5 first.
    let theirs = folder(CONF);
    let mut daemon = Command::new("supervisord")
        .args(["-n", "-c"])
        .arg(theirs.path().join("supervisord.conf"))
        .current_dir(theirs.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("supervisord (Debian's `supervisor` package; scripts/test installs it)");
    wait_for_the_end(theirs.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
    let expected = recorded(theirs.path());

    // The same file, run by ours.
    let mut ours = Supervisor::start_with(folder(CONF), Mode::Plain, "supervisord.conf");
    wait_for_the_end(ours.dir.path());
    ours.signal(Signal::SIGTERM);
    assert!(ours.wait_exit(PATIENCE).success());
    let got = recorded(ours.dir.path());

    assert_eq!(by_process(&got), by_process(&expected));
    // The supervisor's own events, in order, at both ends.
    let supervisor = |events: &[(String, String)]| -> Vec<String> {
        events
            .iter()
            .filter(|(n, _)| n.starts_with("SUPERVISOR_STATE_CHANGE"))
            .map(|(n, _)| n.clone())
            .collect()
    };
    assert_eq!(supervisor(&got), supervisor(&expected));
    assert_eq!(
        supervisor(&got),
        [
            "SUPERVISOR_STATE_CHANGE_RUNNING",
            "SUPERVISOR_STATE_CHANGE_STOPPING"
        ]
    );
    // Serials count up from 0 in the pool.
    let text = std::fs::read_to_string(ours.dir.path().join("events.txt")).unwrap();
    let pool_serials: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("poolserial:"))?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        pool_serials,
        (0..pool_serials.len() as u64).collect::<Vec<_>>()
    );
}

/// A `sendmail` stand-in: what it is given on stdin, appended to `mail.txt`.
const SENDMAIL: &str =
    r#"cat >> "$(dirname "$0")/mail.txt"; echo "--- end" >> "$(dirname "$0")/mail.txt""#;

#[test]
fn crashmail_mails_an_unexpected_exit_and_not_an_expected_one() {
    let lance = superlance();
    let dir = Supervisor::dir_with(&format!(
        r#"
[supervisor]
logdir = "@DIR@/logs"
socket = "@DIR@/supervisor.sock"

[program.crashmail]
command = ["{PYTHON}", "-m", "superlance.crashmail", "-a", "-m", "ops@example.org", "-s", "@DIR@/sendmail -t -i"]
events = ["PROCESS_STATE_EXITED"]
environment = {{ PYTHONPATH = "{lance}" }}
priority = -1

[program.worker]
command = ["sh", "-c", "sleep 1.2; exit 7"]
autorestart = false

[program.oneshot]
command = ["sh", "-c", "sleep 1.2; exit 0"]
autorestart = false
"#,
        lance = lance.display()
    ));
    script(dir.path(), "sendmail", SENDMAIL);
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("worker", "EXITED");
    sup.wait_state("oneshot", "EXITED");
    let mail = sup.path("mail.txt");
    wait_until("crashmail's mail", || {
        std::fs::read_to_string(&mail).is_ok_and(|m| m.contains("--- end"))
    });
    // The listener has answered OK for both events once it is READY again with nothing
    // left; a second mail, had the expected exit been mailed, would be there by then.
    wait_until("crashmail to handle both exits", || {
        sup.log_events(|e| msg(e) == "event sent to a listener")
            .len()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&mail).unwrap();
    assert_eq!(text.matches("--- end").count(), 1, "{text}");
    assert!(text.contains("To: ops@example.org"), "{text}");
    assert!(text.contains("Subject:  worker crashed at"), "{text}");
    assert!(
        text.contains("Process worker in group worker exited unexpectedly (pid ")
            && text.contains(") from state RUNNING"),
        "{text}"
    );
}

/// An SMTP server that accepts one session and writes the message to `path`, printing its
/// port first.
const SMTP_SINK: &str = r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(60)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
f = conn.makefile("rwb")
def send(line):
    f.write(line.encode() + b"\r\n")
    f.flush()
send("220 sink")
body = None
with open(sys.argv[1], "w") as out:
    for raw in f:
        line = raw.decode().rstrip("\r\n")
        if body is not None:
            if line == ".":
                out.write("".join(body))
                out.flush()
                body = None
                send("250 queued")
            else:
                body.append(line + "\n")
            continue
        verb = line[:4].upper()
        if verb in ("EHLO", "HELO"):
            send("250 sink")
        elif verb == "DATA":
            body = []
            send("354 go on")
        elif verb == "QUIT":
            send("221 bye")
            break
        else:
            out.write(line + "\n")
            send("250 ok")
"#;

#[test]
fn fatalmailbatch_sends_its_batch_over_smtp_on_a_tick() {
    let lance = superlance();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Command::new(PYTHON)
        .args(["-c", SMTP_SINK])
        .arg(dir.path().join("smtp.txt"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_owned();
    // supervisord's INI, run as it is; TICK_5 and a batch of 0.08 minutes, so that the mail
    // goes on the first tick after the failure.
    let conf = format!(
        "\
[supervisord]
childlogdir=@DIR@/logs
[unix_http_server]
file=@DIR@/supervisor.sock
[eventlistener:fatalmail]
command={PYTHON} -m superlance.fatalmailbatch --toEmail=ops@example.org --fromEmail=pi@example.org --smtpHost=127.0.0.1:{port} --tickEvent=TICK_5 --interval=0.08
events=PROCESS_STATE,TICK_5
environment=PYTHONPATH=\"{lance}\"
[program:broken]
command=sh -c 'exit 2'
startsecs=1
startretries=0
",
        lance = lance.display()
    );
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("supervisord.conf"),
        conf.replace("@DIR@", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let sup = Supervisor::start_with(dir, Mode::Plain, "supervisord.conf");
    sup.wait_state("broken", "FATAL");
    let smtp = sup.path("smtp.txt");
    wait_until("fatalmailbatch's mail at the SMTP sink", || {
        std::fs::read_to_string(&smtp).is_ok_and(|m| m.contains("failed to start too many times"))
    });
    let text = std::fs::read_to_string(&smtp).unwrap();
    assert!(
        text.to_lowercase().contains("rcpt to:<ops@example.org>"),
        "{text}"
    );
    assert!(
        text.contains("Subject: Fatal start alert from supervisord"),
        "{text}"
    );
    assert!(
        text.contains("Process broken:broken failed to start too many times"),
        "{text}"
    );
    let _ = sink.kill();
    let _ = sink.wait();
}

#[test]
fn a_listener_that_stops_the_container_on_fatal() {
    // The pattern of countless Dockerfiles: a FATAL program ends the container (and its
    // restart policy takes over).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    script(
        dir.path(),
        "kill-supervisor",
        r#"printf "READY\n"
while read -r line; do
  echo "Processing Event: $line" >&2
  kill -QUIT $PPID
done < /dev/stdin"#,
    );
    let conf = "\
[supervisord]
nodaemon=true
childlogdir=@DIR@/logs
[unix_http_server]
file=@DIR@/supervisor.sock
[eventlistener:stop-on-fatal]
command=@DIR@/kill-supervisor
events=PROCESS_STATE_FATAL
[program:app]
command=sh -c 'exit 1'
startretries=1
";
    std::fs::write(
        dir.path().join("supervisord.conf"),
        conf.replace("@DIR@", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let mut sup = Supervisor::start_with(dir, Mode::Plain, "supervisord.conf");
    sup.wait_state("app", "FATAL");
    let status = sup.wait_exit(PATIENCE);
    assert!(status.success(), "{status:?}");
    sup.wait_log("the shutdown for SIGQUIT", |e| {
        msg(e) == "shutting down" && field(e, "reason") == "received SIGQUIT"
    });
}
