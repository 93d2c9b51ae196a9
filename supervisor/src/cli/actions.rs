//! The verbs that change what runs: `start`, `stop`, `restart`, `signal`, `reread`, `update`,
//! `shutdown`; and `version`.

use std::io::Write;

use supervisor_proto::{ActionResult, Changes, ClientError, Outcome, Request};

use super::args::SocketArg;
use super::connect;
use crate::exit::Exit;

/// start, stop, restart, signal: a line per result, exit 1 if any failed.
pub async fn act(socket: &SocketArg, request: Request) -> Result<Exit, ClientError> {
    let results = connect(socket).await?.act(request).await?;
    let mut out = std::io::stdout().lock();
    for ActionResult { name, message, .. } in &results {
        let _ = writeln!(out, "{name}: {message}");
    }
    Ok(if results.iter().all(|r| r.outcome.is_success()) {
        Exit::Ok
    } else if results.iter().any(|r| r.outcome == Outcome::Failed) {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// reread and update, in supervisorctl's words: reread says what is available, changed or
/// gone; update what it removed, updated and added.
pub async fn changes(socket: &SocketArg, apply: bool) -> Result<Exit, ClientError> {
    let Changes {
        added,
        changed,
        removed,
        applied,
    } = connect(socket).await?.changes(apply).await?;
    let mut out = std::io::stdout().lock();
    if !applied && added.is_empty() && changed.is_empty() && removed.is_empty() {
        let _ = writeln!(out, "No config updates to processes");
    }
    let groups = if applied {
        [(removed, "removed"), (changed, "updated"), (added, "added")]
    } else {
        [
            (added, "available"),
            (changed, "changed"),
            (removed, "disappeared"),
        ]
    };
    for (names, word) in groups {
        for n in names {
            let _ = writeln!(out, "{n}: {word}");
        }
    }
    Ok(Exit::Ok)
}

/// `shutdown`: the daemon stops everything and exits.
pub async fn shutdown(socket: &SocketArg) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    connect(socket).await?.shutdown().await?;
    let _ = writeln!(out, "Shut down");
    Ok(Exit::Ok)
}

/// `version`: the daemon's.
pub async fn version(socket: &SocketArg) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let version = connect(socket).await?.version().await?;
    let _ = writeln!(out, "{version}");
    Ok(Exit::Ok)
}
