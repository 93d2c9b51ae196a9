//! The `statusd` binary: settings from the environment, logging, serve until SIGTERM or SIGINT.
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
    supervised::logging::init(std::env::var("RUST_LOG").ok().as_deref());
    supervised::limits::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("statusd: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("statusd: cannot listen on {}: {e}", settings.listen);
                return ExitCode::from(supervised::EX_CONFIG);
            }
        };
        // The address bound, with the port the system chose for `:0`.
        let listen = listener
            .local_addr()
            .map_or_else(|_| settings.listen.to_string(), |a| a.to_string());
        tracing::info!(%listen, socket = %settings.socket.display(), "statusd listening");
        // Listening: ready for the supervisor (`ready = "notify"`), and alive for as long as
        // the runtime turns (`watchdog`).
        let notifier = std::sync::Arc::new(supervised::notify::Notifier::from_env());
        notifier.ready();
        let _watchdog = notifier.spawn_watchdog();
        match statusd::serve(listener, settings, supervised::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("statusd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
