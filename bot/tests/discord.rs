//! The real bot binary under a real supervisor, against the fake Discord on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

/// The interaction callback for interaction `id`.
fn callback(stack: &Stack, id: u64) -> Value {
    let (_, call) = stack.discord.wait_call(
        &format!("the callback of interaction {id}"),
        0,
        WITHIN,
        |c| c.method == "POST" && c.path.starts_with(&format!("/api/v10/interactions/{id}/")),
    );
    call.body
}

fn content(body: &Value) -> &str {
    body["data"]["content"].as_str().unwrap_or("")
}

const EPHEMERAL: u64 = 64;

#[test]
fn reaches_ready_and_answers_every_command() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    let identify = stack.discord.gateway(|g| g.identifies[0].clone());
    assert_eq!(identify["token"], "Bot test-token");
    assert_eq!(identify["shard"], json!([0, 1]));
    // GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT (for the `!` prefix)
    assert_eq!(
        identify["intents"],
        json!(1 | (1 << 9) | (1 << 12) | (1 << 15))
    );

    // A heartbeat is answered, so /ping has a gateway latency.
    wait_until("a heartbeat", || {
        stack.discord.gateway(|g| g.heartbeats) >= 2
    });
    let id = stack.discord.slash(OWNER_ID, "ping", json!([]), json!({}));
    let reply = callback(&stack, id);
    assert_eq!(reply["type"], 4, "{reply}");
    assert!(content(&reply).starts_with("Pong! Gateway "), "{reply}");
    assert!(content(&reply).contains(" ms, REST "), "{reply}");

    let id = stack
        .discord
        .slash(STRANGER_ID, "uptime", json!([]), json!({}));
    let reply = callback(&stack, id);
    assert!(content(&reply).starts_with("Bot up "), "{reply}");
    assert!(content(&reply).contains("- `app`: up "), "{reply}");

    let id = stack
        .discord
        .slash(STRANGER_ID, "status", json!([]), json!({}));
    let reply = content(&callback(&stack, id)).to_owned();
    assert!(reply.starts_with("Supervisor "), "{reply}");
    let app = reply.lines().find(|l| l.starts_with("app ")).unwrap();
    assert!(app.contains("RUNNING") && app.contains("pid "), "{reply}");
    let bot = reply.lines().find(|l| l.starts_with("bot ")).unwrap();
    assert!(bot.contains("RUNNING"), "{reply}");

    let id = stack
        .discord
        .slash(STRANGER_ID, "version", json!([]), json!({}));
    let reply = callback(&stack, id);
    assert!(content(&reply).contains("built from `"), "{reply}");
    assert!(
        content(&reply).contains("`app`: no deploy recorded yet"),
        "{reply}"
    );

    // /logs: ephemeral, the program's output.
    let id = stack.discord.slash(
        OWNER_ID,
        "logs",
        json!([{"name": "program", "type": 3, "value": "app"}, {"name": "lines", "type": 4, "value": 5}]),
        json!({}),
    );
    let reply = callback(&stack, id);
    assert_eq!(reply["data"]["flags"], EPHEMERAL, "{reply}");
    assert_eq!(content(&reply), "```\nversion 1\n```");

    // /restart by the owner named in DISCORD_OWNERS: a new pid.
    let before = stack.program("app")["pid"].clone();
    let id = stack.discord.slash(
        SECOND_OWNER_ID,
        "restart",
        json!([{"name": "program", "type": 3, "value": "app"}]),
        json!({}),
    );
    let reply = callback(&stack, id);
    assert_eq!(content(&reply), "`app`: started", "{reply}");
    let after = stack.program("app");
    assert_eq!(after["state"], "RUNNING");
    assert_ne!(after["pid"], before);

    // A stranger's /restart: refused politely, privately, and nothing restarts.
    let id = stack.discord.slash(
        STRANGER_ID,
        "restart",
        json!([{"name": "program", "type": 3, "value": "app"}]),
        json!({}),
    );
    let reply = callback(&stack, id);
    assert_eq!(reply["data"]["flags"], EPHEMERAL, "{reply}");
    assert!(
        content(&reply).starts_with("Sorry, only the bot's owners"),
        "{reply}"
    );
    assert_eq!(stack.program("app")["pid"], after["pid"]);

    // The same commands with the prefix, as a message.
    let before = stack.discord.calls().len();
    stack.discord.say(STRANGER_ID, "!status");
    let (_, post) = stack
        .discord
        .wait_call("the prefix reply", before, WITHIN, |c| {
            c.method == "POST" && c.path == format!("/api/v10/channels/{CHANNEL_ID}/messages")
        });
    let text = post.body["content"].as_str().unwrap();
    assert!(
        text.starts_with("Supervisor ") && text.contains("RUNNING"),
        "{text}"
    );

    stack.discord.assert_payloads_parsed();
}
