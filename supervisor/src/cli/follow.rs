//! `tail -f`: print the end of a log file, then everything appended to it, following the file
//! name across rotations (the old file is read to its end before the new one is opened) and
//! truncations, until interrupted.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use supervisor::logs::tail::last_lines;

/// How often to look for new output. A log follower for people, like `tail -F` without inotify.
const POLL: Duration = Duration::from_millis(100);

pub async fn follow(path: &Path, lines: u32, out: &mut impl Write) -> io::Result<()> {
    let mut file = loop {
        match File::open(path) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => tokio::time::sleep(POLL).await,
            Err(e) => return Err(e),
        }
    };
    out.write_all(last_lines(&mut file, lines)?.as_bytes())?;
    out.flush()?;
    let mut buf = vec![0; 64 * 1024];
    loop {
        if copy_new(&mut file, &mut buf, out)? > 0 {
            continue;
        }
        let current = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(named) if named.ino() != current.ino() || named.dev() != current.dev() => {
                // Rotated: finish the old file, then the files rotated out after it (a burst
                // can rotate several times between two looks), then the new one from its start.
                copy_new(&mut file, &mut buf, out)?;
                for mut newer in rotated_after(path, &current) {
                    copy_new(&mut newer, &mut buf, out)?;
                }
                match File::open(path) {
                    Ok(f) => file = f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            Ok(named) if named.len() < file.stream_position()? => {
                // Truncated in place.
                file.seek(SeekFrom::Start(0))?;
                continue;
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The backups `path.N-1` … `path.1` that are newer than the one holding `old`, oldest first.
fn rotated_after(path: &Path, old: &std::fs::Metadata) -> Vec<File> {
    let numbered = |n: u32| supervisor::logs::rotation::backup(path, n);
    let mut n = 1;
    loop {
        match std::fs::metadata(numbered(n)) {
            Ok(m) if m.ino() == old.ino() && m.dev() == old.dev() => break,
            Ok(_) => n += 1,
            // Our old file is gone (or was never numbered): nothing to catch up with.
            Err(_) => return Vec::new(),
        }
    }
    (1..n)
        .rev()
        .filter_map(|k| File::open(numbered(k)).ok())
        .collect()
}

/// Copies what was appended since the last read; returns how much.
fn copy_new(file: &mut File, buf: &mut [u8], out: &mut impl Write) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        total += n;
    }
    if total > 0 {
        out.flush()?;
    }
    Ok(total)
}
