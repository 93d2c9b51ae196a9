//! The shutdown trigger of a supervised program: SIGTERM (the supervisor's stop, `docker stop`)
//! or SIGINT (Ctrl-C).

/// Resolves on the first SIGTERM or SIGINT. If the handlers cannot be installed it never
/// resolves (the default actions, which end the process, then still apply).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
