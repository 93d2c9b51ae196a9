//! The `statusd` binary: settings from the environment, then the shared shell (logging,
//! listener, readiness) serving until SIGTERM or SIGINT.
//! `statusd health` asks a running statusd's `/health` instead (the container's HEALTHCHECK).

use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match statusd::Settings::from_env(&|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(problem) => {
            eprintln!("statusd: {problem}");
            return ExitCode::from(supervised::EX_CONFIG);
        }
    };
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("health") => {
            let target = statusd::probe::target(settings.listen);
            let token = settings.token.as_deref();
            return match statusd::probe::check(target, token, std::time::Duration::from_secs(3)) {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    println!("unhealthy: {why}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!(
                "statusd: unknown argument {other:?} (`statusd` serves; `statusd health` checks a running one)"
            );
            return ExitCode::from(2);
        }
    }
    supervised::service::run("statusd", settings.listen, |listener, listen, shutdown| {
        tracing::info!(%listen, socket = %settings.socket.display(), "statusd listening");
        statusd::serve(listener, settings, shutdown)
    })
}
