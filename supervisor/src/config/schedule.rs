//! `schedule`: a program run at set times instead of kept running. A cron expression (croner:
//! five fields, or six with seconds first) in a time zone of the system's database, or
//! `every 5m` (slots aligned on the Unix epoch, so that they are the same across restarts).

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// When the runs are due.
#[derive(Clone, Debug)]
pub enum When {
    Cron(Box<croner::Cron>),
    Every(Duration),
}

/// A run that is due while the previous one still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Not run (counted and logged as skipped).
    Skip,
    /// Run once the previous one ended (at most one waits).
    Queue,
    /// The previous one is stopped, then the new one runs.
    Kill,
}

/// Slots that passed while the supervisor was not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissed {
    /// One run at start, however many were missed.
    RunOnce,
    Skip,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    /// As written (`*/5 * * * *`, `every 5m`).
    pub text: String,
    pub when: When,
    /// `None`: UTC.
    pub timezone: Option<(String, TimeZone)>,
    pub overlap: Overlap,
    pub on_missed: OnMissed,
    /// Each run is delayed by a random part of this.
    pub jitter: Duration,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.timezone.as_ref().map(|t| &t.0) == other.timezone.as_ref().map(|t| &t.0)
            && self.overlap == other.overlap
            && self.on_missed == other.on_missed
            && self.jitter == other.jitter
    }
}

impl Schedule {
    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.when {
            When::Every(every) => {
                let every_ms = i64::try_from(every.as_millis()).ok().filter(|&n| n > 0)?;
                let now_ms = t.as_millisecond();
                let next = (now_ms.div_euclid(every_ms) + 1).checked_mul(every_ms)?;
                Timestamp::from_millisecond(next).ok()
            }
            When::Cron(cron) => {
                let tz = self
                    .timezone
                    .as_ref()
                    .map_or(TimeZone::UTC, |(_, tz)| tz.clone());
                let zoned = t.to_zoned(tz);
                cron.find_next_occurrence(&zoned, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

/// Parses `schedule`: `every DURATION`, or a cron expression.
pub fn parse_when(text: &str) -> Result<When, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("every ") {
        let d = crate::config::units::parse_duration(rest.trim())?;
        if d < Duration::from_secs(1) {
            return Err(format!("{text:?}: the shortest period is 1s"));
        }
        return Ok(When::Every(d));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(t)
        .map(|c| When::Cron(Box::new(c)))
        .map_err(|e| {
            format!(
                "{text:?} is not a cron expression (\"*/5 * * * *\") or a period (\"every 5m\"): {e}"
            )
        })
}

/// A zone of the system's database (`/usr/share/zoneinfo`; install `tzdata`), or `UTC`.
pub fn parse_timezone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|e| {
        format!("{name:?} is not a time zone this machine knows (install tzdata): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn schedule(text: &str, tz: Option<&str>) -> Schedule {
        Schedule {
            text: text.into(),
            when: parse_when(text).unwrap(),
            timezone: tz.map(|n| (n.to_owned(), parse_timezone(n).unwrap())),
            overlap: Overlap::Skip,
            on_missed: OnMissed::Skip,
            jitter: Duration::ZERO,
        }
    }

    #[test]
    fn periods_are_aligned_on_the_epoch() {
        let s = schedule("every 5m", None);
        assert_eq!(
            s.next_after(at("2026-12-06T20:31:10Z")),
            Some(at("2026-12-06T20:35:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-06T20:35:00Z")),
            Some(at("2026-12-06T20:40:00Z")),
            "strictly after"
        );
        assert!(parse_when("every 500ms").is_err());
    }

    #[test]
    fn cron_in_utc_and_in_a_zone() {
        let s = schedule("*/5 * * * *", None);
        assert_eq!(
            s.next_after(at("2026-12-06T20:31:10Z")),
            Some(at("2026-12-06T20:35:00Z"))
        );
        // 03:00 in Paris (UTC+1 in December).
        let s = schedule("0 3 * * *", Some("Europe/Paris"));
        assert_eq!(
            s.next_after(at("2026-12-06T20:31:10Z")),
            Some(at("2026-12-07T02:00:00Z"))
        );
        // With seconds.
        let s = schedule("*/10 * * * * *", None);
        assert_eq!(
            s.next_after(at("2026-12-06T20:31:11Z")),
            Some(at("2026-12-06T20:31:20Z"))
        );
        assert!(parse_when("every day").is_err());
        assert!(parse_when("61 * * * *").is_err());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
