//! The bot's test stack: the fake Discord, and a real supervisor (testkit's fixture, its log
//! followed) running the real bot binary and `app`, a program deployable from a local bare git
//! repository.
//!
//! Needs the supervisor binary beside the bot's (`cargo test --workspace` builds both).

#![allow(dead_code)] // each test file uses its own part of this

pub mod fake_discord;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub use fake_discord::*;

pub use testkit::supervisor::{Mode, Supervisor};
#[allow(unused_imports)] // each test file uses its own part
pub use testkit::{PATIENCE, free_port, git, push_version as push, wait_until};

pub fn supervisor_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_bot"), "supervisor")
}

/// gatewayd's binary, beside the bot's (`cargo test --workspace` builds it).
pub fn gatewayd_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_bot"), "gatewayd")
}

/// How the bot is run.
pub struct BotEnv<'a> {
    /// `DISCORD_TOKEN` (the fake accepts `test-token`); without one the bot must refuse to start.
    pub token: Option<&'a str>,
    /// `DISCORD_RATELIMITER`: `off`, as a base URL needs.
    pub ratelimiter: &'a str,
    /// Set `DISCORD_GATEWAY_URL` to the fake's gateway, and make REST name a dead one.
    pub gateway_override: bool,
    /// Give the bot's own program a deploy table (its "source" is a clone of the app's remote).
    pub self_deploy: bool,
    /// REST names a gateway where nothing listens (Discord unreachable).
    pub unreachable_gateway: bool,
    /// `DISCORD_SHARD` (or `DISCORD_SHARD_SLOT`) and its value.
    pub shard: Option<(&'a str, &'a str)>,
    /// The gateway never sends READY.
    pub withhold_ready: bool,
    /// The bot's `ready_timeout` (it runs with `ready = "notify"` and a watchdog, as shipped).
    pub ready_timeout: &'a str,
    /// `DISCORD_ALERT_DMS = "on"`, and `app` marked `critical`.
    pub alert_dms: bool,
    /// What Discord says is left of the day's logins (`GET /gateway/bot`).
    pub logins_left: Option<u64>,
    /// `BOT_STATUS_EVERY_MS`: how often the status message may be edited.
    pub status_every_ms: u64,
    /// Run gatewayd before the bot, holding the session with the fake, and connect the bot to
    /// it (REST names a dead gateway, so the bot cannot go around it).
    pub gatewayd: bool,
}

impl Default for BotEnv<'_> {
    fn default() -> Self {
        Self {
            token: Some("test-token"),
            ratelimiter: "off",
            gateway_override: false,
            self_deploy: false,
            unreachable_gateway: false,
            shard: None,
            withhold_ready: false,
            ready_timeout: "20s",
            alert_dms: false,
            logins_left: None,
            status_every_ms: 5000,
            gatewayd: false,
        }
    }
}

pub struct Stack {
    /// testkit's: its log is followed, and a wait that fails shows it.
    pub sup: Supervisor,
    pub discord: FakeDiscord,
}

impl Stack {
    pub fn start(bot: BotEnv) -> Self {
        let discord = FakeDiscord::start();
        if bot.withhold_ready {
            discord.withhold_ready();
        }
        if let Some(n) = bot.logins_left {
            discord.set_logins_left(n);
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(root, &["clone", "-q", "remote.git", "work"]);
        let shard = bot
            .shard
            .map_or(String::new(), |(k, v)| format!(r#"{k} = "{v}", "#));
        let token = match bot.token {
            Some(t) => format!(r#"DISCORD_TOKEN = "{t}", "#),
            None => String::new(),
        };
        if bot.unreachable_gateway {
            discord.answer_gateway_with("ws://127.0.0.1:9");
        }
        let gatewayd_port = free_port();
        let gateway = if bot.gatewayd {
            discord.answer_gateway_with("ws://127.0.0.1:9");
            format!(r#"DISCORD_GATEWAY_URL = "ws://127.0.0.1:{gatewayd_port}", "#)
        } else if bot.gateway_override {
            discord.answer_gateway_with("ws://127.0.0.1:9");
            format!(
                r#"DISCORD_GATEWAY_URL = "ws://127.0.0.1:{}", "#,
                discord.ws_port
            )
        } else {
            String::new()
        };
        let self_deploy = if bot.self_deploy {
            format!(
                "[program.bot.deploy]\nrepo = \"{}/botsrc\"\nhealthy_after = \"1s\"\n",
                root.display()
            )
        } else {
            String::new()
        };
        let gatewayd = if bot.gatewayd {
            format!(
                r#"
[program.gatewayd]
command = ["{bin}"]
ready = "notify"
ready_timeout = "20s"
watchdog = "2s"
stopwaitsecs = 10
fatal_exitcodes = [78]
backoff = {{ initial = "200ms", max = "1s" }}
environment = {{ DISCORD_TOKEN = "test-token", GATEWAY_UPSTREAM_URL = "ws://127.0.0.1:{ws}", DISCORD_INTENTS = "37377", GATEWAY_LISTEN = "127.0.0.1:{gatewayd_port}", GATEWAY_STATE = "{root}/data/gatewayd/session.json", GATEWAY_METRICS_LISTEN = "127.0.0.1:{metrics}", RUST_LOG = "info" }}
"#,
                bin = gatewayd_bin().display(),
                ws = discord.ws_port,
                root = root.display(),
                metrics = free_port(),
            )
        } else {
            String::new()
        };
        let depends = if bot.gatewayd {
            r#"depends_on = ["gatewayd"]"#
        } else {
            ""
        };
        let config = format!(
            r#"{gatewayd}
[program.app]
command = ["/bin/sh", "{root}/app/run.sh"]
startsecs = "200ms"
critical = {alert_dms}
[program.app.deploy]
repo = "{root}/app"
healthy_after = "300ms"

[program.bot]
command = ["{bot}"]
{depends}
ready = "notify"
ready_timeout = "{ready_timeout}"
startretries = 1
# The fake acknowledges heartbeats every 400 ms. Through gatewayd: serenity takes 5 s to
# start its shard again when gatewayd restarts.
watchdog = "{watchdog}"
stopwaitsecs = 10
fatal_exitcodes = [78]
backoff = {{ initial = "200ms", max = "1s" }}
environment = {{ {token}{gateway}{shard}DISCORD_API_BASE = "{api}", DISCORD_RATELIMITER = "{ratelimiter}", DISCORD_OWNERS = "{second}", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock", BOT_DATA_DIR = "{root}/data/bot", BOT_DEPLOY_PROGRAM = "app", DISCORD_ALERT_DMS = "{dms}", BOT_STATUS_EVERY_MS = "{every}" }}
{self_deploy}
"#,
            root = root.display(),
            bot = env!("CARGO_BIN_EXE_bot"),
            api = discord.api_base(),
            second = SECOND_OWNER_ID,
            ratelimiter = bot.ratelimiter,
            ready_timeout = bot.ready_timeout,
            alert_dms = bot.alert_dms,
            dms = if bot.alert_dms { "on" } else { "off" },
            every = bot.status_every_ms,
            watchdog = if bot.gatewayd { "10s" } else { "2s" },
        );
        std::fs::write(root.join("work/run.sh"), "").unwrap();
        git(&root.join("work"), &["add", "run.sh"]);
        push(root, "1");
        git(root, &["clone", "-q", "remote.git", "app"]);
        git(root, &["clone", "-q", "remote.git", "botsrc"]);
        std::fs::write(root.join("supervisor.toml"), config).unwrap();
        let sup = Supervisor::start(dir, Mode::Plain);
        let stack = Self { sup, discord };
        wait_until("app to run", || stack.log("app").contains("version 1"));
        stack
    }

    pub fn root(&self) -> &Path {
        self.sup.dir.path()
    }

    /// Commits a new version of `app` and pushes it.
    pub fn push(&self, version: &str) -> String {
        push(self.root(), version)
    }

    /// The supervisor's own log so far, a JSON object a line.
    pub fn supervisor_output(&self) -> String {
        let lines: Vec<String> = self
            .sup
            .log_events(|_| true)
            .iter()
            .map(Value::to_string)
            .collect();
        lines.join("\n")
    }

    pub fn log(&self, program: &str) -> String {
        std::fs::read_to_string(self.root().join(format!("data/logs/{program}.log")))
            .unwrap_or_default()
    }

    pub fn err_log(&self, program: &str) -> String {
        std::fs::read_to_string(self.root().join(format!("data/logs/{program}.err.log")))
            .unwrap_or_default()
    }

    pub fn history(&self) -> Vec<Value> {
        testkit::supervisor::deploy_history(self.root(), "app")
    }

    /// Runs the supervisor's CLI against this stack.
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(supervisor_bin())
            .args(args)
            .arg("-c")
            .arg(self.root().join("supervisor.toml"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// One program's `status --json` entry.
    pub fn program(&self, name: &str) -> Value {
        let (_, out) = self.ctl(&["status", "--json", name]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v["programs"][0].clone()
    }

    /// Waits until the bot has identified `n` times in all, then for its commands to be
    /// registered after that.
    pub fn wait_ready(&self, n: usize) {
        wait_until("the bot to identify", || {
            self.discord.gateway(|g| g.identifies.len()) >= n
        });
        let registrations = |c: &RestCall| c.method == "PUT" && c.path.ends_with("/commands");
        wait_until("the bot to register its commands", || {
            self.discord
                .calls()
                .iter()
                .filter(|c| registrations(c))
                .count()
                >= n
        });
    }
}
