//! Logging for a supervised program: tracing to stderr (the supervisor captures it, prefixes it
//! and rotates it), at INFO unless `RUST_LOG` says otherwise (`debug`, or `hookd=debug,info`).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the subscriber; `rust_log` is the value of `RUST_LOG`, if any. An unreadable
/// value falls back to INFO and says so.
pub fn init(rust_log: Option<&str>) {
    let parsed = rust_log.map(|v| v.parse::<Targets>());
    let filter = match &parsed {
        Some(Ok(t)) => t.clone(),
        _ => Targets::new().with_default(tracing::Level::INFO),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .init();
    if let Some(Err(e)) = parsed {
        tracing::warn!(error = %e, "RUST_LOG is not a usable filter; logging at INFO");
    }
}
