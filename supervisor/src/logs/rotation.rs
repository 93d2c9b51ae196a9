//! A log file that rotates at a size limit without ever splitting a line across two files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name of backup `n` of a log file: `bot.log` → `bot.log.1` (the newest), `bot.log.2`, …
/// The rotation here and `tail -f`'s catching up after a rotation both go by it.
pub fn backup(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// An append-only log file with `name.log.1` … `name.log.N` backups.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    maxbytes: u64,
    backups: u32,
    file: Option<File>,
    size: u64,
}

impl LogFile {
    /// Opens (creating folders as needed) `path` for appending.
    pub fn open(path: &Path, maxbytes: u64, backups: u32) -> io::Result<Self> {
        let mut log = Self::unopened(path, maxbytes, backups);
        log.reopen()?;
        Ok(log)
    }

    /// The log file at `path`, opened by [`LogFile::ensure_open`] or by the first write.
    pub fn unopened(path: &Path, maxbytes: u64, backups: u32) -> Self {
        Self {
            path: path.to_owned(),
            maxbytes,
            backups,
            file: None,
            size: 0,
        }
    }

    /// Opens the file unless it is open.
    pub fn ensure_open(&mut self) -> io::Result<()> {
        match self.file {
            Some(_) => Ok(()),
            None => self.reopen(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes and opens the file again, for an external rotation (SIGUSR2).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Its folder is missing: made once, not looked at before every open.
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open()?
            }
            other => other?,
        };
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `data`, rotating first wherever the next whole line would pass `maxbytes`.
    /// `data` normally ends with a newline; a line longer than `maxbytes` is written whole
    /// into a file of its own rather than split.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Its size counts from the file as it is.
        self.ensure_open()?;
        while !data.is_empty() {
            let room = if self.maxbytes == 0 {
                u64::MAX
            } else {
                self.maxbytes.saturating_sub(self.size)
            };
            if data.len() as u64 <= room {
                return self.append(data);
            }
            // The longest run of whole lines that fits.
            let fit = &data[..room as usize];
            let cut = match fit.iter().rposition(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if self.size == 0 => {
                    // The first line alone is bigger than a whole file: keep it whole.
                    data.iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |nl| nl + 1)
                }
                None => 0,
            };
            if cut > 0 {
                self.append(&data[..cut])?;
                data = &data[cut..];
            }
            if !data.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    /// `name.log` becomes `name.log.1`, `.1` becomes `.2`, …; the oldest beyond `backups` goes.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.backups == 0 {
            File::create(&self.path)?;
        } else {
            let numbered = |n: u32| backup(&self.path, n);
            for n in (1..self.backups).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_on_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogFile::open(&path, 10, 5).unwrap();
        log.write(b"1234\n5678\nabc\n").unwrap();
        log.write(b"de\n").unwrap();
        assert_eq!(read(&dir.path().join("a.log.1")), "1234\n5678\n");
        assert_eq!(read(&path), "abc\nde\n");
    }

    #[test]
    fn keeps_an_oversized_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogFile::open(&path, 4, 5).unwrap();
        log.write(b"ab\n0123456789\ncd\n").unwrap();
        assert_eq!(read(&dir.path().join("a.log.2")), "ab\n");
        assert_eq!(read(&dir.path().join("a.log.1")), "0123456789\n");
        assert_eq!(read(&path), "cd\n");
    }

    #[test]
    fn drops_only_beyond_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogFile::open(&path, 2, 2).unwrap();
        for line in ["a\n", "b\n", "c\n", "d\n"] {
            log.write(line.as_bytes()).unwrap();
        }
        assert_eq!(read(&dir.path().join("a.log.2")), "b\n");
        assert_eq!(read(&dir.path().join("a.log.1")), "c\n");
        assert_eq!(read(&path), "d\n");
        assert!(!dir.path().join("a.log.3").exists());
    }

    #[test]
    fn zero_backups_truncates_and_zero_maxbytes_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogFile::open(&path, 2, 0).unwrap();
        log.write(b"a\nb\n").unwrap();
        assert_eq!(read(&path), "b\n");
        let other = dir.path().join("b.log");
        let mut log = LogFile::open(&other, 0, 3).unwrap();
        log.write(&[b'x'; 10_000]).unwrap();
        assert_eq!(read(&other).len(), 10_000);
    }

    #[test]
    fn an_unopened_file_opens_at_the_first_write_in_a_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/a.log");
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(&path, "old\n").unwrap();
        let mut log = LogFile::unopened(&path, 6, 1);
        log.write(b"new\n").unwrap();
        assert_eq!(read(&dir.path().join("new/a.log.1")), "old\n");
        assert_eq!(read(&path), "new\n");
        let deeper = dir.path().join("x/y/b.log");
        let mut log = LogFile::unopened(&deeper, 0, 0);
        log.ensure_open().unwrap();
        assert!(deeper.exists());
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut log = LogFile::open(&path, 6, 1).unwrap();
        log.write(b"new\n").unwrap();
        assert_eq!(read(&dir.path().join("a.log.1")), "old\n");
        assert_eq!(read(&path), "new\n");
    }
}
