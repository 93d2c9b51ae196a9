//! Where bots connect: a WebSocket server on `GATEWAY_LISTEN`. Each connection is two halves
//! around the hub: what the bot sends goes to the hub in order, what the hub sends the bot is
//! written by the connection's writer, which notes the last event written (so that events
//! queued for a bot that went away are not counted as delivered).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{CloseCode, Limits, Message, ServerBuilder};

use crate::hub::{ConnId, Out};

/// What connections tell the hub.
#[derive(Debug)]
pub enum FromBot {
    Connected(ConnId, mpsc::Sender<Out>, Arc<AtomicU64>),
    Text(ConnId, String),
    Gone(ConnId),
}

/// Connections open at once: a bot, its next version during a deploy, and a few more.
const MAX_CONNECTIONS: usize = 16;
/// Frames queued for a bot before it counts as not reading (and is disconnected).
const QUEUE: usize = 8192;
/// The time a client has to finish the WebSocket handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// The largest frame a bot may send (Discord's limit is 4096 bytes).
const MAX_FRAME: usize = 64 * 1024;

/// Accepts bots until the task is dropped.
pub async fn accept(listener: TcpListener, hub: mpsc::Sender<FromBot>) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut next: ConnId = 0;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "too many connections; closing this one");
            continue;
        }
        next += 1;
        let (id, hub, open) = (next, hub.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(id, tcp, &hub).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(id: ConnId, tcp: TcpStream, hub: &mpsc::Sender<FromBot>) {
    let _ = tcp.set_nodelay(true);
    let server = ServerBuilder::new().limits(Limits::default().max_payload_len(Some(MAX_FRAME)));
    let (request, ws) = match tokio::time::timeout(HANDSHAKE, server.accept(tcp)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "a WebSocket handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (mut sink, mut stream) = ws.split();
    let query = request.uri().query().unwrap_or_default();
    if query.split('&').any(|kv| kv == "encoding=etf") {
        // Discord's "Decode error": gatewayd speaks JSON only.
        let close = Message::close(
            CloseCode::try_from(4002).ok(),
            "gatewayd speaks encoding=json only",
        );
        let _ = sink.send(close).await;
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Out>(QUEUE);
    let written = Arc::new(AtomicU64::new(0));
    if hub
        .send(FromBot::Connected(id, tx, written.clone()))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(conn = id, "a bot connected");
    let writer = async {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Text(text, seq) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        return;
                    }
                    written.fetch_max(seq, Ordering::Relaxed);
                }
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::close(CloseCode::try_from(code).ok(), reason))
                        .await;
                    break;
                }
            }
        }
        let _ = sink.close().await;
    };
    // Whether the bot closed the connection.
    let reader = async {
        while let Some(Ok(message)) = stream.next().await {
            if let Some(text) = message.as_text() {
                if hub.send(FromBot::Text(id, text.to_owned())).await.is_err() {
                    return false;
                }
            } else if message.is_close() {
                return true;
            }
        }
        false
    };
    let bot_closed = tokio::select! {
        () = writer => false,
        closed = reader => closed,
    };
    if bot_closed {
        // The bot closed: its close frame is answered (the library queued the answer; this
        // sends it), so that the bot's own shutdown does not wait for it.
        let _ = tokio::time::timeout(HANDSHAKE, sink.close()).await;
    }
    let _ = hub.send(FromBot::Gone(id)).await;
    tracing::debug!(conn = id, "a bot's connection ended");
}
