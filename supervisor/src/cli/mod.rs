//! The binary's commands: the daemon, `check`, and the client verbs, with supervisorctl's
//! output and exit codes.
//!
//! # Layout
//! - [`args`]: the command line, parsed by clap.
//! - [`follow`]: `tail -f` across rotations.
//!
//! - `status`, `actions`, `logs`, `deploys`, `alerts`: the client verbs, a file per family,
//!   each speaking to the daemon only through supervisor-proto.

mod actions;
mod alerts;
pub mod args;
mod deploys;
pub mod follow;
mod logs;
pub mod personas;
mod status;

pub use supervisor::exit::Exit;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use supervisor_proto::{Client, ClientError, Request};

use args::{Cli, Command, LogFormat, SocketArg};

/// The whole binary: parse, dispatch, exit code.
pub fn main() -> ExitCode {
    // Called as `supervisord` or `supervisorctl` (a symlink): their command lines, as ours.
    let args = match personas::translate(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return Exit::Usage.into();
        }
    };
    let cli = Cli::parse_from(args::options_after_the_verb(args));
    ExitCode::from(match cli.command {
        Command::Run {
            config,
            log_format,
            strict,
            user,
            log_level,
        } => {
            init_tracing(log_format, log_level.unwrap_or(tracing::Level::INFO));
            if let Some(user) = user {
                if let Err(e) = supervisor::process::become_user(&user) {
                    eprintln!("supervisor: cannot switch to user {user}: {e}");
                    return Exit::Usage.into();
                }
            }
            match supervisor::run(&config.config, strict, std::future::pending()) {
                // The daemon's own code (0 or 1, README "Exit codes").
                Ok(code) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("supervisor: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Check { config, strict } => match supervisor::check(&config.config) {
            Ok((c, findings)) => {
                for f in &findings {
                    eprintln!("{f}");
                }
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                if strict && !c.warnings.is_empty() {
                    let n = c.warnings.len();
                    eprintln!(
                        "{}: {n} warning(s), refused by --strict",
                        config.config.display()
                    );
                    return Exit::Usage.into();
                }
                let n = c.programs.len();
                let noun = if n == 1 { "program" } else { "programs" };
                println!("{}: ok ({n} {noun})", config.config.display());
                Exit::Ok
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
        } => match supervisor::deploy::release::make(&src, &releases, &name, keep) {
            Ok(dest) => {
                println!("release {} made", dest.display());
                Exit::Ok
            }
            Err(e) => {
                eprintln!("release: {e}");
                Exit::Failed
            }
        },
        Command::LsRemote { url, reference } => {
            let deadline = Duration::from_secs(30);
            match supervisor::deploy::fetch::ls_remote(&url, &reference, deadline) {
                Ok(id) => {
                    println!("{id}\t{reference}");
                    Exit::Ok
                }
                Err(e) => {
                    eprintln!("{e}");
                    Exit::Failed
                }
            }
        }
        Command::ReleaseWait {
            url,
            wait_ms,
            read_timeout_ms,
        } => {
            let ms = Duration::from_millis;
            match supervisor::deploy::fetch::wait(&url, ms(wait_ms), ms(read_timeout_ms)) {
                Ok(()) => Exit::Ok,
                Err(e) => step_failed(&e),
            }
        }
        Command::ReleaseFetch {
            url,
            key,
            commit,
            releases,
            name,
            keep,
            max_size,
            read_timeout_ms,
        } => {
            let fetch = supervisor::deploy::fetch::Fetch {
                url,
                key,
                commit,
                releases,
                name,
                keep,
                max_size,
                read_timeout: Duration::from_millis(read_timeout_ms),
            };
            match supervisor::deploy::fetch::fetch(&fetch) {
                // What the deploy engine reads back: the commit, then its subject.
                Ok(signed) => {
                    println!("{}\n{}", fetch.commit, signed.subject.unwrap_or_default());
                    Exit::Ok
                }
                Err(e) => step_failed(&e),
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "supervisor",
                &mut std::io::stdout(),
            );
            Exit::Ok
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
fn import(path: &Path, output: Option<&Path>, strict: bool) -> Exit {
    use supervisor::import::Severity;
    let imported = match supervisor::import::import(path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return Exit::Usage;
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
        return Exit::Usage;
    }
    // The result must pass `supervisor check` where it will live.
    let target = output.map_or_else(|| PathBuf::from("supervisor.toml"), Path::to_owned);
    let checked = supervisor::config::parse(&target, &imported.toml);
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &imported.toml) {
                eprintln!("cannot write {}: {e}", out.display());
                return Exit::Failed;
            }
        }
        None => print!("{}", imported.toml),
    }
    match checked {
        Ok(_) => Exit::Ok,
        Err(errors) => {
            eprintln!("the result does not pass `supervisor check` here:\n{errors}");
            Exit::Failed
        }
    }
}

/// The socket to talk to: `-s`, `$SUPERVISOR_SOCKET`, or the configuration's.
fn socket_path(arg: &SocketArg) -> PathBuf {
    if let Some(s) = &arg.socket {
        return s.clone();
    }
    // Only the socket's path is read: an error elsewhere in the file is the daemon's business.
    match supervisor::config::parse::socket_path(&arg.config) {
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

fn client(verb: Command) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("supervisor: cannot start: {e}");
            return Exit::Failed;
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
fn report(e: &ClientError) -> Exit {
    eprintln!("{e}");
    Exit::of(e)
}

async fn connect(socket: &SocketArg) -> Result<Client, ClientError> {
    let path = socket_path(socket);
    Client::connect(&path, concat!("supervisor-cli/", env!("CARGO_PKG_VERSION"))).await
}

/// A client verb: one function per verb, in a file per family.
async fn run_verb(verb: Command) -> Result<Exit, ClientError> {
    match verb {
        Command::Status {
            names,
            json,
            resources,
            socket,
        } => status::status(names, json, resources, &socket).await,
        Command::Pid { names, socket } => status::pid(names, &socket).await,
        Command::Start { names, socket } => actions::act(&socket, Request::Start { names }).await,
        Command::Stop { names, socket } => actions::act(&socket, Request::Stop { names }).await,
        Command::Restart { names, socket } => {
            actions::act(&socket, Request::Restart { names }).await
        }
        Command::Signal {
            signal,
            names,
            socket,
        } => actions::act(&socket, Request::Signal { signal, names }).await,
        Command::Clear { names, socket } => actions::act(&socket, Request::Clear { names }).await,
        Command::Reread { socket } => actions::changes(&socket, false).await,
        Command::Update { socket } => actions::changes(&socket, true).await,
        Command::Reload { socket } => actions::reload(&socket).await,
        Command::Add { names, socket } => actions::add_remove(&socket, names, true).await,
        Command::Remove { names, socket } => actions::add_remove(&socket, names, false).await,
        Command::Avail { socket } => status::avail(&socket).await,
        Command::Shutdown { socket } => actions::shutdown(&socket).await,
        Command::Version { socket } => actions::version(&socket).await,
        Command::Tail {
            follow,
            lines,
            name,
            stream,
            socket,
        } => logs::tail(follow, lines, name, stream, &socket).await,
        Command::Events { socket } => logs::events(&socket).await,
        Command::Deploy {
            name,
            wait,
            json,
            force,
            commit,
            socket,
        } => {
            let commit = commit.as_deref();
            let what = deploys::What::Deploy { force, commit };
            deploys::deploy(&socket, &name, what, deploys::Follow { wait, json }).await
        }
        Command::Rollback {
            name,
            wait,
            json,
            socket,
        } => {
            let what = deploys::What::Rollback;
            deploys::deploy(&socket, &name, what, deploys::Follow { wait, json }).await
        }
        Command::Deploys {
            names,
            limit,
            json,
            socket,
        } => deploys::history(names, limit, json, &socket).await,
        Command::Alerts {
            limit,
            json,
            socket,
        } => alerts::alerts(limit, json, &socket).await,
        Command::Raise {
            subject,
            message,
            severity,
            critical,
            socket,
        } => alerts::raise(subject, message, severity, critical, &socket).await,
        Command::Audit {
            limit,
            json,
            socket,
        } => alerts::audit(limit, json, &socket).await,
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Import { .. }
        | Command::ReleaseCopy { .. }
        | Command::LsRemote { .. }
        | Command::ReleaseWait { .. }
        | Command::ReleaseFetch { .. }
        | Command::Completions { .. } => Ok(Exit::Usage),
    }
}

/// A deploy step of ours that failed: why, on stderr for the deploy's log and on stdout for
/// the deploy engine's record.
fn step_failed(e: &supervisor::deploy::fetch::FetchError) -> Exit {
    eprintln!("{e}");
    println!("{e}");
    Exit::Failed
}

/// `--json`: pretty JSON on stdout, for scripts.
pub(crate) fn print_json(out: &mut impl Write, value: &impl serde::Serialize) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
