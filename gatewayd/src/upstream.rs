//! The held session: twilight-gateway's shard, which connects, identifies (or resumes a kept
//! session), heartbeats, keeps Discord's command rate limit, and reconnects and resumes as
//! Discord's close codes say. What it receives is passed on raw, in order, to the hub.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Intents, Message, MessageSender, Session, Shard, ShardId, ShardState,
};

use crate::hub::Upstream;
use crate::settings::{DISCORD_GATEWAY, Settings};

/// What the shard reports to the hub.
#[derive(Debug)]
pub enum Up {
    /// A text frame from Discord (every op: dispatches, hello, acks, invalid session).
    Text(String),
    /// The connection closed (the shard reconnects unless the code is fatal).
    Closed(Option<u16>),
    /// The shard stopped: for good (a fatal close code), or as asked.
    Ended,
}

/// The held session's task, as [`start`] returns it.
#[derive(Debug)]
pub struct Held {
    /// Sends commands on the session (with Discord's rate limit).
    pub sender: MessageSender,
    /// What the session receives.
    pub reports: mpsc::Receiver<Up>,
    /// Closes the session so that it can be resumed (close code 4000), then ends the task,
    /// which reports [`Up::Ended`].
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

/// How long closing the session may take.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Starts the shard, resuming `resume` if given.
pub fn start(settings: &Settings, resume: Option<&Upstream>) -> Held {
    let token = crate::hub::bare(settings.token.expose()).to_owned();
    let mut config = ConfigBuilder::new(token, Intents::from_bits_retain(settings.intents));
    if settings.upstream != DISCORD_GATEWAY {
        config = config.proxy_url(settings.upstream.clone());
    }
    if let Some(u) = resume {
        tracing::info!(seq = u.seq, "resuming the kept session");
        config = config
            .session(Session::new(u.seq, u.session_id.clone()))
            .resume_url(u.resume_url.clone());
    }
    let shard = Shard::with_config(ShardId::ONE, config.build());
    let sender = shard.sender();
    let (tx, reports) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(hold(shard, tx, stopped));
    Held {
        sender,
        reports,
        stop: Some(stop),
        task,
    }
}

fn report(item: Result<Message, twilight_gateway::error::ReceiveMessageError>) -> Option<Up> {
    match item {
        Ok(Message::Text(text)) => Some(Up::Text(text)),
        Ok(Message::Close(frame)) => {
            let code = frame.as_ref().map(|f| f.code);
            tracing::info!(?code, "Discord's connection closed");
            Some(Up::Closed(code))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the held session");
            None
        }
    }
}

async fn hold(mut shard: Shard, tx: mpsc::Sender<Up>, mut stopped: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            item = shard.next() => match item {
                Some(item) => {
                    let Some(up) = report(item) else { continue };
                    if tx.send(up).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = &mut stopped => {
                close(&mut shard, &tx).await;
                break;
            }
        }
    }
    let _ = tx.send(Up::Ended).await;
}

/// Sends Discord a close frame that keeps the session resumable, and stops before the shard
/// reconnects: once the frame is out (the shard says it is disconnected), or at [`CLOSE_WAIT`].
/// What arrives meanwhile is still reported.
async fn close(shard: &mut Shard, tx: &mpsc::Sender<Up>) {
    shard.close(CloseFrame::RESUME);
    let deadline = Instant::now() + CLOSE_WAIT;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(50), shard.next()).await {
            Ok(None | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(item)) => {
                if let Some(up) = report(item) {
                    let _ = tx.send(up).await;
                }
            }
            Err(_) => {}
        }
        if matches!(shard.state(), ShardState::Disconnected { .. }) {
            return;
        }
    }
}
