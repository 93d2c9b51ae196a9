//! The `bot` binary: settings from the environment, logging, run until SIGTERM.

use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match bot::Settings::from_env(&|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(problems) => {
            for p in problems.lines() {
                eprintln!("bot: {p}");
            }
            return ExitCode::from(bot::EXIT_CONFIG);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(bot::run(settings)))
}
