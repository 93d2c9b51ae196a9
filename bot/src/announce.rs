//! Announcements: follow the supervisor's events and post each finished deploy, and each alert
//! (a program FATAL, out of start budget, unhealthy, crash-looping, and its recovery), to every
//! guild's announce channel, once. What was posted is kept in the store, so a bot that was itself
//! restarted posts what it missed after coming back, and never twice. Alerts are coalesced: at
//! most one message per program per minute, naming how many more there were. With
//! `DISCORD_ALERT_DMS=on`, alerts about `critical` programs also reach each owner as a direct message
//! (sent by shard 0 only, when the bot runs sharded).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use poise::serenity_prelude as serenity;
use supervisor_proto::{Alert, AlertKind, DeployRecord, Event};

use crate::{Shared, logic};

/// Deploys that ended (and alerts raised) longer ago than this are history, not news.
const NEWS: Duration = Duration::from_secs(15 * 60);
/// At most one alert message per program in this time.
const COALESCE: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Follows the supervisor for as long as the bot runs, reconnecting with backoff.
pub async fn follow(http: Arc<serenity::Http>, shared: Arc<Shared>) {
    let mut delay = Duration::from_millis(500);
    let mut last_posted: HashMap<String, Instant> = HashMap::new();
    loop {
        match shared.control.events().await {
            Ok(mut events) => {
                delay = Duration::from_millis(500);
                tracing::info!("following the supervisor's deploys and alerts");
                // Whatever ended while we were away (or restarting for it).
                post_news(&http, &shared).await;
                post_alerts(&http, &shared, &mut last_posted).await;
                // Alerts held back by the one-a-minute rule go out when their minute is up.
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let event = tokio::select! {
                        event = events.next() => event,
                        _ = tick.tick() => {
                            post_alerts(&http, &shared, &mut last_posted).await;
                            continue;
                        }
                    };
                    match event {
                        Ok(Some(Event::Deploy { stage, .. })) if stage.result().is_some() => {
                            post_news(&http, &shared).await;
                        }
                        Ok(Some(Event::Alert(_))) => {
                            post_alerts(&http, &shared, &mut last_posted).await;
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

/// The guilds' announce channels this shard posts to.
fn channels(shared: &Shared) -> Vec<(u64, u64)> {
    shared
        .store
        .announce_channels()
        .into_iter()
        .filter(|&(guild, _)| match shared.settings.shard {
            Some((id, count)) => logic::shard_of(guild, count) == id,
            None => true,
        })
        .collect()
}

async fn post(http: &serenity::Http, channels: &[(u64, u64)], what: &str, text: &str) {
    for &(guild, channel) in channels {
        // A commit subject or a reason such as "@everyone" stays text: no mention is allowed.
        let message = serenity::CreateMessage::new()
            .content(text)
            .allowed_mentions(serenity::CreateAllowedMentions::new());
        match serenity::ChannelId::new(channel)
            .send_message(http, message)
            .await
        {
            Ok(_) => tracing::info!(what, guild, channel, "announced"),
            Err(e) => tracing::warn!(what, guild, channel, "cannot announce: {e}"),
        }
    }
}

/// Alerts not yet posted: news, and not about deploys (their results are announced already).
fn unposted(alerts: Vec<Alert>, shared: &Shared, now: u64) -> Vec<Alert> {
    let mut fresh: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| now.saturating_sub(a.at_ms) < NEWS.as_millis() as u64)
        .filter(|a| {
            !matches!(
                a.kind,
                AlertKind::DeployFailed | AlertKind::RolledBack | AlertKind::Quarantined
            )
        })
        .filter(|a| !shared.store.was_announced(&a.id))
        .collect();
    fresh.reverse();
    fresh
}

/// Posts the alerts not yet posted: per program, the newest with a count of the others, at most
/// once a minute (the others wait for the next round).
async fn post_alerts(
    http: &serenity::Http,
    shared: &Shared,
    last_posted: &mut HashMap<String, Instant>,
) {
    let alerts = match shared.control.alerts(50).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("cannot read the alerts: {e}");
            return;
        }
    };
    let mut by_program: Vec<(String, Vec<Alert>)> = Vec::new();
    for a in unposted(alerts, shared, now_ms()) {
        match by_program.iter_mut().find(|(p, _)| *p == a.program) {
            Some((_, list)) => list.push(a),
            None => by_program.push((a.program.clone(), vec![a])),
        }
    }
    let channels = channels(shared);
    for (program, list) in by_program {
        if last_posted
            .get(&program)
            .is_some_and(|t| t.elapsed() < COALESCE)
        {
            continue;
        }
        let text = logic::alert_text(&list);
        post(http, &channels, "alert", &text).await;
        let first_shard = shared.settings.shard.is_none_or(|(id, _)| id == 0);
        if shared.settings.alert_dms && first_shard && list.iter().any(|a| a.critical) {
            direct_messages(http, shared, &text).await;
        }
        last_posted.insert(program, Instant::now());
        for a in &list {
            if let Err(e) = shared.store.mark_announced(&a.id) {
                tracing::warn!(
                    "cannot record the alert in {}: {e}",
                    shared.store.path().display()
                );
            }
        }
    }
}

/// Sends `text` to each owner: `DISCORD_OWNERS` and the application's owner (asked of Discord
/// each time: alerts are rare, and an owner change then applies at once).
async fn direct_messages(http: &serenity::Http, shared: &Shared, text: &str) {
    let mut owners: Vec<u64> = shared.settings.owners.iter().copied().collect();
    match http.get_current_application_info().await {
        Ok(app) => {
            let owner = app.owner.map(|o| o.id.get());
            if let Some(owner) = owner.filter(|o| !owners.contains(o)) {
                owners.push(owner);
            }
        }
        Err(e) => tracing::warn!("cannot ask Discord for the application's owner: {e}"),
    }
    owners.sort_unstable();
    for owner in owners {
        let message = serenity::CreateMessage::new()
            .content(text)
            .allowed_mentions(serenity::CreateAllowedMentions::new());
        match serenity::UserId::new(owner)
            .direct_message(http, message)
            .await
        {
            Ok(_) => tracing::info!(owner, "alert sent as a direct message"),
            Err(e) => tracing::warn!(owner, "cannot send the alert as a direct message: {e}"),
        }
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
    let channels = channels(shared);
    for record in news(&records, shared, now_ms()) {
        // A forge that redelivers, or a CLI retried: the refusal was said once already.
        if logic::repeated_refusal(record, &records) {
            tracing::info!(id = %record.id, "a refusal already announced for this commit; not posted again");
        } else {
            let text = logic::deploy_result(record);
            post(http, &channels, "deploy", &text).await;
        }
        if let Err(e) = shared.store.mark_announced(&record.id) {
            tracing::warn!(
                "cannot record the announcement in {}: {e}",
                shared.store.path().display()
            );
        }
    }
}
