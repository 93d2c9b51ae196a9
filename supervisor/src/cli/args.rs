//! The command line: the daemon (`run`), `check`, and the client verbs, close to supervisorctl's.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about = "PID 1 for a bot container: runs, restarts and logs its programs, and controls them",
    after_help = "Client verbs find the daemon through -s, $SUPERVISOR_SOCKET, or the socket named in the configuration."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the container's entrypoint).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Format of the supervisor's own log on stderr (RUST_LOG sets the level).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// With a supervisord configuration: refuse to start if any of its options would lose
        /// behaviour (they are always listed at start).
        #[arg(long)]
        strict: bool,
        /// Switch to this user first (supervisord's -u); the supervisor must be root.
        #[arg(long, hide = true)]
        user: Option<String>,
        /// The log level when RUST_LOG is unset (supervisord's -e).
        #[arg(long, hide = true)]
        log_level: Option<tracing::Level>,
    },
    /// Validate a configuration: exit 0 when valid, 2 with every problem listed when not.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Refuse (exit 2) when there are warnings too, such as a grant naming a program that
        /// is not configured.
        #[arg(long)]
        strict: bool,
    },
    /// Show programs: name, state, and pid and uptime or why it is not running. Exit 0, 3 when
    /// one shown is stopped (STOPPED, EXITED, FATAL), 4 for an unknown name or no daemon.
    Status {
        /// Programs to show (default: all).
        names: Vec<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Also each program's CPU (over a quarter second) and resident memory, of its whole
        /// process group, from /proc.
        #[arg(long, short = 'r')]
        resources: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Start programs (names or `all`) and wait until they are RUNNING.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Stop programs (names or `all`) and wait until they are stopped.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Stop, then start programs (names or `all`).
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Send a signal (HUP, USR1, ...) to programs (names or `all`).
    Signal {
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print the supervisor's pid, or the pids of programs (names or `all`; 0 when not running).
    Pid {
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print the end of a program's log file; -f follows it, across rotations.
    Tail {
        /// Keep printing what is appended, until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u32,
        name: String,
        #[arg(value_enum, default_value_t = StreamArg::Stdout)]
        stream: StreamArg,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Empty programs' log files (names or `all`) and delete their rotated backups.
    Clear {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Show what `update` would change in the configuration; change nothing.
    Reread {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Apply the configuration: start added programs, stop removed ones, restart changed ones.
    Update {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Add programs or groups from the configuration file that the supervisor does not have
    /// yet (supervisorctl's `add`); nothing else in the file is applied.
    Add {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Drop stopped programs or groups from the supervisor (supervisorctl's `remove`).
    Remove {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// List the programs of the configuration file: in use (the supervisor has them) or avail
    /// (`add` would add them), autostart, priority.
    Avail {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Restart every program with the configuration file as it is now (supervisorctl's
    /// `reload`); the supervisor itself stays.
    Reload {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print state changes as JSON lines, until interrupted.
    Events {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Stop every program and the supervisor.
    Shutdown {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print the running supervisor's version.
    Version {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Deploy a program from its git branch (see [program.NAME.deploy]).
    Deploy {
        name: String,
        /// Follow the deploy, a line per stage as it happens (each step with its duration),
        /// and exit 0 only when the new version passed its health gate (or was already
        /// running).
        #[arg(long)]
        wait: bool,
        /// With --wait: the deploy's events as JSON lines instead.
        #[arg(long, requires = "wait")]
        json: bool,
        /// Deploy the branch tip even if it is quarantined (it failed its health gate before).
        #[arg(long)]
        force: bool,
        /// With artifact_url: deploy this commit's prebuilt release, without asking the remote
        /// for the branch tip (an image without git needs it). Otherwise the tip is fetched as
        /// always, and the deploy is refused at once if this commit is held back.
        #[arg(long, value_name = "ID")]
        commit: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Put a program's previous release back and restart it.
    Rollback {
        name: String,
        /// Follow it and exit 0 only when the previous version is up again.
        #[arg(long)]
        wait: bool,
        /// With --wait: the events as JSON lines instead.
        #[arg(long, requires = "wait")]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print the deploy history, newest first.
    Deploys {
        names: Vec<String>,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Recent alerts, newest first: programs FATAL, out of start budget, unhealthy or
    /// crash-looping, failed deploys, and recoveries.
    Alerts {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Raise an alert about something the supervisor cannot see (a failed certificate renewal
    /// on the host): it reaches the bot's channels, owners (with --critical) and statusd's
    /// webhook like the supervisor's own alerts, and `alerts` lists it.
    Raise {
        /// What it is about, a name like a program's (`tls`).
        subject: String,
        /// For people, one line: `TLS certificate renewal failed: ...`.
        message: String,
        /// info, warning or critical.
        #[arg(long, default_value = "warning", value_parser = parse_severity)]
        severity: supervisor_proto::Severity,
        /// Mark it critical: the bot also sends it to each owner directly.
        #[arg(long)]
        critical: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The audit trail: every state-changing request, newest first, with when, who (uid,
    /// process, and whom it acted for), what and the outcome.
    Audit {
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Convert a supervisord configuration into supervisor.toml; what has no equivalent is
    /// listed on stderr with its line.
    Import {
        /// The supervisord configuration (its [include]s are followed).
        path: PathBuf,
        /// Where to write supervisor.toml (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Refuse (exit 2, write nothing) if anything is not supported.
        #[arg(long)]
        strict: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions { shell: clap_complete::Shell },
    /// The deploy engine's release step (run by the daemon as the deploy's user, not by hand):
    /// copy SRC into RELEASES/NAME/ and keep the newest KEEP releases.
    #[command(hide = true)]
    ReleaseCopy {
        src: PathBuf,
        releases: PathBuf,
        name: String,
        keep: usize,
    },
    /// The commit a reference names on a git remote served over HTTP(S), printed as
    /// `git ls-remote` prints it (run by the daemon for prebuilt releases, in an image without
    /// git).
    #[command(hide = true)]
    LsRemote { url: String, reference: String },
    /// The deploy engine's wait for a prebuilt release (run by the daemon, not by hand): until
    /// URL's signature is there, at most --wait-ms.
    #[command(hide = true)]
    ReleaseWait {
        url: String,
        #[arg(long)]
        wait_ms: u64,
        #[arg(long)]
        read_timeout_ms: u64,
    },
    /// The deploy engine's download of a prebuilt release (run by the daemon, not by hand):
    /// fetch URL and its signature, verify, unpack into RELEASES/COMMIT/, keep the newest KEEP.
    #[command(hide = true)]
    ReleaseFetch {
        url: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        commit: String,
        #[arg(long)]
        releases: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        keep: usize,
        #[arg(long)]
        max_size: u64,
        #[arg(long)]
        read_timeout_ms: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(
        short,
        long,
        env = "SUPERVISOR_CONFIG",
        default_value = "supervisor.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SocketArg {
    /// The control socket (default: the one named in the configuration).
    #[arg(short, long, env = "SUPERVISOR_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The configuration that names the socket.
    #[arg(
        short,
        long,
        env = "SUPERVISOR_CONFIG",
        default_value = "supervisor.toml"
    )]
    pub config: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StreamArg {
    Stdout,
    Stderr,
}

fn parse_severity(text: &str) -> Result<supervisor_proto::Severity, String> {
    supervisor_proto::Severity::ALL
        .iter()
        .copied()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = supervisor_proto::Severity::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            format!("expected one of {}", names.join(", "))
        })
}

/// `supervisor -c FILE status` as `supervisor status -c FILE`: the options every verb shares
/// (`-c`/`--config`, `-s`/`--socket`), typed before the verb as with supervisorctl, are moved
/// after it. Anything else before the verb is left for clap to report.
pub fn options_after_the_verb(args: Vec<OsString>) -> Vec<OsString> {
    let takes_value = |a: &str| matches!(a, "-c" | "--config" | "-s" | "--socket");
    let attached = |a: &str| {
        ["--config=", "--socket="].iter().any(|p| a.starts_with(p))
            || ((a.starts_with("-c") || a.starts_with("-s")) && a.len() > 2 && !a.starts_with("--"))
    };
    let mut moved = Vec::new();
    let mut i = 1;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        if takes_value(arg) && i + 1 < args.len() {
            moved.extend_from_slice(&args[i..i + 2]);
            i += 2;
        } else if attached(arg) {
            moved.push(args[i].clone());
            i += 1;
        } else {
            break;
        }
    }
    if moved.is_empty() || i >= args.len() {
        return args;
    }
    // The verb and what follows it, then the moved options (before any `--`).
    let mut out = vec![args[0].clone(), args[i].clone()];
    let rest = &args[i + 1..];
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    out.extend_from_slice(&rest[..split]);
    out.extend(moved);
    out.extend_from_slice(&rest[split..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        let out: Vec<String> = options_after_the_verb(args)
            .into_iter()
            .map(|a| a.into_string().unwrap_or_default())
            .collect();
        out.join(" ")
    }

    #[test]
    fn shared_options_before_the_verb_move_after_it() {
        assert_eq!(
            moved("supervisor -c a.toml status"),
            "supervisor status -c a.toml"
        );
        assert_eq!(
            moved("supervisor --config=a.toml -s /run/s.sock tail -f bot"),
            "supervisor tail -f bot --config=a.toml -s /run/s.sock"
        );
        assert_eq!(
            moved("supervisor -ca.toml check"),
            "supervisor check -ca.toml"
        );
        assert_eq!(
            moved("supervisor -c a.toml signal -- HUP bot"),
            "supervisor signal -c a.toml -- HUP bot"
        );
        // Nothing to move, or nothing after the options: unchanged.
        assert_eq!(
            moved("supervisor status -c a.toml"),
            "supervisor status -c a.toml"
        );
        assert_eq!(moved("supervisor -c a.toml"), "supervisor -c a.toml");
        assert_eq!(moved("supervisor --version"), "supervisor --version");
    }
}
