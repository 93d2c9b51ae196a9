//! `supervised`: what the programs our supervisor runs (hookd, statusd, gatewayd, the bot) share, so
//! that each behaves the same way under it.
//!
//! # Layout
//! - `http` (the default feature `http`): serving an axum router with bounds axum's own `serve` lacks: a header read
//!   timeout (idle connections too), a whole-request timeout, a connection cap, an early 413
//!   for a declared oversized body, and a graceful shutdown that does not wait on slow clients.
//! - [`admission`]: who gets a connection place: a share per source, and a reserve for
//!   sources that hold almost none.
//! - [`service`]: the shell of an HTTP program (hookd, statusd): runtime, listener, readiness.
//! - [`shutdown`]: the future that resolves on SIGTERM or SIGINT.
//! - [`logging`]: tracing to stderr, with `RUST_LOG` honoured.
//! - [`secret`]: [`Secret`], a string whose `Debug` and `Display` never show it.
//! - [`limits`]: the open-files limit raised to what the connection cap needs.
//! - [`notify`]: `READY=1`, `STATUS=` and watchdog pings to the supervisor (`NOTIFY_SOCKET`).

pub mod admission;
#[cfg(feature = "http")]
pub mod http;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod secret;
pub mod service;
pub mod shutdown;

pub use secret::Secret;

/// sysexits' `EX_CONFIG`: what hookd, statusd and the bot exit with when their settings are
/// wrong or they cannot listen. Their programs list it in `fatal_exitcodes`, so a missing
/// secret is FATAL with its reason instead of a restart loop. (The supervisor's own binary
/// keeps supervisorctl's codes: 2 for a usage or configuration error.)
pub const EX_CONFIG: u8 = 78;
