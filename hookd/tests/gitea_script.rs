//! scripts/gitea-webhook against a fake Gitea API on 127.0.0.1: the requests it makes (the
//! documented `POST /api/v1/repos/{owner}/{repo}/hooks` body, token auth), the secret it writes
//! to the env file, and an update instead of a duplicate on the second run.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    authorization: String,
    body: Value,
}

/// Serves `answers` (status, body) in order, one per connection; records each request.
fn fake_gitea(answers: Vec<(u16, Value)>) -> (u16, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, answer) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let (mut length, mut authorization) = (0, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "authorization" => authorization = v.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(Request {
                method,
                path,
                authorization,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let text = answer.to_string();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (port, seen)
}

fn run(port: u16, env_file: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gitea-webhook");
    let out = Command::new(script)
        .args([
            &format!("http://127.0.0.1:{port}/"),
            "alice/bot",
            "https://pi.local/webhook",
        ])
        .env("GITEA_TOKEN", "t0ken")
        .env("ENV_FILE", env_file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_gitea_script_registers_then_updates_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, "DISCORD_TOKEN=x\n").unwrap();

    // First run: no hooks yet; one is created with a new secret.
    let (port, seen) = fake_gitea(vec![(200, json!([])), (201, json!({"id": 7}))]);
    let (code, out) = run(port, &env_file);
    assert_eq!(code, 0, "{out}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let secret = env
        .lines()
        .find_map(|l| l.strip_prefix("HOOKD_SECRET="))
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64, "{env}");
    assert!(
        env.starts_with("DISCORD_TOKEN=x\n"),
        "the file is kept: {env}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/api/v1/repos/alice/bot/hooks")
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/api/v1/repos/alice/bot/hooks")
    );
    assert!(seen.iter().all(|r| r.authorization == "token t0ken"));
    assert_eq!(
        seen[1].body,
        json!({
            "type": "gitea", "active": true, "events": ["push"], "branch_filter": "main",
            "config": {"url": "https://pi.local/webhook", "content_type": "json", "secret": secret},
        })
    );

    // Second run: the hook exists; it is updated, with the same secret.
    let existing = json!([{"id": 7, "config": {"url": "https://pi.local/webhook"}}]);
    let (port, seen) = fake_gitea(vec![(200, existing), (200, json!({"id": 7}))]);
    let (code, out) = run(port, &env_file);
    assert_eq!(code, 0, "{out}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("PATCH", "/api/v1/repos/alice/bot/hooks/7")
    );
    assert_eq!(seen[1].body["config"]["secret"], secret.as_str());
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), env);

    // A refusal (a bad token) is an error, not a success.
    let (port, _) = fake_gitea(vec![(401, json!({"message": "token is required"}))]);
    let (code, out) = run(port, &env_file);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot list hooks"), "{out}");
}
