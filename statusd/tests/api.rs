//! statusd against a real supervisor running real programs, over real HTTP on 127.0.0.1;
//! including state changes while it serves and the supervisor restarting under it.
//!
//! Needs the supervisor binary beside statusd's (`cargo test --workspace` builds both).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use testkit::supervisor::{Mode, Supervisor};
use testkit::{PATIENCE, free_port, wait_until};

fn supervisor_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_statusd"), "supervisor")
}

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth: Vec<(&str, String)> = token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    testkit::http(port, "GET", path, &auth, b"")
}

fn json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

struct Stack {
    /// The folder while no supervisor runs; the supervisor (testkit's, which owns the folder
    /// while it runs, its log followed) otherwise.
    dir: Option<tempfile::TempDir>,
    supervisor: Option<Supervisor>,
    statusd: Child,
    port: u16,
    socket: PathBuf,
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
        let socket = dir.path().join("data/supervisor.sock");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_statusd"));
        cmd.env("STATUSD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SUPERVISOR_SOCKET", &socket)
            .env_remove("STATUSD_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.env("STATUSD_TOKEN", t);
        }
        let statusd = cmd.spawn().unwrap();
        let mut stack = Self {
            dir: Some(dir),
            supervisor: None,
            statusd,
            port,
            socket,
        };
        wait_until("statusd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        stack.start_supervisor();
        stack
    }

    fn start_supervisor(&mut self) {
        let dir = self.dir.take().expect("no supervisor running");
        self.supervisor = Some(Supervisor::start(dir, Mode::Plain));
    }

    fn stop_supervisor(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            self.dir = Some(sup.stop());
        }
    }

    fn ctl(&self, args: &[&str]) {
        let out = Command::new(supervisor_bin())
            .args(args)
            .arg("-s")
            .arg(&self.socket)
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
        // The supervisor (if any) goes with its own drop.
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
        assert!(row(&page, name).contains("data-state=RUNNING"), "{page}");
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
            "/", "/audit", "/commit", "/deploys", "/health", "/live", "/metrics", "/ping",
            "/status", "/uptime"
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

/// The programs table's row of `name` in a page.
fn row<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("<tr><td>{name}</td>"))
        .unwrap_or_else(|| panic!("no row for {name}:\n{page}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// Headless Chromium (Debian's `chromium`; scripts/test installs it as root) on statusd's
/// page at a window of `size`, with `extra` options.
fn chromium(port: u16, size: &str, extra: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--force-color-profile=srgb",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("chromium: install Debian's `chromium` package (scripts/test does, as root)")
}

/// The page in Chromium on a phone-sized window: the program table shows the real programs.
fn page_in_chromium(port: u16) {
    let dom = chromium(
        port,
        "412,915",
        &["--timeout=3000".into(), "--dump-dom".into()],
    );
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
}

/// Reads server-sent events from an open `/live` response until one satisfies `want`.
fn next_event(
    reader: &mut impl std::io::BufRead,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut data = String::new();
    loop {
        assert!(std::time::Instant::now() < deadline, "no event with {what}");
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the event stream ended before {what}");
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(d) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            data.push_str(d);
            data.push('\n');
        } else if line.is_empty() && !data.is_empty() {
            if want(&data) {
                return data;
            }
            data.clear();
        }
    }
}

/// The screenshot's pixels: (width, height, RGBA bytes).
fn pixels(png_path: &Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width as usize, info.height as usize, rgba)
}

/// Chromium driven by chromedriver (Debian's `chromium-driver`; scripts/test installs it as
/// root) over WebDriver's HTTP protocol on 127.0.0.1.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver: install Debian's `chromium-driver` package (scripts/test does, as root)");
        wait_until("chromedriver to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--force-color-profile=srgb".into(),
            "--hide-scrollbars".into(),
            "--window-size=1200,1600".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let reply = webdriver(port, "POST", "/session", Some(&caps));
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        Self {
            driver,
            port,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = webdriver(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        assert!(
            reply["value"].get("error").is_none(),
            "{method} {path}: {reply}"
        );
        reply["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&serde_json::json!({"url": url})));
    }

    fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&serde_json::json!({"script": script, "args": []})),
        )
    }

    fn wait_for(&self, what: &str, script: &str, ok: impl Fn(&str) -> bool) {
        let mut last = Value::Null;
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            last = self.run(script);
            if ok(last.as_str().unwrap_or_default()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("waited for {what}; the page says {last}");
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = webdriver(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request.
fn webdriver(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut reader = std::io::BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() <= 2 {
            break;
        }
        let header = line.split_once(':');
        if let Some((_, value)) = header.filter(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&body)))
}

const GREEN: [u8; 3] = [0x1a, 0x7f, 0x37];
const GREY: [u8; 3] = [0x8c, 0x95, 0x9f];

#[test]
fn the_page_is_live_and_its_timeline_shows_what_happened() {
    let stack = Stack::start(None);
    let port = stack.port;
    wait_until("web and worker running", || {
        let s = json(port, "/status");
        state(&s, "web") == "RUNNING" && state(&s, "worker") == "RUNNING"
    });

    // The live part, as server-sent events: at once, then on a change.
    let mut sse = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sse.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(sse, "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reader = std::io::BufReader::new(sse);
    let mut head = String::new();
    while reader.read_line(&mut head).unwrap() > 2 {}
    assert!(head.contains("text/event-stream"), "{head}");
    let first = next_event(&mut reader, "the page", |d| d.contains("<h1>Status</h1>"));
    assert!(
        row(&first, "worker").contains("data-state=RUNNING"),
        "{first}"
    );
    stack.ctl(&["stop", "worker"]);
    next_event(&mut reader, "worker STOPPED", |d| {
        row(d, "worker").contains("data-state=STOPPED")
    });
    // Stopped for a while, then back: the timeline shows the gap.
    std::thread::sleep(std::time::Duration::from_secs(2));
    stack.ctl(&["start", "worker"]);
    next_event(&mut reader, "worker RUNNING again", |d| {
        row(d, "worker").contains("data-state=RUNNING")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));

    drop(reader);

    // In a browser (Chromium driven through chromedriver, the W3C WebDriver protocol): the
    // page connects to the stream and changes in place when a program does.
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/"));
    browser.wait_for(
        "the page's stream to connect",
        "return document.body.dataset.live || ''",
        |v| v == "connected",
    );
    browser.run("window.sameDocument = true; return 1");
    let states = "return [...document.querySelectorAll('#programs [data-state]')].map(e => e.closest('tr').cells[0].textContent + '=' + e.dataset.state).join(',')";
    stack.ctl(&["stop", "worker"]);
    browser.wait_for("the page to show worker STOPPED", states, |v| {
        v.contains("worker=STOPPED")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    stack.ctl(&["start", "worker"]);
    browser.wait_for("the page to show worker RUNNING", states, |v| {
        v.contains("worker=RUNNING")
    });
    assert_eq!(
        browser.run("return window.sameDocument === true"),
        true,
        "the page reloaded instead of updating"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    // Once more for the picture: the timeline as it is now.
    browser.wait_for("an update with the last change", states, |v| {
        v.contains("worker=RUNNING")
    });

    // The screenshot, checked: badges and timelines in their colours, and somewhere a
    // timeline row that is green, then grey (the stop), then green again.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("statusd-page.png");
    std::fs::write(&shot, browser.screenshot()).unwrap();
    let (width, height, rgba) = pixels(&shot);
    let is = |x: usize, y: usize, c: [u8; 3]| rgba[(y * width + x) * 4..][..3] == c;
    let count = |c: [u8; 3]| {
        (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .filter(|&(x, y)| is(x, y, c))
            .count()
    };
    let (green, grey) = (count(GREEN), count(GREY));
    assert!(
        green > 3000 && grey > 300,
        "green {green}, grey {grey} pixels in {}",
        shot.display()
    );
    let gap = (0..height).any(|y| {
        let runs: Vec<u8> = (0..width)
            .filter_map(|x| {
                if is(x, y, GREEN) {
                    Some(b'g')
                } else if is(x, y, GREY) {
                    Some(b's')
                } else {
                    None
                }
            })
            .fold(Vec::new(), |mut acc, c| {
                if acc.last() != Some(&c) {
                    acc.push(c);
                }
                acc
            });
        runs.windows(3).any(|w| w == b"gsg")
    });
    assert!(
        gap,
        "no timeline shows running, stopped, running: {}",
        shot.display()
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
    let pid = stack.supervisor.as_ref().unwrap().pid;
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

/// A flood of `/live` streams from clients that never read: 32 are served, the rest get 503 at
/// once, `/health` keeps answering, and a stream whose client went away gives its place back
/// at the next change.
#[test]
fn live_streams_are_capped_and_given_back() {
    let stack = Stack::start(None);
    let port = stack.port;
    wait_until("worker running", || {
        state(&json(port, "/status"), "worker") == "RUNNING"
    });
    let open = |what: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(s, "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap_or_else(|e| panic!("{what}: {e}"));
        (s, String::from_utf8_lossy(&head).into_owned())
    };
    // Served, and then never read again.
    let mut held: Vec<TcpStream> = (0..32)
        .map(|i| {
            let (s, head) = open(&format!("stream {i}"));
            assert_eq!(head, "HTTP/1.1 200", "stream {i}");
            s
        })
        .collect();
    for i in 0..8 {
        let (_, head) = open(&format!("extra stream {i}"));
        assert_eq!(head, "HTTP/1.1 503", "extra stream {i}");
    }
    let answered = (0..20)
        .filter(|_| testkit::http(port, "GET", "/health", &[], b"").0 == 200)
        .count();
    assert_eq!(answered, 20);
    // Ten clients go away; at the next change their streams fail to write and end.
    held.truncate(22);
    stack.ctl(&["stop", "worker"]);
    wait_until("a live place given back", || {
        let (_, head) = open("a new stream");
        head == "HTTP/1.1 200"
    });
    drop(held);
}
