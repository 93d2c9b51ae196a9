//! The bot's settings, from the environment (the supervisor passes `.env` through).

use std::collections::HashSet;
use std::path::PathBuf;

/// Everything the bot reads from its environment, checked at start.
#[derive(Debug)]
pub struct Settings {
    /// Shown as `<redacted>` by `Debug`: the settings are logged and printed in errors.
    pub token: supervised::Secret,
    /// `DISCORD_OWNERS`: user ids allowed the owner-only commands, beside the application's owner.
    pub owners: HashSet<u64>,
    /// `DISCORD_API_BASE`: REST goes there instead of `https://discord.com` (a proxy, a test).
    pub api_base: Option<String>,
    /// `DISCORD_GATEWAY_URL`: the gateway to connect to instead of the one REST names.
    pub gateway_url: Option<String>,
    /// serenity's REST rate limiter (`DISCORD_RATELIMITER=off` turns it off).
    pub ratelimiter: bool,
    /// `DISCORD_SHARD=ID/COUNT`: run one shard of several (one process per shard), ID from 0;
    /// or `DISCORD_SHARD_SLOT=SLOT/COUNT`, from 1 (Docker Swarm's `{{.Task.Slot}}`): shard SLOT - 1.
    pub shard: Option<(u32, u32)>,
    /// `BOT_PREFIX`: prefix for message commands (`!` unless set; empty turns them off).
    pub prefix: Option<String>,
    pub socket: PathBuf,
    /// Where settings live: `BOT_DATA_DIR`, else `$DATA_DIR/bot`.
    pub data_dir: PathBuf,
    /// The program `/deploy` deploys by default (`BOT_DEPLOY_PROGRAM`, else `bot`).
    pub deploy_program: String,
    /// This bot's own program name (`SUPERVISOR_PROCESS_NAME`, set by the supervisor).
    pub own_program: Option<String>,
    /// `DISCORD_ALERT_DMS=on`: alerts about `critical` programs also go to each owner as a direct
    /// message (off unless set).
    pub alert_dms: bool,
    /// `DISCORD_LOGIN_RESERVE` (default 5): below this many logins left in Discord's daily
    /// budget, the bot does not log in (FATAL with the reason) rather than spend the last ones.
    pub login_reserve: u64,
    /// `BOT_STATUS_EVERY_MS` (default 5000, at least 500): the status message in the announce
    /// channel is edited at most this often; changes in between are coalesced.
    pub status_every: std::time::Duration,
}

/// `A/B` as two numbers.
fn ratio(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

impl Settings {
    /// Reads the settings through `env` (a variable lookup), reporting every problem at once,
    /// one per line.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let token = match (env("DISCORD_TOKEN"), env("DISCORD_TOKEN_FILE")) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
                Ok(_) => {
                    problems.push(format!("DISCORD_TOKEN_FILE {path} is empty"));
                    None
                }
                Err(e) => {
                    problems.push(format!("cannot read DISCORD_TOKEN_FILE {path}: {e}"));
                    None
                }
            },
            (None, None) => {
                problems.push(
                    "no Discord token: set DISCORD_TOKEN or DISCORD_TOKEN_FILE (the bot token from the Developer Portal)"
                        .into(),
                );
                None
            }
        };
        let mut owners = HashSet::new();
        for part in env("DISCORD_OWNERS").unwrap_or_default().split([',', ' ']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match part.parse::<u64>() {
                Ok(id) if id > 0 => {
                    owners.insert(id);
                }
                _ => problems.push(format!("DISCORD_OWNERS: {part:?} is not a Discord user id")),
            }
        }
        let url = |key: &str, schemes: &[&str], problems: &mut Vec<String>| {
            let v = env(key)?;
            let v = v.trim_end_matches('/').to_owned();
            if schemes.iter().any(|s| v.starts_with(s)) {
                Some(v)
            } else {
                problems.push(format!(
                    "{key}={v:?} must start with {}",
                    schemes.join(" or ")
                ));
                None
            }
        };
        let api_base = url("DISCORD_API_BASE", &["http://", "https://"], &mut problems);
        let gateway_url = url("DISCORD_GATEWAY_URL", &["ws://", "wss://"], &mut problems);
        let ratelimiter = match env("DISCORD_RATELIMITER").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                problems.push(format!("DISCORD_RATELIMITER={other:?} must be on or off"));
                true
            }
        };
        if api_base.is_some() && ratelimiter {
            problems.push(
                "DISCORD_API_BASE is set but the rate limiter is on: serenity's limiter ignores the base and would talk to discord.com; set DISCORD_RATELIMITER=off (the proxy then limits)"
                    .into(),
            );
        }
        let shard = match (env("DISCORD_SHARD"), env("DISCORD_SHARD_SLOT")) {
            (Some(_), Some(_)) => {
                problems.push(
                    "DISCORD_SHARD and DISCORD_SHARD_SLOT are both set: use one (ID/COUNT counts from 0, SLOT/COUNT from 1)"
                        .into(),
                );
                None
            }
            (Some(v), None) => {
                let parsed = ratio(&v).filter(|&(id, n)| n > 0 && id < n);
                if parsed.is_none() {
                    problems.push(format!(
                        "DISCORD_SHARD={v:?} must be ID/COUNT with ID < COUNT, such as 0/2"
                    ));
                }
                parsed
            }
            (None, Some(v)) => match ratio(&v) {
                Some((slot, n)) if n > 0 && (1..=n).contains(&slot) => Some((slot - 1, n)),
                Some((slot, n)) => {
                    problems.push(format!(
                        "DISCORD_SHARD_SLOT={v:?}: slot {slot} of {n} does not exist (slots count from 1 to COUNT; under Docker Swarm, the service's replicas must equal COUNT)"
                    ));
                    None
                }
                None => {
                    problems.push(format!(
                        "DISCORD_SHARD_SLOT={v:?} must be SLOT/COUNT with 1 <= SLOT <= COUNT, such as \"{{{{.Task.Slot}}}}/2\" in a Swarm stack"
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        // Set but empty: message commands off.
        let prefix = match lookup("BOT_PREFIX") {
            None => Some("!".to_owned()),
            Some(p) => Some(p).filter(|p| !p.is_empty()),
        };
        let socket = PathBuf::from(
            env("SUPERVISOR_SOCKET").unwrap_or_else(|| "data/supervisor.sock".into()),
        );
        let data_dir = match (env("BOT_DATA_DIR"), env("DATA_DIR")) {
            (Some(d), _) => PathBuf::from(d),
            (None, Some(d)) => PathBuf::from(d).join("bot"),
            (None, None) => PathBuf::from("data/bot"),
        };
        let deploy_program = env("BOT_DEPLOY_PROGRAM").unwrap_or_else(|| "bot".into());
        let alert_dms = match env("DISCORD_ALERT_DMS").as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                problems.push(format!("DISCORD_ALERT_DMS={other:?} must be on or off"));
                false
            }
        };
        let login_reserve = match env("DISCORD_LOGIN_RESERVE") {
            None => 5,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "DISCORD_LOGIN_RESERVE={v:?} must be a number of logins, such as 5"
                ));
                0
            }),
        };
        let status_every = match env("BOT_STATUS_EVERY_MS") {
            None => 5000,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms >= 500 => ms,
                _ => {
                    problems.push(format!(
                        "BOT_STATUS_EVERY_MS={v:?} must be milliseconds, at least 500"
                    ));
                    5000
                }
            },
        };
        let status_every = std::time::Duration::from_millis(status_every);
        match (token, problems.is_empty()) {
            (Some(token), true) => Ok(Settings {
                token: supervised::Secret::new(token),
                owners,
                api_base,
                gateway_url,
                ratelimiter,
                shard,
                prefix,
                socket,
                data_dir,
                deploy_program,
                own_program: env("SUPERVISOR_PROCESS_NAME"),
                alert_dms,
                login_reserve,
                status_every,
            }),
            _ => Err(problems.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_token_is_all_it_needs() {
        let s = read(&[("DISCORD_TOKEN", "abc ")]).unwrap();
        assert_eq!(s.token.expose(), "abc");
        assert!(!format!("{s:?}").contains("abc"), "the token never shows");
        assert!(s.ratelimiter);
        assert_eq!(s.prefix.as_deref(), Some("!"));
        assert_eq!(s.deploy_program, "bot");
        assert_eq!(s.data_dir, PathBuf::from("data/bot"));
    }

    #[test]
    fn no_token_says_where_to_put_one() {
        let e = read(&[]).unwrap_err();
        assert!(e.contains("DISCORD_TOKEN or DISCORD_TOKEN_FILE"), "{e}");
        let e = read(&[("DISCORD_TOKEN_FILE", "/nonexistent/token")]).unwrap_err();
        assert!(
            e.contains("cannot read DISCORD_TOKEN_FILE /nonexistent/token"),
            "{e}"
        );
    }

    #[test]
    fn a_token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-token\n").unwrap();
        let s = read(&[("DISCORD_TOKEN_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(s.token.expose(), "secret-token");
    }

    #[test]
    fn a_base_url_needs_the_rate_limiter_off() {
        let e = read(&[
            ("DISCORD_TOKEN", "t"),
            ("DISCORD_API_BASE", "http://127.0.0.1:9"),
        ])
        .unwrap_err();
        assert!(e.contains("DISCORD_RATELIMITER=off"), "{e}");
        let s = read(&[
            ("DISCORD_TOKEN", "t"),
            ("DISCORD_API_BASE", "http://127.0.0.1:9/"),
            ("DISCORD_RATELIMITER", "off"),
        ])
        .unwrap();
        assert_eq!(s.api_base.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = read(&[
            ("DISCORD_OWNERS", "12, bob"),
            ("DISCORD_GATEWAY_URL", "http://x"),
            ("DISCORD_SHARD", "2/2"),
            ("DISCORD_RATELIMITER", "maybe"),
        ])
        .unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(e.contains(r#"DISCORD_OWNERS: "bob" is not a Discord user id"#));
        assert!(e.contains("DISCORD_GATEWAY_URL=\"http://x\" must start with ws:// or wss://"));
        assert!(e.contains("DISCORD_SHARD=\"2/2\""));
        assert!(e.contains("DISCORD_RATELIMITER=\"maybe\""));
    }

    #[test]
    fn owners_and_shards_parse() {
        let s = read(&[
            ("DISCORD_TOKEN", "t"),
            ("DISCORD_OWNERS", "1, 2,3"),
            ("DISCORD_SHARD", "1/4"),
            ("DATA_DIR", "/app/data"),
        ])
        .unwrap();
        assert_eq!(s.owners, HashSet::from([1, 2, 3]));
        assert_eq!(s.shard, Some((1, 4)));
        assert_eq!(s.data_dir, PathBuf::from("/app/data/bot"));
    }

    #[test]
    fn a_swarm_slot_counts_from_one() {
        let slot = |v: &str| read(&[("DISCORD_TOKEN", "t"), ("DISCORD_SHARD_SLOT", v)]);
        assert_eq!(slot("1/2").unwrap().shard, Some((0, 2)));
        assert_eq!(slot("2/2").unwrap().shard, Some((1, 2)));
        let e = slot("3/2").unwrap_err();
        assert!(e.contains("slot 3 of 2 does not exist"), "{e}");
        assert!(e.contains("replicas must equal COUNT"), "{e}");
        assert!(slot("0/2").unwrap_err().contains("slot 0 of 2"));
        // An unexpanded template (a plain `docker run` of the stack's environment).
        let e = slot("{{.Task.Slot}}/2").unwrap_err();
        assert!(e.contains("must be SLOT/COUNT"), "{e}");
        let e = read(&[
            ("DISCORD_TOKEN", "t"),
            ("DISCORD_SHARD", "0/2"),
            ("DISCORD_SHARD_SLOT", "1/2"),
        ])
        .unwrap_err();
        assert!(e.contains("both set"), "{e}");
    }
}
