//! `hookd`: receives push webhooks from Gitea, Forgejo, Gogs, GitHub and GitLab, checks that
//! they are authentic, and asks the supervisor over its control socket to deploy. It holds only
//! the webhook secret and the right to ask for `deploy` (one request, carrying the pushed branch
//! for the supervisor to check); it never runs git or a shell, and no string from a payload
//! reaches a command. The supervisor deploys the configured branch's tip, whatever commit the
//! payload names; from prebuilt releases, the pushed commit's, only when signed for it
//! (docs/HOOKD.md).
//!
//! # Layout
//! - [`settings`]: configuration from the environment.
//! - [`signature`]: HMAC and token checks, constant-time.
//! - [`forge`]: which forge sent a delivery, and what it asks for.
//! - [`server`]: the HTTP endpoints.
//! - [`relay`]: a verified push passed on to the other replicas (`HOOKD_PEERS`).
//! - [`source`]: who sent a request (through a trusted proxy) and whether it may.

pub mod forge;
pub mod relay;
pub mod server;
pub mod settings;
pub mod signature;
pub mod source;

pub use server::serve;
pub use settings::Settings;
