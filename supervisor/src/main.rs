//! The `supervisor` binary: argument parsing, logging setup, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "supervisor",
    version,
    about = "PID 1 for a bot container: runs, restarts and logs its programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the container's entrypoint).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Format of the supervisor's own log on stderr (RUST_LOG sets the level).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a configuration: exit 0 when valid, 2 with every problem listed when not.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(
        short,
        long,
        env = "SUPERVISOR_CONFIG",
        default_value = "supervisor.toml"
    )]
    config: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => {
            init_tracing(log_format);
            match supervisor::run(&config.config, std::future::pending()) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("supervisor: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Check { config } => match supervisor::check(&config.config) {
            Ok(c) => {
                let n = c.programs.len();
                let noun = if n == 1 { "program" } else { "programs" };
                println!("{}: ok ({n} {noun})", config.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `Targets` reads RUST_LOG's `level` and `target=level` forms without a regex engine, which
    // keeps PID 1 small.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
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
