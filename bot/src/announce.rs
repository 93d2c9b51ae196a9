//! Deploy announcements: follow the supervisor's events and post each finished deploy to every
//! guild's announce channel, once. Which deploys were posted is kept in the store, so a bot that
//! was itself restarted by the deploy posts its result after coming back, and never twice.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use poise::serenity_prelude as serenity;
use supervisor_proto::{DeployRecord, Event};

use crate::{Shared, logic};

/// Deploys that ended longer ago than this are history, not news.
const NEWS: Duration = Duration::from_secs(15 * 60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Follows the supervisor for as long as the bot runs, reconnecting with backoff.
pub async fn follow(http: Arc<serenity::Http>, shared: Arc<Shared>) {
    let mut delay = Duration::from_millis(500);
    loop {
        match shared.control.events().await {
            Ok(mut events) => {
                delay = Duration::from_millis(500);
                tracing::info!("following the supervisor's deploys");
                // Whatever ended while we were away (or restarting for it).
                post_news(&http, &shared).await;
                loop {
                    match events.next().await {
                        Ok(Some(Event::Deploy { stage, .. })) if stage.result().is_some() => {
                            post_news(&http, &shared).await;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("the supervisor's event stream broke: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot follow the supervisor: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Finished deploys not yet announced, oldest first.
fn news<'a>(records: &'a [DeployRecord], shared: &Shared, now: u64) -> Vec<&'a DeployRecord> {
    let mut fresh: Vec<&DeployRecord> = records
        .iter()
        .filter(|r| now.saturating_sub(r.started_ms + r.duration_ms) < NEWS.as_millis() as u64)
        .filter(|r| !shared.store.was_announced(&r.id))
        .collect();
    fresh.reverse();
    fresh
}

async fn post_news(http: &serenity::Http, shared: &Shared) {
    let records = match shared.control.deploys(&[], 20).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot read the deploy history: {e}");
            return;
        }
    };
    let channels: Vec<(u64, u64)> = shared
        .store
        .announce_channels()
        .into_iter()
        .filter(|&(guild, _)| match shared.settings.shard {
            Some((id, count)) => logic::shard_of(guild, count) == id,
            None => true,
        })
        .collect();
    for record in news(&records, shared, now_ms()) {
        let text = logic::deploy_result(record);
        for &(guild, channel) in &channels {
            // A commit subject such as "@everyone" stays text: no mention is allowed.
            let message = serenity::CreateMessage::new()
                .content(&text)
                .allowed_mentions(serenity::CreateAllowedMentions::new());
            match serenity::ChannelId::new(channel)
                .send_message(http, message)
                .await
            {
                Ok(_) => tracing::info!(deploy = %record.id, guild, channel, "announced"),
                Err(e) => {
                    tracing::warn!(deploy = %record.id, guild, channel, "cannot announce: {e}")
                }
            }
        }
        if let Err(e) = shared.store.mark_announced(&record.id) {
            tracing::warn!(
                "cannot record the announcement in {}: {e}",
                shared.store.path().display()
            );
        }
    }
}
