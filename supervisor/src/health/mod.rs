//! Whether a program *works*: readiness (`ready`), liveness (`healthcheck`, `watchdog`) and the
//! start budget (`start_limit`). docs/CONFIG.md, "Health", says what each key means.
//!
//! # Layout
//! - [`notify`]: systemd's `NOTIFY_SOCKET` protocol: the socket, credentials, parsing.
//! - [`probe`]: HTTP and TCP probes (command probes are children the daemon spawns and reaps).
//! - [`check`]: probe schedules, Docker's HEALTHCHECK counting and the watchdog, as values.
//! - [`budget`]: recent spawn times, kept on the data volume.
//!
//! The daemon (`daemon/health.rs`, `daemon/reports.rs`) ties them to the lifecycle: READY, a
//! matching log line or a passing readiness probe is [`crate::lifecycle::Event::Ready`]; an
//! unhealthy verdict or an expired watchdog is [`crate::lifecycle::Event::Unhealthy`].

pub mod budget;
pub mod check;
pub mod notify;
pub mod probe;

use crate::config::ProgramName;

/// What health tasks tell the actor.
#[derive(Debug)]
pub enum Report {
    /// Accepted datagrams from a program's process group.
    Notify {
        program: ProgramName,
        sender: i32,
        messages: Vec<notify::Message>,
    },
    /// A line of its output matched `ready = { log = ... }` (for the spawn `run`).
    LogReady { program: ProgramName, run: u64 },
    /// What the process groups `groups` used (`limits`), sampled at `at`.
    Usage {
        at: std::time::Instant,
        groups: Vec<u32>,
        usage: std::collections::HashMap<u32, supervisor_proto::resources::Usage>,
    },
    /// `clear` emptied log files: writers reopen them (their sizes start again from 0).
    LogsCleared,
    /// An HTTP or TCP probe's result, for the spawn `run`.
    Probe {
        program: ProgramName,
        run: u64,
        kind: ProbeKind,
        result: Result<(), probe::ProbeError>,
    },
}

/// Which question a probe answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Ready,
    Live,
}
