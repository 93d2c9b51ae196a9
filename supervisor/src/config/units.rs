//! Values as people write them: `"250ms"`, `"50MB"`, `"TERM"`.

use std::time::Duration;

use nix::sys::signal::Signal;

/// A duration string: `"250ms"`, `"2s"`, `"1m 30s"`, or a bare number of seconds (`"5"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if t.starts_with('-') {
        return Err(format!("{text:?} is negative; durations cannot be"));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("{text:?} is not a duration (write seconds as a number, or a string such as \"250ms\", \"2s\", \"1m 30s\")"))
}

/// A duration as the file would write it: `24h`, `90m`, `5s`, `250ms` (the largest whole
/// unit), so that messages quote what the owner wrote.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A size in bytes: an integer, or a string with supervisord's suffixes `KB`, `MB`, `GB`
/// (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let (digits, mult) = if let Some(d) = upper.strip_suffix("KB") {
        (d, 1u64 << 10)
    } else if let Some(d) = upper.strip_suffix("MB") {
        (d, 1 << 20)
    } else if let Some(d) = upper.strip_suffix("GB") {
        (d, 1 << 30)
    } else if let Some(d) = upper.strip_suffix('B') {
        (d, 1)
    } else {
        (upper.as_str(), 1)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            format!("{text:?} is not a size (write bytes as a number, or a string such as \"50MB\", \"512KB\")")
        })
}

/// A signal name as supervisord accepts it: `TERM`, `SIGTERM`, `term`, or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{text:?} is not a signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| {
        format!(
            "{text:?} is not a signal name (e.g. \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\")"
        )
    })
}

/// The short name of a signal, as status lines and messages show it (`TERM`).
pub fn signal_name(signal: Signal) -> &'static str {
    let full = signal.as_str();
    full.strip_prefix("SIG").unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("50MB"), Ok(50 << 20));
        assert_eq!(parse_bytes("512kb"), Ok(512 << 10));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-5").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert_eq!(signal_name(Signal::SIGQUIT), "QUIT");
    }
}
