//! The bounded server against real clients on 127.0.0.1.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use supervised::http::{Counters, Limits, serve};
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    counters: Counters,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl Server {
    fn start(limits: Limits) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let counters = Counters::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let c = counters.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let router = Router::new()
                    .route("/", get(|| async { "hello\n" }))
                    .route("/echo", post(|body: Bytes| async move { body }));
                let mut asked = None;
                let shutdown = async {
                    let _ = stopped.await;
                    asked = Some(Instant::now());
                };
                serve(listener, router, limits, c, shutdown).await.unwrap();
                asked.map_or(Duration::ZERO, |t| t.elapsed())
            })
        });
        Self {
            addr,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Stops the server; returns how long it took to return after being asked.
    fn stop(mut self) -> Duration {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn get_root(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until the peer closes; returns what arrived and how long the close took.
fn read_to_close(s: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        body_limit: Some(1024),
        ..Limits::default()
    }
}

#[test]
fn idle_connections_are_closed_before_and_between_requests() {
    let server = Server::start(quick());
    let mut silent = server.connect();
    let (_, took) = read_to_close(&mut silent);
    assert!(
        took < Duration::from_secs(3),
        "a silent client was held {took:?}"
    );

    let mut kept = server.connect();
    assert!(get_root(&mut kept).contains("hello"));
    let (_, took) = read_to_close(&mut kept);
    assert!(
        took < Duration::from_secs(3),
        "an idle keep-alive was held {took:?}"
    );
}

#[test]
fn a_declared_oversized_body_is_refused_at_once() {
    let server = Server::start(quick());
    let mut s = server.connect();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\nab")
        .unwrap();
    let start = Instant::now();
    let (reply, _) = read_to_close(&mut s);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_body_that_never_arrives_times_out() {
    let server = Server::start(quick());
    let mut s = server.connect();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .unwrap();
    let (reply, took) = read_to_close(&mut s);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A complete request on a new connection is still served.
    let mut ok = server.connect();
    assert!(get_root(&mut ok).contains("hello"));
}

#[test]
fn past_the_cap_new_connections_are_closed_and_counted() {
    let server = Server::start(Limits {
        max_connections: 3,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    });
    let mut held: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    // Each held connection is being served (answers a request).
    for s in &mut held {
        assert!(get_root(s).contains("hello"));
    }
    let mut extra = server.connect();
    let (reply, took) = read_to_close(&mut extra);
    assert_eq!(reply, "");
    assert!(took < Duration::from_secs(3));
    assert_eq!(server.counters.refused(), 1);
    drop(held.pop());
    // The freed place is taken by the next client (once the server saw the close).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = server.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        if s.read(&mut buf).is_ok_and(|n| n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_does_not_wait_on_slow_clients() {
    let server = Server::start(Limits {
        header_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(300),
        ..Limits::default()
    });
    // One idle client and one stuck in the middle of its body.
    let _idle = server.connect();
    let mut slow = server.connect();
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

/// One request on a new connection from 127.0.0.1; whether it was answered.
fn served(server: &Server) -> bool {
    let Ok(mut s) = TcpStream::connect(server.addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    s.read(&mut buf)
        .is_ok_and(|n| String::from_utf8_lossy(&buf[..n]).contains("hello"))
}

#[test]
fn one_source_cannot_shut_the_others_out() {
    supervised::limits::raise_nofile();
    let server = Server::start(Limits {
        header_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let port = server.addr.port();
    let from = |last: u8| std::net::Ipv4Addr::new(127, 0, 0, last);
    // 1,100 idle connections from one client: it gets its share (256), the rest are closed.
    let mut held: Vec<TcpStream> = (0..1100)
        .filter_map(|_| testkit::connect_from(from(2), port).ok())
        .collect();
    testkit::wait_until("the flood to be sorted", || {
        server.counters.refused() >= 844
    });
    let answered = (0..20).filter(|_| served(&server)).count();
    assert_eq!(answered, 20, "another client's requests while one floods");
    // Four more heavy clients fill the places up to the reserve; a light one still gets in.
    for last in 3..=6 {
        held.extend((0..256).filter_map(|_| testkit::connect_from(from(last), port).ok()));
    }
    // Of 2,124 connections, 1,024 - 64 went to heavy sources and 4 into the reserve.
    testkit::wait_until("every connection to be sorted", || {
        server.counters.refused() >= 2124 - 964
    });
    let answered = (0..20).filter(|_| served(&server)).count();
    assert_eq!(
        answered, 20,
        "a light client's requests with the places full"
    );
    assert_eq!(server.counters.refused(), 2124 - 964);
    drop(held);
}
