//! Giving back the pages of code (and constants) that only start-up used.
//!
//! One binary holds the daemon, its command-line client, the supervisord importer and the
//! configuration reader; by the time the programs are started, the kernel has mapped most of
//! its text (it maps the file 64 KiB around each fault, and start-up touches code all over it).
//! Most of those pages are never run again. Once the daemon is up, [`release_startup_code`]
//! unmaps the read-only pages of the binary and of its shared libraries (code, constants,
//! unwinding tables); the ones the running daemon needs come back on their next use, from the
//! page cache (a minor fault, no I/O while the file is cached). The functions it keeps running
//! are linked side by side (supervisor/link/hot.ld), so that few pages come back. What this
//! saves, measured: docs/BENCHMARKS.md ("Memory").
//!
//! Only private mappings of files, not writable, and holding no page of their own (no
//! copy-on-write copy, such as relocated data: `Anonymous: 0 kB` in smaps) are touched: for
//! those, dropping a page cannot change what the next read sees, it is read again from the
//! same file (which the mapping keeps, even if it is replaced on disk meanwhile).

use std::ffi::c_void;
use std::ptr::NonNull;

use nix::sys::mman::{MmapAdvise, madvise};

/// The private read-only mappings of files (code and constants of the binary and of its
/// shared libraries) that hold no private page, as (start, length), read from
/// `/proc/self/smaps`. Slow-ish (a few hundred lines): call it off the daemon's thread.
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-') {
            // A mapping's header: range, permissions, offset, device, inode, path.
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            let perms = fields.next().unwrap_or("");
            // The rest of the line is the path (it may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            // A file (not `[vdso]` or anonymous memory), not a device's memory.
            let file = path.starts_with('/') && !path.starts_with("/dev/");
            current = range
                .filter(|_| file && perms.ends_with('p') && !perms.contains('w'))
                .map(|(a, b)| (a, b.saturating_sub(a)));
        } else if first == "Anonymous:" {
            let private = fields.next() != Some("0");
            if let Some(mapping) = current.take().filter(|_| !private) {
                out.push(mapping);
            }
        }
    }
    out
}

/// The mappings of files (range, permissions, offset, device, inode, path) are the same in
/// `maps` and `smaps`. Anonymous memory is left out: other threads may allocate between the
/// two reads.
fn same_mappings(maps: &str, smaps: &str) -> bool {
    let header = |line: &&str| {
        let mut fields = line.split_whitespace();
        fields
            .next()
            .is_some_and(|first| first.contains('-') && !first.ends_with(':'))
            && fields.nth(4).is_some_and(|path| path.starts_with('/'))
    };
    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }
    let a: Vec<_> = maps.lines().filter(header).map(words).collect();
    let b: Vec<_> = smaps.lines().filter(header).map(words).collect();
    !a.is_empty() && a == b
}

/// Unmaps the clean read-only pages of the binary and its libraries (see the module's
/// comment); returns how many bytes of mappings were advised. Blocking: run it on a blocking
/// thread.
pub fn release_startup_code() -> std::io::Result<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    if !same_mappings(&maps, &smaps) {
        // Not the kernel's own view of this process (qemu-user shows the guest's mappings in
        // `maps` but the emulator's in `smaps`), or it changed between the reads: the
        // Anonymous counts cannot be trusted, and nothing is released.
        return Ok(0);
    }
    let mut released = 0;
    for (start, len) in clean_file_mappings(&smaps) {
        let Some(addr) = NonNull::new(start as *mut c_void) else {
            continue;
        };
        // SAFETY: a private mapping of a file, not writable, with no
        // copy-on-write page (checked above): after MADV_DONTNEED the next access faults the
        // same bytes back in from the file, so no code or reference sees anything change.
        // One mapping refused (it cannot be, for a plain file) leaves the others to release.
        if unsafe { madvise(addr, len, MmapAdvise::MADV_DONTNEED) }.is_ok() {
            released += len;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:01 1234 /usr/bin/supervisor
Rss:                1024 kB
Anonymous:             0 kB
55d0a0100000-55d0a0400000 r-xp 00100000 fe:01 1234 /usr/bin/supervisor
Rss:                3000 kB
Anonymous:             0 kB
55d0a0400000-55d0a0410000 r-xp 00400000 fe:01 1234 /usr/bin/supervisor
Rss:                  64 kB
Anonymous:             4 kB
55d0a0500000-55d0a0510000 rw-p 00500000 fe:01 1234 /usr/bin/supervisor
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_clean_read_only_pages_of_files_are_chosen() {
        // The binary's constants and code, a library's code; not a code mapping with a patched
        // page, not writable data, not the stack.
        assert_eq!(
            clean_file_mappings(SMAPS),
            vec![
                (0x55d0a0000000, 0x100000),
                (0x55d0a0100000, 0x300000),
                (0x7f0000000000, 0x100000)
            ]
        );
    }

    #[test]
    fn nothing_is_released_when_maps_and_smaps_disagree() {
        let maps: String = SMAPS
            .lines()
            .filter(|l| l.contains(" /"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(same_mappings(&maps, SMAPS));
        let other = maps.replace("55d0a0000000", "00010000");
        assert!(!same_mappings(&other, SMAPS));
        assert!(!same_mappings("", SMAPS));
    }

    #[test]
    fn released_code_still_runs() {
        let released = release_startup_code().expect("madvise");
        assert!(released > 0, "the test binary has executable pages");
        // The code this test runs next is faulted back in.
        let sum: u64 = (1..=100u64).map(std::hint::black_box).sum();
        assert_eq!(sum, 5050);
        assert!(format!("{:?}", clean_file_mappings(SMAPS)).contains('['));
    }
}
