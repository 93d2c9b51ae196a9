//! The audit trail: every state-changing request (start, stop, restart, signal, update,
//! shutdown, deploy, rollback), with when, who (the peer's uid and process, and whom it acted
//! for), what it named, and what came of it. Kept as `audit.jsonl` in the log folder (private
//! to root and the socket's group), bounded by `jsonl`'s rotation.
//!
//! Records are written by a thread of their own, never by the actor or a connection task: a
//! slow or full disk delays the trail, not the supervisor.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

use supervisor_proto::{AuditRecord, Body, Reply, Request};

use crate::status::unix_ms;

/// Where records go; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    path: PathBuf,
}

/// What the writer thread is told, in order.
#[derive(Debug)]
enum Message {
    Record(AuditRecord),
    /// Answer once everything sent before is written (a reader then sees it).
    Flush(mpsc::Sender<()>),
}

impl AuditLog {
    /// Starts the writer thread for `path`.
    pub fn start(path: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Message>();
        let file = path.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                for message in rx {
                    match message {
                        Message::Record(record) => {
                            if let Err(e) = crate::jsonl::append(&file, &record) {
                                tracing::error!(path = %file.display(), error = %e, "cannot write the audit trail");
                            }
                        }
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Self { tx, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest `limit` records, including every one recorded before this call (it waits
    /// for the writer, at most a second). Blocking: call it off the actor's thread.
    pub fn read(&self, limit: usize) -> Vec<AuditRecord> {
        let (done, written) = mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(std::time::Duration::from_secs(1));
        }
        crate::jsonl::newest(&self.path, limit)
    }

    /// Records `request` and its answer, if it changes state.
    pub fn record(&self, peer: &Peer, by: Option<&str>, request: &Request, answer: &Body) {
        if !request.changes_state() {
            return;
        }
        let (ok, message) = outcome(answer);
        let record = AuditRecord {
            at_ms: unix_ms(SystemTime::now()),
            uid: peer.uid,
            process: peer.process.clone(),
            by: by.map(str::to_owned),
            verb: request.verb().to_string(),
            targets: request
                .targets()
                .unwrap_or_default()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            ok,
            message,
        };
        let _ = self.tx.send(Message::Record(record));
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    /// Its process name (`/proc/PID/comm`), when it could be read.
    pub process: Option<String>,
}

impl Peer {
    pub fn new(uid: u32, pid: Option<i32>) -> Self {
        let process = pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Self { uid, process }
    }
}

/// Whether the answer was a success, and a one-line summary of it.
fn outcome(answer: &Body) -> (bool, String) {
    match answer {
        Body::Error(e) => (false, e.message.clone()),
        Body::Ok(Reply::Actions { results }) => {
            let failed = results.iter().any(|r| !r.outcome.is_success());
            let text: Vec<String> = results
                .iter()
                .map(|r| format!("{}: {}", r.name, r.message))
                .collect();
            (!failed, text.join("; "))
        }
        Body::Ok(Reply::Deploy { id, queued, .. }) => (
            true,
            if *queued {
                format!("queued behind deploy {id}")
            } else {
                format!("deploy {id}")
            },
        ),
        Body::Ok(Reply::ShuttingDown) => (true, "shutting down".into()),
        Body::Ok(other) => (true, format!("{other:?}").chars().take(200).collect()),
        Body::Event(_) => (true, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_proto::{ErrorBody, ErrorKind};

    #[test]
    fn a_read_sees_every_record_sent_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(dir.path().join("audit.jsonl")).unwrap();
        let peer = Peer {
            uid: 0,
            process: None,
        };
        let refused = Body::Error(ErrorBody {
            kind: ErrorKind::Forbidden,
            message: "no".into(),
        });
        for n in 0..500 {
            let request = Request::Restart {
                names: vec![format!("p{n}")],
            };
            log.record(&peer, None, &request, &refused);
            // Not state-changing: not recorded.
            log.record(&peer, None, &Request::Version, &refused);
        }
        let records = log.read(1000);
        assert_eq!(records.len(), 500);
        assert_eq!(records[0].targets, ["p499"]);
        assert!(records.iter().all(|r| !r.ok && r.verb == "restart"));
    }
}
