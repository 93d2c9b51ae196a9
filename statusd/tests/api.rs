//! statusd against a real supervisor running real programs, over real HTTP on 127.0.0.1;
//! including state changes while it serves and the supervisor restarting under it.
//!
//! Needs the supervisor binary beside statusd's (`cargo test --workspace` builds both).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use testkit::{PATIENCE, free_port, wait_until};

fn supervisor_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_statusd"), "supervisor")
}

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

struct Stack {
    dir: tempfile::TempDir,
    supervisor: Option<Child>,
    statusd: Child,
    port: u16,
}

const CONFIG: &str = r#"
[program.web]
command = ["sleep", "1000"]
startsecs = 0
critical = true

[program.worker]
command = ["sleep", "1000"]
startsecs = 0

[program.idle]
command = ["sleep", "1000"]
autostart = false
"#;

impl Stack {
    fn start(token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("supervisor.toml"), CONFIG).unwrap();
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_statusd"));
        cmd.env("STATUSD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SUPERVISOR_SOCKET", dir.path().join("data/supervisor.sock"))
            .env_remove("STATUSD_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.env("STATUSD_TOKEN", t);
        }
        let statusd = cmd.spawn().unwrap();
        let mut stack = Self {
            dir,
            supervisor: None,
            statusd,
            port,
        };
        wait_until("statusd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        stack.start_supervisor();
        stack
    }

    fn start_supervisor(&mut self) {
        self.supervisor = Some(
            Command::new(supervisor_bin())
                .args(["run", "-c"])
                .arg(self.dir.path().join("supervisor.toml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    fn stop_supervisor(&mut self) {
        if let Some(mut sup) = self.supervisor.take() {
            let _ = Command::new("kill").arg(sup.id().to_string()).status();
            let _ = sup.wait();
        }
    }

    fn ctl(&self, args: &[&str]) {
        let out = Command::new(supervisor_bin())
            .args(args)
            .arg("-s")
            .arg(self.dir.path().join("data/supervisor.sock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_supervisor();
        let _ = self.statusd.kill();
        let _ = self.statusd.wait();
    }
}

fn state(status: &Value, name: &str) -> String {
    status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn endpoints_follow_the_supervisor_through_changes_and_restarts() {
    let mut stack = Stack::start(None);
    let port = stack.port;
    wait_until("web and worker running", || {
        let s = json(port, "/status");
        state(&s, "web") == "RUNNING" && state(&s, "worker") == "RUNNING"
    });
    assert_eq!(json(port, "/ping")["status"], "ok");
    let status = json(port, "/status");
    assert_eq!(status["stale"], false);
    assert_eq!(state(&status, "idle"), "STOPPED");
    let web = status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web")
        .unwrap()
        .clone();
    assert!(web["pid"].as_u64().unwrap() > 0);
    assert_eq!(web["critical"], true);
    assert_eq!(get(port, "/health", None).0, 200);
    let uptime = json(port, "/uptime");
    assert!(uptime["supervisor"]["uptime_secs"].is_u64(), "{uptime}");
    assert_eq!(json(port, "/commit")["programs"], serde_json::json!([]));
    assert_eq!(json(port, "/deploys")["deploys"], serde_json::json!([]));

    // A state change arrives while requests are served.
    stack.ctl(&["stop", "web"]);
    // STOPPING already fails the check; the reason follows the state to STOPPED.
    wait_until("/health to notice", || {
        let (code, body) = get(port, "/health", None);
        code == 503 && body.contains("web is STOPPED")
    });
    stack.ctl(&["start", "web", "idle"]);
    wait_until("healthy again", || get(port, "/health", None).0 == 200);
    // Each state event refreshes the view; idle's may come after web's made /health pass.
    wait_until("idle in /status", || {
        state(&json(port, "/status"), "idle") == "RUNNING"
    });
    // Both requests are in the supervisor's audit trail, newest first.
    let audit = json(port, "/audit");
    let verbs: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r["verb"], r["targets"], r["ok"]))
        .collect();
    assert_eq!(
        verbs,
        [r#""start" ["web","idle"] true"#, r#""stop" ["web"] true"#],
        "{audit}"
    );

    let (status, metrics) = get(port, "/metrics", None);
    assert_eq!(status, 200);
    for line in [
        "supervisor_up 1",
        "supervisor_program_up{program=\"web\"} 1",
        "supervisor_program_ready{program=\"web\"} 1",
        "supervisor_program_healthy{program=\"web\"} 1",
        "supervisor_program_check_failures{program=\"web\"} 0",
        "supervisor_program_notify_rejected{program=\"web\"} 0",
        "supervisor_program_state{program=\"worker\",state=\"RUNNING\"} 1",
        "supervisor_program_state{program=\"worker\",state=\"FATAL\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "no {line:?} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("supervisor_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(
        metrics.contains("supervisor_program_resident_memory_bytes{program=\"web\"}"),
        "{metrics}"
    );
    promtool_accepts(&metrics);

    the_openapi_description_matches(&json(port, "/status"));
    page_in_chromium(port);

    let (status, page) = get(port, "/", None);
    assert_eq!(status, 200);
    for name in ["web", "worker", "idle"] {
        assert!(
            page.contains(&format!(
                "<tr><td>{name}</td><td class=RUNNING>RUNNING</td>"
            )),
            "{page}"
        );
    }

    // The supervisor goes away: statusd says so, and keeps what it knew, marked stale.
    stack.stop_supervisor();
    // (Its programs stopping already fail the check; the reason then becomes the supervisor.)
    wait_until("/health to say the supervisor is gone", || {
        let (code, body) = get(port, "/health", None);
        code == 503 && body.contains("the supervisor is unreachable")
    });
    let stale = json(port, "/status");
    assert_eq!(stale["stale"], true);
    assert_eq!(stale["programs"].as_array().unwrap().len(), 3);
    assert!(get(port, "/metrics", None).1.contains("supervisor_up 0"));

    // It comes back: statusd reconnects by itself.
    stack.start_supervisor();
    wait_until("reconnected and healthy", || {
        get(port, "/health", None).0 == 200
    });
    assert_eq!(json(port, "/status")["stale"], false);
}

/// docs/statusd.openapi.json names every endpoint, and `/status`'s programs carry exactly the
/// properties it describes.
fn the_openapi_description_matches(status: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/statusd.openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/", "/audit", "/commit", "/deploys", "/health", "/metrics", "/ping", "/status",
            "/uptime"
        ]
    );
    let schema = &doc["components"]["schemas"]["Program"];
    let mut documented: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    for program in status["programs"].as_array().unwrap() {
        let mut keys: Vec<&str> = program
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, documented, "{program}");
    }
}

/// The page in headless Chromium (Debian's `chromium`; scripts/test installs it as root): the program table
/// shows the real programs, and a screenshot is kept in target/tmp/statusd-page.png.
fn page_in_chromium(port: u16) {
    let profile = tempfile::tempdir().unwrap();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("statusd-page.png");
    let _ = std::fs::remove_file(&shot);
    let chromium = |extra: &[String]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=412,915",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("chromium: install Debian's `chromium` package (scripts/test does, as root)")
    };
    let dom = chromium(&["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let table = dom
        .split("<table id=\"programs\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_default();
    for name in ["web", "worker", "idle"] {
        assert!(
            table.contains(&format!("<td>{name}</td>")),
            "{name} not in the rendered table:\n{dom}"
        );
    }
    chromium(&[format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 1000,
        "no screenshot"
    );
}

/// `promtool check metrics` (Debian's `prometheus` package; scripts/test installs it as root) finds no
/// problem in the exposition.
fn promtool_accepts(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: install Debian's `prometheus` package (scripts/test does, as root)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{metrics}"
    );
}

#[test]
fn a_token_guards_all_but_ping_and_health() {
    let stack = Stack::start(Some("s3cret"));
    let port = stack.port;
    wait_until("healthy", || get(port, "/health", None).0 == 200);
    assert_eq!(get(port, "/ping", None).0, 200);
    for path in [
        "/", "/status", "/uptime", "/commit", "/deploys", "/metrics", "/audit",
    ] {
        assert_eq!(get(port, path, None).0, 401, "{path}");
        assert_eq!(get(port, path, Some("wrong")).0, 401, "{path}");
        assert_eq!(get(port, path, Some("s3cret")).0, 200, "{path}");
    }
}

/// The shipped scrape configuration passes `promtool check config`.
#[test]
fn the_shipped_prometheus_config_is_valid() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/prometheus.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .expect("promtool: install Debian's `prometheus` package (scripts/test does, as root)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `statusd health` against the running statusd at `port`.
fn probe(port: u16) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_statusd"))
        .arg("health")
        .env("STATUSD_LISTEN", format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn the_health_probe_follows_health() {
    let stack = Stack::start(Some("secret"));
    let port = stack.port;
    wait_until("healthy", || probe(port).0 == 0);
    assert_eq!(probe(port), (0, r#"{"healthy":true}"#.to_owned()));
    stack.ctl(&["stop", "web"]);
    let (code, out) = probe(port);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("unhealthy: 503: "), "{out}");
    assert!(out.contains("web"), "{out}");
    // Nothing listening: unhealthy, saying so.
    let (code, out) = probe(free_port());
    assert_eq!(code, 1);
    assert!(
        out.starts_with("unhealthy: cannot connect to statusd at 127.0.0.1:"),
        "{out}"
    );
}

/// A supervisor whose socket is open but which no longer answers (stopped here with SIGSTOP,
/// as a PID 1 blocked on file work would be) fails /health, and passes again once it answers.
#[test]
fn health_fails_when_the_supervisor_stops_answering() {
    let stack = Stack::start(None);
    let port = stack.port;
    wait_until("healthy", || get(port, "/health", None).0 == 200);
    let pid = stack.supervisor.as_ref().unwrap().id() as i32;
    // SAFETY: kill with a valid signal has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = std::time::Instant::now();
    wait_until("/health to fail", || get(port, "/health", None).0 == 503);
    let (_, body) = get(port, "/health", None);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(
        body.contains("the supervisor has not answered for"),
        "{body}"
    );
    // 5 s without an answer, noticed at the next 2 s heartbeat; the rest is slack for a busy
    // machine (CI builds images beside this).
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(20),
        "noticed after {:?}",
        stopped.elapsed()
    );
    wait_until("healthy again", || get(port, "/health", None).0 == 200);
}
