//! `start_limit`: a program's recent spawn times, kept on the data volume so that restarting
//! the supervisor (or the container) does not reset the budget.
//!
//! One small file per program, `STATEDIR/starts/NAME`: one Unix time in milliseconds per line,
//! at most `burst + 1` of them. Loaded once at start; each spawn rewrites it (write to a
//! temporary file, rename) on a thread of its own, never on the actor's.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use crate::config::health::StartLimit;
use crate::status::unix_ms;

/// The thread that writes the files; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<(PathBuf, String)>,
}

impl Writer {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(PathBuf, String)>();
        std::thread::Builder::new()
            .name("starts".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for (path, text) in rx {
                    if let Err(e) = write_atomically(&path, &text) {
                        tracing::error!(path = %path.display(), error = %e,
                            "cannot keep the start times; start_limit restarts from memory");
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Writes `text` to `path` (atomically, on the writer's thread).
    pub fn write(&self, path: PathBuf, text: String) {
        let _ = self.tx.send((path, text));
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// A program's recent spawns.
#[derive(Debug)]
pub struct Starts {
    limit: Option<StartLimit>,
    /// Unix milliseconds, oldest first.
    times: VecDeque<u64>,
    file: Option<(PathBuf, Writer)>,
}

impl Starts {
    /// Without a limit nothing is kept or written.
    pub fn new(limit: Option<StartLimit>, statedir: &Path, name: &str, writer: &Writer) -> Self {
        let Some(limit) = limit else {
            return Self {
                limit: None,
                times: VecDeque::new(),
                file: None,
            };
        };
        let path = statedir.join("starts").join(name);
        let times = read(&path, limit.burst as usize + 1);
        Self {
            limit: Some(limit),
            times,
            file: Some((path, writer.clone())),
        }
    }

    /// Spawns within the interval before `now`.
    pub fn recent(&self, now: SystemTime) -> usize {
        let Some(limit) = self.limit else { return 0 };
        let since = unix_ms(now).saturating_sub(limit.interval.as_millis() as u64);
        self.times.iter().filter(|&&t| t > since).count()
    }

    /// True when another spawn now would be more than `burst` within the interval.
    pub fn spent(&self, now: SystemTime) -> bool {
        self.limit
            .is_some_and(|l| self.recent(now) >= l.burst as usize)
    }

    pub fn record(&mut self, now: SystemTime) {
        let Some(limit) = self.limit else { return };
        self.times.push_back(unix_ms(now));
        while self.times.len() > limit.burst as usize + 1 {
            self.times.pop_front();
        }
        self.save();
    }

    /// A start by hand: the budget begins again.
    pub fn reset(&mut self) {
        if self.limit.is_some() && !self.times.is_empty() {
            self.times.clear();
            self.save();
        }
    }

    fn save(&self) {
        if let Some((path, writer)) = &self.file {
            let text: String = self.times.iter().map(|t| format!("{t}\n")).collect();
            let _ = writer.tx.send((path.clone(), text));
        }
    }
}

/// The newest `keep` times of the file; a missing or damaged file is an empty history (and
/// said so in the log when damaged).
fn read(path: &Path, keep: usize) -> VecDeque<u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) if t.len() <= 1 << 20 => t,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "start times file too large; ignored");
            return VecDeque::new();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return VecDeque::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the start times");
            return VecDeque::new();
        }
    };
    let mut times: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    times.sort_unstable();
    let skip = times.len().saturating_sub(keep);
    times.into_iter().skip(skip).collect()
}

/// How long until the oldest counted spawn leaves the window (for messages).
pub fn until_next(starts: &Starts, now: SystemTime) -> Option<Duration> {
    let limit = starts.limit?;
    let since = unix_ms(now).saturating_sub(limit.interval.as_millis() as u64);
    let oldest = starts.times.iter().find(|&&t| t > since)?;
    Some(Duration::from_millis(oldest - since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_within_the_interval_is_spent_and_survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Writer::start().expect("writer");
        let limit = StartLimit {
            burst: 3,
            interval: Duration::from_secs(60),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut s = Starts::new(Some(limit), dir.path(), "bot", &writer);
        for i in 0..3 {
            assert!(!s.spent(t0), "spawn {i} allowed");
            s.record(t0 + Duration::from_secs(i));
        }
        assert!(s.spent(t0 + Duration::from_secs(3)));
        assert!(
            !s.spent(t0 + Duration::from_secs(61)),
            "the first left the window"
        );
        assert_eq!(
            until_next(&s, t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(57))
        );
        // The writer thread wrote the file; a new supervisor reads it.
        let path = dir.path().join("starts/bot");
        for _ in 0..200 {
            if std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let again = Starts::new(Some(limit), dir.path(), "bot", &writer);
        assert!(again.spent(t0 + Duration::from_secs(3)));
        let mut again = again;
        again.reset();
        assert!(!again.spent(t0 + Duration::from_secs(3)));
        // Without a limit nothing is counted.
        let none = Starts::new(None, dir.path(), "web", &writer);
        assert!(!none.spent(t0));
    }
}
