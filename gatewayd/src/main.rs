//! The `gatewayd` binary: settings from the environment, logging, the listeners bound (exit
//! 78, `EX_CONFIG`, when they cannot be: the supervisor shows it FATAL with the reason), then
//! [`gatewayd::run`] on a one-thread runtime.

use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match gatewayd::Settings::from_env(&|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(problems) => {
            for p in problems.lines() {
                eprintln!("gatewayd: {p}");
            }
            return ExitCode::from(supervised::EX_CONFIG);
        }
    };
    supervised::logging::init(std::env::var("RUST_LOG").ok().as_deref());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatewayd: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gatewayd: cannot listen on {}: {e}", settings.listen);
                return ExitCode::from(supervised::EX_CONFIG);
            }
        };
        let metrics = match settings.metrics_listen {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("gatewayd: cannot listen on {addr} (GATEWAY_METRICS_LISTEN): {e}");
                    return ExitCode::from(supervised::EX_CONFIG);
                }
            },
        };
        tracing::info!(listen = %settings.listen, upstream = %settings.upstream, "gatewayd listening");
        let shutdown = supervised::shutdown::signal();
        ExitCode::from(gatewayd::run(settings, listener, metrics, shutdown).await)
    })
}
