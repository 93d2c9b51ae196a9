//! Any bot, not only ours: the discord.py example (`examples/python-bot`), as a user runs it,
//! under a real supervisor against the fake Discord on 127.0.0.1. It is deployed from a local
//! git remote by the example's own step (a virtualenv per requirements.txt), is RUNNING only
//! once discord.py's READY came, answers `!ping`, takes a push, gives back the old release
//! with its old dependencies when a commit crashes, and closes the gateway on SIGTERM; then
//! runs through gatewayd, restarting without a new login.
//!
//! pip installs from `target/python-bot-wheels`, which scripts/test fills from PyPI (the
//! example's pins and one older discord.py, for the crashing commit).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod stack;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stack::*;
use testkit::supervisor::{ctl, deploy_history};

const WITHIN: Duration = Duration::from_secs(60);

fn wheels() -> PathBuf {
    let dir = testkit::workspace().join("target/python-bot-wheels");
    assert!(
        dir.join("complete").exists(),
        "{} is missing: scripts/test downloads the example's wheels there",
        dir.display()
    );
    dir
}

/// The program's row of `status --json`.
fn bot(sup: &Supervisor) -> Value {
    let (_, out, _) = ctl(sup, &["status", "--json", "bot"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v["programs"][0].clone()
}

/// Commits the work tree and pushes it; returns the commit.
fn push(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// The newest deploy record.
fn last_deploy(sup: &Supervisor) -> Option<Value> {
    deploy_history(sup.path("").as_path(), "bot").pop()
}

/// Deploys and waits for the result.
fn deploy(sup: &Supervisor) -> String {
    let (code, out, err) = ctl(sup, &["deploy", "bot", "--wait"]);
    eprintln!("deploy: {code} {out}{err}");
    last_deploy(sup)
        .map(|r| r["result"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// `!ping` in the test channel; the reply's text.
fn ping(discord: &FakeDiscord) -> String {
    let after = discord.calls().len();
    discord.say(OWNER_ID, "!ping");
    let (_, call) = discord.wait_call("the reply to !ping", after, WITHIN, |c| {
        c.method == "POST" && c.path == format!("/api/v10/channels/{CHANNEL_ID}/messages")
    });
    call.body["content"].as_str().unwrap_or("").to_owned()
}

#[test]
fn the_python_example_deploys_answers_rolls_back_with_its_dependencies_and_closes_cleanly() {
    let wheels = wheels();
    let discord = FakeDiscord::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The bot's repository: the example's files, as a user copies them.
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["clone", "-q", "remote.git", "work"]);
    let work = root.join("work");
    let example = testkit::workspace().join("examples/python-bot");
    for file in [".gitignore", "bot.py", "requirements.txt", "run", "venv"] {
        std::fs::copy(example.join(file), work.join(file)).unwrap();
    }
    let v1 = push(&work, "v1");
    // The example's configuration, pointed at the fake Discord and at the local wheels.
    let config = std::fs::read_to_string(example.join("supervisor.toml"))
        .unwrap()
        .replace(
            r#"environment = { PYTHONUNBUFFERED = "1", NO_COLOR = "1" }"#,
            &format!(
                r#"environment = {{ PYTHONUNBUFFERED = "1", NO_COLOR = "1", DISCORD_API_BASE = "{}", DISCORD_GATEWAY_URL = "ws://127.0.0.1:{}" }}"#,
                discord.api_base(),
                discord.ws_port
            ),
        )
        .replace(
            r#"healthy_after = "10s""#,
            &format!(
                "healthy_after = \"3s\"\nenvironment = {{ PIP_NO_INDEX = \"1\", PIP_FIND_LINKS = \"{}\", PYTHON = \"/usr/bin/python3\" }}",
                wheels.display()
            ),
        );
    assert!(config.contains("PIP_FIND_LINKS") && config.contains("DISCORD_GATEWAY_URL"));
    // BOT_REPO_URL and DISCORD_TOKEN from the supervisor's environment, as in a container.
    let config = config.replace("${BOT_REPO_URL}", root.join("remote.git").to_str().unwrap());
    // SAFETY: the only test of this binary sets it before it starts any thread of its own;
    // the supervisor it starts inherits it.
    unsafe { std::env::set_var("DISCORD_TOKEN", "test-token") };
    let sup = Supervisor::start(Supervisor::dir_with(&config), Mode::Plain);

    // Before the first deploy there is nothing to run.
    sup.wait_state("bot", "FATAL");
    assert_eq!(deploy(&sup), "succeeded");
    let running = bot(&sup);
    assert_eq!(running["state"], "RUNNING", "{running}");
    // RUNNING only once discord.py's on_ready said READY=1 (it logs first, then notifies).
    assert!(
        running["status_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("connected as testbot"),
        "{running}"
    );
    let out = std::fs::read_to_string(sup.path("data/logs/bot.log")).unwrap();
    assert!(
        out.contains("Logged in as testbot (discord.py 2.6.4)"),
        "{out}"
    );
    assert_eq!(ping(&discord), "pong (discord.py 2.6.4)");
    assert_eq!(last_deploy(&sup).unwrap()["new_commit"], v1);

    // v2: new code, the same requirements (the step finds its virtualenv).
    let bot_py = std::fs::read_to_string(work.join("bot.py")).unwrap();
    std::fs::write(
        work.join("bot.py"),
        bot_py.replace(r#"REPLY = "pong""#, r#"REPLY = "pong v2""#),
    )
    .unwrap();
    let v2 = push(&work, "v2");
    assert_eq!(deploy(&sup), "succeeded");
    assert_eq!(ping(&discord), "pong v2 (discord.py 2.6.4)");
    let record = last_deploy(&sup).unwrap();
    assert_eq!(record["new_commit"], v2);
    let log = std::fs::read_to_string(record["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("is up to date"), "{log}");

    // v3: another discord.py, and a crash at start: rolled back, with v2's dependencies.
    std::fs::write(work.join("requirements.txt"), "discord.py==2.6.3\n").unwrap();
    std::fs::write(
        work.join("bot.py"),
        format!("raise SystemExit('v3 crashes at start')\n{bot_py}"),
    )
    .unwrap();
    let v3 = push(&work, "v3");
    assert_eq!(deploy(&sup), "rolled_back");
    let record = last_deploy(&sup).unwrap();
    assert_eq!(
        (record["new_commit"].clone(), record["old_commit"].clone()),
        (Value::from(v3), Value::from(v2))
    );
    wait_until("the bot running v2 again", || {
        bot(&sup)["state"] == "RUNNING"
    });
    assert_eq!(ping(&discord), "pong v2 (discord.py 2.6.4)");

    // SIGTERM (a stop): discord.py closes the gateway with a close frame.
    let closes_before = discord.gateway(|g| g.closes.len());
    let (code, out, err) = ctl(&sup, &["stop", "bot"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("the gateway connection to end", || {
        discord.gateway(|g| g.closes.len()) > closes_before
    });
    let close = discord.gateway(|g| g.closes.last().copied().flatten());
    assert_eq!(close, Some(1000), "a close frame, code 1000");

    // The same bot through gatewayd (docs/GATEWAY.md): only its gateway URL changes, and its
    // restarts cost no login.
    let port = free_port();
    let through = config.replace(
        &format!(
            "DISCORD_GATEWAY_URL = \"ws://127.0.0.1:{}\"",
            discord.ws_port
        ),
        &format!("DISCORD_GATEWAY_URL = \"ws://127.0.0.1:{port}\""),
    ) + &format!(
        r#"
[program.gatewayd]
command = ["{bin}"]
ready = "notify"
# discord.py asks for its default intents and message content.
environment = {{ GATEWAY_UPSTREAM_URL = "ws://127.0.0.1:{ws}", GATEWAY_LISTEN = "127.0.0.1:{port}", DISCORD_INTENTS = "3276799" }}
pass_env = ["DISCORD_TOKEN"]
"#,
        bin = gatewayd_bin().display(),
        ws = discord.ws_port,
    );
    assert!(through.contains(&format!("127.0.0.1:{port}\" }}")));
    std::fs::write(sup.path("supervisor.toml"), through).unwrap();
    let (code, out, err) = ctl(&sup, &["update"]);
    assert_eq!(code, 0, "{out}{err}");
    sup.wait_state("gatewayd", "RUNNING");
    let logins = discord.gateway(|g| g.identifies.len());
    for round in 0..2 {
        let (code, out, err) = ctl(&sup, &["restart", "bot"]);
        assert_eq!(code, 0, "{out}{err}");
        wait_until("discord.py to be served READY by gatewayd", || {
            bot(&sup)["state"] == "RUNNING"
        });
        assert_eq!(
            ping(&discord),
            "pong v2 (discord.py 2.6.4)",
            "round {round}"
        );
    }
    assert_eq!(
        discord.gateway(|g| g.identifies.len()),
        logins,
        "discord.py's two starts through gatewayd: no login"
    );
    discord.assert_payloads_parsed();
}
