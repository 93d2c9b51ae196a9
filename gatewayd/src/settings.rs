//! gatewayd's settings, all from the environment (documented in docs/GATEWAY.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use supervised::Secret;

/// Discord's gateway, where the held session connects unless `GATEWAY_UPSTREAM_URL` says
/// otherwise.
pub const DISCORD_GATEWAY: &str = "wss://gateway.discord.gg";

/// GUILDS, GUILD_MESSAGES and DIRECT_MESSAGES: what the bot of this repository asks for
/// without a prefix (with one it adds MESSAGE_CONTENT, 32768: `DISCORD_INTENTS=37377`).
pub const DEFAULT_INTENTS: u64 = 1 | 512 | 4096;

#[derive(Debug)]
pub struct Settings {
    /// `DISCORD_TOKEN`, or the contents of the file `DISCORD_TOKEN_FILE` names: the session's
    /// login, and what a bot connecting here must present.
    pub token: Secret,
    /// `GATEWAY_UPSTREAM_URL`: the gateway the held session connects to (`ws://` or `wss://`),
    /// default Discord's. (Not `DISCORD_GATEWAY_URL`, which is the bot's and names gatewayd.)
    pub upstream: String,
    /// `DISCORD_INTENTS`: the held session's intents, a number as Discord writes them.
    pub intents: u64,
    /// `GATEWAY_LISTEN`, default `127.0.0.1:7878`: where bots connect (`ws://` this address).
    pub listen: SocketAddr,
    /// `GATEWAY_METRICS_LISTEN`: where `/metrics` is served; none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// `GATEWAY_STATE`: the file the session, the guild state and the buffered events are kept
    /// in across gatewayd's own restarts (none: a restart identifies again).
    pub state: Option<PathBuf>,
    /// `GATEWAY_BUFFER`, default 1000: events kept for bots that are away or resume.
    pub buffer: usize,
}

impl Settings {
    /// Reads the settings through `lookup`; every problem is reported at once, one a line.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let token = match (env("DISCORD_TOKEN"), env("DISCORD_TOKEN_FILE")) {
            (Some(t), _) => Secret::new(t.trim()),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => Secret::new(t.trim()),
                Ok(_) => {
                    problems.push(format!("DISCORD_TOKEN_FILE {path} is empty"));
                    Secret::new("")
                }
                Err(e) => {
                    problems.push(format!("cannot read DISCORD_TOKEN_FILE {path}: {e}"));
                    Secret::new("")
                }
            },
            (None, None) => {
                problems.push(
                    "no Discord token: set DISCORD_TOKEN or DISCORD_TOKEN_FILE (the bot token from the Developer Portal)"
                        .into(),
                );
                Secret::new("")
            }
        };
        let upstream = env("GATEWAY_UPSTREAM_URL").map_or_else(
            || DISCORD_GATEWAY.to_owned(),
            |u| u.trim().trim_end_matches('/').to_owned(),
        );
        if !(upstream.starts_with("ws://") || upstream.starts_with("wss://")) {
            problems.push(format!(
                "GATEWAY_UPSTREAM_URL={upstream:?} must start with ws:// or wss://"
            ));
        }
        let intents = match env("DISCORD_INTENTS") {
            None => DEFAULT_INTENTS,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "DISCORD_INTENTS={v:?} is not a number (Discord's intents bits, such as 37377)"
                ));
                DEFAULT_INTENTS
            }),
        };
        let mut address = |key: &str, default: Option<&str>| -> Option<SocketAddr> {
            let v = env(key).or(default.map(str::to_owned))?;
            match v.trim().parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!(
                        "{key}={v:?} is not an address such as 127.0.0.1:7878"
                    ));
                    None
                }
            }
        };
        let listen = address("GATEWAY_LISTEN", Some("127.0.0.1:7878"));
        let metrics_listen = address("GATEWAY_METRICS_LISTEN", None);
        let buffer = match env("GATEWAY_BUFFER") {
            None => 1000,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "GATEWAY_BUFFER={v:?} must be a number of events from 1 to 1000000"
                    ));
                    1000
                }
            },
        };
        let state = env("GATEWAY_STATE").map(PathBuf::from);
        match (problems.is_empty(), listen) {
            (true, Some(listen)) => Ok(Self {
                token,
                upstream,
                intents,
                listen,
                metrics_listen,
                state,
                buffer,
            }),
            _ => Err(problems.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_hold_discord_s_gateway_on_a_loopback_port() {
        let s = read(&[("DISCORD_TOKEN", " abc\n")]).unwrap();
        assert_eq!(s.token.expose(), "abc");
        assert_eq!(s.upstream, DISCORD_GATEWAY);
        assert_eq!(s.intents, 4609);
        assert_eq!(s.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.buffer, 1000);
        assert!(s.state.is_none());
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let e = read(&[
            ("GATEWAY_UPSTREAM_URL", "http://x"),
            ("DISCORD_INTENTS", "all"),
            ("GATEWAY_LISTEN", "localhost"),
            ("GATEWAY_BUFFER", "0"),
        ])
        .unwrap_err();
        for part in [
            "no Discord token",
            "GATEWAY_UPSTREAM_URL=\"http://x\" must start with ws:// or wss://",
            "DISCORD_INTENTS=\"all\" is not a number",
            "GATEWAY_LISTEN=\"localhost\" is not an address",
            "GATEWAY_BUFFER=\"0\" must be a number of events from 1 to 1000000",
        ] {
            assert!(e.contains(part), "{part} missing from {e}");
        }
    }

    #[test]
    fn the_token_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = read(&[("DISCORD_TOKEN_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(s.token.expose(), "from-file");
        std::fs::write(&path, "\n").unwrap();
        let e = read(&[("DISCORD_TOKEN_FILE", path.to_str().unwrap())]).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }
}
