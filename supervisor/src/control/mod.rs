//! The control socket: accepts connections, checks each peer's uid against the verb it asks
//! for, and hands requests to the daemon's actor. One task per connection; a bad, slow or huge
//! client costs only its own task.
//!
//! # Layout
//! - [`socket`]: binding the Unix socket (refusing a live one, taking over a stale one).
//! - [`acl`]: who may use which verb.

pub mod acl;
pub mod socket;

use std::time::Duration;

use supervisor_proto::frame::{self, FrameError};
use supervisor_proto::{
    Body, ClientHello, ErrorBody, ErrorKind, Event, PROTOCOL_VERSION, Reply, Request, RequestFrame,
    ServerFrame, ServerHello, ServerHelloBody,
};
use tokio::io::{AsyncWrite, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use acl::Acl;

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
    pub events: broadcast::Sender<Event>,
    pub acl: watch::Receiver<Acl>,
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: UnixListener, shared: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, shared).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
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

fn error_frame(id: u64, kind: ErrorKind, message: impl Into<String>) -> ServerFrame {
    ServerFrame {
        id,
        body: Body::Error(ErrorBody {
            kind,
            message: message.into(),
        }),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, frame: &ServerFrame) -> Result<(), FrameError> {
    frame::write(w, frame).await
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

async fn connection(stream: UnixStream, shared: Shared) -> Result<(), FrameError> {
    let uid = stream.peer_cred()?.uid();
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
            let _ = send(
                &mut w,
                &error_frame(0, ErrorKind::BadRequest, "no hello within 5 s; closing"),
            )
            .await;
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
    frame::write(
        &mut w,
        &ServerHello {
            hello: ServerHelloBody {
                protocol: PROTOCOL_VERSION,
                server: format!("supervisor/{}", env!("CARGO_PKG_VERSION")),
                pid: std::process::id(),
            },
        },
    )
    .await?;

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
        let verb = frame.request.verb();
        if !shared.acl.borrow().allows(uid, verb) {
            tracing::warn!(uid, verb, "control request refused");
            let message = format!(
                "uid {uid} may not use \"{verb}\" (grant it with [control.allow] {verb} = [...] in supervisor.toml)"
            );
            send(
                &mut w,
                &error_frame(frame.id, ErrorKind::Forbidden, message),
            )
            .await?;
            continue;
        }
        if frame.request == Request::Events {
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
        let (tx, rx) = oneshot::channel();
        let request = ControlRequest {
            uid,
            request: frame.request,
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
        send(&mut w, &ServerFrame { id: frame.id, body }).await?;
    }
}

/// Forwards events until the client leaves or the supervisor ends the stream.
async fn stream_events<R, W>(
    id: u64,
    mut events: broadcast::Receiver<Event>,
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
                    Ok(e) => e,
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
