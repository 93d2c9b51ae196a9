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
//!
//! # Layout
//! - this file: the state, what is kept, connections coming and going, delivery.
//! - `bots`: what bots send (IDENTIFY, RESUME, heartbeats, commands) and Discord's rules.
//! - `discord`: what Discord sends on the held session.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::guilds::Guilds;
use crate::stats::Stats;

mod bots;
mod discord;

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

    /// Events in the ring that no bot has had yet.
    fn count_buffered(&self) {
        let undelivered = (self.kept.next_seq - 1).saturating_sub(self.kept.delivered);
        let waiting = undelivered.min(self.kept.events.len() as u64);
        self.stats.waiting.store(waiting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
