//! supervisord's XML-RPC on the control socket, driven by clients no one here wrote: Debian's
//! `supervisorctl` 4.2.5 against our supervisor and against the real supervisord 4.2.5, side
//! by side on one configuration; Python's `xmlrpc.client` making the calls monitors make; and
//! superlance's `memmon` restarting a program over its memory.
//!
//! Why this file is past 600 lines: every client of the wire in one place, sharing the two
//! daemons side by side and the normalising of their outputs.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::*;

/// Two `sleep` workers in group `worker`, and `web`, not started, which notes a USR1.
fn conf() -> String {
    supervisord_conf(concat!(
        "\n[program:worker]\ncommand=/bin/sleep 1000\n",
        "process_name=%(program_name)s_%(process_num)d\nnumprocs=2\n\n",
        "[program:web]\n",
        "command=/bin/sh -c 'trap \"echo usr1\" USR1; echo web up; while true; do sleep 0.1; done'\n",
        "autostart=false\nstdout_logfile=%(here)s/logs/web.log\n",
    ))
}

/// A daemon (ours or supervisord) in a folder of its own, killed on drop.
struct Daemon {
    /// Held for its drop, and first: fields drop in order, so the daemon is stopped before
    /// its folder goes.
    _child: Terminated,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(program: &str, args: &[&str], conf: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["run", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("supervisord.conf"), conf).unwrap();
        let child = Command::new(program)
            .args(args)
            .arg(dir.path().join("supervisord.conf"))
            .current_dir(dir.path())
            .env_remove("SUPERVISOR_CONFIG")
            .env_remove("SUPERVISOR_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs supervisor)"));
        Self {
            dir,
            _child: Terminated(child),
        }
    }

    fn ours(conf: &str) -> Self {
        Self::start(BIN, &["run", "-c"], conf)
    }

    fn supervisord(conf: &str) -> Self {
        Self::start("supervisord", &["-n", "-c"], conf)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.root().join("run/supervisor.sock")
    }

    /// supervisord's `supervisorctl` (Debian's, in Python) with this folder's configuration:
    /// exit code and stdout.
    fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new("/usr/bin/supervisorctl")
            .arg("-c")
            .arg(self.root().join("supervisord.conf"))
            .args(args)
            .current_dir(self.root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Waits until `status` shows `line_part` for `program`.
    fn wait_status(&self, program: &str, state: &str) {
        wait_until(&format!("{program} {state}"), || {
            self.ctl(&["status", program])
                .1
                .split_whitespace()
                .nth(1)
                .is_some_and(|s| s == state)
        });
    }

    /// A Python script run with `sock` set to this daemon's socket URL and `rpc` to an
    /// `xmlrpc.client` proxy on it, through supervisord's own transport.
    fn python(&self, script: &str) -> (i32, String, String) {
        python_as(&self.socket(), script, None)
    }
}

fn python_as(socket: &Path, script: &str, uid: Option<u32>) -> (i32, String, String) {
    let prelude = format!(
        "import sys, xmlrpc.client\n\
         from supervisor.xmlrpc import SupervisorTransport\n\
         sock = 'unix://{}'\n\
         rpc = xmlrpc.client.ServerProxy('http://127.0.0.1', transport=SupervisorTransport(None, None, sock))\n",
        socket.display()
    );
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(format!("{prelude}{script}"));
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, uid);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What differs between two runs of the same thing: pids, uptimes, times of day.
fn normal(text: &str) -> String {
    let rules = [
        (r"pid \d+", "pid N"),
        (r"uptime \d+:\d\d:\d\d", "uptime T"),
        (r"[A-Z][a-z]{2} \d\d \d\d:\d\d [AP]M", "TIME"),
        (r"(?m)^\d+$", "N"),
    ];
    rules.iter().fold(text.to_owned(), |t, (pattern, with)| {
        regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&t, *with)
            .into_owned()
    })
}

#[test]
fn supervisorctl_reads_and_drives_ours_as_it_does_supervisord() {
    let (ours, theirs) = side_by_side();
    let same = |args: &[&str]| same(&ours, &theirs, args);
    // `status` prints a STOPPED program: exit code 3, as supervisord's.
    let (code, out) = same(&["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("web                              STOPPED   Not started"),
        "{out}"
    );
    same(&["start", "web"]);
    same(&["start", "web"]);
    same(&["start", "nope"]);
    same(&["status", "web", "nope"]);
    same(&["stop", "worker:*"]);
    same(&["status"]);
    same(&["start", "worker:worker_1"]);
    same(&["signal", "USR1", "web"]);
    same(&["signal", "USR1", "worker:worker_0"]);
    for d in [&ours, &theirs] {
        wait_until("web to note its USR1", || {
            d.ctl(&["tail", "web"]).1.contains("usr1")
        });
    }
    same(&["tail", "web"]);
    // clear: the file is emptied (and the writer goes on from its start).
    same(&["clear", "web"]);
    assert_eq!(
        std::fs::metadata(ours.root().join("logs/web.log"))
            .unwrap()
            .len(),
        0
    );
    same(&["tail", "web"]);
    same(&["clear", "nope"]);
    same(&["clear", "all"]);
    same(&["signal", "USR1", "web"]);
    for d in [&ours, &theirs] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let tail = d.ctl(&["tail", "web"]).1;
            if tail.trim_end() == "usr1" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "web's next line, at the start of its file: {tail:?} in {}",
                d.root().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    same(&["avail"]);
    // Our own client's clear, the same verb over our protocol.
    let out = Command::new(BIN)
        .args(["clear", "web", "-s"])
        .arg(ours.socket())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web: cleared\n");
    assert_eq!(
        std::fs::metadata(ours.root().join("logs/web.log"))
            .unwrap()
            .len(),
        0
    );
    same(&["pid", "web"]);
    same(&["restart", "web"]);
    same(&["stop", "all"]);
    same(&["status"]);
    // reload: every program restarted with the file (the stopped workers come back, autostart;
    // web, manual, stays stopped), the supervisor itself the same process.
    same(&["reload"]);
    for d in [&ours, &theirs] {
        d.wait_status("worker:worker_0", "RUNNING");
        d.wait_status("worker:worker_1", "RUNNING");
    }
    same(&["status"]);
    assert_eq!(ours.ctl(&["pid"]).1.trim(), ours._child.0.id().to_string());
    // A running program is restarted by it too.
    let before = ours.ctl(&["pid", "worker:worker_0"]).1;
    assert_eq!(ours.ctl(&["reload"]), (0, "Restarted supervisord\n".into()));
    wait_until("worker_0 back with a new process", || {
        let now = ours.ctl(&["pid", "worker:worker_0"]).1;
        now != before && now.trim() != "0"
    });
    // supervisord's own log: ours logs to stderr only, which supervisorctl says in its words.
    assert_eq!(
        ours.ctl(&["maintail"]),
        (1, "supervisord: ERROR (no log file)\n".to_owned())
    );
    // The same through -s, as scripts without a configuration call it.
    let url = format!("unix://{}", ours.socket().display());
    let out = Command::new("/usr/bin/supervisorctl")
        .args(["-s", &url, "status", "web"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("web "));
}

/// Both daemons on [`conf`], their workers RUNNING.
fn side_by_side() -> (Daemon, Daemon) {
    let (ours, theirs) = (Daemon::ours(&conf()), Daemon::supervisord(&conf()));
    for d in [&ours, &theirs] {
        d.wait_status("worker:worker_0", "RUNNING");
        d.wait_status("worker:worker_1", "RUNNING");
    }
    (ours, theirs)
}

/// Runs supervisorctl with `args` against both and asserts the same exit code and output (but
/// for pids and times); ours's is returned. A whole group's or everyone's results come in
/// the order their processes finished, which varies from run to run in supervisord too: those
/// are compared as sets of lines.
fn same(ours: &Daemon, theirs: &Daemon, args: &[&str]) -> (i32, String) {
    let (a, b) = (ours.ctl(args), theirs.ctl(args));
    let many = args.iter().any(|a| *a == "all" || a.ends_with(":*"));
    let form = |text: &str| {
        let text = normal(text);
        match many {
            true => {
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort_unstable();
                lines.join("\n")
            }
            false => text,
        }
    };
    assert_eq!(
        (a.0, form(&a.1)),
        (b.0, form(&b.1)),
        "supervisorctl {args:?}: ours (left), supervisord's (right)"
    );
    a
}

#[test]
fn supervisorctl_updates_adds_and_removes_as_against_supervisord() {
    let (ours, theirs) = side_by_side();
    // A program added and a group grown in the file.
    for d in [&ours, &theirs] {
        let path = d.root().join("supervisord.conf");
        let conf = std::fs::read_to_string(&path)
            .unwrap()
            .replace("numprocs=2", "numprocs=3");
        std::fs::write(
            &path,
            format!("{conf}\n[program:extra]\ncommand=/bin/sleep 500\nstartsecs=0\n"),
        )
        .unwrap();
    }
    let same = |args: &[&str]| same(&ours, &theirs, args);
    assert_eq!(same(&["reread"]).1, "extra: available\nworker: changed\n");
    same(&["avail"]);
    same(&["update"]);
    for d in [&ours, &theirs] {
        d.wait_status("worker:worker_2", "RUNNING");
        d.wait_status("extra", "RUNNING");
    }
    same(&["status"]);
    same(&["stop", "extra"]);
    same(&["remove", "extra"]);
    same(&["remove", "extra"]);
    same(&["avail"]);
    same(&["add", "extra"]);
    same(&["add", "extra"]);
    same(&["add", "nope"]);
    same(&["remove", "web"]);
    same(&["add", "web"]);
    same(&["start", "web"]);
    same(&["remove", "web"]);
    same(&["update"]);
    // The program gone from the file: update stops and removes it.
    for d in [&ours, &theirs] {
        let path = d.root().join("supervisord.conf");
        let conf = std::fs::read_to_string(&path).unwrap();
        let cut = conf.find("\n[program:extra]").unwrap();
        std::fs::write(&path, &conf[..cut]).unwrap();
    }
    same(&["reread"]);
    same(&["update"]);
    same(&["status"]);
}

#[test]
fn supervisorctl_tail_f_follows_a_log_of_ours() {
    let ours = Daemon::ours(&conf());
    ours.wait_status("worker:worker_0", "RUNNING");
    assert_eq!(ours.ctl(&["start", "web"]).0, 0);
    let mut follow = Command::new("/usr/bin/supervisorctl")
        .arg("-c")
        .arg(ours.root().join("supervisord.conf"))
        .args(["tail", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = follow.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let lines = {
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = follow.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let mut errors = Some(errors);
    let mut seen: Vec<String> = Vec::new();
    let mut next = || match lines.recv_timeout(PATIENCE) {
        Ok(line) => {
            seen.push(line.clone());
            line
        }
        Err(e) => {
            let text = errors.take().map(|t| t.join().unwrap_or_default());
            panic!("tail -f ended ({e}) after {seen:?}: {text:?}")
        }
    };
    assert_eq!(next(), "==> Press Ctrl-C to exit <==");
    assert_eq!(next(), "web up", "the end of the file first");
    // What comes after, as it comes; then after a clear, from the start of the file again.
    for round in 0..2 {
        assert_eq!(ours.ctl(&["signal", "USR1", "web"]).0, 0);
        assert_eq!(next(), "usr1", "round {round}");
    }
    assert_eq!(ours.ctl(&["clear", "web"]).0, 0);
    assert_eq!(ours.ctl(&["signal", "USR1", "web"]).0, 0);
    assert_eq!(next(), "usr1", "after the clear");
    let _ = follow.kill();
    let _ = follow.wait();
    // Not a program, or not a stream: 404, as supervisord answers.
    let out = Command::new("/usr/bin/supervisorctl")
        .arg("-c")
        .arg(ours.root().join("supervisord.conf"))
        .args(["tail", "-f", "nope"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("status code 404"),
        "{out:?}"
    );
}

#[test]
fn our_supervisorctl_prints_what_supervisorctl_prints_against_supervisord() {
    let (ours, theirs) = side_by_side();
    // Our binary called as supervisorctl, against ours; Debian's against supervisord.
    let link = ours.root().join("supervisorctl");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let run = |ctl: &Path, d: &Daemon, args: &[&str]| {
        let out = Command::new(ctl)
            .arg("-c")
            .arg(d.root().join("supervisord.conf"))
            .args(args)
            .env_remove("SUPERVISOR_CONFIG")
            .env_remove("SUPERVISOR_SOCKET")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            normal(&String::from_utf8_lossy(&out.stdout)),
        )
    };
    let python = Path::new("/usr/bin/supervisorctl");
    for args in [
        &["start", "nope"][..],
        &["stop", "nope", "worker:worker_0"],
        &["signal", "HUP", "nope"],
        &["start", "worker:worker_0", "nope"],
        &["status", "worker_0"],
        &["start", "worker_0"],
        &["stop", "worker:worker_0"],
        &["signal", "HUP", "worker:worker_0"],
        &["start", "all"],
        &["stop", "worker:*"],
        &["stop", "worker:*"],
        &["status", "nope:*"],
        &["start", "nope:*"],
        &["stop", "nope:*"],
        &["start", "worker:*"],
        &["status"],
        &["clear", "nope"],
        &["start", "web"],
        &["signal", "USR1", "web"],
        &["restart", "web"],
        &["signal", "NOPE", "web"],
        &["stop", "web"],
        &["signal", "USR1", "web"],
        &["reload"],
    ] {
        let (mut mine, mut other) = (run(&link, &ours, args), run(python, &theirs, args));
        // A group's or everything's stop and start: supervisord prints each program's line
        // as its process finishes, in no set order (`worker_1` before `worker_0` in one CI
        // run); ours in the group's order. The lines, not their order, must match there.
        if args.iter().any(|a| a.ends_with(":*") || *a == "all") {
            for (_, out) in [&mut mine, &mut other] {
                let mut lines: Vec<&str> = out.lines().collect();
                lines.sort_unstable();
                *out = lines.join("\n");
            }
        }
        assert_eq!(
            mine, other,
            "supervisorctl {args:?}: ours (left), supervisord's (right)"
        );
    }
}

/// [`conf`] with supervisord's TCP port on `port`, behind a `{SHA}` password ("123").
fn with_tcp(port: u16) -> String {
    conf().replace(
        "[supervisorctl]",
        &format!(
            "[inet_http_server]\nport=127.0.0.1:{port}\nusername=user\npassword={{SHA}}40bd001563085fc35165329ea1ff5c5ecbdbbeef\n\n[supervisorctl]"
        ),
    )
}

#[test]
fn supervisorctl_over_tcp_with_basic_auth_as_against_supervisord() {
    let ports = (testkit::free_port(), testkit::free_port());
    let ours = Daemon::ours(&with_tcp(ports.0));
    let theirs = Daemon::supervisord(&with_tcp(ports.1));
    for d in [&ours, &theirs] {
        d.wait_status("worker:worker_0", "RUNNING");
        d.wait_status("worker:worker_1", "RUNNING");
    }
    let tcp = |port: u16, password: Option<&str>, args: &[&str]| {
        let url = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new("/usr/bin/supervisorctl");
        cmd.args(["-s", &url]);
        if let Some(p) = password {
            cmd.args(["-u", "user", "-p", p]);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            normal(&String::from_utf8_lossy(&out.stdout)),
        )
    };
    for (password, args) in [
        (Some("123"), &["status"][..]),
        (Some("123"), &["stop", "worker:worker_1"][..]),
        (Some("123"), &["status", "worker:worker_1"][..]),
        (Some("12"), &["status"][..]),
        (None, &["status"][..]),
        (None, &["stop", "worker:worker_0"][..]),
    ] {
        assert_eq!(
            tcp(ports.0, password, args),
            tcp(ports.1, password, args),
            "{password:?} {args:?}: ours (left), supervisord's (right)"
        );
    }
    // Refused clients changed nothing; the one let in is in the audit trail by address.
    assert_eq!(ours.ctl(&["status", "worker:worker_0"]).0, 0);
    let audit = Command::new(BIN)
        .args(["audit", "--json", "-s"])
        .arg(ours.socket())
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout).unwrap();
    let stop = records.iter().find(|r| r["verb"] == "stop").unwrap();
    assert!(
        stop["process"]
            .as_str()
            .unwrap()
            .starts_with("http 127.0.0.1:"),
        "{stop}"
    );
}

/// One client holding idle connections to the TCP port gets its share of the places (16 of
/// 64) and no more; another client still gets in and is answered.
#[test]
fn one_tcp_client_cannot_take_every_place() {
    use std::io::Read as _;
    let port = testkit::free_port();
    let ours = Daemon::ours(&with_tcp(port));
    ours.wait_status("worker:worker_0", "RUNNING");
    let flood = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<_> = (0..40)
        .map(|_| testkit::connect_from(flood, port).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A connection past the share was closed at once: its read ends (EOF or reset); one let in
    // waits for its request.
    let open = held
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            match s.read(&mut [0u8; 1]) {
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                // The end of the stream: closed. (The server never speaks first.)
                Ok(n) => n > 0,
            }
        })
        .filter(|&open| open)
        .count();
    assert_eq!(open, 16, "connections kept open from one source");
    let out = Command::new("/usr/bin/supervisorctl")
        .args([
            "-s",
            &format!("http://127.0.0.1:{port}"),
            "-u",
            "user",
            "-p",
            "123",
        ])
        .args(["status", "worker:worker_0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RUNNING"), "{text}");
}

#[test]
fn monitors_calls_are_answered_as_supervisord_answers_them() {
    let ours = Daemon::ours(&conf());
    ours.wait_status("worker:worker_0", "RUNNING");
    // The calls of Telegraf's and Netdata's supervisor inputs, superlance's memmon and
    // httpok, and of supervisorctl's own start-up check; a multicall; faults.
    let (code, out, err) = ours.python(
        r#"
assert rpc.supervisor.getAPIVersion() == '3.0'
assert rpc.supervisor.getVersion() == '3.0'
assert rpc.supervisor.getState() == {'statecode': 1, 'statename': 'RUNNING'}
assert rpc.supervisor.getIdentification() == 'supervisor'
assert isinstance(rpc.supervisor.getPID(), int)
infos = rpc.supervisor.getAllProcessInfo()
names = [(i['group'], i['name'], i['statename'], i['state']) for i in infos]
assert names == [('web', 'web', 'STOPPED', 0), ('worker', 'worker_0', 'RUNNING', 20), ('worker', 'worker_1', 'RUNNING', 20)], names
w = infos[1]
keys = sorted(w.keys())
assert keys == ['description', 'exitstatus', 'group', 'logfile', 'name', 'now', 'pid', 'spawnerr', 'start', 'state', 'statename', 'stderr_logfile', 'stdout_logfile', 'stop'], keys
assert w['pid'] > 0 and w['start'] <= w['now'] and w['description'].startswith('pid %d, uptime ' % w['pid']), w
one = rpc.supervisor.getProcessInfo('worker:worker_1')
assert one['name'] == 'worker_1' and one['statename'] == 'RUNNING', one
# httpok: stop and start by namespec, answered True.
assert rpc.supervisor.stopProcess('worker:worker_1') is True
assert rpc.supervisor.getProcessInfo('worker:worker_1')['statename'] == 'STOPPED'
assert rpc.supervisor.startProcess('worker:worker_1') is True
def fault(call):
    try:
        call()
    except xmlrpc.client.Fault as f:
        return (f.faultCode, f.faultString)
    raise AssertionError('no fault')
assert fault(lambda: rpc.supervisor.startProcess('worker:worker_1')) == (60, 'ALREADY_STARTED: worker_1: already started'), fault(lambda: rpc.supervisor.startProcess('worker:worker_1'))
assert fault(lambda: rpc.supervisor.getProcessInfo('nope'))[0] == 10
assert fault(lambda: rpc.supervisor.stopProcess('web'))[0] == 70
assert fault(lambda: rpc.supervisor.signalProcess('worker:worker_0', 'NOPE'))[0] == 11
assert fault(lambda: rpc.supervisor.noSuchMethod()) == (1, 'UNKNOWN_METHOD')
assert fault(lambda: rpc.supervisor.getProcessInfo(1))[0] == 2
assert fault(lambda: rpc.supervisor.readLog(0, 0))[0] == 20
# Group and all forms: one struct per program acted on.
r = rpc.supervisor.stopProcessGroup('worker')
assert sorted((x['name'], x['status'], x['description']) for x in r) == [('worker_0', 80, 'OK'), ('worker_1', 80, 'OK')], r
r = rpc.supervisor.startAllProcesses()
assert sorted(x['name'] for x in r) == ['web', 'worker_0', 'worker_1'], r
r = rpc.supervisor.signalAllProcesses('USR1')
assert sorted((x['name'], x['status']) for x in r) == [('web', 80), ('worker_0', 80), ('worker_1', 80)], r
# Logs by byte offset.
import time
deadline = time.time() + 10
while 'usr1' not in rpc.supervisor.readProcessStdoutLog('web', 0, 0):
    assert time.time() < deadline
    time.sleep(0.05)
data, offset, overflow = rpc.supervisor.tailProcessStdoutLog('web', 0, 3)
assert (data, overflow) == ('r1\n', True), (data, offset, overflow)
assert rpc.supervisor.readProcessStdoutLog('web', -3, 0) == 'r1\n'
assert rpc.supervisor.readProcessStderrLog('web', 0, 0) == ''
assert fault(lambda: rpc.supervisor.readProcessStdoutLog('nope', 0, 0))[0] == 10
m = xmlrpc.client.MultiCall(rpc)
m.supervisor.getAPIVersion()
m.supervisor.getProcessInfo('nope')
results = m()
assert results[0] == '3.0'
assert fault(lambda: results[1])[0] == 10
assert 'supervisor.getAllProcessInfo' in rpc.system.listMethods()
assert rpc.system.methodSignature('supervisor.startProcess') == [['boolean', 'string', 'boolean']]
assert 'RUNNING' in rpc.system.methodHelp('supervisor.startProcess')
configs = rpc.supervisor.getAllConfigInfo()
assert [(c['group'], c['name'], c['autostart']) for c in configs] == [('web', 'web', False), ('worker', 'worker_0', True), ('worker', 'worker_1', True)], configs
print('ok')
"#,
    );
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
}

/// Sends raw bytes on the socket and reads the answer until the server closes (each request
/// here asks it to, or is one it answers by closing).
fn raw(socket: &Path, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_calls_get_faults_or_http_errors_and_the_daemon_carries_on() {
    let ours = Daemon::ours(&conf());
    ours.wait_status("worker:worker_0", "RUNNING");
    let socket = ours.socket();
    let post = |body: &str| {
        format!(
            "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // Not XML, and XML that is not a call: a fault, in a 200 as XML-RPC has it.
    for body in [
        "not xml at all",
        "<?xml version='1.0'?><methodCall><params>",
    ] {
        let out = raw(&socket, post(body).as_bytes());
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("<name>faultCode</name><value><i4>2</i4></value>"),
            "{out}"
        );
    }
    // A body over the cap: refused before it is read.
    let huge = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    assert!(raw(&socket, huge.as_bytes()).starts_with("HTTP/1.1 413 "));
    // Another path, another method, garbage.
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    assert!(
        raw(&socket, format!("GET /nope HTTP/1.1\r\n{close}").as_bytes())
            .starts_with("HTTP/1.1 404 ")
    );
    assert!(
        raw(&socket, format!("GET /RPC2 HTTP/1.1\r\n{close}").as_bytes())
            .starts_with("HTTP/1.1 405 ")
    );
    assert!(raw(&socket, b"POST \x01\x02 HTTP/9\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // Two calls on one kept-alive connection, then the JSON protocol beside it: all answered.
    let (code, out, err) = ours.python(
        "print(rpc.supervisor.getAPIVersion(), rpc.supervisor.getProcessInfo('worker:worker_0')['statename'])",
    );
    assert_eq!((code, out.as_str()), (0, "3.0 RUNNING\n"), "{err}");
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .env("SUPERVISOR_SOCKET", &socket)
        .output()
        .unwrap();
    // Exit code 3: web is not running, as supervisorctl's status says it.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["programs"].as_array().unwrap().len(), 3, "{status}");
}

#[test]
fn root_a_uid_granted_status_only_gets_a_fault_for_every_write() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another uid");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let dir = Supervisor::dir_with(
        r#"
[supervisor]
socket_mode = "0666"
[control.allow]
status = ["nobody"]
[program.app]
command = ["sleep", "60"]
startsecs = 0
"#,
    );
    for sub in ["", "data"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::set_permissions(
            dir.path().join(sub),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let (code, out, err) = python_as(
        &sup.path("data/supervisor.sock"),
        r#"
def fault(call):
    try:
        call()
    except xmlrpc.client.Fault as f:
        return f.faultCode
    return None
assert rpc.supervisor.getProcessInfo('app')['statename'] == 'RUNNING'
writes = {
    'stopProcess': lambda: rpc.supervisor.stopProcess('app'),
    'startProcess': lambda: rpc.supervisor.startProcess('app'),
    'stopAllProcesses': lambda: rpc.supervisor.stopAllProcesses(),
    'signalProcess': lambda: rpc.supervisor.signalProcess('app', 'HUP'),
    'signalAllProcesses': lambda: rpc.supervisor.signalAllProcesses('HUP'),
    'shutdown': lambda: rpc.supervisor.shutdown(),
    'reloadConfig': lambda: rpc.supervisor.reloadConfig(),
    'readProcessStdoutLog': lambda: rpc.supervisor.readProcessStdoutLog('app', 0, 0),
}
got = {name: fault(call) for name, call in writes.items()}
assert got == {name: 30 for name in writes}, got
print('ok')
"#,
        Some(nobody),
    );
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    let (_, out, _) = ctl(&sup, &["status", "app"]);
    assert!(out.starts_with("app ") && out.contains("RUNNING"), "{out}");
    // Each refusal is in the audit trail, as the JSON protocol's are.
    let (_, out, _) = ctl(&sup, &["audit", "--json", "-n", "50"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let refused = records
        .iter()
        .filter(|r| r["uid"] == nobody && r["ok"] == false)
        .count();
    assert!(refused >= 6, "{out}");
}

#[test]
fn memmon_restarts_a_program_over_its_memory_through_our_rpc() {
    let lance = superlance();
    let conf = format!(
        r#"[unix_http_server]
file=%(here)s/run/supervisor.sock

[supervisord]
nodaemon=true
logfile=/dev/null
childlogdir=%(here)s/logs

[supervisorctl]
serverurl=unix://%(here)s/run/supervisor.sock

[program:hog]
command={PYTHON} -c "import time; x = bytearray(120 * 2**20); x[::4096] = b'x' * len(x[::4096]); time.sleep(1000)"
startsecs=1

[program:small]
command=/bin/sleep 1000

[eventlistener:memmon]
command={PYTHON} -m superlance.memmon -p hog=60MB -p small=60MB
events=TICK_5
environment=PYTHONPATH="{lance}"
stderr_logfile=%(here)s/logs/memmon.err
"#,
        lance = lance.display()
    );
    let ours = Daemon::ours(&conf);
    ours.wait_status("hog", "RUNNING");
    ours.wait_status("small", "RUNNING");
    let pid = |name: &str| ours.ctl(&["pid", name]).1.trim().to_owned();
    let (hog, small) = (pid("hog"), pid("small"));
    // memmon reads every program's pid and memory on a TICK_5, and restarts the hog with
    // stopProcess and startProcess by its namespec.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = pid("hog");
        if now != hog && now != "0" && !now.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memmon did not restart hog: {}",
            std::fs::read_to_string(ours.root().join("logs/memmon.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(ours.root().join("logs/memmon.err")).unwrap();
    assert!(log.contains("Restarting hog"), "{log}");
    assert_eq!(pid("small"), small, "the small one is left alone");
}
