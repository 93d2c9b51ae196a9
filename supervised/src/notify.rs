//! The client side of systemd's readiness protocol (`man sd_notify`), which our supervisor
//! speaks for `ready = "notify"` programs: `READY=1` once serving, `STATUS=` for people,
//! `WATCHDOG=1` while alive. A few lines over a datagram socket rather than a crate: the
//! protocol is one `sendto` of `KEY=VALUE` lines, and this keeps each binary's dependencies to
//! what it already has.
//!
//! Without `NOTIFY_SOCKET` (run by hand, by supervisord, by Docker) every call does nothing.
//! A send never blocks: a full socket drops the message, as a busy supervisor would rather.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, from the environment.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace), and
    /// `WATCHDOG_USEC` when `WATCHDOG_PID` is unset or names this process.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let addr = address(path.to_str()?)?;
            let socket = UnixDatagram::unbound().ok()?;
            socket.set_nonblocking(true).ok()?;
            Some((socket, addr))
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// True when a supervisor listens (`NOTIFY_SOCKET` was set and usable).
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout the supervisor set, if any: ping well within it.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends `text` (`KEY=VALUE` lines) as one datagram.
    pub fn send(&self, text: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(text.as_bytes(), addr) {
            tracing::debug!(error = %e, "notification not sent");
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STATUS=`, on one line.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    pub fn ping(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Pings the watchdog at half its timeout for as long as the task runs (a program whose
    /// runtime stalls stops pinging). Nothing when no watchdog is set.
    pub fn spawn_watchdog(self: &std::sync::Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.watchdog()? / 2;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.ping();
            }
        }))
    }
}

fn address(text: &str) -> Option<SocketAddr> {
    if let Some(name) = text.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).ok();
    }
    if !text.starts_with('/') {
        return None;
    }
    SocketAddr::from_pathname(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_what_it_is_told_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("notify-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind: {e}"));
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap_or_else(|e| panic!("{e}")),
                address(path.to_str().unwrap_or_default()).unwrap_or_else(|| panic!("address")),
            )),
            watchdog: None,
        };
        n.ready();
        n.status("connected\nto 3 guilds");
        let mut buf = [0u8; 128];
        let got = |buf: &mut [u8]| {
            let len = rx.recv(buf).unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        assert_eq!(got(&mut buf), "READY=1");
        assert_eq!(got(&mut buf), "STATUS=connected to 3 guilds");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(address("relative.sock").is_none());
        assert!(address("@abstract").is_some());
    }
}
