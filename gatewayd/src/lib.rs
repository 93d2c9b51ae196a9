//! `gatewayd`: holds the bot's Discord gateway session and serves the gateway protocol to the
//! bot on a local port, so that restarting or deploying the bot costs Discord nothing: no new
//! login, no offline time, no lost event. See docs/GATEWAY.md.
//!
//! # Layout
//! - [`settings`]: the environment it reads.
//! - [`upstream`]: the held session (twilight-gateway's shard).
//! - [`downstream`]: the WebSocket server bots connect to.
//! - [`hub`]: the state between them (no I/O): READY and guild state replayed, bots'
//!   sessions and RESUME, the bounded event buffer.
//! - [`guilds`]: the guild state kept current from the events.
//! - [`state`]: what is kept across gatewayd's own restarts (`GATEWAY_STATE`).
//! - [`stats`]: the counts `/metrics` shows.
//! - [`run`]: the task that owns the hub and ties them together.

pub mod downstream;
pub mod guilds;
pub mod hub;
pub mod settings;
pub mod state;
pub mod stats;
pub mod upstream;

mod run;

pub use run::run;
pub use settings::Settings;
