//! `statusd`: the stack's HTTP status API. It follows the supervisor's `events` stream and keeps
//! a view of every program and the recent deploys, so that no request but `/audit` waits on
//! the supervisor; when the supervisor is unreachable, or has not answered its heartbeat for
//! 5 s, it says so (`/health` is 503) and answers the rest from what it last knew, marked stale. It serves JSON endpoints, Prometheus metrics and a
//! small status page, and nothing of the programs' environment, secrets or logs.
//!
//! # Layout
//! - [`settings`]: configuration from the environment.
//! - [`view`]: the view of the supervisor, and the task that keeps it current.
//! - [`metrics`]: the Prometheus exposition.
//! - [`page`]: the HTML status page, live over server-sent events.
//! - [`history`]: the last 24 hours of states, deploys and memory, for the page.
//! - [`server`]: the endpoints.
//! - [`usage`]: programs' memory and CPU from /proc, cached for a second.
//! - [`alerts`]: the supervisor's alerts about the bot, to a webhook (the bot cannot post its
//!   own death).

pub mod alerts;
pub mod history;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod server;
pub mod settings;
pub mod tls;
pub mod usage;
pub mod view;

pub use server::{app, serve};
pub use settings::Settings;
