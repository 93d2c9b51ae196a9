//! The verbs that change what runs: `start`, `stop`, `restart`, `signal`, `reread`, `update`,
//! `add`, `remove`, `reload`, `shutdown`; and `version`.

use std::io::Write;

use supervisor_proto::{
    ActionResult, Changes, ClientError, ErrorKind, Failure, Outcome, ProgramInfo, ProgramState,
    Request, Verb,
};

use super::args::SocketArg;
use super::connect;
use supervisor::exit::Exit;

/// start, stop, restart, signal, clear, as supervisorctl does them: name by name, in order,
/// a line per result (a group's member as `group:name`), and its exit codes: 1 when an action
/// failed or a name is unknown (2 for an unknown group to start), 7 when a program is dead (it
/// would not start, or a signal found it not running).
///
/// Names are supervisord's namespecs: `name`, `group:name`, `group:*`, or `all` (which then is
/// the only one done). `all` and `group:*` act on the programs it makes sense for (start what
/// is not running, stop and signal what is), as supervisord's group calls do.
pub async fn act(socket: &SocketArg, request: Request) -> Result<Exit, ClientError> {
    let mut client = connect(socket).await?;
    let verb = request.verb();
    let (names, with) = split_request(request);
    // Who is in which group. A uid not granted `status` gets the daemon's own answers.
    let Ok((_, programs)) = client.status().await else {
        let results = client.act(with(names)).await?;
        let mut out = std::io::stdout().lock();
        let mut exit = Exit::Ok;
        for r in &results {
            let _ = writeln!(out, "{}: {}", r.name, r.message);
            exit = worse(exit, verb, r);
        }
        return Ok(exit);
    };
    let specs: Vec<String> = match names.iter().any(|n| n == "all") {
        true => vec!["all".to_owned()],
        false => names,
    };
    let mut out = std::io::stdout().lock();
    let mut exit = Exit::Ok;
    // First what each name means (its programs, or supervisorctl's error line), then one
    // request for them all (one record in the audit trail), then the lines in the names' order.
    let mut plans: Vec<Result<Vec<String>, (String, Exit)>> = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    for spec in specs {
        let (group, member) = match spec.split_once(':') {
            _ if spec == "all" => (None, None),
            Some((g, "" | "*")) => (Some(g.to_owned()), None),
            Some((g, m)) => (Some(g.to_owned()), Some(m.to_owned())),
            None => (Some(spec.clone()), Some(spec.clone())),
        };
        let group_of = |p: &ProgramInfo| p.group.clone().unwrap_or_else(|| p.name.clone());
        let members: Vec<&ProgramInfo> = programs
            .iter()
            .filter(|p| group.as_ref().is_none_or(|g| *g == group_of(p)))
            .filter(|p| member.as_ref().is_none_or(|m| *m == p.name))
            .collect();
        let names = |filter: bool| -> Vec<String> {
            members
                .iter()
                .filter(|p| !filter || applies(verb, p.state))
                .map(|p| p.name.clone())
                .collect()
        };
        let plan = match (&member, members.is_empty()) {
            (Some(_), true) => Err((format!("{spec}: ERROR (no such process)"), Exit::Failed)),
            (None, true) if group.is_some() => {
                let g = group.clone().unwrap_or_default();
                let code = if verb == Verb::Start {
                    Exit::Usage
                } else {
                    Exit::Failed
                };
                Err((format!("{g}: ERROR (no such group)"), code))
            }
            (Some(_), false) => {
                asked.extend(names(false));
                Ok(names(false))
            }
            // Many at once: for start, stop and signal those the action applies to; restart
            // and clear take them all, as the daemon reads `all` and `group:*` itself.
            (None, _) if matches!(verb, Verb::Start | Verb::Stop | Verb::Signal) => {
                asked.extend(names(true));
                Ok(names(true))
            }
            (None, _) => {
                asked.push(spec.clone());
                Ok(names(false))
            }
        };
        plans.push(plan);
    }
    let mut unique: Vec<String> = Vec::new();
    for n in asked {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let spec_of = |name: &str| {
        programs
            .iter()
            .find(|p| p.name == name)
            .map_or(name.to_owned(), namespec)
    };
    let results = match unique.is_empty() {
        true => Ok(Vec::new()),
        false => match client.act(with(unique)).await {
            // A signal the daemon does not know: supervisorctl's line for each program.
            Err(ClientError::Server(e))
                if verb == Verb::Signal && e.kind == ErrorKind::BadRequest =>
            {
                Err(())
            }
            other => Ok(other?),
        },
    };
    let mut printed: Vec<String> = Vec::new();
    for plan in plans {
        match plan {
            Err((line, code)) => {
                let _ = writeln!(out, "{line}");
                exit = code;
            }
            Ok(names) => {
                for name in names {
                    if printed.contains(&name) {
                        continue;
                    }
                    match &results {
                        Err(()) => {
                            let _ = writeln!(out, "{}: ERROR (bad signal name)", spec_of(&name));
                            exit = Exit::Failed;
                        }
                        Ok(results) => {
                            for r in results.iter().filter(|r| r.name == name) {
                                let _ = writeln!(out, "{}: {}", spec_of(&r.name), r.message);
                                exit = worse(exit, verb, r);
                            }
                        }
                    }
                    printed.push(name);
                }
            }
        }
    }
    Ok(exit)
}

/// A program as supervisorctl names it: `group:name`, or its name alone outside any group.
fn namespec(p: &ProgramInfo) -> String {
    match &p.group {
        Some(g) => format!("{g}:{}", p.name),
        None => p.name.clone(),
    }
}

/// Whether `all` or `group:*` includes a program in `state`, as supervisord's group calls
/// filter: start what is not running, stop what is, signal what has a process.
fn applies(verb: Verb, state: ProgramState) -> bool {
    use ProgramState::*;
    match verb {
        Verb::Start => !matches!(state, Running | Backoff | Starting),
        Verb::Stop => matches!(state, Running | Backoff | Starting),
        Verb::Signal => matches!(state, Running | Starting | Stopping),
        _ => true,
    }
}

/// The exit code after one more result: a failed start (or restart), or a signal to a program
/// not running, is a dead program (7); another failure is 1.
fn worse(exit: Exit, verb: Verb, r: &ActionResult) -> Exit {
    if r.outcome != Outcome::Failed {
        return exit;
    }
    let dead = matches!(verb, Verb::Start | Verb::Restart)
        || (verb == Verb::Signal && r.failure == Some(Failure::NotRunning));
    if dead { Exit::Dead } else { Exit::Failed }
}

/// Makes an action request for the names given.
type Remake = Box<dyn Fn(Vec<String>) -> Request>;

/// The names of an action request, and how to make the same request for other names.
fn split_request(request: Request) -> (Vec<String>, Remake) {
    match request {
        Request::Start { names } => (names, Box::new(|names| Request::Start { names })),
        Request::Stop { names } => (names, Box::new(|names| Request::Stop { names })),
        Request::Restart { names } => (names, Box::new(|names| Request::Restart { names })),
        Request::Clear { names } => (names, Box::new(|names| Request::Clear { names })),
        Request::Signal { signal, names } => (
            names,
            Box::new(move |names| Request::Signal {
                signal: signal.clone(),
                names,
            }),
        ),
        other => (Vec::new(), Box::new(move |_| other.clone())),
    }
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

/// `reload`: every program restarted with the file as it is, in supervisorctl's words.
pub async fn reload(socket: &SocketArg) -> Result<Exit, ClientError> {
    connect(socket).await?.call(Request::Reload).await?;
    let _ = writeln!(std::io::stdout().lock(), "Restarted supervisord");
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
