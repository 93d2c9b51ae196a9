//! The `hookd` binary: settings from the environment, then the shared shell (logging, listener,
//! readiness) serving until SIGTERM or SIGINT.

use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match hookd::Settings::from_env(&|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(problems) => {
            for p in problems.lines() {
                eprintln!("hookd: {p}");
            }
            return ExitCode::from(supervised::EX_CONFIG);
        }
    };
    supervised::service::run("hookd", settings.listen, |listener, listen, shutdown| {
        tracing::info!(%listen, program = %settings.program, socket = %settings.socket.display(), "hookd listening");
        hookd::serve(listener, settings, shutdown)
    })
}
