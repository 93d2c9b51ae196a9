//! The control socket: accepts connections, checks each peer's uid against the verb it asks
//! for, and hands requests to the daemon's actor. One task per connection; a bad, slow or huge
//! client costs only its own task.
//!
//! # Layout
//! - [`socket`]: binding the Unix socket (refusing a live one, taking over a stale one).
//! - [`acl`]: who may use which verb.
//! - [`audit`]: the trail of state-changing requests, written by a thread of its own.
//! - [`xmlrpc`]: supervisord's XML-RPC (`POST /RPC2`), for a connection that starts with an
//!   HTTP request rather than a JSON hello.

pub mod acl;
pub mod audit;
pub mod socket;
pub mod xmlrpc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised::admission::{Admission, Place};
use supervisor_proto::frame::{self, FrameError};
use supervisor_proto::{
    Body, ClientHello, ErrorBody, ErrorKind, Event, PROTOCOL_VERSION, Reply, Request, RequestFrame,
    ServerFrame, ServerHello, ServerHelloBody,
};
use tokio::io::{AsyncWrite, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use acl::Acl;
pub use audit::AuditLog;
use audit::Peer;

/// A client has this long to say hello, and to finish a frame it started.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no request for this long is closed (event streams excepted).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A request on its way to the actor, with where the answer goes.
#[derive(Debug)]
pub struct ControlRequest {
    pub uid: u32,
    pub request: Request,
    pub reply: oneshot::Sender<Result<Reply, ErrorBody>>,
}

/// What every connection task shares.
#[derive(Clone, Debug)]
pub struct Shared {
    pub requests: mpsc::Sender<ControlRequest>,
    pub events: broadcast::Sender<std::sync::Arc<Event>>,
    pub acl: watch::Receiver<Acl>,
    /// The configuration in force (published by the daemon when it loads or updates it).
    pub config: watch::Receiver<Arc<crate::config::Config>>,
    pub audit: AuditLog,
}

/// Connections open at once, in all and from one uid: a client that opens thousands (idle,
/// or never reading) is refused past its share and costs the daemon a bounded amount of
/// memory, while other users (statusd, hookd) still get in.
const MAX_CONNECTIONS: usize = 512;
const MAX_PER_UID: usize = 128;
/// A reply or event that cannot be written for this long (the client does not read) ends the
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who holds how many connections; a [`Slot`] gives its place back when dropped.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

#[derive(Debug)]
struct Slot {
    slots: Arc<Mutex<Slots>>,
    uid: u32,
}

impl Slots {
    /// A place for a connection from `uid`, or why there is none.
    fn take(slots: &Arc<Mutex<Slots>>, uid: u32) -> Result<Slot, String> {
        let mut s = slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = s.by_uid.get(&uid).copied().unwrap_or(0);
        if mine >= MAX_PER_UID {
            return Err(format!(
                "uid {uid} already has {MAX_PER_UID} connections open; close some"
            ));
        }
        if s.total >= MAX_CONNECTIONS {
            return Err(format!(
                "the supervisor has {MAX_CONNECTIONS} connections open; try again later"
            ));
        }
        s.total += 1;
        *s.by_uid.entry(uid).or_default() += 1;
        Ok(Slot {
            slots: slots.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.total -= 1;
        if let Some(n) = s.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                s.by_uid.remove(&self.uid);
            }
        }
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: UnixListener, shared: Shared) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok((uid, pid)) = stream.peer_cred().map(|c| (c.uid(), c.pid())) else {
                    continue;
                };
                let slot = Slots::take(&slots, uid);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let slot = match slot {
                        Ok(slot) => slot,
                        Err(message) => {
                            tracing::warn!(uid, %message, "control connection refused");
                            let mut stream = stream;
                            let frame = error_frame(0, ErrorKind::Busy, message);
                            let _ = send(&mut stream, &frame).await;
                            return;
                        }
                    };
                    let peer = Peer::new(uid, pid);
                    let ended = match wire(&stream).await {
                        Wire::Http => xmlrpc::connection(stream, peer, shared, None)
                            .await
                            .map_err(|e| e.to_string()),
                        Wire::Json => connection(stream, peer, shared)
                            .await
                            .map_err(|e| e.to_string()),
                        Wire::Silent => {
                            let mut stream = stream;
                            send(&mut stream, &no_hello())
                                .await
                                .map_err(|e| e.to_string())
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                // EMFILE and friends: log, and give descriptors a moment to come back rather
                // than spinning on the same error.
                tracing::warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// TCP connections to `[control.http]` open at once, how many one source may hold, and the
/// places kept for sources holding almost none (as hookd's and statusd's, scaled down): a client
/// past them is closed at once, and one client cannot take every place.
const HTTP_PLACES: (usize, usize, usize) = (64, 16, 8);

/// supervisord's XML-RPC on TCP (`[control.http]`), with its basic authentication: each client
/// gets the grants of `uid`, and its address in the audit trail.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    shared: Shared,
    credentials: Option<xmlrpc::auth::Credentials>,
    uid: u32,
) {
    let (max, per_source, reserve) = HTTP_PLACES;
    let admission = Arc::new(std::sync::Mutex::new(Admission::new(
        max, per_source, reserve,
    )));
    let credentials = Arc::new(credentials);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an XML-RPC connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let place = match Place::take(&admission, addr.ip()) {
            Ok(place) => place,
            Err(refusal) => {
                tracing::warn!(%addr, "XML-RPC connection refused: {}", refusal.as_str());
                continue;
            }
        };
        let (shared, credentials) = (shared.clone(), credentials.clone());
        tokio::spawn(async move {
            let _place = place;
            let peer = Peer {
                uid,
                process: Some(format!("http {addr}")),
            };
            if let Err(e) = xmlrpc::connection(stream, peer, shared, (*credentials).as_ref()).await
            {
                tracing::debug!(error = %e, "XML-RPC connection ended");
            }
        });
    }
}

/// What a connection speaks, by its first byte: an HTTP request (`POST`, `GET`: an upper-case
/// letter), or the JSON protocol's hello (`{`, or anything else, which the JSON side answers);
/// `Silent` when the client sent nothing (or closed) within the hello's deadline.
enum Wire {
    Http,
    Json,
    Silent,
}

async fn wire(stream: &UnixStream) -> Wire {
    use std::os::fd::AsRawFd;
    let peek = async {
        let mut first = [0u8; 1];
        loop {
            stream.readable().await?;
            let peeked = stream.try_io(tokio::io::Interest::READABLE, || {
                nix::sys::socket::recv(
                    stream.as_raw_fd(),
                    &mut first,
                    nix::sys::socket::MsgFlags::MSG_PEEK,
                )
                .map_err(std::io::Error::from)
            });
            match peeked {
                Ok(n) => return Ok::<_, std::io::Error>((n == 1).then_some(first[0])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, peek).await {
        Ok(Ok(Some(byte))) if byte.is_ascii_uppercase() => Wire::Http,
        Ok(Ok(Some(_))) => Wire::Json,
        // Closed at once, or a read error: the JSON side ends it quietly, as before.
        Ok(Ok(None)) | Ok(Err(_)) => Wire::Json,
        Err(_) => Wire::Silent,
    }
}

/// What a client that said nothing within [`HANDSHAKE_TIMEOUT`] is told before the close.
fn no_hello() -> ServerFrame {
    let secs = HANDSHAKE_TIMEOUT.as_secs();
    error_frame(
        0,
        ErrorKind::BadRequest,
        format!("no hello within {secs} s; closing"),
    )
}

fn error_frame(id: u64, kind: ErrorKind, message: impl Into<String>) -> ServerFrame {
    ServerFrame {
        id,
        body: Body::Error(ErrorBody {
            kind,
            message: message.into(),
        }),
    }
}

/// Writes one frame, within [`WRITE_TIMEOUT`].
async fn send<W: AsyncWrite + Unpin>(w: &mut W, frame: &ServerFrame) -> Result<(), FrameError> {
    match tokio::time::timeout(WRITE_TIMEOUT, frame::write(w, frame)).await {
        Ok(written) => written,
        Err(_) => Err(FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read its replies",
        ))),
    }
}

/// The error to send for a frame that could not be read, if the connection can say anything.
fn frame_error(e: &FrameError) -> Option<ServerFrame> {
    match e {
        FrameError::TooLarge => Some(error_frame(
            0,
            ErrorKind::TooLarge,
            format!("frame larger than {} bytes; closing", frame::MAX_FRAME),
        )),
        FrameError::Invalid(err) => Some(error_frame(
            0,
            ErrorKind::BadRequest,
            format!("invalid frame: {err}"),
        )),
        FrameError::Truncated | FrameError::Io(_) => None,
    }
}

async fn connection(stream: UnixStream, peer: Peer, shared: Shared) -> Result<(), FrameError> {
    let uid = peer.uid;
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();

    let hello = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        frame::read::<ClientHello, _>(&mut reader, &mut buf),
    )
    .await
    {
        Err(_) => {
            let _ = send(&mut w, &no_hello()).await;
            return Ok(());
        }
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            if let Some(frame) = frame_error(&e) {
                let _ = send(&mut w, &frame).await;
            }
            return Err(e);
        }
    };
    if hello.hello.protocol != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} is not supported; this supervisor speaks {PROTOCOL_VERSION}",
            hello.hello.protocol
        );
        send(
            &mut w,
            &error_frame(0, ErrorKind::UnsupportedVersion, message),
        )
        .await?;
        return Ok(());
    }
    tracing::debug!(uid, client = %hello.hello.client, "control client connected");
    let hello = ServerHello {
        hello: ServerHelloBody {
            protocol: PROTOCOL_VERSION,
            server: format!("supervisor/{}", env!("CARGO_PKG_VERSION")),
            pid: std::process::id(),
        },
    };
    match tokio::time::timeout(WRITE_TIMEOUT, frame::write(&mut w, &hello)).await {
        Ok(written) => written?,
        Err(_) => return Ok(()),
    }

    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, frame::read_line(&mut reader, &mut buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(false)) => return Ok(()),
            Ok(Ok(true)) => {}
            Ok(Err(e)) => {
                if let Some(frame) = frame_error(&e) {
                    let _ = send(&mut w, &frame).await;
                }
                return Err(e);
            }
        }
        let frame: RequestFrame = match serde_json::from_slice(&buf) {
            Ok(f) => f,
            Err(e) => {
                // Answer with the id if the frame has one, and carry on: framing is intact.
                let id = serde_json::from_slice::<serde_json::Value>(&buf)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                send(
                    &mut w,
                    &error_frame(id, ErrorKind::BadRequest, format!("invalid request: {e}")),
                )
                .await?;
                continue;
            }
        };
        if frame.request == Request::Events && shared.acl.borrow().allows(uid, &frame.request) {
            // Subscribe before answering, so that no event after the answer is missed.
            let events = shared.events.subscribe();
            tracing::debug!(uid, "events subscriber added");
            send(
                &mut w,
                &ServerFrame {
                    id: frame.id,
                    body: Body::Ok(Reply::Subscribed),
                },
            )
            .await?;
            return stream_events(frame.id, events, reader, w).await;
        }
        let body = answer(&shared, &peer, frame.by.as_deref(), frame.request).await;
        send(&mut w, &ServerFrame { id: frame.id, body }).await?;
    }
}

/// Why `uid` may not send `request`, as the error it gets, or `None` when it may.
pub(crate) fn refusal(shared: &Shared, uid: u32, request: &Request) -> Option<ErrorBody> {
    if shared.acl.borrow().allows(uid, request) {
        return None;
    }
    let verb = request.verb();
    tracing::warn!(uid, verb = %verb, "control request refused");
    let message = match request.targets() {
        Some(names) if !names.is_empty() => format!(
            "uid {uid} may not use \"{verb}\" on {} (grant it with [control.allow] {verb} = [...] in supervisor.toml)",
            names.join(", ")
        ),
        _ => format!(
            "uid {uid} may not use \"{verb}\" (grant it with [control.allow] {verb} = [...] in supervisor.toml)"
        ),
    };
    Some(ErrorBody {
        kind: ErrorKind::Forbidden,
        message,
    })
}

/// One request answered, whichever wire it came on: the peer's grant checked, the audit
/// trail read off the actor's thread, anything else asked of the actor, and a state-changing
/// request (refused or not) recorded in the audit trail. Not for `events`, which is a stream.
pub(crate) async fn answer(
    shared: &Shared,
    peer: &Peer,
    by: Option<&str>,
    request: Request,
) -> Body {
    if let Some(refused) = refusal(shared, peer.uid, &request) {
        let body = Body::Error(refused);
        shared.audit.record(peer, by, &request, &body);
        return body;
    }
    if let Request::Audit { limit } = request {
        // A bounded read of a file (after the writer caught up), off the actor's thread.
        let audit = shared.audit.clone();
        let read = tokio::task::spawn_blocking(move || audit.read(limit as usize));
        return match read.await {
            Ok(records) => Body::Ok(Reply::Audit { records }),
            Err(e) => Body::Error(ErrorBody {
                kind: ErrorKind::Internal,
                message: format!("cannot read the audit trail: {e}"),
            }),
        };
    }
    if request == Request::Events {
        return Body::Error(ErrorBody {
            kind: ErrorKind::BadRequest,
            message: "events are a stream: ask for them on the JSON protocol".into(),
        });
    }
    let (tx, rx) = oneshot::channel();
    let audited = request.changes_state().then(|| request.clone());
    let request = ControlRequest {
        uid: peer.uid,
        request,
        reply: tx,
    };
    let body = if shared.requests.send(request).await.is_err() {
        Body::Error(ErrorBody {
            kind: ErrorKind::ShuttingDown,
            message: "the supervisor is shutting down".into(),
        })
    } else {
        match rx.await {
            Ok(Ok(reply)) => Body::Ok(reply),
            Ok(Err(e)) => Body::Error(e),
            Err(_) => Body::Error(ErrorBody {
                kind: ErrorKind::ShuttingDown,
                message: "the supervisor is shutting down".into(),
            }),
        }
    };
    if let Some(request) = &audited {
        shared.audit.record(peer, by, request, &body);
    }
    body
}

/// Forwards events until the client leaves or the supervisor ends the stream.
async fn stream_events<R, W>(
    id: u64,
    mut events: broadcast::Receiver<std::sync::Arc<Event>>,
    mut reader: BufReader<R>,
    mut w: W,
) -> Result<(), FrameError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sink = Vec::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let event = match event {
                    Ok(e) => Event::clone(&e),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                send(&mut w, &ServerFrame { id, body: Body::Event(event) }).await?;
            }
            // Anything the client sends now is ignored; its end of stream ends ours.
            more = frame::read_line(&mut reader, &mut sink) => {
                if !matches!(more, Ok(true)) {
                    return Ok(());
                }
            }
        }
    }
}
