//! What a program's processes use, from /proc: the resident memory and CPU time of every process
//! in its process group (the supervisor starts each program as a group's leader, so the group is
//! the program with its children). For clients: the CLI's `status --resources`, statusd.

/// A process group's use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// User and system time, children already reaped included (as `ps` counts them: utime,
    /// stime, cutime, cstime of each member).
    pub cpu_seconds: f64,
    pub processes: u32,
}

/// Clock ticks per second of /proc's times: USER_HZ, which Linux fixes at 100 for user space on
/// every architecture (x86, arm64, armv7).
const USER_HZ: f64 = 100.0;

/// The use of every process in the group led by `pgid`; `None` when no process is in it.
pub fn group_usage(pgid: u32) -> Option<Usage> {
    usage_by_group(&[pgid]).remove(&pgid)
}

/// The use of the groups `pgids`, in one pass over /proc (groups without a process are absent).
pub fn usage_by_group(pgids: &[u32]) -> std::collections::HashMap<u32, Usage> {
    let mut out: std::collections::HashMap<u32, Usage> = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((group, ticks, _)) = parse_stat(&stat).filter(|(g, _, _)| pgids.contains(g)) {
            let total = out.entry(group).or_default();
            total.cpu_seconds += ticks as f64 / USER_HZ;
            // In kB, whatever the page size (4 KiB on x86, 16 KiB on a Pi 5's kernel).
            total.rss_bytes += std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| vm_rss_kib(&s))
                .unwrap_or(0)
                * 1024;
            total.processes += 1;
        }
    }
    out
}

/// `VmRSS:` of a `/proc/PID/status`, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process group, CPU ticks (utime + stime + cutime + cstime) and resident pages of a
/// `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(u32, u64, u64)> {
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) cutime(13) cstime(14)
    // ... rss(21).
    let pgrp = f.get(2)?.parse().ok()?;
    let ticks = (11..=14)
        .map(|i| f.get(i)?.parse::<i64>().ok())
        .sum::<Option<i64>>()?;
    let rss = f.get(21)?.parse::<i64>().ok()?;
    Some((pgrp, ticks.max(0) as u64, rss.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name() {
        let line = "4242 (my bot (v2)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 123 10000000 512 18446744073709551615";
        assert_eq!(parse_stat(line), Some((4242, 310, 512)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_group_is_found() {
        // This test's own process group, from /proc/self/stat.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let (group, _, _) = parse_stat(&stat).unwrap_or_default();
        let usage = group_usage(group).unwrap_or_default();
        assert!(usage.processes >= 1 && usage.rss_bytes > 0, "{usage:?}");
    }
}
