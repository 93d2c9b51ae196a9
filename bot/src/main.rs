//! The `bot` binary: settings from the environment, logging, run until SIGTERM or SIGINT.

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
    supervised::logging::init(std::env::var("RUST_LOG").ok().as_deref());
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
    ExitCode::from(runtime.block_on(bot::run(settings, supervised::shutdown::signal())))
}
