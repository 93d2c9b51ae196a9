//! The hub: the held session's state and the bots' sessions over it, with no I/O of its own.
//! The upstream task hands it what Discord sends, the connection tasks what bots send; it
//! answers bots through their connections' channels and returns what else is to be done as
//! [`Effect`]s. One task owns it, so everything it does happens in one order.
//!
//! Events get the hub's own sequence numbers ("global"), kept in a ring of `capacity` events.
//! A bot's session numbers its frames from 1: READY, a GUILD_CREATE per guild, then events,
//! which from there on are global numbers shifted by the session's `offset`. Only the newest
//! session that identified or resumed (the active one) is sent events as they come; an older
//! one that stays connected (a deploy's overlap) is sent none, so that no event is answered
//! twice. Events that reach no bot wait in the ring (`delivered` is the last one written to
//! a bot), and the next IDENTIFY gets them after its replay; a RESUME gets every event after
//! its sequence number that the ring still holds. When the ring is full, the oldest event
//! goes; one that had not reached a bot is counted as dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::guilds::{self, Guilds};
use crate::stats::Stats;

/// A bot's connection, as the hub numbers them.
pub type ConnId = u64;

/// What a connection's writer is given.
#[derive(Debug)]
pub enum Out {
    /// A text frame, and the global number of the event it carries (0: none).
    Text(String, u64),
    /// A close frame with Discord's code and reason; the connection ends after it.
    Close(u16, &'static str),
}

/// What the hub asks of the task that owns it.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this JSON to Discord on the held session.
    Upstream(String),
    /// The held session is ready (READY or RESUMED): `READY=1` for the supervisor.
    Ready,
    /// Discord acknowledged a heartbeat: the session is alive (a watchdog ping).
    Alive,
    /// Discord closed the session with a code no reconnect can help (4004, 4010 to 4014).
    Fatal(u16),
}

/// Close codes after which Discord must not be connected again with the same settings.
pub fn fatal(code: u16) -> bool {
    matches!(code, 4004 | 4010..=4014)
}

/// The held session as Discord knows it: what a RESUME needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Upstream {
    pub session_id: String,
    pub seq: u64,
    pub resume_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffered {
    seq: u64,
    t: String,
    d: Box<RawValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BotSession {
    id: String,
    /// Bot number = global number + offset, for the events after the replay.
    offset: i64,
    /// The bot number of the replay's last frame: a RESUME from before it cannot be served.
    replayed: u64,
    #[serde(skip)]
    conn: Option<ConnId>,
}

/// What outlives gatewayd's own restart (`GATEWAY_STATE`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Kept {
    upstream: Option<Upstream>,
    /// The held session's READY (`d`), as Discord sent it.
    ready: Option<Value>,
    guilds: Guilds,
    /// The last presence a bot set (op 3 `d`), set again on a new session.
    presence: Option<Value>,
    events: VecDeque<Buffered>,
    next_seq: u64,
    delivered: u64,
    sessions: Vec<BotSession>,
    active: Option<String>,
    heartbeat_ms: u64,
}

impl Kept {
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Said HELLO; waits for IDENTIFY or RESUME.
    New,
    /// Identified; waits for the held session to be ready.
    Waiting,
    /// In the bot session of this id.
    Live(String),
}

#[derive(Debug)]
struct Conn {
    tx: mpsc::Sender<Out>,
    /// The global number of the last event its writer wrote.
    written: Arc<AtomicU64>,
    state: State,
    heartbeat: Instant,
    /// When its last commands came, for Discord's 120 a minute.
    commands: VecDeque<Instant>,
}

/// What the hub is built with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The token bots must present (without `Bot `).
    pub token: String,
    pub intents: u64,
    pub capacity: usize,
    /// `ws://` where bots connect: READY's `resume_gateway_url`.
    pub url: String,
}

/// Discord's: 120 commands a minute on a connection.
const COMMANDS_PER_MINUTE: usize = 120;
/// Bot sessions remembered for a RESUME (the newest).
const SESSIONS: usize = 8;

#[derive(Debug)]
pub struct Hub {
    config: Config,
    kept: Kept,
    /// The held session can serve bots: READY or RESUMED came on it.
    live: bool,
    conns: HashMap<ConnId, Conn>,
    stats: Arc<Stats>,
    dirty: bool,
    /// The first drop is logged as a warning, the rest counted.
    warned_drop: bool,
}

fn dispatch(t: &str, s: u64, d: &str) -> String {
    let t = serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"op\":0,\"s\":{s},\"t\":{t},\"d\":{d}}}")
}

fn op(op: u8, d: Value) -> String {
    json!({"op": op, "s": null, "t": null, "d": d}).to_string()
}

/// A token as Discord compares it: without the `Bot ` serenity writes before it.
pub fn bare(token: &str) -> &str {
    token.strip_prefix("Bot ").unwrap_or(token).trim()
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Deserialize)]
struct Frame<'a> {
    op: Option<u8>,
    t: Option<String>,
    s: Option<u64>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

impl Hub {
    /// A hub over what a previous run kept, if anything.
    pub fn new(config: Config, kept: Option<Kept>, stats: Arc<Stats>) -> Self {
        let mut kept = kept.unwrap_or_default();
        kept.next_seq = kept.next_seq.max(1);
        if kept.heartbeat_ms == 0 {
            kept.heartbeat_ms = 41_250;
        }
        let hub = Self {
            config,
            kept,
            live: false,
            conns: HashMap::new(),
            stats,
            dirty: false,
            warned_drop: false,
        };
        hub.count_buffered();
        hub
    }

    /// The session to resume, if one was kept.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.kept.upstream.as_ref()
    }

    /// Everything that is kept, now.
    pub fn kept(&self) -> Kept {
        self.kept.clone()
    }

    /// What is to be kept, if anything changed since the last call.
    pub fn snapshot(&mut self) -> Option<Kept> {
        std::mem::take(&mut self.dirty).then(|| self.kept.clone())
    }

    // ---- bots ----

    /// A bot connected: it is said HELLO with the held session's heartbeat interval.
    pub fn connected(&mut self, id: ConnId, tx: mpsc::Sender<Out>, written: Arc<AtomicU64>) {
        let conn = Conn {
            tx,
            written,
            state: State::New,
            heartbeat: Instant::now(),
            commands: VecDeque::new(),
        };
        self.conns.insert(id, conn);
        self.stats
            .bots
            .store(self.conns.len() as u64, Ordering::Relaxed);
        let hello = op(10, json!({"heartbeat_interval": self.kept.heartbeat_ms}));
        self.send(id, Out::Text(hello, 0));
    }

    /// A bot's connection ended (or was ended here).
    pub fn disconnected(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.stats
            .bots
            .store(self.conns.len() as u64, Ordering::Relaxed);
        if let State::Live(session) = conn.state {
            if let Some(s) = self.kept.sessions.iter_mut().find(|s| s.id == session) {
                s.conn = None;
            }
            if self.kept.active.as_deref() == Some(session.as_str()) {
                // Queued but never written: not delivered; the next bot gets them.
                self.kept.delivered = conn.written.load(Ordering::Relaxed);
                self.count_buffered();
                self.dirty = true;
            }
        }
    }

    /// Sends `out` to connection `id`; one whose writer cannot keep up is dropped (a bot
    /// that resumes gets what it missed).
    fn send(&mut self, id: ConnId, out: Out) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if conn.tx.try_send(out).is_err() {
            tracing::warn!(
                conn = id,
                "a bot does not read its events; closing its connection"
            );
            self.disconnected(id);
        }
    }

    fn close(&mut self, id: ConnId, code: u16, reason: &'static str) {
        tracing::info!(conn = id, code, reason, "closing a bot's connection");
        self.send(id, Out::Close(code, reason));
        self.disconnected(id);
    }

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
    fn start_session(&mut self, id: ConnId) {
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

    fn remember(&mut self, session: BotSession) {
        let sessions = &mut self.kept.sessions;
        let unused = sessions.iter().position(|s| s.conn.is_none());
        if let (true, Some(i)) = (sessions.len() >= SESSIONS, unused) {
            sessions.remove(i);
        }
        self.kept.active = Some(session.id.clone());
        sessions.push(session);
        self.dirty = true;
    }

    /// Makes `session` the active one and sends it the ring's events from global `from` on.
    fn replay(&mut self, session: &str, from: u64) {
        self.kept.active = Some(session.to_owned());
        let Some(s) = self.kept.sessions.iter().find(|s| s.id == session) else {
            return;
        };
        let (offset, Some(conn)) = (s.offset, s.conn) else {
            return;
        };
        let frames: Vec<(String, u64)> = self
            .kept
            .events
            .iter()
            .filter(|e| e.seq >= from)
            .map(|e| {
                let b = (e.seq as i64 + offset).max(0) as u64;
                (dispatch(&e.t, b, e.d.get()), e.seq)
            })
            .collect();
        for (frame, seq) in frames {
            self.send(conn, Out::Text(frame, seq));
            self.kept.delivered = self.kept.delivered.max(seq);
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        self.count_buffered();
        self.dirty = true;
    }

    fn invalid_session(&mut self, id: ConnId) {
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

    // ---- Discord ----

    /// A text frame from Discord on the held session.
    pub fn from_upstream(&mut self, text: &str) -> Vec<Effect> {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            tracing::warn!(len = text.len(), "Discord sent a frame that is not JSON");
            return Vec::new();
        };
        let d = frame.d.map_or("null", RawValue::get);
        match (frame.op, frame.t.as_deref()) {
            (Some(0), Some(t)) => {
                if let (Some(s), Some(u)) = (frame.s, self.kept.upstream.as_mut()) {
                    u.seq = s;
                }
                match t {
                    "READY" => self.ready(frame.s.unwrap_or(0), d),
                    "RESUMED" => {
                        self.stats.upstream_resumes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("the held session resumed");
                        self.serve_waiting()
                    }
                    _ => {
                        if let Some(d) = frame.d {
                            self.event(t, d);
                        }
                        Vec::new()
                    }
                }
            }
            (Some(9), _) if d != "true" => {
                self.stats.invalid_sessions.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "Discord invalidated the held session: bots are told, and it identifies again"
                );
                self.invalidate();
                Vec::new()
            }
            (Some(10), _) => {
                if let Some(ms) = serde_json::from_str::<Value>(d)
                    .ok()
                    .and_then(|d| d["heartbeat_interval"].as_u64())
                {
                    self.kept.heartbeat_ms = ms.max(1);
                }
                self.stats.upstream_connected.store(1, Ordering::Relaxed);
                Vec::new()
            }
            (Some(11), _) => vec![Effect::Alive],
            _ => Vec::new(),
        }
    }

    /// The held session's connection closed with `code`.
    pub fn upstream_closed(&mut self, code: Option<u16>) -> Vec<Effect> {
        self.stats.upstream_connected.store(0, Ordering::Relaxed);
        match code.filter(|&c| fatal(c)) {
            Some(code) => {
                let reason = match code {
                    4004 => "Authentication failed.",
                    4010 => "Invalid shard.",
                    4011 => "Sharding required.",
                    4012 => "Invalid API version.",
                    4013 => "Invalid intent(s).",
                    _ => "Disallowed intent(s).",
                };
                let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                for id in ids {
                    self.close(id, code, reason);
                }
                vec![Effect::Fatal(code)]
            }
            None => Vec::new(),
        }
    }

    /// Discord's new session: held, and served to the bots that wait.
    fn ready(&mut self, seq: u64, d: &str) -> Vec<Effect> {
        let Ok(ready) = serde_json::from_str::<Value>(d) else {
            return Vec::new();
        };
        if self.kept.ready.is_some() {
            self.invalidate();
        }
        self.stats
            .upstream_identifies
            .fetch_add(1, Ordering::Relaxed);
        self.kept.upstream = Some(Upstream {
            session_id: ready["session_id"].as_str().unwrap_or_default().to_owned(),
            seq,
            resume_url: ready["resume_gateway_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
        self.kept.guilds = Guilds::from_ready(&ready);
        self.kept.ready = Some(ready);
        tracing::info!(guilds = self.kept.guilds.len(), "the held session is ready");
        let mut effects = self.serve_waiting();
        if let Some(p) = &self.kept.presence {
            effects.push(Effect::Upstream(op(3, p.clone())));
        }
        effects
    }

    fn serve_waiting(&mut self) -> Vec<Effect> {
        self.live = true;
        self.dirty = true;
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Waiting)
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.start_session(id);
        }
        vec![Effect::Ready]
    }

    /// The held session is gone: every bot session with it (bots identify again, and are
    /// served when the new one is ready). Events not yet delivered stay.
    fn invalidate(&mut self) {
        let told: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state != State::New)
            .map(|(&id, _)| id)
            .collect();
        for id in told {
            if let Some(c) = self.conns.get_mut(&id) {
                c.state = State::New;
            }
            self.invalid_session(id);
        }
        self.kept.sessions.clear();
        self.kept.active = None;
        self.kept.ready = None;
        self.kept.upstream = None;
        self.live = false;
        self.dirty = true;
    }

    fn event(&mut self, t: &str, d: &RawValue) {
        if guilds::follows(t) {
            if let Ok(value) = serde_json::from_str::<Value>(d.get()) {
                self.kept.guilds.apply(t, &value);
            }
        }
        let seq = self.kept.next_seq;
        self.kept.next_seq += 1;
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let full = self.kept.events.len() >= self.config.capacity;
        let evicted = if full {
            self.kept.events.pop_front()
        } else {
            None
        };
        if evicted.is_some_and(|old| old.seq > self.kept.delivered) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.warned_drop, true) {
                tracing::warn!(
                    capacity = self.config.capacity,
                    "the event buffer is full with no bot reading: the oldest events are dropped (GATEWAY_BUFFER; counted in gatewayd_events_dropped_total)"
                );
            }
        }
        self.kept.events.push_back(Buffered {
            seq,
            t: t.to_owned(),
            d: d.to_owned(),
        });
        self.count_buffered();
        self.dirty = true;
        let active = self.kept.active.as_deref();
        let Some(s) = self
            .kept
            .sessions
            .iter()
            .find(|s| Some(s.id.as_str()) == active)
        else {
            return;
        };
        let Some(conn) = s.conn else { return };
        let b = (seq as i64 + s.offset).max(0) as u64;
        self.send(conn, Out::Text(dispatch(t, b, d.get()), seq));
        if self.conns.contains_key(&conn) {
            self.kept.delivered = seq;
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            self.count_buffered();
        }
    }

    /// Events in the ring that no bot has had yet.
    fn count_buffered(&self) {
        let undelivered = (self.kept.next_seq - 1).saturating_sub(self.kept.delivered);
        let waiting = undelivered.min(self.kept.events.len() as u64);
        self.stats.waiting.store(waiting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
