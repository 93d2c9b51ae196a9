//! Replicas: a verified push relayed to the other replicas' hookd (`HOOKD_PEERS`), each of
//! which verifies it again and deploys; a relayed delivery is not relayed again. Two real
//! stacks (supervisor, hookd, a deployable program) and a plain listener that records what a
//! relay sends, all on 127.0.0.1.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod stack;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use stack::*;

/// One request a peer received: its header lines (lowercased names) and body.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A peer that answers 202 to everything and hands over what it received.
fn recording_peer() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            headers.push(("request".to_owned(), line.trim().to_owned()));
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = conn.write_all(
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
            if tx.send(Received { headers, body }).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_verified_push_is_relayed_to_every_peer_once() {
    let (recorder, received) = recording_peer();
    // Replica B relays to the recorder only; replica A to B and to the recorder.
    let b = Stack::start_with(
        "",
        None,
        &format!(r#"HOOKD_PEERS = "127.0.0.1:{recorder}", "#),
    );
    let a = Stack::start_with(
        "",
        None,
        &format!(
            r#"HOOKD_PEERS = "localhost:{}, 127.0.0.1:{recorder}", "#,
            b.port
        ),
    );
    let va = push(a.root(), "2");
    let vb = push(b.root(), "2");
    let body = push_payload("refs/heads/main", &va);
    let (status, reply) = http(
        a.port,
        "POST",
        "/webhook",
        &gitea("d-1", Some(sign(&body))),
        &body,
    );
    assert_eq!(status, 202, "{reply}");

    // Both replicas deploy their branch's tip; B's record says the push was relayed.
    for (replica, commit) in [(&a, &va), (&b, &vb)] {
        wait_until("the deploy to succeed", || {
            replica
                .history()
                .first()
                .is_some_and(|r| r["result"] == "succeeded")
        });
        assert_eq!(
            replica.history()[0]["new_commit"].as_str(),
            Some(commit.as_str())
        );
    }
    assert_eq!(a.history()[0]["trigger"], "hookd: gitea push d-1");
    let trigger = b.history()[0]["trigger"].as_str().unwrap().to_owned();
    assert!(
        trigger.starts_with("hookd: gitea push d-1 relayed by "),
        "{trigger}"
    );

    // What a relay sends: the forge's body and signature unchanged, marked as relayed, to
    // /webhook/PROGRAM; and only A relayed (B did not pass A's relay on).
    let got = received.recv_timeout(PATIENCE).unwrap();
    assert_eq!(got.body, body);
    assert_eq!(header(&got, "request"), Some("POST /webhook/app HTTP/1.1"));
    assert_eq!(
        header(&got, "x-gitea-signature"),
        Some(sign(&body).as_str())
    );
    assert_eq!(header(&got, "x-gitea-event"), Some("push"));
    assert_eq!(header(&got, "x-gitea-delivery"), Some("d-1"));
    assert!(header(&got, "x-hookd-relayed-by").is_some());
    assert!(received.recv_timeout(Duration::from_secs(1)).is_err());

    // A relay adds no trust: a "relayed" delivery with a bad signature is refused.
    let v3 = push(b.root(), "3");
    let body = push_payload("refs/heads/main", &v3);
    let mut forged = gitea("d-2", Some(sign(b"something else")));
    forged.push(("X-Hookd-Relayed-By", "replica-a".to_owned()));
    let (status, _) = http(b.port, "POST", "/webhook", &forged, &body);
    assert_eq!(status, 401);

    // A delivery straight from the forge to B is relayed by B.
    let (status, reply) = http(
        b.port,
        "POST",
        "/webhook",
        &gitea("d-3", Some(sign(&body))),
        &body,
    );
    assert_eq!(status, 202, "{reply}");
    let got = received.recv_timeout(PATIENCE).unwrap();
    assert_eq!(header(&got, "x-gitea-delivery"), Some("d-3"));
    wait_until("B to deploy version 3", || {
        b.history().iter().any(|r: &Value| {
            r["new_commit"].as_str() == Some(v3.as_str()) && r["result"] == "succeeded"
        })
    });
    assert_eq!(
        a.history().len(),
        1,
        "A was not told about B's direct delivery"
    );
}
