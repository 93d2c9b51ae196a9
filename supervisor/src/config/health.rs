//! The health keys of a program: `ready`, `ready_timeout`, `healthcheck`, `watchdog` and
//! `start_limit` (docs/CONFIG.md, "Health"). Read by [`super::parse`]'s `health` walker; run by
//! [`crate::health`].

use std::net::SocketAddr;
use std::time::Duration;

/// One way `ready` may be written, and what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyKind {
    /// Its name: the string itself, or the table's key.
    pub name: &'static str,
    /// As written in `supervisor.toml`.
    pub written: &'static str,
}

/// The readiness rules, each declared once, here: the parser accepts these and names them when
/// it refuses a rule, [`Ready::kind`] names a rule by them, and docs/CONFIG.md's list is held to
/// them by a test. A new kind is a line here, its variant below, its reader and its arming in
/// the daemon's health.
pub const READY_KINDS: &[ReadyKind] = &[
    ReadyKind {
        name: "started",
        written: "\"started\"",
    },
    ReadyKind {
        name: "notify",
        written: "\"notify\"",
    },
    ReadyKind {
        name: "log",
        written: "{ log = \"REGEX\" }",
    },
    ReadyKind {
        name: "http",
        written: "{ http = \"http://127.0.0.1:PORT/path\" }",
    },
    ReadyKind {
        name: "tcp",
        written: "{ tcp = \"127.0.0.1:PORT\" }",
    },
    ReadyKind {
        name: "command",
        written: "{ command = [\"check\", \"arg\"] }",
    },
];

/// `ready`: when a started program counts as RUNNING.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Ready {
    /// Once it has stayed up `startsecs` (supervisord's rule).
    #[default]
    Started,
    /// Once it sends `READY=1` to its `NOTIFY_SOCKET` (systemd's `Type=notify`).
    Notify,
    /// Once a line of its output matches (process-compose's `ready_log_line`).
    Log(LogPattern),
    /// Once the probe first succeeds.
    Probe(ProbeSpec),
}

impl Ready {
    /// The rule's kind, as [`READY_KINDS`] names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Ready::Started => "started",
            Ready::Notify => "notify",
            Ready::Log(_) => "log",
            Ready::Probe(spec) => spec.probe.kind(),
        }
    }

    /// True unless RUNNING follows from `startsecs` alone.
    pub fn waits(&self) -> bool {
        !matches!(self, Ready::Started)
    }
}

/// A compiled `ready = { log = "..." }` pattern; two are equal when their sources are.
#[derive(Clone, Debug)]
pub struct LogPattern(pub regex::bytes::Regex);

impl PartialEq for LogPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// One check: an HTTP GET, a TCP connect, or a command that exits 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `http://ADDR/path`: passes on a status below 400 (what `curl -f` accepts).
    Http {
        addr: SocketAddr,
        /// `host[:port]` as written, for the `Host` header.
        host: String,
        path: String,
    },
    Tcp(SocketAddr),
    /// Run without a shell, as the program's user, in its directory and environment.
    Command(Vec<String>),
}

impl Probe {
    /// The probe's key: `http`, `tcp` or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http { .. } => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Command(_) => "command",
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Http { host, path, .. } => write!(f, "GET http://{host}{path}"),
            Probe::Tcp(addr) => write!(f, "connect to {addr}"),
            Probe::Command(argv) => write!(f, "{}", argv.join(" ")),
        }
    }
}

/// `ready = { http | tcp | command, interval, timeout }`: polled while the program starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

/// `healthcheck = { http | tcp | command, interval, timeout, retries, start_period }`, with
/// Docker's HEALTHCHECK meaning: checked every `interval` once RUNNING; `retries` consecutive
/// failures make it unhealthy; failures within `start_period` of becoming RUNNING do not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// `start_limit = { burst, interval }`: more than `burst` spawns within `interval` is FATAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// The defaults, in one place (docs/CONFIG.md quotes them).
pub mod defaults {
    use std::time::Duration;

    pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
    pub const READY_INTERVAL: Duration = Duration::from_secs(1);
    pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    /// Docker's HEALTHCHECK defaults.
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CHECK_RETRIES: u32 = 3;
    pub const START_LIMIT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
}
