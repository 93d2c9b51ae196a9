//! Append-only JSON-lines files that stay bounded: the deploy history and the audit trail.
//!
//! A file is rotated (renamed to `NAME.1`, replacing the older one) once it passes
//! [`ROTATE_BYTES`], and is read from the end, at most that many bytes of each of the two
//! files: however long the supervisor runs, disk use and every read stay bounded.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The size past which a file is rotated, and the most read of one.
pub const ROTATE_BYTES: u64 = 1 << 20;

/// The older file of `path`: `history.jsonl` → `history.jsonl.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Appends `record` as one line (creating the file and its folder), then rotates the file if
/// it grew past [`ROTATE_BYTES`].
pub fn append(path: &Path, record: &impl Serialize) -> io::Result<()> {
    let line = serde_json::to_string(record).map_err(io::Error::other)?;
    append_line(path, &line)
}

/// As [`append`], for a record already written as one line of JSON.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{line}")?;
    if f.metadata()?.len() > ROTATE_BYTES {
        std::fs::rename(path, rotated(path))?;
    }
    Ok(())
}

/// The newest `limit` records of `path` (and of its rotated file when needed), newest first;
/// lines that do not parse are skipped.
pub fn newest<T: DeserializeOwned>(path: &Path, limit: usize) -> Vec<T> {
    let mut records: Vec<T> = tail(path);
    if records.len() < limit {
        let mut older = tail(&rotated(path));
        older.append(&mut records);
        records = older;
    }
    records.reverse();
    records.truncate(limit);
    records
}

/// The records in the last [`ROTATE_BYTES`] of one file, oldest first.
fn tail<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(ROTATE_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(ROTATE_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    if start > 0 {
        lines.next(); // the first line, cut by the start of the read
    }
    lines.filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Line {
        n: u64,
        pad: String,
    }

    fn line(n: u64) -> Line {
        Line {
            n,
            pad: "x".repeat(500),
        }
    }

    #[test]
    fn rotates_and_reads_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        for n in 0..5000 {
            append(&path, &line(n)).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= ROTATE_BYTES + 1024);
        assert!(size(&rotated(&path)) > 0);
        let last: Vec<Line> = newest(&path, 3);
        let ns: Vec<u64> = last.iter().map(|l| l.n).collect();
        assert_eq!(ns, [4999, 4998, 4997]);
        // More than the current file holds: the rotated one continues it, in order.
        let many: Vec<Line> = newest(&path, 2500);
        assert!(many.len() > 1500, "{}", many.len());
        assert!(many.windows(2).all(|w| w[0].n == w[1].n + 1));
    }

    #[test]
    fn a_huge_file_is_read_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        // 150 MB written before rotation existed.
        let text = serde_json::to_string(&line(1)).unwrap() + "\n";
        let block = text.repeat(2000);
        let mut f = File::create(&path).unwrap();
        for _ in 0..(150 << 20) / block.len() {
            f.write_all(block.as_bytes()).unwrap();
        }
        let started = std::time::Instant::now();
        let records: Vec<Line> = newest(&path, 20);
        assert_eq!(records.len(), 20);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }
}
