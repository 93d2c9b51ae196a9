//! The binary's commands: the daemon, `check`, and the client verbs, with supervisorctl's
//! output and exit codes.
//!
//! # Layout
//! - [`args`]: the command line, parsed by clap.
//! - [`follow`]: `tail -f` across rotations.
//!
//! Why this file is past 600 lines: every client verb's output is here. The next step is a file
//! per verb family (status, actions, logs, deploys) over the typed client calls of
//! supervisor-proto, and one exit-code enum.

pub mod args;
pub mod follow;
pub mod personas;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use supervisor_proto::{
    ActionResult, Client, ClientError, DeployResult, DeployStage, ErrorKind, Outcome, ProgramInfo,
    Reply, Request, Stream,
};

use args::{Cli, Command, LogFormat, SocketArg, StreamArg};

/// Exit codes shared by the client verbs (supervisorctl 4.x's where it has them).
pub mod exit {
    pub const OK: u8 = 0;
    /// An action failed (a start that did not reach RUNNING, a refused request).
    pub const FAILED: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// `status`: some program shown is not RUNNING.
    pub const NOT_RUNNING: u8 = 3;
    /// An unknown program name, or no daemon to ask.
    pub const UNKNOWN: u8 = 4;
}

/// The whole binary: parse, dispatch, exit code.
pub fn main() -> ExitCode {
    // Called as `supervisord` or `supervisorctl` (a symlink): their command lines, as ours.
    let args = match personas::translate(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let cli = Cli::parse_from(args);
    ExitCode::from(match cli.command {
        Command::Run {
            config,
            log_format,
            strict,
            user,
            log_level,
        } => {
            init_tracing(log_format, log_level.unwrap_or(tracing::Level::INFO));
            if let Some(user) = user
                && let Err(e) = crate::process::become_user(&user)
            {
                eprintln!("supervisor: cannot switch to user {user}: {e}");
                return ExitCode::from(exit::USAGE);
            }
            match crate::run(&config.config, strict, std::future::pending()) {
                Ok(code) => u8::try_from(code).unwrap_or(exit::FAILED),
                Err(e) => {
                    eprintln!("supervisor: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Check { config } => match crate::check(&config.config) {
            Ok((c, findings)) => {
                for f in &findings {
                    eprintln!("{f}");
                }
                let n = c.programs.len();
                let noun = if n == 1 { "program" } else { "programs" };
                println!("{}: ok ({n} {noun})", config.config.display());
                exit::OK
            }
            Err(e) => {
                eprintln!("{e}");
                e.exit_code()
            }
        },
        Command::Import {
            path,
            output,
            strict,
        } => import(&path, output.as_deref(), strict),
        Command::ReleaseCopy {
            src,
            releases,
            name,
            keep,
        } => match crate::deploy::release::make(&src, &releases, &name, keep) {
            Ok(dest) => {
                println!("release {} made", dest.display());
                exit::OK
            }
            Err(e) => {
                eprintln!("release: {e}");
                exit::FAILED
            }
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "supervisor",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        verb => client(verb),
    })
}

fn init_tracing(format: LogFormat, level: tracing::Level) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `Targets` reads RUST_LOG's `level` and `target=level` forms without a regex engine, which
    // keeps PID 1 small.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .init(),
    }
}

/// `supervisor import`: converts, reports, checks the result.
fn import(path: &Path, output: Option<&Path>, strict: bool) -> u8 {
    use crate::import::Severity;
    let imported = match crate::import::import(path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return exit::USAGE;
        }
    };
    for f in &imported.findings {
        eprintln!("{f}");
    }
    let unsupported = imported
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Unsupported)
        .count();
    if strict && unsupported > 0 {
        eprintln!("--strict: {unsupported} unsupported item(s); nothing written");
        return exit::USAGE;
    }
    // The result must pass `supervisor check` where it will live.
    let target = output.map_or_else(|| PathBuf::from("supervisor.toml"), Path::to_owned);
    let checked = crate::config::parse(&target, &imported.toml);
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &imported.toml) {
                eprintln!("cannot write {}: {e}", out.display());
                return exit::FAILED;
            }
        }
        None => print!("{}", imported.toml),
    }
    match checked {
        Ok(_) => exit::OK,
        Err(errors) => {
            eprintln!("the result does not pass `supervisor check` here:\n{errors}");
            exit::FAILED
        }
    }
}

/// The socket to talk to: `-s`, `$SUPERVISOR_SOCKET`, or the configuration's.
fn socket_path(arg: &SocketArg) -> PathBuf {
    if let Some(s) = &arg.socket {
        return s.clone();
    }
    // Only the socket's path is read: an error elsewhere in the file is the daemon's business.
    match crate::config::parse::socket_path(&arg.config) {
        Ok(path) => path,
        Err(why) => {
            let base = arg.config.parent().unwrap_or(Path::new("."));
            let guess = base.join("data/supervisor.sock");
            eprintln!(
                "supervisor: {why}; trying {} (name the socket with -s PATH or SUPERVISOR_SOCKET)",
                guess.display()
            );
            guess
        }
    }
}

fn client(verb: Command) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("supervisor: cannot start: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async {
        match run_verb(verb).await {
            Ok(code) => code,
            Err(e) => report(&e),
        }
    })
}

/// Prints a client error and picks the exit code.
fn report(e: &ClientError) -> u8 {
    eprintln!("{e}");
    match e {
        ClientError::Connect { .. } => exit::UNKNOWN,
        ClientError::Server(body) => match body.kind {
            ErrorKind::UnknownProgram => exit::UNKNOWN,
            ErrorKind::BadConfig | ErrorKind::BadRequest => exit::USAGE,
            _ => exit::FAILED,
        },
        _ => exit::FAILED,
    }
}

async fn connect(socket: &SocketArg) -> Result<Client, ClientError> {
    let path = socket_path(socket);
    Client::connect(&path, concat!("supervisor-cli/", env!("CARGO_PKG_VERSION"))).await
}

async fn run_verb(verb: Command) -> Result<u8, ClientError> {
    let mut out = std::io::stdout().lock();
    match verb {
        Command::Status {
            names,
            json,
            resources,
            socket,
        } => {
            let (supervisor, programs) = connect(&socket).await?.status().await?;
            let (shown, unknown) = pick(programs, &names);
            let used = if resources {
                usage(&shown).await
            } else {
                Vec::new()
            };
            if json {
                let mut value = serde_json::json!({ "supervisor": supervisor, "programs": shown });
                for (i, u) in used.iter().enumerate() {
                    if let Some((cpu, rss)) = u {
                        value["programs"][i]["cpu_percent"] = serde_json::json!(cpu);
                        value["programs"][i]["memory_bytes"] = serde_json::json!(rss);
                    }
                }
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                for (i, p) in shown.iter().enumerate() {
                    match used.get(i) {
                        Some(Some((cpu, rss))) => {
                            let mib = *rss as f64 / (1024.0 * 1024.0);
                            let _ = writeln!(
                                out,
                                "{}",
                                status_line(p).replacen(
                                    &format!("{:<10}", p.state),
                                    &format!(
                                        "{:<10}cpu {cpu:>5.1}%  mem {mib:>7.1} MiB  ",
                                        p.state
                                    ),
                                    1
                                )
                            );
                        }
                        _ => {
                            let _ = writeln!(out, "{}", status_line(p));
                        }
                    }
                }
            }
            for name in &unknown {
                let _ = writeln!(out, "{name}: ERROR (no such process)");
            }
            Ok(if !unknown.is_empty() {
                exit::UNKNOWN
            } else if shown.iter().all(|p| p.state == "RUNNING") {
                exit::OK
            } else {
                exit::NOT_RUNNING
            })
        }
        Command::Start { names, socket } => act(&socket, Request::Start { names }).await,
        Command::Stop { names, socket } => act(&socket, Request::Stop { names }).await,
        Command::Restart { names, socket } => act(&socket, Request::Restart { names }).await,
        Command::Signal {
            signal,
            names,
            socket,
        } => act(&socket, Request::Signal { signal, names }).await,
        Command::Pid { names, socket } => {
            let mut client = connect(&socket).await?;
            let reply = client
                .call(Request::Pid {
                    names: names.clone(),
                })
                .await?;
            let Reply::Pids {
                supervisor,
                programs,
            } = reply
            else {
                return Err(unexpected(&reply));
            };
            if names.is_empty() {
                let _ = writeln!(out, "{supervisor}");
            }
            for p in programs {
                let _ = writeln!(out, "{}", p.pid.unwrap_or(0));
            }
            Ok(exit::OK)
        }
        Command::Tail {
            follow,
            lines,
            name,
            stream,
            socket,
        } => {
            let stream = match stream {
                StreamArg::Stdout => Stream::Stdout,
                StreamArg::Stderr => Stream::Stderr,
            };
            let mut client = connect(&socket).await?;
            let asked = if follow { 0 } else { lines };
            let reply = client
                .call(Request::Tail {
                    name,
                    stream,
                    lines: asked,
                })
                .await?;
            let Reply::Tail { text, path, .. } = reply else {
                return Err(unexpected(&reply));
            };
            if !follow {
                let _ = out.write_all(text.as_bytes());
                return Ok(exit::OK);
            }
            drop(client);
            drop(out);
            match follow::follow(Path::new(&path), lines, &mut std::io::stdout()).await {
                Ok(()) => Ok(exit::OK),
                Err(e) => {
                    eprintln!("tail: {path}: {e}");
                    Ok(exit::FAILED)
                }
            }
        }
        Command::Reread { socket } => changes(&socket, Request::Reread).await,
        Command::Update { socket } => changes(&socket, Request::Update).await,
        Command::Events { socket } => {
            let client = connect(&socket).await?;
            let mut events = client.subscribe().await?;
            drop(out);
            while let Some(event) = events.next().await? {
                let mut out = std::io::stdout().lock();
                let line = serde_json::to_string(&event).unwrap_or_default();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break; // the reader went away (`| head`)
                }
            }
            Ok(exit::OK)
        }
        Command::Shutdown { socket } => {
            let mut client = connect(&socket).await?;
            client.call(Request::Shutdown).await?;
            let _ = writeln!(out, "Shut down");
            Ok(exit::OK)
        }
        Command::Version { socket } => {
            let mut client = connect(&socket).await?;
            let reply = client.call(Request::Version).await?;
            let Reply::Version { version, .. } = reply else {
                return Err(unexpected(&reply));
            };
            let _ = writeln!(out, "{version}");
            Ok(exit::OK)
        }
        Command::Deploy {
            name,
            wait,
            json,
            force,
            socket,
        } => {
            drop(out);
            let request = Request::Deploy {
                name: name.clone(),
                trigger: Some(format!("cli ({})", whoami())),
                force,
            };
            deploy(&socket, &name, request, Follow { wait, json }).await
        }
        Command::Rollback {
            name,
            wait,
            json,
            socket,
        } => {
            drop(out);
            let request = Request::Rollback { name: name.clone() };
            deploy(&socket, &name, request, Follow { wait, json }).await
        }
        Command::Deploys {
            names,
            limit,
            json,
            socket,
        } => {
            let records = connect(&socket).await?.deploys(names, limit).await?;
            if json {
                print_json(&mut out, &records);
            } else {
                for r in &records {
                    let started: chrono::DateTime<chrono::Local> = (std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(r.started_ms))
                    .into();
                    let commits = format!(
                        "{}..{}",
                        r.old_commit
                            .as_deref()
                            .map_or("-", |c| &c[..c.len().min(10)]),
                        r.new_commit
                            .as_deref()
                            .map_or("-", |c| &c[..c.len().min(10)])
                    );
                    let _ = writeln!(
                        out,
                        "{:<34} {:<8} {:<11} {:<22} {:>7.1}s  {}",
                        r.id,
                        r.program,
                        r.result,
                        commits,
                        r.duration_ms as f64 / 1000.0,
                        started.format("%b %d %H:%M:%S"),
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Alerts {
            limit,
            json,
            socket,
        } => {
            let records = connect(&socket).await?.alerts(limit).await?;
            if json {
                print_json(&mut out, &records);
            } else {
                for a in &records {
                    let at: chrono::DateTime<chrono::Local> =
                        (std::time::UNIX_EPOCH + std::time::Duration::from_millis(a.at_ms)).into();
                    let _ = writeln!(
                        out,
                        "{}  {:<8} {:<13} {}",
                        at.format("%b %d %H:%M:%S"),
                        a.severity,
                        a.kind,
                        a.message
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Raise {
            subject,
            message,
            severity,
            critical,
            socket,
        } => {
            let alert = connect(&socket)
                .await?
                .raise(&subject, &message, severity, critical)
                .await?;
            let _ = writeln!(out, "raised {}", alert.id);
            Ok(exit::OK)
        }
        Command::Audit {
            limit,
            json,
            socket,
        } => {
            let records = connect(&socket).await?.audit(limit).await?;
            if json {
                print_json(&mut out, &records);
            } else {
                for r in &records {
                    let at: chrono::DateTime<chrono::Local> =
                        (std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.at_ms)).into();
                    let who = match (&r.process, &r.by) {
                        (Some(p), Some(by)) => format!("uid {} ({p}) for {by}", r.uid),
                        (Some(p), None) => format!("uid {} ({p})", r.uid),
                        (None, Some(by)) => format!("uid {} for {by}", r.uid),
                        (None, None) => format!("uid {}", r.uid),
                    };
                    let _ = writeln!(
                        out,
                        "{}  {who}  {} {}  {}: {}",
                        at.format("%b %d %H:%M:%S"),
                        r.verb,
                        r.targets.join(" "),
                        if r.ok { "ok" } else { "failed" },
                        r.message,
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Import { .. }
        | Command::ReleaseCopy { .. }
        | Command::Completions { .. } => Ok(exit::USAGE),
    }
}

/// CPU percent (over a quarter second) and resident bytes of each program's process group.
async fn usage(programs: &[ProgramInfo]) -> Vec<Option<(f64, u64)>> {
    use supervisor_proto::resources::group_usage;
    const OVER: std::time::Duration = std::time::Duration::from_millis(250);
    let first: Vec<_> = programs
        .iter()
        .map(|p| p.pid.and_then(group_usage))
        .collect();
    tokio::time::sleep(OVER).await;
    programs
        .iter()
        .zip(first)
        .map(|(p, before)| {
            let (before, now) = (before?, p.pid.and_then(group_usage)?);
            let cpu =
                ((now.cpu_seconds - before.cpu_seconds) / OVER.as_secs_f64() * 100.0).max(0.0);
            Some(((cpu * 10.0).round() / 10.0, now.rss_bytes))
        })
        .collect()
}

fn whoami() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// How `deploy --wait` follows a deploy.
#[derive(Clone, Copy, Debug)]
struct Follow {
    wait: bool,
    json: bool,
}

/// deploy and rollback: start it, and with `wait` follow its events to the end: a line per
/// stage with the time since the request (each build step with its own duration), or with
/// `json` each event as it came.
async fn deploy(
    socket: &SocketArg,
    name: &str,
    request: Request,
    follow: Follow,
) -> Result<u8, ClientError> {
    use supervisor_proto::Event;
    // Subscribe first, so that no event of this deploy can be missed.
    let mut events = if follow.wait {
        Some(connect(socket).await?.subscribe().await?)
    } else {
        None
    };
    let asked = std::time::Instant::now();
    let mut client = connect(socket).await?;
    let reply = client.call(request).await?;
    let Reply::Deploy { id, queued, .. } = reply else {
        return Err(unexpected(&reply));
    };
    if !follow.json {
        println!(
            "{name}: {} {id}",
            if queued { "queued after" } else { "deploy" }
        );
    }
    let Some(events) = events.as_mut() else {
        return Ok(exit::OK);
    };
    // A queued request is done by the deploy that starts after `id`.
    let mut target = (!queued).then(|| id.clone());
    while let Some(event) = events.next().await? {
        let Event::Deploy {
            program,
            id: event_id,
            stage,
            message,
            commit,
            ..
        } = &event
        else {
            continue;
        };
        if program != name {
            continue;
        }
        if target.is_none() && *stage == DeployStage::Started && *event_id != id {
            target = Some(event_id.clone());
        }
        if target.as_deref() != Some(event_id.as_str()) {
            continue;
        }
        if follow.json {
            print_json(&mut std::io::stdout().lock(), &event);
        } else {
            let commit = commit
                .as_ref()
                .map(|c| format!(" {}", &c[..c.len().min(12)]))
                .unwrap_or_default();
            let message = match (stage, message.is_empty()) {
                (DeployStage::Restarting, true) => {
                    ": waiting for the new version to be ready".to_owned()
                }
                (_, true) => String::new(),
                (_, false) => format!(": {message}"),
            };
            let at = asked.elapsed().as_secs_f64();
            println!("[{at:>6.1}s] {name}: {stage}{commit}{message}");
        }
        if let Some(result) = stage.result() {
            return Ok(match result {
                DeployResult::Succeeded | DeployResult::Unchanged => exit::OK,
                DeployResult::Failed
                | DeployResult::RolledBack
                | DeployResult::Interrupted
                | DeployResult::Quarantined => exit::FAILED,
            });
        }
    }
    eprintln!("the supervisor went away before the deploy ended");
    Ok(exit::FAILED)
}

/// start, stop, restart, signal: a line per result, exit 1 if any failed.
async fn act(socket: &SocketArg, request: Request) -> Result<u8, ClientError> {
    let results = connect(socket).await?.act(request).await?;
    let mut out = std::io::stdout().lock();
    for ActionResult { name, message, .. } in &results {
        let _ = writeln!(out, "{name}: {message}");
    }
    Ok(if results.iter().all(|r| r.outcome.is_success()) {
        exit::OK
    } else if results.iter().any(|r| r.outcome == Outcome::Failed) {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// reread and update, in supervisorctl's words: reread says what is available, changed or
/// gone; update what it removed, updated and added.
async fn changes(socket: &SocketArg, request: Request) -> Result<u8, ClientError> {
    let mut client = connect(socket).await?;
    let reply = client.call(request).await?;
    let Reply::Changes {
        added,
        changed,
        removed,
        applied,
    } = reply
    else {
        return Err(unexpected(&reply));
    };
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
    Ok(exit::OK)
}

/// `--json`: pretty JSON on stdout, for scripts.
fn print_json(out: &mut impl Write, value: &impl serde::Serialize) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply: {reply:?}"))
}

/// The programs to show, in the daemon's order, and the names that match none.
fn pick(programs: Vec<ProgramInfo>, names: &[String]) -> (Vec<ProgramInfo>, Vec<String>) {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return (programs, Vec::new());
    }
    let matches = |n: &str, p: &ProgramInfo| match n.split_once(':') {
        Some((group, member)) => {
            p.group.as_deref() == Some(group) && (member == "*" || p.name == member)
        }
        None => p.name == n,
    };
    let unknown = names
        .iter()
        .filter(|n| !programs.iter().any(|p| matches(n, p)))
        .cloned()
        .collect();
    let shown = programs
        .into_iter()
        .filter(|p| names.iter().any(|n| matches(n, p)))
        .collect();
    (shown, unknown)
}

/// supervisorctl's status line: `%(name)-32s %(state)-10s%(desc)s`.
/// supervisorctl's line: a program of a group is named `group:name`, as supervisorctl names it.
pub fn status_line(p: &ProgramInfo) -> String {
    let name = match &p.group {
        Some(group) => format!("{group}:{}", p.name),
        None => p.name.clone(),
    };
    format!("{name:<32} {:<10}{}", p.state, p.description)
        .trim_end()
        .to_owned()
}
