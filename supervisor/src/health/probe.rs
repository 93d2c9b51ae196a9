//! HTTP and TCP probes, run as tasks that report to the actor. (Command probes are child
//! processes: the actor spawns and reaps them like every other child, see `daemon/reports.rs`.)
//!
//! The HTTP probe writes one `GET` and reads only the status line: that is all a check needs,
//! and it keeps an HTTP client library out of PID 1 (docs/DECISIONS.md).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::units::format_duration;
use crate::lifecycle::ExitReason;

/// The most of a response read to find its status line.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe did not pass. Its text is what `status`, the events and the alerts show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Connecting, writing or reading failed, or the answer was not HTTP.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error("{what} timed out after {}", format_duration(*.after))]
    TimedOut { what: String, after: Duration },
    /// An HTTP status of 400 or more.
    #[error("{what} answered {status}")]
    Status { what: String, status: u16 },
    /// A command probe could not be run.
    #[error("cannot run it: {0}")]
    Spawn(String),
    /// A command probe ran past its `timeout` (and was killed).
    #[error("timed out after {}", format_duration(*.0))]
    CommandTimedOut(Duration),
    /// A command probe ended other than with exit code 0.
    #[error("{0}")]
    Exited(ExitReason),
}

/// Connects to `addr` within `timeout`.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let what = format!("connect to {addr}");
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ProbeError::Failed {
            what,
            reason: e.to_string(),
        }),
        Err(_) => Err(ProbeError::TimedOut {
            what,
            after: timeout,
        }),
    }
}

/// `GET path` on `addr`; passes on a status below 400, within `timeout` for the whole exchange.
pub async fn http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let what = format!("GET {path}");
    match tokio::time::timeout(timeout, get_status(addr, host, path)).await {
        Ok(Ok(status)) if status < 400 => Ok(()),
        Ok(Ok(status)) => Err(ProbeError::Status { what, status }),
        Ok(Err(reason)) => Err(ProbeError::Failed { what, reason }),
        Err(_) => Err(ProbeError::TimedOut {
            what,
            after: timeout,
        }),
    }
}

async fn get_status(addr: SocketAddr, host: &str, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: supervisor-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        if head.len() >= MAX_STATUS_LINE {
            return Err("no HTTP status line".into());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed without an answer".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_code(&head).ok_or_else(|| "no HTTP status line".into())
}

/// The code of `HTTP/1.x NNN ...`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..1000).contains(c))
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nX: y"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
    }
}
