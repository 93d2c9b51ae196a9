//! The last lines of a log file, for `tail` (over the socket and on the command line).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// At most this much of a file is read to find its last lines.
pub const TAIL_BYTES: u64 = 64 * 1024;

/// The last `n` lines of `file`, reading at most its last [`TAIL_BYTES`]; leaves the cursor
/// at the end of what it read.
pub fn last_lines(file: &mut File, n: u32) -> io::Result<String> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.by_ref().take(len - start).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // Started mid-line: drop the fragment.
        text = text
            .split_once('\n')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
    }
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = body.lines().collect();
    let keep = &lines[lines.len().saturating_sub(n as usize)..];
    let mut out = keep.join("\n");
    if !keep.is_empty() && text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// [`last_lines`] of the file at `path`; a file that does not exist yet has no lines.
pub fn last_lines_of(path: &Path, n: u32) -> io::Result<String> {
    match File::open(path) {
        Ok(mut f) => last_lines(&mut f, n),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        assert_eq!(last_lines_of(&path, 5).unwrap(), "");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(last_lines_of(&path, 2).unwrap(), "c\nd\n");
        assert_eq!(last_lines_of(&path, 10).unwrap(), "a\nb\nc\nd\n");
        assert_eq!(last_lines_of(&path, 0).unwrap(), "");
        std::fs::write(&path, "a\npartial").unwrap();
        assert_eq!(last_lines_of(&path, 1).unwrap(), "partial");
        let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &big).unwrap();
        assert_eq!(last_lines_of(&path, 2).unwrap(), "line 19998\nline 19999\n");
    }
}
