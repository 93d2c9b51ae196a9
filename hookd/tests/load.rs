//! Bounded under load (loopback only, a fixed number of connections, a few seconds): 1,000
//! idle connections each held against hookd, statusd and the supervisor's control socket do
//! not stop a signed webhook from deploying or `/health` from answering within 1 s, and the
//! supervisor's memory stays where it was. The control socket admits 128 of them (its cap per
//! uid) and refuses the rest at once; hookd and statusd, whose idle connections come from one
//! client (127.0.0.2), hold that client's share (256) until their header timeout and close the
//! rest at once, so that every request of another client (127.0.0.1) is answered.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod stack;

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use stack::*;

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const IDLE: usize = 1000;

#[test]
fn root_a_thousand_idle_connections_each_do_not_stop_a_deploy_or_health() {
    if !nix_is_root() {
        eprintln!("skipped: needs root (hookd and statusd run as nobody, as in the container)");
        return;
    }
    supervised::limits::raise_nofile();
    // As in the container, hookd and statusd have their own uid; the idle connections come
    // from another (this test's).
    let stack = Stack::start_as("", Some("nobody"));
    let before = stack.supervisor_rss_kib();

    let mut held: Vec<TcpStream> = Vec::with_capacity(2 * IDLE);
    let flooder = std::net::Ipv4Addr::new(127, 0, 0, 2);
    for port in [stack.port, stack.statusd_port] {
        for _ in 0..IDLE {
            held.push(connect_from(flooder, port).unwrap());
        }
    }
    let socket = stack.root().join("data/supervisor.sock");
    let control: Vec<UnixStream> = (0..IDLE)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();

    // /health, straight away and within 1 s.
    let asked = Instant::now();
    let (status, body) = http(stack.statusd_port, "GET", "/health", &[], b"");
    let took = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    for (port, path) in [(stack.port, "/healthz"), (stack.statusd_port, "/health")] {
        let answered = (0..20)
            .filter(|_| http(port, "GET", path, &[], b"").0 == 200)
            .count();
        assert_eq!(answered, 20, "{path} answered while one client floods");
    }

    // A signed push is accepted within 1 s and deploys.
    let v2 = push(stack.root(), "2");
    let body = push_payload("refs/heads/main", &v2);
    let asked = Instant::now();
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("load-1", Some(sign(&body))),
        &body,
    );
    let took = asked.elapsed();
    assert_eq!(status, 202, "{reply}");
    assert!(took < Duration::from_secs(1), "the webhook took {took:?}");
    wait_until("the deploy to succeed", || {
        stack
            .history()
            .first()
            .is_some_and(|r| r["result"] == "succeeded")
    });
    assert_eq!(stack.history()[0]["new_commit"].as_str(), Some(v2.as_str()));

    let during = stack.supervisor_rss_kib();
    drop(held);
    drop(control);
    // The supervisor gives its connections' memory back: within a few MB of where it began.
    wait_until("the supervisor's memory to settle", || {
        stack.supervisor_rss_kib() < before + 4096
    });
    eprintln!(
        "supervisor RSS: {before} KiB before, {during} KiB with {IDLE} idle control connections, {} KiB after",
        stack.supervisor_rss_kib()
    );
}
