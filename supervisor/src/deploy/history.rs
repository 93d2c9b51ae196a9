//! What a deploy leaves on disk in `deploydir`: the history (`NAME.jsonl`), each deploy's log
//! (`NAME/<id>.log`, the newest 50 kept), the marker of a deploy in flight (`NAME.inflight`,
//! so that the next start knows one was interrupted), and the quarantine (`NAME.quarantine.jsonl`:
//! commits that failed their health gate).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use supervisor_proto::DeployRecord;

/// Per-deploy logs kept for each program (the oldest are removed as new deploys start).
pub const KEEP_DEPLOY_LOGS: usize = 50;
/// Quarantined commits remembered per program (the newest).
const KEEP_QUARANTINE: usize = 50;

pub fn marker(deploydir: &Path, program: &str) -> PathBuf {
    deploydir.join(format!("{program}.inflight"))
}

fn history(deploydir: &Path, program: &str) -> PathBuf {
    deploydir.join(format!("{program}.jsonl"))
}

fn quarantine_file(deploydir: &Path, program: &str) -> PathBuf {
    deploydir.join(format!("{program}.quarantine.jsonl"))
}

pub fn append(deploydir: &Path, record: &DeployRecord) {
    let path = history(deploydir, &record.program);
    if let Err(e) = crate::jsonl::append(&path, record) {
        tracing::error!(path = %path.display(), error = %e, "cannot record the deploy");
    }
}

/// The last `limit` records of a program's history, newest first; unreadable lines are skipped.
pub fn read(deploydir: &Path, program: &str, limit: u32) -> Vec<DeployRecord> {
    crate::jsonl::newest(&history(deploydir, program), limit as usize)
}

/// A commit that failed its health gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub commit: String,
    pub at_ms: u64,
    /// The deploy that found it failing, and why.
    pub deploy: String,
    pub reason: String,
}

pub fn quarantine(deploydir: &Path, program: &str, entry: &Quarantined) {
    let path = quarantine_file(deploydir, program);
    if let Err(e) = crate::jsonl::append(&path, entry) {
        tracing::error!(path = %path.display(), error = %e, "cannot record the quarantine");
    }
}

/// The quarantined commits of a program, newest first.
pub fn quarantined(deploydir: &Path, program: &str) -> Vec<Quarantined> {
    crate::jsonl::newest(&quarantine_file(deploydir, program), KEEP_QUARANTINE)
}

/// Removes a program's oldest deploy logs beyond [`KEEP_DEPLOY_LOGS`] (their names sort by
/// time). A directory listing and a few unlinks: quick enough for the actor.
pub fn prune_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    if logs.len() <= KEEP_DEPLOY_LOGS {
        return;
    }
    logs.sort();
    for old in &logs[..logs.len() - KEEP_DEPLOY_LOGS] {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_deploy_logs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..60 {
            std::fs::write(dir.path().join(format!("2026{n:04}-bot-{n}.log")), "").unwrap();
        }
        prune_logs(dir.path());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), KEEP_DEPLOY_LOGS);
        assert_eq!(left[0], "20260010-bot-10.log");
    }

    #[test]
    fn quarantined_commits_are_remembered_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (i, c) in ["a", "b"].iter().enumerate() {
            let entry = Quarantined {
                commit: (*c).into(),
                at_ms: i as u64,
                deploy: format!("d{i}"),
                reason: "exit status 1".into(),
            };
            quarantine(dir.path(), "bot", &entry);
        }
        let q: Vec<String> = quarantined(dir.path(), "bot")
            .into_iter()
            .map(|e| e.commit)
            .collect();
        assert_eq!(q, ["b", "a"]);
        assert!(quarantined(dir.path(), "web").is_empty());
    }
}
