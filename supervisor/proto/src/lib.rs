//! The supervisor's control protocol: the wire types, the framing and an async client. The CLI,
//! `hookd`, `statusd` and the bot depend on this crate and on nothing else of the supervisor.
//!
//! A connection to the Unix socket starts with a hello in each direction, then carries requests
//! and their answers, matched by id; an `events` request turns it into a stream of events. Every
//! frame is one line of JSON. `docs/PROTOCOL.md` shows every message.
//!
//! # Layout
//! - [`message`]: every request, reply, error and event.
//! - [`vocabulary`]: program names, states, deploy stages, results and kinds, verbs: types
//!   with their wire spelling (and `ALL`).
//! - [`frame`]: one JSON document per line, with a size limit.
//! - [`client`]: connect, handshake, call, subscribe.

pub mod client;
pub mod frame;
pub mod message;
pub mod resources;
pub mod vocabulary;

pub use client::{Changes, Client, ClientError, EventStream};
pub use message::*;
pub use vocabulary::{
    AlertKind, DeployKind, DeployResult, DeployStage, ProgramName, ProgramState, Severity, Verb,
    selects,
};
