//! `GATEWAY_STATE`: the held session, the guild state, the bots' sessions and the buffered
//! events, kept across gatewayd's own restarts so that it resumes instead of identifying.
//! Written whole to a temporary file and renamed over the old one, readable by its owner only
//! (it holds message contents); on a blocking thread, never the hub's.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::hub::Kept;

/// What `path` kept, if it holds anything usable; a file that cannot be read is reported and
/// ignored (gatewayd then identifies anew, which costs one login and loses nothing else).
pub fn load(path: &Path) -> Option<Kept> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the kept session; identifying anew");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(kept) => Some(kept),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the kept session is not readable; identifying anew");
            None
        }
    }
}

/// Writes `kept` to `path` (mode 0600, its folder 0700 if created).
pub fn save(path: &Path, kept: &Kept) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    serde_json::to_writer(&mut file, kept)?;
    file.flush()?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)
}
