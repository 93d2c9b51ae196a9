//! Process limits a server needs.

/// Raises the soft open-files limit to the hard one, so that the connection cap, not the
/// default soft limit of 1,024, decides how many clients are served. Returns the soft limit in
/// force afterwards.
// `rlim_t` is 32 bits wide on 32-bit ARM (Pi OS 32-bit) and 64 on the others.
#[allow(clippy::useless_conversion)]
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return u64::from(raised.rlim_cur);
        }
    }
    u64::from(limit.rlim_cur)
}
