//! `supervisor`: the container's PID 1 and its command-line client.
//!
//! It reads `supervisor.toml`, starts the programs in dependency order, restarts them with an
//! exponential backoff, reaps every zombie (as PID 1 or as a child subreaper), forwards stop
//! signals to whole process groups, captures their output into rotated log files and its own
//! stdout, and shuts down in reverse dependency order.
//!
//! # Layout
//! - [`config`]: `supervisor.toml` read into a validated [`config::Config`], every error with
//!   file, line and key.
//! - [`lifecycle`]: a program's states and the pure transition function.
//! - [`backoff`]: the restart delay formula.
//! - [`process`]: spawning, signalling and reaping; with [`memory`], the only places with `unsafe`.
//! - [`memory`]: start-up's code pages given back once the daemon is up.
//! - [`logs`]: output capture, rotation and the echo to stdout.
//! - [`deploy`]: the deploy machine, its git commands, releases and history on disk.
//! - [`dirs`]: folders made for the user that writes them (`state_dirs`, a deploy's tree).
//! - [`listener`]: supervisord's event listeners: event types, envelopes, the protocol.
//! - [`health`]: readiness, liveness and the start budget of a program.
//! - [`daemon`]: the actor that owns all state and performs the lifecycle's effects.
//! - [`control`]: the control socket: connections, peer credentials, framing.
//! - [`status`]: how states read in `status` (supervisorctl's descriptions).
//! - [`jsonl`]: bounded JSON-lines files (rotated, read from the end): history, audit trail.
//! - [`import`]: `supervisor import`, from a supervisord configuration.
//! - [`exit`]: the binary's exit codes, and which error means which (for the daemon and the
//!   client verbs alike, so that neither reaches into the other).
//!
//! The front end is not here: the command line, the client verbs (`status`, `start`,
//! `tail -f`, ...) and the step commands' shells are the binary's own modules
//! (`src/cli/`, under `src/main.rs`), built on this library and supervisor-proto. The daemon
//! library has no code of theirs.

pub mod backoff;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deploy;
pub mod dirs;
pub mod exit;
pub mod health;
pub mod import;
pub mod jsonl;
pub mod lifecycle;
pub mod listener;
pub mod logs;
pub mod memory;
pub mod process;
pub mod status;

use std::future::Future;
use std::path::Path;

/// What `run` and `check` can fail with, mapped to exit codes by the binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
    /// `--strict` and a supervisord configuration with behaviour that would be lost.
    #[error(
        "--strict: {0} supervisord option(s) would lose behaviour (listed above); nothing started"
    )]
    Strict(usize),
}

impl Error {
    pub fn exit_code(&self) -> exit::Exit {
        match self {
            Error::Config(_) | Error::Strict(_) => exit::Exit::Usage,
            Error::Runtime(_) => exit::Exit::Failed,
        }
    }
}

/// Runs the daemon on the configuration at `path` until a shutdown signal, a fatal program with
/// `on_fatal = "shutdown"`, or `shutdown` resolving. Returns the exit code.
///
/// A supervisord configuration runs as `supervisor import` would convert it; what it cannot
/// carry over is logged once, here, with its file and line, and with `strict` anything that
/// would lose behaviour refuses the start.
pub fn run(path: &Path, strict: bool, shutdown: impl Future<Output = ()>) -> Result<i32, Error> {
    let (config, findings) = config::load_reporting(path)?;
    // supervisord's `user`: the supervisor runs as that user from here on, as supervisord does
    // (which leaves programs' own `user` to a root supervisor only).
    if let Some(user) = &config.supervisor.user {
        let current = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        if current.as_deref() != Some(user.as_str()) {
            process::become_user(user).map_err(|e| {
                anyhow::anyhow!("cannot switch to user {user} ([supervisor] user): {e}")
            })?;
            tracing::info!(%user, "switched to the configured user");
        }
    }
    for w in &config.warnings {
        tracing::warn!(file = %w.file.display(), line = w.line, key = %w.key, "{}", w.message);
    }
    for f in &findings {
        tracing::warn!(file = %f.file.display(), line = f.line, what = %f.what,
            severity = ?f.severity, advice = %f.advice, "supervisord option not carried over");
    }
    let lost = findings
        .iter()
        .filter(|f| f.severity == import::Severity::Unsupported)
        .count();
    if strict && lost > 0 {
        return Err(Error::Strict(lost));
    }
    // While this is the process's only thread: the descriptor table grown at once for every
    // program's pipes and logs. Grown later, with threads, each doubling waits for an RCU
    // grace period in the kernel (about 20 ms here, three times for 200 programs).
    let nofile = process::rlimit::raise_nofile();
    // Last in the OOM killer's order: a runaway program or build is killed before PID 1.
    let oom_score_adj = process::protect_from_oom();
    tracing::debug!(oom_score_adj, "the supervisor's own OOM score");
    process::reserve_descriptors(64 + 8 * config.programs.len());
    // One thread: the daemon is an actor, spawning and reaping must share a thread, and a
    // small footprint matters on a Raspberry Pi.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?;
    Ok(runtime.block_on(daemon::run(config, nofile, shutdown))?)
}

/// Validates the configuration at `path`; for a supervisord file, also what it cannot carry
/// over.
pub fn check(path: &Path) -> Result<(config::Config, Vec<import::Finding>), Error> {
    Ok(config::load_reporting(path)?)
}
