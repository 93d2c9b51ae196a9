//! The shell of a program that serves HTTP under the supervisor (hookd, statusd): logging with
//! `RUST_LOG`, the open-files limit raised, a one-thread runtime, the listener bound (exit 78,
//! `EX_CONFIG`, when it cannot: the supervisor then shows it FATAL with the reason rather than
//! restarting into the same busy port), `READY=1` once listening and watchdog pings while the
//! runtime turns, then the server until SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

/// The shutdown signal handed to the server (SIGTERM or SIGINT).
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs `serve` on a listener bound to `listen`; `name` prefixes what goes to stderr.
/// `serve` gets the listener, the address bound (with the port the system chose for `:0`),
/// and the shutdown signal.
pub fn run<F, Fut>(name: &str, listen: SocketAddr, serve: F) -> ExitCode
where
    F: FnOnce(TcpListener, String, Shutdown) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    crate::logging::init(std::env::var("RUST_LOG").ok().as_deref());
    crate::limits::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: cannot listen on {listen}: {e}");
                return ExitCode::from(crate::EX_CONFIG);
            }
        };
        let bound = listener
            .local_addr()
            .map_or_else(|_| listen.to_string(), |a| a.to_string());
        // Listening: ready for the supervisor (`ready = "notify"`), and alive for as long as
        // the runtime turns (`watchdog`).
        let notifier = std::sync::Arc::new(crate::notify::Notifier::from_env());
        notifier.ready();
        let _watchdog = notifier.spawn_watchdog();
        match serve(listener, bound, Box::pin(crate::shutdown::signal())).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
