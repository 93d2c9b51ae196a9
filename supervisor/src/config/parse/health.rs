//! Reading the health keys of `[program.NAME]` (types in [`crate::config::health`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::de::DeValue;

use super::values::{Env, MAX_DURATION, Value, Walker, get, set};
use crate::config::health::{
    HealthCheck, LogPattern, Probe, ProbeSpec, READY_KINDS, Ready, StartLimit, defaults,
};
use crate::config::units::parse_duration;

pub(super) const PROBE_KINDS: &[&str] = &["http", "tcp", "command"];
pub(super) const READY_PROBE_KEYS: &[&str] =
    &["http", "tcp", "command", "log", "interval", "timeout"];
pub(super) const HEALTHCHECK_KEYS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "interval",
    "timeout",
    "retries",
    "start_period",
];
pub(super) const START_LIMIT_KEYS: &[&str] = &["burst", "interval"];

/// A compiled pattern is bounded by this (the `regex` crate's size limit), so a pattern from
/// the file cannot make the supervisor allocate without bound.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Walker<'_> {
    /// `ready = "started" | "notify" | { log = "RE" } | { http | tcp | command, interval, timeout }`.
    pub(super) fn ready(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<Ready> {
        match v.get_ref() {
            // `${VAR}` expands, so that one file serves where the program cannot be ready
            // (the container tests have no Discord: BOT_READY=started). A variable may hold
            // any rule: a table is written as in the file, `{ log = "Logged in as" }`.
            DeValue::String(_) => match self.string(v, path, env)?.as_str() {
                "started" => Some(Ready::Started),
                "notify" => Some(Ready::Notify),
                table if table.trim_start().starts_with('{') => {
                    self.ready_from_text(table, v.span(), path, env)
                }
                other => {
                    let known: Vec<&str> = READY_KINDS.iter().map(|k| k.written).collect();
                    self.error(
                        v.span(),
                        path,
                        format!(
                            "{other:?} is not a readiness rule (one of: {})",
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
            DeValue::Table(t) => {
                if let Some((k, value)) = get(t, "log") {
                    if let Some((other, _)) = t.iter().find(|(k2, _)| k2.get_ref() != "log") {
                        self.error(
                            other.span(),
                            &format!("{path}.{}", other.get_ref()),
                            "a log readiness rule takes only `log`",
                        );
                        return None;
                    }
                    let kpath = format!("{path}.{}", k.get_ref());
                    let text = self.string(value, &kpath, env)?;
                    return match regex::bytes::RegexBuilder::new(&text)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                    {
                        Ok(re) => Some(Ready::Log(LogPattern(re))),
                        Err(e) => {
                            self.error(
                                value.span(),
                                &kpath,
                                format!("not a regular expression: {e}"),
                            );
                            None
                        }
                    };
                }
                let mut interval = defaults::READY_INTERVAL;
                let mut timeout = defaults::READY_PROBE_TIMEOUT;
                let before = self.errors.len();
                for (k, name, kpath, value) in self.entries(t, path, READY_PROBE_KEYS) {
                    match name {
                        "http" | "tcp" | "command" => {}
                        "interval" => set(&mut interval, self.positive(value, &kpath)),
                        "timeout" => set(&mut timeout, self.positive(value, &kpath)),
                        _ => self.unknown_key(k, &kpath, READY_PROBE_KEYS),
                    }
                }
                let probe = self.probe(v, t, path, env)?;
                (self.errors.len() == before).then_some(Ready::Probe(ProbeSpec {
                    probe,
                    interval,
                    timeout,
                }))
            }
            _ => {
                self.type_error(v, path, "\"started\", \"notify\" or a table");
                None
            }
        }
    }

    /// A table rule given as text (what a `${VAR}` expanded to): parsed and checked as if it
    /// were in the file; its problems are reported at the string, quoting the text.
    fn ready_from_text(
        &mut self,
        text: &str,
        span: std::ops::Range<usize>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Ready> {
        let doc = format!("ready = {text}");
        let parsed = match toml::de::DeTable::parse(&doc) {
            Ok(parsed) => parsed,
            Err(e) => {
                let message = format!("{text:?} is not a TOML table: {}", e.message().trim_end());
                self.error(span, path, message);
                return None;
            }
        };
        let (_, value) = get(parsed.get_ref(), "ready")?;
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.error(span, path, format!("{text:?} is not a TOML table"));
            return None;
        }
        let mut inner = Walker::new(self.file, &doc);
        let ready = inner.ready(value, path, env);
        for e in inner.errors {
            let key = e.key.clone();
            self.error(span.clone(), &key, format!("{} (in {text:?})", e.message));
        }
        ready
    }

    /// `healthcheck = { http | tcp | command, interval, timeout, retries, start_period }`.
    pub(super) fn healthcheck(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<HealthCheck> {
        let t = self.table(v, path)?;
        let mut check = HealthCheck {
            probe: Probe::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            interval: defaults::CHECK_INTERVAL,
            timeout: defaults::CHECK_TIMEOUT,
            retries: defaults::CHECK_RETRIES,
            start_period: Duration::ZERO,
        };
        let before = self.errors.len();
        for (k, name, kpath, value) in self.entries(t, path, HEALTHCHECK_KEYS) {
            match name {
                "http" | "tcp" | "command" => {}
                "interval" => set(&mut check.interval, self.positive(value, &kpath)),
                "timeout" => set(&mut check.timeout, self.positive(value, &kpath)),
                "start_period" => set(&mut check.start_period, self.duration(value, &kpath)),
                "retries" => set(
                    &mut check.retries,
                    self.integer(value, &kpath, 1, 1000).map(|n| n as u32),
                ),
                _ => self.unknown_key(k, &kpath, HEALTHCHECK_KEYS),
            }
        }
        check.probe = self.probe(v, t, path, env)?;
        (self.errors.len() == before).then_some(check)
    }

    /// `start_limit = { burst = N, interval = "24h" }`.
    pub(super) fn start_limit(&mut self, v: &Value<'_>, path: &str) -> Option<StartLimit> {
        let t = self.table(v, path)?;
        let mut burst = None;
        let mut interval = defaults::START_LIMIT_INTERVAL;
        let before = self.errors.len();
        for (k, name, kpath, value) in self.entries(t, path, START_LIMIT_KEYS) {
            match name {
                "burst" => burst = self.integer(value, &kpath, 1, 10_000).map(|n| n as u32),
                "interval" => set(&mut interval, self.positive(value, &kpath)),
                _ => self.unknown_key(k, &kpath, START_LIMIT_KEYS),
            }
        }
        if self.errors.len() != before {
            return None;
        }
        let Some(burst) = burst else {
            self.error(
                v.span(),
                path,
                "missing `burst` (how many starts the interval allows, e.g. { burst = 10, interval = \"24h\" })",
            );
            return None;
        };
        Some(StartLimit { burst, interval })
    }

    /// `watchdog`: a duration, with `${VAR}` expanded; 0 turns it off (systemd's
    /// `WatchdogSec=0`).
    pub(super) fn watchdog(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Option<Duration>> {
        let d = self.expanded_duration(v, path, env)?;
        if d.is_zero() {
            return Some(None);
        }
        if d < Duration::from_millis(10) {
            self.error(v.span(), path, "must be at least 10ms (or 0: no watchdog)");
            return None;
        }
        Some(Some(d))
    }

    /// A duration whose string form may use `${VAR}`, for keys one file sets differently per
    /// place (`watchdog`, a deploy's `poll`).
    pub(super) fn expanded_duration(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Duration> {
        match v.get_ref() {
            DeValue::String(_) => {
                let text = self.string(v, path, env)?;
                match parse_duration(&text) {
                    Ok(d) if d > MAX_DURATION => Err(format!(
                        "{} s is longer than the longest duration accepted (7 days)",
                        d.as_secs()
                    )),
                    other => other,
                }
                .map_err(|m| self.error(v.span(), path, m))
                .ok()
            }
            _ => self.duration(v, path),
        }
    }

    /// A duration above zero (an interval or timeout of zero would spin).
    pub(super) fn positive(&mut self, v: &Value<'_>, path: &str) -> Option<Duration> {
        let d = self.duration(v, path)?;
        if d < Duration::from_millis(10) {
            self.error(v.span(), path, "must be at least 10ms");
            return None;
        }
        Some(d)
    }

    /// Exactly one of `http`, `tcp`, `command` in `t`.
    fn probe(
        &mut self,
        v: &Value<'_>,
        t: &toml::de::DeTable<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Probe> {
        let kinds: Vec<_> = PROBE_KINDS.iter().filter_map(|k| get(t, k)).collect();
        let [(k, value)] = kinds.as_slice() else {
            self.error(
                v.span(),
                path,
                "needs exactly one of `http`, `tcp` or `command` (e.g. { http = \"http://127.0.0.1:8000/ping\" })",
            );
            return None;
        };
        let kpath = format!("{path}.{}", k.get_ref());
        match k.get_ref().as_ref() {
            "http" => {
                let url = self.string(value, &kpath, env)?;
                http_target(&url)
                    .map_err(|m| self.error(value.span(), &kpath, m))
                    .ok()
            }
            "tcp" => {
                let addr = self.string(value, &kpath, env)?;
                socket_addr(&addr, None)
                    .map(Probe::Tcp)
                    .map_err(|m| self.error(value.span(), &kpath, m))
                    .ok()
            }
            _ => self.command(value, &kpath, env).map(Probe::Command),
        }
    }
}

/// `http://HOST[:PORT]/path` with HOST an IP address or `localhost`: probes make no DNS lookup.
fn http_target(url: &str) -> Result<Probe, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url:?} is not an http:// URL (probes speak plain HTTP to a local port)"
        ));
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?}: the path may not contain spaces"));
    }
    let addr = socket_addr(host, Some(80)).map_err(|m| format!("{url:?}: {m}"))?;
    Ok(Probe::Http {
        addr,
        host: host.to_owned(),
        path: path.to_owned(),
    })
}

/// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT` (the port optional when `default_port`).
fn socket_addr(text: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port number"))?;
            (h, port)
        }
        _ => match default_port {
            Some(port) => (text, port),
            None => return Err(format!("{text:?} has no port (write 127.0.0.1:PORT)")),
        },
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!("{host:?} is not an IP address or localhost (probes make no DNS lookup)")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let Ok(Probe::Http { addr, host, path }) = http_target("http://127.0.0.1:8000/ping") else {
            panic!("parsed")
        };
        assert_eq!(
            (addr.port(), host.as_str(), path.as_str()),
            (8000, "127.0.0.1:8000", "/ping")
        );
        let Ok(Probe::Http { addr, path, .. }) = http_target("http://localhost") else {
            panic!("parsed")
        };
        assert_eq!(
            (addr.to_string().as_str(), path.as_str()),
            ("127.0.0.1:80", "/")
        );
        assert!(http_target("https://127.0.0.1/").is_err());
        assert!(
            http_target("http://example.com/")
                .unwrap_err()
                .contains("DNS")
        );
        assert_eq!(
            socket_addr("[::1]:9", None).map(|a| a.to_string()),
            Ok("[::1]:9".to_owned())
        );
        assert!(
            socket_addr("127.0.0.1", None)
                .unwrap_err()
                .contains("no port")
        );
        assert!(socket_addr("127.0.0.1:99999", None).is_err());
    }
}
