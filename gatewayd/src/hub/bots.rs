//! What bots send: IDENTIFY (served from the held session), RESUME, heartbeats, commands for
//! Discord; and Discord's rules for a client, with its close codes.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{
    BotSession, COMMANDS_PER_MINUTE, ConnId, Effect, Frame, Hub, Out, State, bare, dispatch, op,
    same,
};
use std::sync::atomic::Ordering;

impl Hub {
    /// A text frame from bot `id`.
    pub fn from_bot(&mut self, id: ConnId, text: &str, now: Instant) -> Vec<Effect> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        while conn
            .commands
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            conn.commands.pop_front();
        }
        if conn.commands.len() >= COMMANDS_PER_MINUTE {
            self.close(id, 4008, "Rate limited.");
            return Vec::new();
        }
        conn.commands.push_back(now);
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            self.close(id, 4002, "Error while decoding payload.");
            return Vec::new();
        };
        let d = frame.d.map_or("null", RawValue::get);
        let identified = conn.state != State::New;
        match frame.op {
            Some(1) => {
                conn.heartbeat = now;
                self.send(id, Out::Text(op(11, Value::Null), 0));
                Vec::new()
            }
            Some(2) => self.identify(id, d),
            Some(6) => {
                self.resume(id, d);
                Vec::new()
            }
            Some(3 | 4 | 8 | 31) if !identified => {
                self.close(id, 4003, "Not authenticated.");
                Vec::new()
            }
            Some(3) => {
                self.kept.presence = serde_json::from_str(d).ok();
                self.dirty = true;
                vec![Effect::Upstream(text.to_owned())]
            }
            // Voice state, guild members, soundboard sounds: Discord answers with dispatches,
            // which reach the active bot.
            Some(4 | 8 | 31) => vec![Effect::Upstream(text.to_owned())],
            _ => {
                self.close(id, 4001, "Unknown opcode.");
                Vec::new()
            }
        }
    }

    fn token_ok(&self, d: &Value) -> bool {
        d["token"]
            .as_str()
            .is_some_and(|t| same(bare(t), bare(&self.config.token)))
    }

    fn identify(&mut self, id: ConnId, d: &str) -> Vec<Effect> {
        let d: Value = serde_json::from_str(d).unwrap_or(Value::Null);
        if self.conns.get(&id).is_some_and(|c| c.state != State::New) {
            self.close(id, 4005, "Already authenticated.");
            return Vec::new();
        }
        if !self.token_ok(&d) {
            self.close(id, 4004, "Authentication failed.");
            return Vec::new();
        }
        if d["shard"][1].as_u64().is_some_and(|n| n > 1) {
            tracing::warn!(shard = %d["shard"], "a bot asked for a shard of several: gatewayd holds one session, shard 0 of 1");
            self.close(id, 4010, "Invalid shard.");
            return Vec::new();
        }
        let missing = d["intents"].as_u64().unwrap_or(0) & !self.config.intents;
        if missing != 0 {
            tracing::warn!(
                missing,
                held = self.config.intents,
                "a bot asks for intents the held session does not have (set DISCORD_INTENTS): it gets no events of those"
            );
        }
        self.stats.bot_identifies.fetch_add(1, Ordering::Relaxed);
        let mut effects = Vec::new();
        if d["presence"].is_object() {
            self.kept.presence = Some(d["presence"].clone());
            effects.push(Effect::Upstream(op(3, d["presence"].clone())));
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = State::Waiting;
        }
        if self.live && self.kept.ready.is_some() {
            self.start_session(id);
        }
        effects
    }

    /// A new bot session on connection `id`: READY, the guilds, then the events no bot had.
    pub(super) fn start_session(&mut self, id: ConnId) {
        let Some(mut ready) = self.kept.ready.clone() else {
            return;
        };
        let session = format!("{:032x}", fastrand::u128(..));
        ready["session_id"] = json!(session);
        ready["resume_gateway_url"] = json!(self.config.url);
        ready["guilds"] = self.kept.guilds.ready_list();
        let mut frames = vec![dispatch("READY", 1, &ready.to_string())];
        for guild in self.kept.guilds.creates() {
            frames.push(dispatch(
                "GUILD_CREATE",
                frames.len() as u64 + 1,
                &guild.to_string(),
            ));
        }
        let replayed = frames.len() as u64;
        for frame in frames {
            self.send(id, Out::Text(frame, 0));
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.state = State::Live(session.clone());
        conn.written
            .fetch_max(self.kept.delivered, Ordering::Relaxed);
        // The first event it gets is numbered right after the replay (events the full ring
        // dropped leave no gap).
        let from = (self.kept.delivered + 1).max(self.kept.events.front().map_or(0, |e| e.seq));
        let offset = replayed as i64 + 1 - from as i64;
        self.remember(BotSession {
            id: session.clone(),
            offset,
            replayed,
            conn: Some(id),
        });
        tracing::info!(
            conn = id,
            guilds = self.kept.guilds.len(),
            "a bot identified: READY replayed from the held session"
        );
        self.replay(&session, from);
    }

    pub(super) fn invalid_session(&mut self, id: ConnId) {
        self.send(id, Out::Text(op(9, json!(false)), 0));
    }

    fn resume(&mut self, id: ConnId, d: &str) {
        let d: Value = serde_json::from_str(d).unwrap_or(Value::Null);
        if self.conns.get(&id).is_some_and(|c| c.state != State::New) {
            self.close(id, 4005, "Already authenticated.");
            return;
        }
        if !self.token_ok(&d) {
            self.close(id, 4004, "Authentication failed.");
            return;
        }
        self.stats.bot_resumes.fetch_add(1, Ordering::Relaxed);
        let wanted = d["session_id"].as_str().unwrap_or_default();
        let seq = d["seq"].as_u64().unwrap_or(0);
        let Some(s) = self.kept.sessions.iter().find(|s| s.id == wanted) else {
            tracing::info!(
                conn = id,
                "a bot resumes a session gatewayd does not know: invalid session"
            );
            return self.invalid_session(id);
        };
        let last = seq as i64 - s.offset;
        let from = (last + 1) as u64;
        let (offset, before) = (s.offset, s.conn);
        let missed = seq < s.replayed
            || last < 0
            || from > self.kept.next_seq
            || (from < self.kept.next_seq && self.kept.events.front().is_none_or(|e| e.seq > from));
        if missed {
            tracing::info!(
                conn = id,
                seq,
                "a bot resumes from events no longer kept: invalid session"
            );
            return self.invalid_session(id);
        }
        // The session moved to this connection: the old one gets nothing more.
        let old = before.filter(|&old| old != id);
        if let Some(c) = old.and_then(|old| self.conns.get_mut(&old)) {
            c.state = State::New;
        }
        if let Some(s) = self.kept.sessions.iter_mut().find(|s| s.id == wanted) {
            s.conn = Some(id);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = State::Live(wanted.to_owned());
            conn.written.fetch_max(from - 1, Ordering::Relaxed);
        }
        let resent = self.kept.next_seq - from;
        self.replay(wanted, from);
        let last_b = (self.kept.next_seq as i64 - 1 + offset).max(seq as i64) as u64;
        self.send(id, Out::Text(dispatch("RESUMED", last_b, "{}"), 0));
        tracing::info!(conn = id, resent, "a bot resumed");
    }

    /// Closes bots that sent no heartbeat for one and a half intervals (Discord's 4009).
    pub fn tick(&mut self, now: Instant) {
        let limit = Duration::from_millis(self.kept.heartbeat_ms * 3 / 2);
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.heartbeat) > limit)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.close(id, 4009, "Session timed out.");
        }
    }

    /// gatewayd stops: bots are told to reconnect (4000, which every library resumes after).
    pub fn shutdown(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, 4000, "gatewayd is restarting; resume.");
        }
    }
}
