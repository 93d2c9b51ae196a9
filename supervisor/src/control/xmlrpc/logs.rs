//! Log reads by byte offset, with supervisord's semantics (`readFile` and `tailFile` of its
//! 4.2.5 options module), bounded: no read returns more than [`MAX_READ`] bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::faults::Code;

/// The most one call returns. supervisord reads a whole file for `length` 0; a log file here
/// may be up to its `maxbytes` (50 MB by default), which PID 1 does not hold in memory.
pub const MAX_READ: u64 = 1024 * 1024;

/// `readProcessStdoutLog(name, offset, length)`: `length` bytes from `offset`; a negative
/// `offset` (with `length` 0) is that many bytes from the end; `length` 0 reads to the end.
pub fn read(path: &Path, offset: i64, length: i64) -> Result<Vec<u8>, Code> {
    let mut file = File::open(path).map_err(|_| Code::NoFile)?;
    let size = file.seek(SeekFrom::End(0)).map_err(|_| Code::Failed)?;
    let (start, want) = if offset < 0 {
        if length != 0 {
            return Err(Code::BadArguments);
        }
        let back = offset.unsigned_abs();
        (size.saturating_sub(back), back)
    } else {
        if length < 0 {
            return Err(Code::BadArguments);
        }
        let start = offset as u64;
        let want = match length {
            0 => size.saturating_sub(start),
            n => n as u64,
        };
        (start, want)
    };
    read_at(&mut file, start, want.min(MAX_READ))
}

/// `tailProcessStdoutLog(name, offset, length)`: the last `length` bytes from `offset` on,
/// the offset to ask from next time (the file's size), and whether bytes were skipped.
pub fn tail(path: &Path, offset: i64, length: i64) -> Result<(Vec<u8>, u64, bool), Code> {
    if offset < 0 || length < 0 {
        return Err(Code::BadArguments);
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        // Nothing written yet: supervisord answers an empty read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, false)),
        Err(_) => return Err(Code::NoFile),
    };
    let size = file.seek(SeekFrom::End(0)).map_err(|_| Code::Failed)?;
    let (mut offset, mut length) = (offset as u64, (length as u64).min(MAX_READ));
    let mut overflow = false;
    if size > offset.saturating_add(length) {
        overflow = true;
        offset = size.saturating_sub(1);
    }
    if offset.saturating_add(length) > size {
        if offset > size.saturating_sub(1) {
            length = 0;
        }
        offset = size.saturating_sub(length);
    }
    let data = match length {
        0 => Vec::new(),
        n => read_at(&mut file, offset, n)?,
    };
    Ok((data, size, overflow))
}

fn read_at(file: &mut File, start: u64, want: u64) -> Result<Vec<u8>, Code> {
    file.seek(SeekFrom::Start(start))
        .map_err(|_| Code::Failed)?;
    let mut data = Vec::new();
    file.take(want)
        .read_to_end(&mut data)
        .map_err(|_| Code::Failed)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_tails_as_supervisord_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read(&path, 0, 0).unwrap(), b"0123456789");
        assert_eq!(read(&path, 2, 3).unwrap(), b"234");
        assert_eq!(read(&path, -4, 0).unwrap(), b"6789");
        assert_eq!(read(&path, -40, 0).unwrap(), b"0123456789");
        assert_eq!(read(&path, -4, 2), Err(Code::BadArguments));
        assert_eq!(read(&path, 0, -2), Err(Code::BadArguments));
        assert_eq!(read(&path, 20, 0).unwrap(), b"");
        assert_eq!(read(&dir.path().join("none"), 0, 0), Err(Code::NoFile));
        // supervisorctl's `tail`: offset 0, 1600 bytes: the whole small file, no overflow.
        assert_eq!(
            tail(&path, 0, 1600).unwrap(),
            (b"0123456789".to_vec(), 10, false)
        );
        // More than asked for: the last `length` bytes, and overflow.
        assert_eq!(tail(&path, 0, 4).unwrap(), (b"6789".to_vec(), 10, true));
        // `tail -f`'s next poll, from where it was: nothing new.
        assert_eq!(tail(&path, 10, 4).unwrap(), (Vec::new(), 10, false));
        std::fs::write(&path, b"0123456789ab").unwrap();
        assert_eq!(tail(&path, 10, 4).unwrap(), (b"89ab".to_vec(), 12, false));
        assert_eq!(
            tail(&dir.path().join("none"), 0, 10).unwrap(),
            (Vec::new(), 0, false)
        );
    }
}
