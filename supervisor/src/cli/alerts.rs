//! Alerts and the audit trail: `alerts`, `raise`, `audit`.

use std::io::Write;

use supervisor_proto::{ClientError, Severity};

use super::args::SocketArg;
use super::{connect, print_json};
use supervisor::exit::Exit;

/// `alerts`: the newest first.
pub async fn alerts(limit: u32, json: bool, socket: &SocketArg) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let records = connect(socket).await?.alerts(limit).await?;
    if json {
        print_json(&mut out, &records);
    } else {
        for a in &records {
            let at: chrono::DateTime<chrono::Local> =
                (std::time::UNIX_EPOCH + std::time::Duration::from_millis(a.at_ms)).into();
            let _ = writeln!(
                out,
                "{}  {:<8} {:<13} {}",
                at.format("%b %d %H:%M:%S"),
                a.severity,
                a.kind,
                a.message
            );
        }
    }
    Ok(Exit::Ok)
}

/// `raise SUBJECT MESSAGE`: an alert about something the supervisor cannot see.
pub async fn raise(
    subject: String,
    message: String,
    severity: Severity,
    critical: bool,
    socket: &SocketArg,
) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let alert = connect(socket)
        .await?
        .raise(&subject, &message, severity, critical)
        .await?;
    let _ = writeln!(out, "raised {}", alert.id);
    Ok(Exit::Ok)
}

/// `audit`: the state-changing requests, newest first.
pub async fn audit(limit: u32, json: bool, socket: &SocketArg) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let records = connect(socket).await?.audit(limit).await?;
    if json {
        print_json(&mut out, &records);
    } else {
        for r in &records {
            let at: chrono::DateTime<chrono::Local> =
                (std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.at_ms)).into();
            let who = match (&r.process, &r.by) {
                (Some(p), Some(by)) => format!("uid {} ({p}) for {by}", r.uid),
                (Some(p), None) => format!("uid {} ({p})", r.uid),
                (None, Some(by)) => format!("uid {} for {by}", r.uid),
                (None, None) => format!("uid {}", r.uid),
            };
            let _ = writeln!(
                out,
                "{}  {who}  {} {}  {}: {}",
                at.format("%b %d %H:%M:%S"),
                r.verb,
                r.targets.join(" "),
                if r.ok { "ok" } else { "failed" },
                r.message,
            );
        }
    }
    Ok(Exit::Ok)
}
