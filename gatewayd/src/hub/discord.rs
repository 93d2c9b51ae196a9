//! What Discord sends on the held session: its READY and RESUMED (bots waiting are served),
//! events (kept in the ring, passed to the active bot, guild state followed), an invalid
//! session (passed on), and the close codes after which it must not be connected again.

use std::sync::atomic::Ordering;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Buffered, ConnId, Effect, Frame, Hub, Out, State, Upstream, dispatch, fatal, op};
use crate::guilds::{self, Guilds};

impl Hub {
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
}
