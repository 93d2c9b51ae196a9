//! statusd's alert webhook against a loopback server that speaks Discord's execute-webhook API:
//! a FATAL bot is posted (after a 429 with `retry_after`, honoured), nothing about other
//! programs is, and a webhook that is down at first gets the alert once it is up. Against a
//! hostile one: a redirect is not followed, a huge reply is not read whole, and one that never
//! answers is given up at the deadline and tried again, while statusd keeps serving.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary: std spawns it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::supervisor::{Mode, Supervisor};
use testkit::{free_port, wait_until};

/// What the fake webhook received: (path, body, when).
type Received = Arc<Mutex<Vec<(String, Value, Instant)>>>;

/// A loopback server for `POST /api/webhooks/{id}/{token}`: the first `refuse` requests get a
/// 429 with `retry_after` (seconds), the rest 204, as Discord answers.
fn webhook(listener: TcpListener, refuse: usize) -> Received {
    let received: Received = Arc::default();
    let r = received.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().take(50).enumerate() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            r.lock().unwrap().push((path, body, Instant::now()));
            let reply = if n < refuse {
                let b = r#"{"message": "You are being rate limited.", "retry_after": 0.4, "global": false}"#;
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )
            } else {
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    received
}

struct Stack {
    _supervisor: Supervisor,
    statusd: Child,
    port: u16,
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The supervisor goes with its own drop.
        let _ = self.statusd.kill();
        let _ = self.statusd.wait();
    }
}

/// A supervisor with a `bot` that is FATAL at once and a `web` that is FATAL too, and statusd
/// posting alerts about the bot to `url`.
fn stack(url: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("supervisor.toml"),
        "[program.bot]\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.3; exit 3\"]\nstartretries = 0\ncritical = true\n\n[program.web]\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.3; exit 3\"]\nstartretries = 0\n",
    )
    .unwrap();
    let socket = dir.path().join("data/supervisor.sock");
    let port = free_port();
    let statusd = Command::new(env!("CARGO_BIN_EXE_statusd"))
        .env("STATUSD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SUPERVISOR_SOCKET", &socket)
        .env("ALERT_WEBHOOK_URL", url)
        .env_remove("ALERT_PROGRAMS")
        .env_remove("ALERT_WEBHOOK_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // statusd first, so that it follows the supervisor from its start.
    std::thread::sleep(Duration::from_millis(200));
    Stack {
        _supervisor: Supervisor::start(dir, Mode::Plain),
        statusd,
        port,
    }
}

#[test]
fn a_fatal_bot_reaches_the_webhook_after_a_429() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = webhook(listener, 1);
    let _stack = stack(&format!("http://127.0.0.1:{port}/api/webhooks/123/t0ken"));
    wait_until("the alert, sent again after the 429", || {
        received.lock().unwrap().len() >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        2,
        "only the bot's alert, once (and its retry): {got:?}"
    );
    let (path, body, first) = &got[0];
    assert_eq!(path, "/api/webhooks/123/t0ken");
    assert_eq!(
        body["content"],
        "🔴 bot is FATAL: Exited too quickly (process log may have details)"
    );
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    let (_, again, second) = &got[1];
    assert_eq!(again, body);
    assert!(
        second.duration_since(*first) >= Duration::from_millis(400),
        "retry_after was honoured"
    );
}

#[test]
fn a_webhook_that_is_down_gets_the_alert_once_it_is_up() {
    let port = free_port();
    let _stack = stack(&format!("http://127.0.0.1:{port}/api/webhooks/1/t"));
    // The bot goes FATAL while nothing listens; statusd keeps the alert and retries.
    std::thread::sleep(Duration::from_secs(2));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let received = webhook(listener, 0);
    wait_until("the kept alert", || !received.lock().unwrap().is_empty());
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got[0].1["content"],
        "🔴 bot is FATAL: Exited too quickly (process log may have details)"
    );
}

/// A hostile webhook: each connection's request head is read, then `answer` has the stream.
/// Returns how many connections it took.
fn hostile(
    listener: TcpListener,
    answer: impl Fn(std::net::TcpStream) + Send + Clone + 'static,
) -> Arc<std::sync::atomic::AtomicUsize> {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(20) {
            let Ok(conn) = conn else { break };
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                answer(conn);
            });
        }
    });
    count
}

fn ping(port: u16) -> u16 {
    testkit::http(port, "GET", "/ping", &[], b"").0
}

#[test]
fn a_redirecting_webhook_is_not_followed() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = elsewhere.local_addr().unwrap().port();
    let stolen = hostile(elsewhere, |_| {});
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = hostile(listener, move |mut conn| {
        let reply = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target}/stolen\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = conn.write_all(reply.as_bytes());
    });
    let stack = stack(&format!("http://127.0.0.1:{port}/api/webhooks/1/t0ken"));
    // The first attempt and the retry a second later: both stop at the redirect.
    wait_until("the alert and its retry", || {
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    assert_eq!(
        stolen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "followed"
    );
    assert_eq!(ping(stack.port), 200);
}

#[test]
fn a_huge_reply_is_not_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = written.clone();
    let asked = hostile(listener, move |mut conn| {
        // A 429 whose body is 2 GB of nothing: up to 256 MiB is offered, until statusd hangs up.
        let head = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n";
        let _ = conn.write_all(head.as_bytes());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..256 {
            if conn.write_all(&chunk).is_err() {
                break;
            }
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let stack = stack(&format!("http://127.0.0.1:{port}/api/webhooks/1/t"));
    // statusd hung up on the first reply and tried again.
    wait_until("a second attempt", || {
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", stack.statusd.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib < 64 * 1024,
        "statusd's peak RSS {peak_kib} KiB after a reply of {} MiB was offered",
        written.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(ping(stack.port), 200);
}

#[test]
fn a_webhook_that_never_answers_is_given_up_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = hostile(listener, |conn| {
        // Holds the connection and says nothing, for longer than statusd waits.
        std::thread::sleep(Duration::from_secs(30));
        drop(conn);
    });
    let stack = stack(&format!("http://127.0.0.1:{port}/api/webhooks/1/t"));
    wait_until("the first attempt", || {
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    let first = Instant::now();
    assert_eq!(
        ping(stack.port),
        200,
        "statusd serves while the webhook hangs"
    );
    // Its 10 s deadline, then a retry a second later.
    let deadline = first + Duration::from_secs(20);
    while asked.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no second attempt within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = first.elapsed();
    assert!(took >= Duration::from_secs(9), "given up after {took:?}");
}
