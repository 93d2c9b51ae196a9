//! The `hookd` binary: settings from the environment, logging, serve until SIGTERM or SIGINT.

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
    supervised::logging::init(std::env::var("RUST_LOG").ok().as_deref());
    supervised::limits::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookd: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hookd: cannot listen on {}: {e}", settings.listen);
                return ExitCode::from(supervised::EX_CONFIG);
            }
        };
        // The address bound, with the port the system chose for `:0`.
        let listen = listener.local_addr().map_or_else(|_| settings.listen.to_string(), |a| a.to_string());
        tracing::info!(%listen, program = %settings.program, socket = %settings.socket.display(), "hookd listening");
        // Listening: ready for the supervisor (`ready = "notify"`), and alive for as long as
        // the runtime turns (`watchdog`).
        let notifier = std::sync::Arc::new(supervised::notify::Notifier::from_env());
        notifier.ready();
        let _watchdog = notifier.spawn_watchdog();
        match hookd::serve(listener, settings, supervised::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
