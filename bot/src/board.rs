//! One status message that stays true: in each announce channel, a message edited in place at
//! every change the supervisor reports (a light, the `status` table, the last deploy), edits
//! coalesced to one per `BOT_STATUS_EVERY_MS` (5 s), a new message only when the old one is gone
//! (deleted by someone: Discord answers 404 to the edit). Its id is kept in the store, so a
//! restarted bot edits the same message. And the bot's presence says what is happening
//! (`deploying 1a2b3c4d5e`, `degraded: statusd`), cleared when all is well.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use poise::serenity_prelude as serenity;
use supervisor_proto::{DeployResult, Event};
use tokio::time::Instant;

use crate::{Shared, logic};

/// Keeps the status messages and the presence current for as long as the bot runs.
pub async fn keep(http: Arc<serenity::Http>, shard: serenity::ShardMessenger, shared: Arc<Shared>) {
    let every = shared.settings.status_every;
    let mut board = Board {
        http,
        shard,
        shared,
        deploying: None,
        published: HashMap::new(),
        presence: None,
    };
    let mut delay = Duration::from_millis(500);
    loop {
        let mut events = match board.shared.control.events().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!("status message: cannot follow the supervisor: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        delay = Duration::from_millis(500);
        let mut dirty = true;
        let mut allowed = Instant::now();
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(allowed), if dirty => {
                    board.publish().await;
                    dirty = false;
                    allowed = Instant::now() + every;
                    continue;
                }
            };
            match event {
                Ok(Some(Event::Deploy { stage, commit, .. })) => {
                    board.deploying = match stage.result() {
                        Some(_) => None,
                        None => Some(
                            commit
                                .or_else(|| board.deploying.clone())
                                .unwrap_or_default(),
                        ),
                    };
                    dirty = true;
                }
                Ok(Some(Event::State { .. } | Event::Config { .. })) => dirty = true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

struct Board {
    http: Arc<serenity::Http>,
    shard: serenity::ShardMessenger,
    shared: Arc<Shared>,
    /// The commit being deployed (empty before it is fetched), while a deploy runs.
    deploying: Option<String>,
    /// What each channel's message says now.
    published: HashMap<u64, String>,
    presence: Option<String>,
}

impl Board {
    /// Renders the board from the supervisor's status and history, and puts it everywhere.
    async fn publish(&mut self) {
        let (supervisor, programs) = match self.shared.control.status().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("status message: cannot read the status: {e}");
                return;
            }
        };
        let records = self
            .shared
            .control
            .deploys(&[], 10)
            .await
            .unwrap_or_default();
        let last = records
            .iter()
            .find(|r| !matches!(r.result, DeployResult::Quarantined));
        let deploying = self
            .deploying
            .as_deref()
            .map(|c| if c.is_empty() { "…" } else { c });
        let text = logic::board_text(&supervisor, &programs, deploying, last);
        for (guild, channel) in self.shared.store.announce_channels() {
            if self.published.get(&channel) == Some(&text) {
                continue;
            }
            if self.put(guild, channel, &text).await {
                self.published.insert(channel, text.clone());
            }
        }
        let presence = logic::presence_text(&programs, deploying);
        if presence != self.presence {
            let activity = presence.clone().map(serenity::ActivityData::custom);
            self.shard
                .set_presence(activity, serenity::OnlineStatus::Online);
            self.presence = presence;
        }
    }

    /// Edits the channel's status message, or posts one when there is none (or it was
    /// deleted); whether the channel now shows `text`.
    async fn put(&self, guild: u64, channel: u64, text: &str) -> bool {
        let channel_id = serenity::ChannelId::new(channel);
        if let Some(id) = self.shared.store.status_message(guild) {
            let edit = serenity::EditMessage::new()
                .content(text)
                .allowed_mentions(serenity::CreateAllowedMentions::new());
            match channel_id
                .edit_message(&self.http, serenity::MessageId::new(id), edit)
                .await
            {
                Ok(_) => return true,
                Err(serenity::Error::Http(e))
                    if e.status_code() == Some(serenity::StatusCode::NOT_FOUND) =>
                {
                    tracing::info!(
                        guild,
                        channel,
                        "the status message was deleted; posting a new one"
                    );
                }
                Err(e) => {
                    tracing::warn!(guild, channel, "cannot edit the status message: {e}");
                    return false;
                }
            }
        }
        let message = serenity::CreateMessage::new()
            .content(text)
            .allowed_mentions(serenity::CreateAllowedMentions::new());
        match channel_id.send_message(&self.http, message).await {
            Ok(m) => {
                if let Err(e) = self
                    .shared
                    .store
                    .set_status_message(guild, Some(m.id.get()))
                {
                    tracing::warn!("cannot keep the status message's id: {e}");
                }
                true
            }
            Err(e) => {
                tracing::warn!(guild, channel, "cannot post the status message: {e}");
                false
            }
        }
    }
}
