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
    tx: mpsc::Sender<AuditRecord>,
    path: PathBuf,
}

impl AuditLog {
    /// Starts the writer thread for `path`.
    pub fn start(path: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<AuditRecord>();
        let file = path.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                for record in rx {
                    if let Err(e) = crate::jsonl::append(&file, &record) {
                        tracing::error!(path = %file.display(), error = %e, "cannot write the audit trail");
                    }
                }
            })?;
        Ok(Self { tx, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let _ = self.tx.send(record);
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
