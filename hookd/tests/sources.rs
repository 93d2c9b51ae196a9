//! HOOKD_ALLOW_FROM and HOOKD_TRUSTED_PROXIES against the real binary on 127.0.0.1: a
//! delivery from elsewhere is refused before anything else is looked at, and
//! `X-Forwarded-For` counts only from a trusted proxy.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod stack;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use stack::*;

struct Hookd(Child);

impl Drop for Hookd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hookd(allow: &str, proxies: &str) -> (Hookd, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .env("HOOKD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKD_SECRET", SECRET)
        .env("HOOKD_ALLOW_FROM", allow)
        .env("HOOKD_TRUSTED_PROXIES", proxies)
        .env("SUPERVISOR_SOCKET", "/nonexistent/supervisor.sock")
        .env("HOOKD_BRANCH", "main")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Hookd(child);
    wait_until("hookd to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, port)
}

fn deliver(port: u16, forwarded_for: Option<&str>) -> u16 {
    deliver_through(port, forwarded_for.as_slice())
}

/// With one `X-Forwarded-For` header line per item, in order.
fn deliver_through(port: u16, forwarded_for: &[&str]) -> u16 {
    let body = push_payload("refs/heads/main", &"a".repeat(40));
    // A wrong signature: a delivery that passes the source check gets 401, one that does not
    // gets 403 before its signature is looked at.
    let mut headers = gitea("d", Some("0".repeat(64)));
    for xff in forwarded_for {
        headers.push(("X-Forwarded-For", (*xff).to_owned()));
    }
    http(port, "POST", "/webhook", &headers, &body).0
}

#[test]
fn only_allowed_sources_may_deliver() {
    let (_h, port) = hookd("192.0.2.0/24", "127.0.0.1");
    assert_eq!(deliver(port, None), 403, "127.0.0.1 itself is not allowed");
    assert_eq!(
        deliver(port, Some("192.0.2.7")),
        401,
        "the proxy's client is"
    );
    assert_eq!(deliver(port, Some("192.0.2.7, 203.0.113.9")), 403);
    // A proxy that appends its own header line instead of extending the client's: the forged
    // first line is not the client, the right-most untrusted address over all lines is.
    assert_eq!(deliver_through(port, &["192.0.2.7", "203.0.113.9"]), 403);
    assert_eq!(deliver_through(port, &["203.0.113.9", "192.0.2.7"]), 401);
    assert_eq!(
        http(port, "GET", "/healthz", &[], b"").0,
        200,
        "health is not a delivery"
    );

    // Without a trusted proxy the header is anyone's to write, and is ignored.
    let (_h, port) = hookd("192.0.2.0/24", "");
    assert_eq!(deliver(port, Some("192.0.2.7")), 403);

    // No list: everyone may (the signature still decides).
    let (_h, port) = hookd("", "");
    assert_eq!(deliver(port, None), 401);
}

#[test]
fn a_bad_network_is_a_configuration_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .env("HOOKD_SECRET", SECRET)
        .env("HOOKD_ALLOW_FROM", "10.0.0.0/99")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HOOKD_ALLOW_FROM: \"10.0.0.0/99\" is not an address or network (CIDR)"),
        "{err}"
    );
}

/// RUST_LOG sets what hookd logs (the `supervised` logging shared with statusd and the bot).
#[test]
fn rust_log_is_honoured() {
    let run = |rust_log: Option<&str>| -> String {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookd"));
        cmd.env("HOOKD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKD_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        let child = cmd.spawn().unwrap();
        wait_until("hookd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        stack::nix_kill(child.id(), "TERM").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(None).contains("hookd listening"));
    assert!(!run(Some("warn")).contains("hookd listening"));
    let garbled = run(Some("hookd=loud"));
    assert!(
        garbled.contains("RUST_LOG is not a usable filter"),
        "{garbled}"
    );
}
