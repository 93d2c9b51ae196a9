//! The verbs that change what runs: `start`, `stop`, `restart`, `signal`, `reread`, `update`,
//! `add`, `remove`, `shutdown`; and `version`.

use std::io::Write;

use supervisor_proto::{ActionResult, Changes, ClientError, ErrorKind, Outcome, Request};

use super::args::SocketArg;
use super::connect;
use crate::exit::Exit;

/// start, stop, restart, signal, clear: a line per result, exit 1 if any failed.
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
    if applied {
        // supervisorctl's lines, by program: ours changes only the programs that changed, where
        // supervisord stops and re-adds their whole group.
        for n in removed {
            let _ = writeln!(out, "{n}: stopped\n{n}: removed process group");
        }
        for n in changed {
            let _ = writeln!(out, "{n}: stopped\n{n}: updated process group");
        }
        for n in added {
            let _ = writeln!(out, "{n}: added process group");
        }
        return Ok(Exit::Ok);
    }
    let mut lines: Vec<String> = [
        (added, "available"),
        (changed, "changed"),
        (removed, "disappeared"),
    ]
    .into_iter()
    .flat_map(|(names, word)| names.into_iter().map(move |n| format!("{n}: {word}")))
    .collect();
    lines.sort();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    Ok(Exit::Ok)
}

/// `add` and `remove`, a name at a time, in supervisorctl's words and exit codes: what is
/// already added is said and is not a failure; an unknown name or a running program is.
pub async fn add_remove(
    socket: &SocketArg,
    names: Vec<String>,
    add: bool,
) -> Result<Exit, ClientError> {
    let mut client = connect(socket).await?;
    let mut out = std::io::stdout().lock();
    let mut exit = Exit::Ok;
    for name in names {
        let request = match add {
            true => Request::Add { name: name.clone() },
            false => Request::Remove { name: name.clone() },
        };
        let line = match client.call(request).await {
            Ok(_) if add => format!("{name}: added process group"),
            Ok(_) => format!("{name}: removed process group"),
            Err(ClientError::Server(e)) => match e.kind {
                ErrorKind::AlreadyAdded => "ERROR: process group already active".to_owned(),
                ErrorKind::UnknownProgram => {
                    exit = Exit::Failed;
                    format!("ERROR: no such process/group: {name}")
                }
                ErrorKind::StillRunning => {
                    exit = Exit::Failed;
                    format!("ERROR: process/group still running: {name}")
                }
                _ => return Err(ClientError::Server(e)),
            },
            Err(e) => return Err(e),
        };
        let _ = writeln!(out, "{line}");
    }
    Ok(exit)
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
