//! What a program may use: resource limits set in the child before `exec` (`rlimits`, named
//! as systemd's `Limit*=`), its place in the OOM killer's order (`oom_score_adj`), and the
//! ceilings the supervisor watches from outside (`limits`: memory and CPU, with hysteresis).

use std::time::Duration;

/// A resource of `setrlimit(2)`, by systemd's name (`LimitNOFILE=` is `nofile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub name: &'static str,
    pub resource: libc::__rlimit_resource_t,
    /// Counted in bytes: a size such as "64MB" is accepted.
    pub bytes: bool,
}

/// Every resource `rlimits` takes.
pub const RESOURCES: &[Resource] = &[
    Resource {
        name: "nofile",
        resource: libc::RLIMIT_NOFILE,
        bytes: false,
    },
    Resource {
        name: "nproc",
        resource: libc::RLIMIT_NPROC,
        bytes: false,
    },
    Resource {
        name: "core",
        resource: libc::RLIMIT_CORE,
        bytes: true,
    },
    Resource {
        name: "memlock",
        resource: libc::RLIMIT_MEMLOCK,
        bytes: true,
    },
    Resource {
        name: "as",
        resource: libc::RLIMIT_AS,
        bytes: true,
    },
    Resource {
        name: "data",
        resource: libc::RLIMIT_DATA,
        bytes: true,
    },
    Resource {
        name: "stack",
        resource: libc::RLIMIT_STACK,
        bytes: true,
    },
    Resource {
        name: "fsize",
        resource: libc::RLIMIT_FSIZE,
        bytes: true,
    },
    Resource {
        name: "cpu",
        resource: libc::RLIMIT_CPU,
        bytes: false,
    },
    Resource {
        name: "locks",
        resource: libc::RLIMIT_LOCKS,
        bytes: false,
    },
    Resource {
        name: "sigpending",
        resource: libc::RLIMIT_SIGPENDING,
        bytes: false,
    },
    Resource {
        name: "msgqueue",
        resource: libc::RLIMIT_MSGQUEUE,
        bytes: true,
    },
    Resource {
        name: "nice",
        resource: libc::RLIMIT_NICE,
        bytes: false,
    },
    Resource {
        name: "rtprio",
        resource: libc::RLIMIT_RTPRIO,
        bytes: false,
    },
];

/// `u64::MAX` stands for `infinity` (RLIM_INFINITY).
pub const INFINITY: u64 = u64::MAX;

/// One `rlimits` entry: the soft and the hard limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// As `setrlimit` takes it.
    pub fn to_libc(self) -> libc::rlimit {
        let raw = |n: u64| match n {
            INFINITY => libc::RLIM_INFINITY,
            // rlim_t is 32 bits on 32-bit ARM: larger values are infinity there.
            n => libc::rlim_t::try_from(n).unwrap_or(libc::RLIM_INFINITY),
        };
        libc::rlimit {
            rlim_cur: raw(self.soft),
            rlim_max: raw(self.hard),
        }
    }
}

/// Parses one value as systemd does: `N`, `infinity`, or `SOFT:HARD` (each a number, a size
/// for byte resources, or `infinity`).
pub fn parse_rlimit(resource: Resource, text: &str) -> Result<(u64, u64), String> {
    let one = |t: &str| -> Result<u64, String> {
        let t = t.trim();
        if t.eq_ignore_ascii_case("infinity") {
            return Ok(INFINITY);
        }
        if resource.bytes {
            crate::config::units::parse_bytes(t)
        } else {
            t.parse::<u64>()
                .map_err(|_| format!("{t:?} is not a number (or \"infinity\", or \"SOFT:HARD\")"))
        }
    };
    let (soft, hard) = match text.split_once(':') {
        Some((s, h)) => (one(s)?, one(h)?),
        None => {
            let n = one(text)?;
            (n, n)
        }
    };
    if soft > hard {
        return Err(format!(
            "the soft limit {soft} is above the hard limit {hard}"
        ));
    }
    Ok((soft, hard))
}

/// `limits`: ceilings on a program's process group, each held for a while before it counts,
/// so that a short spike is not a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ceilings {
    /// Resident memory of the whole group, bytes, and for how long it must stay above.
    pub rss: Option<(u64, Duration)>,
    /// CPU use of the whole group in percent of one core (200 = two cores), and for how long.
    pub cpu: Option<(f64, Duration)>,
}

impl Ceilings {
    pub fn is_set(&self) -> bool {
        self.rss.is_some() || self.cpu.is_some()
    }

    /// How often the group is sampled: a tenth of the shortest hold, within 250 ms to 5 s.
    pub fn sample_every(&self) -> Duration {
        let shortest = [self.rss.map(|r| r.1), self.cpu.map(|c| c.1)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(10));
        (shortest / 10).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }
}

/// A percentage such as `"90%"` (of one core; `"150%"` is one and a half).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    text.trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p > 0.0)
        .ok_or_else(|| format!("{text:?} is not a percentage of a core such as \"90%\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str) -> Resource {
        *RESOURCES.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn values_as_systemd_writes_them() {
        let nofile = resource("nofile");
        assert_eq!(parse_rlimit(nofile, "4096"), Ok((4096, 4096)));
        assert_eq!(parse_rlimit(nofile, "1024:4096"), Ok((1024, 4096)));
        assert_eq!(parse_rlimit(nofile, "infinity"), Ok((INFINITY, INFINITY)));
        assert!(
            parse_rlimit(nofile, "4096:1024")
                .unwrap_err()
                .contains("above")
        );
        assert!(parse_rlimit(nofile, "4k").is_err());
        let memlock = resource("memlock");
        assert_eq!(parse_rlimit(memlock, "64MB"), Ok((64 << 20, 64 << 20)));
        assert_eq!(parse_rlimit(memlock, "0:infinity"), Ok((0, INFINITY)));
    }

    #[test]
    fn sampling_follows_the_shortest_hold() {
        let c = Ceilings {
            rss: Some((300 << 20, Duration::from_secs(2))),
            cpu: Some((90.0, Duration::from_secs(60))),
        };
        assert_eq!(c.sample_every(), Duration::from_millis(250));
        let c = Ceilings {
            rss: None,
            cpu: Some((90.0, Duration::from_secs(30))),
        };
        assert_eq!(c.sample_every(), Duration::from_secs(3));
        assert_eq!(parse_percent("150%"), Ok(150.0));
        assert!(parse_percent("90").is_err());
    }
}
