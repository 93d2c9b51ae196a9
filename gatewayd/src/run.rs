//! The task that owns the hub: it turns what the shard and the bots' connections report into
//! the hub's calls, and the hub's effects into frames to Discord, readiness and watchdog
//! pings to the supervisor, and saves of the kept state (on a blocking thread).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::downstream::{self, FromBot};
use crate::hub::{self, Effect, Hub, Kept};
use crate::settings::Settings;
use crate::state;
use crate::stats::Stats;
use crate::upstream::{self, Up};

/// How often bots' heartbeats are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often the kept state is saved when it changed.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// On SIGTERM: the time the last save has to finish.
const SAVE_WAIT: Duration = Duration::from_secs(5);

/// The exit code for Discord's fatal close `code`: 78 (`EX_CONFIG`, which the supervisor
/// shows FATAL) for a token or intents Discord refuses, 1 otherwise.
fn exit_code(code: u16) -> u8 {
    match code {
        4004 | 4013 | 4014 => supervised::EX_CONFIG,
        _ => 1,
    }
}

/// Serves bots on `listener` (and `/metrics` on `metrics`) until `shutdown` resolves (the
/// binary's: SIGTERM or SIGINT), or until Discord ends the session for good; returns the exit
/// code.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> u8 {
    let stats = Arc::new(Stats::default());
    let kept = settings.state.as_deref().and_then(state::load);
    let url = listener
        .local_addr()
        .map_or_else(|_| settings.listen.to_string(), |a| a.to_string());
    let config = hub::Config {
        token: hub::bare(settings.token.expose()).to_owned(),
        intents: settings.intents,
        capacity: settings.buffer,
        url: format!("ws://{url}"),
    };
    let mut hub = Hub::new(config, kept, stats.clone());
    let mut held = upstream::start(&settings, hub.upstream());
    let (bots_tx, mut bots) = mpsc::channel(1024);
    let accept = tokio::spawn(downstream::accept(listener, bots_tx));
    let _metrics = metrics.map(|l| tokio::spawn(serve_metrics(l, stats.clone())));
    let saver = settings.state.clone().map(|path| {
        let (tx, rx) = watch::channel(None::<Kept>);
        (tx, tokio::spawn(save_loop(path, rx)))
    });
    let notifier = Arc::new(supervised::notify::Notifier::from_env());
    let mut tick = tokio::time::interval(TICK);
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    tokio::pin!(shutdown);
    let code = loop {
        let effects = tokio::select! {
            () = &mut shutdown => break None,
            up = held.reports.recv() => match up {
                Some(Up::Text(text)) => hub.from_upstream(&text),
                Some(Up::Closed(code)) => hub.upstream_closed(code),
                Some(Up::Ended) | None => break Some(1),
            },
            Some(m) = bots.recv() => match m {
                FromBot::Connected(id, tx, written) => {
                    hub.connected(id, tx, written);
                    Vec::new()
                }
                FromBot::Text(id, text) => hub.from_bot(id, &text, Instant::now()),
                FromBot::Gone(id) => {
                    hub.disconnected(id);
                    Vec::new()
                }
            },
            _ = tick.tick() => {
                hub.tick(Instant::now());
                Vec::new()
            }
            _ = save_tick.tick() => {
                if let (Some((tx, _)), Some(kept)) = (&saver, hub.snapshot()) {
                    let _ = tx.send(Some(kept));
                }
                Vec::new()
            }
        };
        let mut fatal = None;
        for effect in effects {
            match effect {
                Effect::Upstream(json) => {
                    if let Err(e) = held.sender.send(json) {
                        tracing::warn!(error = %e, "cannot send to Discord");
                    }
                }
                Effect::Ready => {
                    notifier.ready();
                    notifier.status("holding the Discord session");
                }
                Effect::Alive => notifier.ping(),
                Effect::Fatal(code) => fatal = Some(code),
            }
        }
        if let Some(code) = fatal {
            tracing::error!(code, "Discord closed the session for good");
            break Some(exit_code(code));
        }
    };
    accept.abort();
    if code.is_none() {
        notifier.stopping();
        // Bots reconnect and resume with the next gatewayd; Discord keeps the session for
        // the next one to resume (4000, not 1000, which would end it).
        hub.shutdown();
        if let Some(stop) = held.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(upstream::CLOSE_WAIT * 2, async {
            while let Some(up) = held.reports.recv().await {
                match up {
                    Up::Text(text) => drop(hub.from_upstream(&text)),
                    Up::Closed(_) => {}
                    Up::Ended => break,
                }
            }
        })
        .await;
    }
    held.task.abort();
    if let Some((tx, task)) = saver {
        drop(tx);
        let _ = tokio::time::timeout(SAVE_WAIT, task).await;
        let path = settings.state.clone().filter(|_| code.is_none());
        if let Some(path) = path {
            let kept = hub.kept();
            let saved = tokio::task::spawn_blocking(move || state::save(&path, &kept));
            match tokio::time::timeout(SAVE_WAIT, saved).await {
                Ok(Ok(Ok(()))) => tracing::info!("the session is kept for the next start"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot keep the session"),
                _ => tracing::warn!("keeping the session took too long"),
            }
        }
    }
    // The close frames queued for bots go out before the runtime ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    code.unwrap_or(0)
}

/// Saves each state the hub hands over, one at a time (a newer one replaces a waiting one).
async fn save_loop(path: std::path::PathBuf, mut rx: watch::Receiver<Option<Kept>>) {
    while rx.changed().await.is_ok() {
        let Some(kept) = rx.borrow_and_update().clone() else {
            continue;
        };
        let path = path.clone();
        match tokio::task::spawn_blocking(move || state::save(&path, &kept)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the kept session"),
            Err(e) => tracing::warn!(error = %e, "the save stopped"),
            Ok(Ok(())) => {}
        }
    }
}

async fn serve_metrics(listener: TcpListener, stats: Arc<Stats>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let stats = stats.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    stats.render(),
                )
            }
        }),
    );
    let limits = supervised::http::Limits::default();
    let never = std::future::pending::<()>();
    if let Err(e) = supervised::http::serve(listener, app, limits, Default::default(), never).await
    {
        tracing::warn!(error = %e, "the metrics server stopped");
    }
}
