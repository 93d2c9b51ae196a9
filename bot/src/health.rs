//! What the bot tells the supervisor about itself (`ready = "notify"`): `READY=1` once
//! Discord's READY has arrived and the commands are registered; `STATUS=` with what it is
//! doing; `WATCHDOG=1` on each heartbeat acknowledgement from the gateway, so that a stalled
//! connection (no acknowledgements, endless reconnects) makes it unhealthy and restarted.
//!
//! serenity reports a heartbeat acknowledgement only as a new latency measurement of the shard,
//! so the task below reads each shard's latency and stage a few times per watchdog period and
//! pings when a measurement is new while the shard is connected.

use std::sync::Arc;
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serenity::ConnectionStage;
use supervised::notify::Notifier;
use tokio::sync::watch;

/// How often the shards are looked at without a watchdog (for `STATUS=` only).
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Who the bot is once connected (`connected as X to N guilds, shard A/B`).
pub type Identity = watch::Sender<Option<String>>;

/// Follows the shards until the task is dropped.
pub async fn follow(
    shards: Arc<serenity::ShardManager>,
    notifier: Arc<Notifier>,
    identity: watch::Receiver<Option<String>>,
) {
    let every = notifier.watchdog().map_or(LOOK_EVERY, |w| {
        (w / 4).clamp(Duration::from_millis(50), LOOK_EVERY)
    });
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_latency = None;
    let mut last_status = String::new();
    loop {
        tick.tick().await;
        let (stage, latency) = {
            let runners = shards.runners.lock().await;
            // One shard per process (DISCORD_SHARD): the first is the one.
            match runners.values().next() {
                Some(info) => (Some(info.stage), info.latency),
                None => (None, None),
            }
        };
        let status = match (stage, identity.borrow().as_deref()) {
            (Some(ConnectionStage::Connected), Some(who)) => who.to_owned(),
            (Some(ConnectionStage::Connected), None) => "connected; registering commands".into(),
            (Some(ConnectionStage::Disconnected) | None, _) => "connecting to Discord".into(),
            (Some(stage), Some(_)) => format!("reconnecting: {stage}"),
            (Some(stage), None) => format!("connecting to Discord: {stage}"),
        };
        if status != last_status {
            notifier.status(&status);
            last_status = status;
        }
        if stage == Some(ConnectionStage::Connected) && latency.is_some() && latency != last_latency
        {
            notifier.ping();
        }
        last_latency = latency;
    }
}

/// `connected as NAME to N guilds, shard A/B`.
pub fn describe(ready: &serenity::Ready) -> String {
    let shard = ready
        .shard
        .map_or_else(|| "0/1".to_owned(), |s| format!("{}/{}", s.id, s.total));
    format!(
        "connected as {} to {} guild{}, shard {shard}",
        ready.user.name,
        ready.guilds.len(),
        if ready.guilds.len() == 1 { "" } else { "s" }
    )
}
