//! The supervisor's own resource limits: the open-files limit it raises for itself, and the
//! limits in force that children (and `supervisor import`) start from.

/// The soft and hard limits of `resource` in force for this process (`u64::MAX`: infinity).
// `rlim_t` is 32 bits wide on 32-bit ARM and 64 on the others.
#[allow(clippy::useless_conversion)]
pub fn current_rlimit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    // The soft limit children get, not the supervisor's raised one.
    if resource == libc::RLIMIT_NOFILE {
        if let Some(&original) = ORIGINAL_NOFILE.get() {
            limit.rlim_cur = original;
        }
    }
    let wide = |v: libc::rlim_t| match v {
        libc::RLIM_INFINITY => u64::MAX,
        v => u64::from(v),
    };
    Some((wide(limit.rlim_cur), wide(limit.rlim_max)))
}

/// Raises the soft open-files limit to the hard one (two pipes per program add up), returning
/// the original for children to get back.
pub fn raise_nofile() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    let raised = (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0).then_some(limit);
    if let Some(original) = raised {
        let _ = ORIGINAL_NOFILE.set(original.rlim_cur);
    }
    raised
}

/// The open-files soft limit the supervisor started with (what children get back), once
/// [`raise_nofile`] raised its own.
static ORIGINAL_NOFILE: std::sync::OnceLock<libc::rlim_t> = std::sync::OnceLock::new();
