//! Serving an axum router on a TCP listener, bounded.
//!
//! axum's own `serve` has no timer, so hyper's header timeout never applies, and it accepts
//! every connection: a thousand idle clients, or one that declares a 10 GB body and sends two
//! bytes, hold the server. Here each connection is an HTTP/1.1 connection of hyper with:
//! - a header read timeout, which also closes keep-alive connections left idle between
//!   requests;
//! - a whole-request timeout (reading the body included): `408 Request Timeout`, and the
//!   connection is closed;
//! - a `413 Payload Too Large` at once for a declared `Content-Length` over the body limit,
//!   before any of the body is read;
//! - a cap on open connections, on those of one source, and a reserve of places for sources
//!   that hold almost none ([`crate::admission`]): past them, a new connection is closed at
//!   once (and counted) rather than queued, so the ones being served keep their resources and
//!   one client cannot shut the others out;
//! - the peer's address as axum's `ConnectInfo<SocketAddr>`, for handlers that need it;
//! - on shutdown, the listener closes, idle connections close, requests in flight get
//!   `shutdown_grace` to finish, and whatever is left is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::{Admission, Place};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// The bounds of one server. [`Limits::default`] suits a small daemon behind nginx.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections one source (an IPv4 address, an IPv6 /64) may hold at once.
    pub max_per_source: usize,
    /// The last places, kept for sources holding fewer than 4 connections (at most an eighth
    /// of `max_connections`).
    pub reserve: usize,
    /// Time to send a request's head, and the longest a connection may sit idle.
    pub header_timeout: Duration,
    /// Time from a request's head to the end of its response being produced (its body read).
    pub request_timeout: Duration,
    /// A declared `Content-Length` above this is refused with 413 before reading the body.
    pub body_limit: Option<u64>,
    /// On shutdown, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_source: 256,
            reserve: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_limit: None,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// How many connections were closed at once for being over the cap; for a metric or a test.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    refused: Arc<AtomicU64>,
}

impl Counters {
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then closes as
/// the module docs say. Errors of single connections are logged at debug level and never end
/// the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Counters,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let admission = Arc::new(std::sync::Mutex::new(Admission::new(
        limits.max_connections,
        limits.max_per_source,
        limits.reserve,
    )));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or memory: give the connections in flight a moment
                    // to finish instead of spinning on accept.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match Place::take(&admission, peer.ip()) {
            Ok(place) => place,
            Err(why) => {
                let refused = counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        limit = limits.max_connections,
                        per_source = limits.max_per_source,
                        %peer,
                        refused,
                        "closing new connections: {}",
                        why.as_str()
                    );
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The peer, for handlers that ask (axum's `ConnectInfo<SocketAddr>`).
            request.extensions_mut().insert(ConnectInfo(peer));
            respond(router.clone(), request, limits)
        });
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            left = connections.len(),
            "closing connections still open after the grace period"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn respond(
    router: Router,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<Body>, Infallible> {
    let declared = declared_length(&request);
    if limits
        .body_limit
        .is_some_and(|limit| declared.is_some_and(|n| n > limit))
    {
        return Ok(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this server accepts\n",
        ));
    }
    let request = request.map(Body::new);
    match tokio::time::timeout(limits.request_timeout, router.oneshot(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(never)) => match never {},
        Err(_) => Ok(plain(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long to arrive\n",
        )),
    }
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A short text answer that also closes the connection (the client misbehaved or was slow).
fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
