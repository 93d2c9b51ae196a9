//! What gatewayd counts, shared by the hub (which writes) and `/metrics` (which reads).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct Stats {
    /// Dispatches received on the held session (READY and RESUMED aside).
    pub received: AtomicU64,
    /// Events written towards a bot (replays of a RESUME included).
    pub delivered: AtomicU64,
    /// Events that left the full buffer before any bot had them.
    pub dropped: AtomicU64,
    /// Events in the buffer that no bot has had yet.
    pub waiting: AtomicU64,
    /// Bots connected.
    pub bots: AtomicU64,
    pub bot_identifies: AtomicU64,
    pub bot_resumes: AtomicU64,
    /// READYs on the held session: each is one of Discord's daily logins.
    pub upstream_identifies: AtomicU64,
    pub upstream_resumes: AtomicU64,
    pub invalid_sessions: AtomicU64,
    /// 1 while the held session's connection is open.
    pub upstream_connected: AtomicU64,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: &AtomicU64) {
    let c = Counter::<u64>::default();
    c.inc_by(value.load(Ordering::Relaxed));
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: &AtomicU64) {
    let g = Gauge::<i64>::default();
    g.set(value.load(Ordering::Relaxed) as i64);
    registry.register(name, help, g);
}

impl Stats {
    /// The Prometheus text format of the counts now.
    pub fn render(&self) -> String {
        let mut r = Registry::default();
        counter(
            &mut r,
            "gatewayd_events_received",
            "Dispatches received from Discord on the held session",
            &self.received,
        );
        counter(
            &mut r,
            "gatewayd_events_delivered",
            "Events written to a bot (replays included)",
            &self.delivered,
        );
        counter(
            &mut r,
            "gatewayd_events_dropped",
            "Events dropped from the full buffer before any bot had them (GATEWAY_BUFFER)",
            &self.dropped,
        );
        gauge(
            &mut r,
            "gatewayd_events_waiting",
            "Events buffered that no bot has had yet",
            &self.waiting,
        );
        gauge(
            &mut r,
            "gatewayd_bots_connected",
            "Bots connected to gatewayd",
            &self.bots,
        );
        counter(
            &mut r,
            "gatewayd_bot_identifies",
            "IDENTIFYs from bots, answered from the held session",
            &self.bot_identifies,
        );
        counter(
            &mut r,
            "gatewayd_bot_resumes",
            "RESUMEs from bots",
            &self.bot_resumes,
        );
        counter(
            &mut r,
            "gatewayd_upstream_identifies",
            "New sessions with Discord (each one of the day's logins)",
            &self.upstream_identifies,
        );
        counter(
            &mut r,
            "gatewayd_upstream_resumes",
            "Sessions with Discord resumed",
            &self.upstream_resumes,
        );
        counter(
            &mut r,
            "gatewayd_upstream_invalid_sessions",
            "Sessions Discord invalidated",
            &self.invalid_sessions,
        );
        gauge(
            &mut r,
            "gatewayd_upstream_connected",
            "1 while the connection to Discord is open",
            &self.upstream_connected,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}
