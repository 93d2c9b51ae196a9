//! The real bot binary under a real supervisor, against the fake Discord on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod stack;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stack::*;

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

/// `/settings announce-channel` for the announce channel, and what resolves it.
fn announce_channel_option() -> (Value, Value) {
    let option = json!([{"name": "announce-channel", "type": 1, "options": [
        {"name": "channel", "type": 7, "value": ANNOUNCE_CHANNEL_ID.to_string()}
    ]}]);
    let resolved = json!({"channels": {ANNOUNCE_CHANNEL_ID.to_string(): {
        "id": ANNOUNCE_CHANNEL_ID.to_string(), "name": "deploys", "type": 0,
        "permissions": "2147483647"
    }}});
    (option, resolved)
}

/// An owner chooses the announce channel.
fn choose_announce_channel(stack: &Stack) {
    let (option, resolved) = announce_channel_option();
    let id = stack.discord.slash(OWNER_ID, "settings", option, resolved);
    callback(stack, id);
}

/// What the bot posted to the announce channel, in order.
/// The announcements posted to the announce channel (not the status message kept there).
fn posted(stack: &Stack) -> Vec<String> {
    let path = format!("/api/v10/channels/{ANNOUNCE_CHANNEL_ID}/messages");
    stack
        .discord
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == path)
        .map(|c| c.body["content"].as_str().unwrap().to_owned())
        .filter(|text| !is_board(text))
        .collect()
}

/// The status message (the board): the only message holding `supervisor status`'s table.
fn is_board(text: &str) -> bool {
    text.contains("\nSupervisor ")
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

    // A failure is reported to the one who asked, privately.
    let id = stack.discord.slash(
        OWNER_ID,
        "logs",
        json!([{"name": "program", "type": 3, "value": "nosuch"}]),
        json!({}),
    );
    let reply = callback(&stack, id);
    assert_eq!(reply["data"]["flags"], EPHEMERAL, "{reply}");
    assert!(content(&reply).starts_with("That failed: "), "{reply}");
    assert!(content(&reply).contains("nosuch"), "{reply}");

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
    // The supervisor's audit trail names the Discord user the bot acted for.
    let (code, out) = stack.ctl(&["audit", "--json", "-n", "1"]);
    assert_eq!(code, 0, "{out}");
    let audit: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(audit[0]["verb"], "restart", "{audit}");
    assert_eq!(audit[0]["process"], "bot", "{audit}");
    assert!(
        audit[0]["by"].as_str().is_some_and(
            |b| b.starts_with("discord: ") && b.ends_with(&format!("({SECOND_OWNER_ID})"))
        ),
        "{audit}"
    );

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
    // Replies carry text the bot did not write (program names, log lines): no pings.
    assert_eq!(
        post.body["allowed_mentions"],
        json!({"parse": [], "roles": [], "users": []}),
        "{}",
        post.body
    );

    stack.discord.assert_payloads_parsed();
}

/// The custom ids of the buttons in a reply.
fn buttons(reply: &Value) -> Vec<String> {
    reply["data"]["components"][0]["components"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|b| b["custom_id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Edits of the original response of interaction token `itoken-ID`.
fn edits(stack: &Stack, id: u64) -> Vec<String> {
    let path = format!("/api/v10/webhooks/{APP_ID}/itoken-{id}/messages/@original");
    stack
        .discord
        .calls()
        .into_iter()
        .filter(|c| c.method == "PATCH" && c.path == path)
        .map(|c| c.body["content"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn deploys_need_an_owner_and_a_confirmation() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    let v2 = stack.push("2");

    // A stranger: refused, privately; nothing deploys.
    let id = stack
        .discord
        .slash(STRANGER_ID, "deploy", json!([]), json!({}));
    let reply = callback(&stack, id);
    assert_eq!(reply["data"]["flags"], EPHEMERAL, "{reply}");
    assert!(
        content(&reply).starts_with("Sorry, only the bot's owners"),
        "{reply}"
    );
    assert!(buttons(&reply).is_empty());

    // The owner, who then cancels: nothing deploys.
    let id = stack
        .discord
        .slash(OWNER_ID, "deploy", json!([]), json!({}));
    let reply = callback(&stack, id);
    assert_eq!(content(&reply), "Deploy `app` from `main` now?", "{reply}");
    let ids = buttons(&reply);
    assert_eq!(ids.len(), 2, "{reply}");
    // Someone else pressing the owner's button does nothing.
    let stranger_press = stack.discord.press(STRANGER_ID, &ids[0]);
    let press = stack.discord.press(OWNER_ID, &ids[1]);
    let answer = callback(&stack, press);
    assert_eq!(answer["type"], 7, "an UPDATE_MESSAGE: {answer}");
    assert_eq!(content(&answer), "Cancelled; nothing was deployed.");
    assert!(
        !stack.discord.calls().iter().any(|c| c
            .path
            .starts_with(&format!("/api/v10/interactions/{stranger_press}/"))),
        "the stranger's press was answered"
    );
    assert!(stack.history().is_empty(), "{:?}", stack.history());

    // The owner, who confirms: a real deploy, followed to its end.
    let id = stack.discord.slash(
        OWNER_ID,
        "deploy",
        json!([{"name": "program", "type": 3, "value": "app"}]),
        json!({}),
    );
    let ids = buttons(&callback(&stack, id));
    let press = stack.discord.press(OWNER_ID, &ids[0]);
    let answer = callback(&stack, press);
    assert_eq!(content(&answer), "Deploying `app`: fetching", "{answer}");
    wait_until("the result in the reply", || {
        edits(&stack, id)
            .last()
            .is_some_and(|e| e.starts_with('✅'))
    });
    let edits = edits(&stack, id);
    assert_eq!(
        edits.last().unwrap(),
        &format!(
            "✅ `app` deployed `{}` 2 in {}.",
            &v2[..10],
            edits
                .last()
                .unwrap()
                .rsplit(" in ")
                .next()
                .unwrap()
                .trim_end_matches('.')
        )
    );
    assert!(edits.iter().any(|e| e.contains("fetched `")), "{edits:?}");
    let history = stack.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["result"], "succeeded");
    assert_eq!(history[0]["new_commit"], v2.as_str());
    assert_eq!(
        history[0]["trigger"],
        format!("discord: user{OWNER_ID} ({OWNER_ID})")
    );
    wait_until("version 2", || stack.log("app").contains("version 2"));
    stack.discord.assert_payloads_parsed();
}

#[test]
fn deploy_results_are_announced_and_settings_survive_a_restart() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);

    // Only an owner may choose the channel.
    let (option, resolved) = announce_channel_option();
    let id = stack
        .discord
        .slash(STRANGER_ID, "settings", option.clone(), resolved.clone());
    assert!(content(&callback(&stack, id)).starts_with("Sorry"));
    assert!(!stack.root().join("data/bot/settings.json").exists());
    let id = stack.discord.slash(OWNER_ID, "settings", option, resolved);
    assert_eq!(
        content(&callback(&stack, id)),
        format!("Deploy results will be posted in <#{ANNOUNCE_CHANNEL_ID}>.")
    );

    let announcements = || posted(&stack);
    // A deploy from elsewhere (the CLI here; hookd in production) is announced.
    let v2 = stack.push("2");
    let (code, out) = stack.ctl(&["deploy", "app"]);
    assert_eq!(code, 0, "{out}");
    wait_until("the announcement", || !announcements().is_empty());
    let first = announcements();
    assert!(
        first[0].starts_with(&format!("✅ `app` deployed `{}` 2 in ", &v2[..10])),
        "{first:?}"
    );

    // The bot restarts; the setting is still there, and the old deploy is not announced again.
    let (code, out) = stack.ctl(&["restart", "bot"]);
    assert_eq!(code, 0, "{out}");
    stack.wait_ready(2);
    let v3 = stack.push("3");
    let (code, out) = stack.ctl(&["deploy", "app"]);
    assert_eq!(code, 0, "{out}");
    wait_until("the second announcement", || announcements().len() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let all = announcements();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[1].contains(&v3[..10]), "{all:?}");

    // A failing deploy is announced as such, naming what still runs.
    std::fs::write(stack.root().join("work/run.sh"), "exit 3\n").unwrap();
    git(
        &stack.root().join("work"),
        &["commit", "-q", "-a", "-m", "@everyone broken"],
    );
    git(
        &stack.root().join("work"),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let (code, out) = stack.ctl(&["deploy", "app"]);
    assert_eq!(code, 0, "{out}");
    wait_until("the rollback announcement", || announcements().len() >= 3);
    let last = announcements().pop().unwrap();
    assert!(last.starts_with("⚠️ `app`: `"), "{last}");
    assert!(last.contains(" @everyone broken failed ("), "{last}");
    // ...and pings no one: every announcement allows no mention at all.
    let path = format!("/api/v10/channels/{ANNOUNCE_CHANNEL_ID}/messages");
    for call in stack.discord.calls().iter().filter(|c| c.path == path) {
        assert_eq!(
            call.body["allowed_mentions"],
            json!({"parse": [], "roles": [], "users": []}),
            "{}",
            call.body
        );
    }
    assert!(
        last.contains(&format!("rolled back to `{}` 3", &v3[..10])),
        "{last}"
    );
    stack.discord.assert_payloads_parsed();
}

#[test]
fn sigterm_closes_the_gateway_and_exits_zero() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    let started = Instant::now();
    let (code, out) = stack.ctl(&["stop", "bot"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}");
    let bot = stack.program("bot");
    assert_eq!(bot["state"], "STOPPED", "{bot}");
    assert_eq!(bot["last_exit"], "exit status 0", "{bot}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    // A clean close: a close frame with code 1000.
    wait_until("the gateway to close", || {
        stack.discord.gateway(|g| !g.closes.is_empty())
    });
    assert_eq!(stack.discord.gateway(|g| g.closes.clone()), [Some(1000)]);
}

#[test]
fn sigterm_while_discord_is_unreachable_still_exits_zero_quickly() {
    let stack = Stack::start(BotEnv {
        unreachable_gateway: true,
        ..Default::default()
    });
    // Not ready while Discord is unreachable: it says so, and waits.
    wait_until("the bot to say it is connecting", || {
        let bot = stack.program("bot");
        bot["state"] == "STARTING"
            && bot["status_text"]
                .as_str()
                .is_some_and(|s| s.starts_with("connecting to Discord"))
    });
    wait_until("the bot to ask for the gateway", || {
        stack
            .discord
            .calls()
            .iter()
            .any(|c| c.path == "/api/v10/gateway")
    });
    let started = Instant::now();
    let (code, out) = stack.ctl(&["stop", "bot"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}");
    let bot = stack.program("bot");
    assert_eq!(bot["last_exit"], "exit status 0", "{bot}");
    assert!(took < Duration::from_secs(4), "stopping took {took:?}");
}

#[test]
fn without_a_token_the_bot_is_fatal_after_one_spawn() {
    let stack = Stack::start(BotEnv {
        token: None,
        ..Default::default()
    });
    wait_until("the bot to be FATAL", || {
        stack.program("bot")["state"] == "FATAL"
    });
    let bot = stack.program("bot");
    assert_eq!(bot["spawns"], 1, "{bot}");
    assert_eq!(bot["last_exit_code"], 78, "{bot}");
    assert!(bot["description"].as_str().unwrap().contains("78"), "{bot}");
    let err = stack.err_log("bot");
    assert_eq!(
        err.trim(),
        "bot: no Discord token: set DISCORD_TOKEN or DISCORD_TOKEN_FILE (the bot token from the Developer Portal)"
    );
    assert_eq!(stack.discord.gateway(|g| g.connections), 0);
}

#[test]
fn a_base_url_with_the_rate_limiter_on_is_refused() {
    let stack = Stack::start(BotEnv {
        ratelimiter: "on",
        ..Default::default()
    });
    wait_until("the bot to be FATAL", || {
        stack.program("bot")["state"] == "FATAL"
    });
    assert!(stack.err_log("bot").contains("DISCORD_RATELIMITER=off"));
    assert!(
        stack.discord.calls().is_empty(),
        "{:?}",
        stack.discord.calls()
    );
}

#[test]
fn the_gateway_url_can_be_set() {
    // REST names a gateway where nothing listens; DISCORD_GATEWAY_URL names the real one.
    let stack = Stack::start(BotEnv {
        gateway_override: true,
        ..Default::default()
    });
    stack.wait_ready(1);
    let id = stack.discord.slash(OWNER_ID, "ping", json!([]), json!({}));
    assert!(content(&callback(&stack, id)).starts_with("Pong!"));
}

#[test]
fn a_token_discord_refuses_is_fatal() {
    let stack = Stack::start(BotEnv {
        token: Some("not-the-token"),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.program("bot")["state"] != "FATAL" {
        assert!(
            Instant::now() < deadline,
            "not FATAL: {}\n{}",
            stack.program("bot"),
            stack.err_log("bot")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let bot = stack.program("bot");
    assert_eq!(
        (bot["spawns"].clone(), bot["last_exit_code"].clone()),
        (json!(1), json!(78)),
        "{bot}"
    );
    assert_eq!(stack.discord.gateway(|g| g.identifies.len()), 1);
    // The reason, as the bot gave it, not only its exit code (status, and so alerts and
    // statusd's /health).
    wait_description(
        &stack,
        "exited with fatal exit code 78: bot: Discord refused the token (close code 4004): set a valid DISCORD_TOKEN",
    );
}

#[test]
fn a_deploy_of_the_bot_itself_is_announced_by_the_new_bot() {
    let stack = Stack::start(BotEnv {
        self_deploy: true,
        ..Default::default()
    });
    stack.wait_ready(1);
    let id = stack.discord.slash(
        OWNER_ID,
        "settings",
        json!([{"name": "announce-off", "type": 1, "options": []}]),
        json!({}),
    );
    assert!(content(&callback(&stack, id)).starts_with("Deploy results will not be posted"));
    let id = stack.discord.slash(
        OWNER_ID,
        "settings",
        json!([{"name": "announce-channel", "type": 1, "options": []}]),
        json!({}),
    );
    // Without an argument: the channel it was asked in.
    assert_eq!(
        content(&callback(&stack, id)),
        format!("Deploy results will be posted in <#{CHANNEL_ID}>.")
    );
    let v2 = stack.push("2");
    let id = stack.discord.slash(
        OWNER_ID,
        "deploy",
        json!([{"name": "program", "type": 3, "value": "bot"}]),
        json!({}),
    );
    let ids = buttons(&callback(&stack, id));
    let press = stack.discord.press(OWNER_ID, &ids[0]);
    let answer = content(&callback(&stack, press)).to_owned();
    assert!(
        answer.contains("This bot restarts during the deploy"),
        "{answer}"
    );
    // The deploy restarts the bot; the new one connects and posts the result.
    stack.wait_ready(2);
    let path = format!("/api/v10/channels/{CHANNEL_ID}/messages");
    // The announcement, not the status message kept in the same channel.
    let (_, post) = stack.discord.wait_call("the announcement", 0, WITHIN, |c| {
        c.method == "POST" && c.path == path && !is_board(c.body["content"].as_str().unwrap_or(""))
    });
    let text = post.body["content"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("✅ `bot` deployed `{}` 2 in ", &v2[..10])),
        "{text}"
    );
    stack.discord.assert_payloads_parsed();
}

#[test]
fn a_shard_is_chosen_by_the_environment() {
    // Shard 1 of 2, as its id (from 0) and as Swarm's task slot (from 1).
    for shard in [("DISCORD_SHARD", "1/2"), ("DISCORD_SHARD_SLOT", "2/2")] {
        let stack = Stack::start(BotEnv {
            shard: Some(shard),
            ..Default::default()
        });
        stack.wait_ready(1);
        let identify = stack.discord.gateway(|g| g.identifies[0].clone());
        assert_eq!(identify["shard"], json!([1, 2]), "{shard:?}");
    }
}

#[test]
fn a_slot_beyond_the_shard_count_is_fatal_with_the_reason() {
    // Swarm scaled to 3 replicas of a bot configured for 2 shards: the third must not connect.
    let stack = Stack::start(BotEnv {
        shard: Some(("DISCORD_SHARD_SLOT", "3/2")),
        ..Default::default()
    });
    wait_until("the bot to be FATAL", || {
        stack.program("bot")["state"] == "FATAL"
    });
    let bot = stack.program("bot");
    assert_eq!(bot["spawns"], 1, "{bot}");
    assert_eq!(bot["last_exit_code"], 78, "{bot}");
    assert!(
        stack.err_log("bot").contains("slot 3 of 2 does not exist"),
        "{}",
        stack.err_log("bot")
    );
    assert_eq!(stack.discord.gateway(|g| g.connections), 0);
}

#[test]
fn ready_means_discord_ready_and_commands_registered() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    wait_until("the bot to be RUNNING with its status", || {
        let bot = stack.program("bot");
        bot["state"] == "RUNNING"
            && bot["status_text"]
                == "connected as testbot to 1 guild, shard 0/1; Discord logins: 999 of 1000 left, resets in 5 h 0 min"
    });
    let bot = stack.program("bot");
    assert_eq!(bot["healthy"], true, "{bot}");
    assert!(
        bot["description"]
            .as_str()
            .unwrap()
            .ends_with("; connected as testbot to 1 guild, shard 0/1; Discord logins: 999 of 1000 left, resets in 5 h 0 min"),
        "{bot}"
    );
}

#[test]
fn a_gateway_that_never_sends_ready_is_fatal_after_ready_timeout() {
    let stack = Stack::start(BotEnv {
        withhold_ready: true,
        ready_timeout: "1s",
        ..Default::default()
    });
    wait_until("the bot to identify", || {
        stack.discord.gateway(|g| g.identifies.len()) >= 1
    });
    assert_eq!(stack.program("bot")["state"], "STARTING");
    wait_until("the bot to be FATAL", || {
        stack.program("bot")["state"] == "FATAL"
    });
    let bot = stack.program("bot");
    assert_eq!(bot["description"], "not ready after 1s", "{bot}");
    assert_eq!(bot["spawns"], 2, "one retry (startretries = 1): {bot}");
}

#[test]
fn unacknowledged_heartbeats_make_it_unhealthy_and_restarted() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    wait_until("the bot to be RUNNING", || {
        stack.program("bot")["state"] == "RUNNING"
    });
    // Healthy for longer than the watchdog while heartbeats are acknowledged.
    std::thread::sleep(Duration::from_secs(3));
    let bot = stack.program("bot");
    assert_eq!(
        (bot["spawns"].as_u64(), bot["healthy"].as_bool()),
        (Some(1), Some(true)),
        "{bot}"
    );
    stack.discord.stop_acks();
    wait_until("the supervisor to find the bot unhealthy", || {
        stack.supervisor_output().lines().any(|l| {
            l.contains("unhealthy; restarting it") && l.contains("no WATCHDOG=1 within 2s")
        })
    });
    wait_until("a second bot process", || {
        stack.program("bot")["spawns"].as_u64() >= Some(2)
    });
}

#[test]
fn a_version_that_fails_its_gate_is_announced_then_refused_until_a_fix() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    choose_announce_channel(&stack);
    let announcements = || posted(&stack);
    // A version that dies at once: rolled back, announced, quarantined.
    let work = stack.root().join("work");
    std::fs::write(work.join("run.sh"), "echo broken\nexit 1\n").unwrap();
    git(&work, &["commit", "-q", "-am", "Break it"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let bad = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(stack.ctl(&["deploy", "app"]).0, 0);
    wait_until("the rollback announcement", || !announcements().is_empty());
    assert!(
        announcements()[0].starts_with(&format!("⚠️ `app`: `{}` Break it failed", &bad[..10])),
        "{:?}",
        announcements()
    );
    // The same commit again (a second webhook): refused, and said so.
    assert_eq!(stack.ctl(&["deploy", "app"]).0, 0);
    wait_until("the refusal", || announcements().len() >= 2);
    assert!(
        announcements()[1].starts_with(&format!(
            "⛔ `app`: `{}` Break it failed its health gate before",
            &bad[..10]
        )),
        "{:?}",
        announcements()
    );
    let id = stack
        .discord
        .slash(OWNER_ID, "version", json!([]), json!({}));
    let text = content(&callback(&stack, id)).to_owned();
    assert!(
        text.contains(&format!(
            "quarantined (failed the health gate; a new push or `deploy --force` is needed): `{}`",
            &bad[..10]
        )),
        "{text}"
    );
    // A fix pushed after it deploys.
    let fix = stack.push("4");
    assert_eq!(stack.ctl(&["deploy", "app"]).0, 0);
    wait_until("the fix's announcement", || announcements().len() >= 3);
    assert!(
        announcements()[2].starts_with(&format!("✅ `app` deployed `{}`", &fix[..10])),
        "{:?}",
        announcements()
    );
}

#[test]
fn a_critical_programs_alert_reaches_each_owner_by_direct_message_once() {
    let stack = Stack::start(BotEnv {
        alert_dms: true,
        ..BotEnv::default()
    });
    stack.wait_ready(1);
    choose_announce_channel(&stack);
    let dms = || -> Vec<(u64, String)> {
        stack
            .discord
            .calls()
            .into_iter()
            .filter(|c| c.method == "POST")
            .filter_map(|c| {
                let owner = [OWNER_ID, SECOND_OWNER_ID]
                    .into_iter()
                    .find(|&o| c.path == format!("/api/v10/channels/{}/messages", dm_channel(o)))?;
                Some((owner, c.body["content"].as_str().unwrap_or("").to_owned()))
            })
            .collect()
    };
    std::fs::write(stack.root().join("app/run.sh"), "exit 1\n").unwrap();
    let _ = stack.ctl(&["restart", "app"]);
    wait_until("the DMs", || dms().len() >= 2);
    let expected = "🔴 app is FATAL: Exited too quickly (process log may have details)";
    let mut got = dms();
    got.sort();
    assert_eq!(
        got,
        [
            (OWNER_ID, expected.to_owned()),
            (SECOND_OWNER_ID, expected.to_owned())
        ]
    );
    // The channel has it too; the DM channels were opened with the owners' ids.
    assert!(
        posted(&stack).iter().any(|p| p == expected),
        "{:?}",
        posted(&stack)
    );
    let opened: Vec<String> = stack
        .discord
        .calls()
        .into_iter()
        .filter(|c| c.path == "/api/v10/users/@me/channels")
        .map(|c| c.body["recipient_id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        opened.contains(&OWNER_ID.to_string()) && opened.contains(&SECOND_OWNER_ID.to_string()),
        "{opened:?}"
    );
    // A bot restart does not send them again.
    let (code, out) = stack.ctl(&["restart", "bot"]);
    assert_eq!(code, 0, "{out}");
    stack.wait_ready(2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dms().len(), 2, "{:?}", dms());
}

#[test]
fn a_fatal_program_is_announced_once_even_across_a_bot_restart() {
    let stack = Stack::start(BotEnv::default());
    stack.wait_ready(1);
    choose_announce_channel(&stack);
    let alerts = || -> Vec<String> {
        posted(&stack)
            .into_iter()
            .filter(|c| c.starts_with('🔴') || c.starts_with('🟠') || c.starts_with('🟢'))
            .collect()
    };
    // app breaks (its file, not a deploy) and is restarted: FATAL after its retries.
    std::fs::write(stack.root().join("app/run.sh"), "exit 1\n").unwrap();
    let _ = stack.ctl(&["restart", "app"]);
    wait_until("the FATAL alert", || !alerts().is_empty());
    assert_eq!(
        alerts(),
        ["🔴 app is FATAL: Exited too quickly (process log may have details)"]
    );
    // The bot restarts and reads the recent alerts again: nothing is posted twice.
    let (code, out) = stack.ctl(&["restart", "bot"]);
    assert_eq!(code, 0, "{out}");
    stack.wait_ready(2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(alerts().len(), 1, "{:?}", alerts());
}

/// Discord resets a token after 1,000 logins a day: with 3 left and the default reserve of 5,
/// the bot sends no IDENTIFY and is FATAL with the budget as its reason, alerted once.
#[test]
fn below_the_login_reserve_the_bot_does_not_log_in() {
    let stack = Stack::start(BotEnv {
        logins_left: Some(3),
        ..Default::default()
    });
    wait_description(
        &stack,
        "exited with fatal exit code 78: bot: Discord logins: 3 of 1000 left, resets in 5 h 0 min: not logging in below the reserve of 5 (DISCORD_LOGIN_RESERVE)",
    );
    assert_eq!(
        stack.discord.gateway(|g| g.identifies.len()),
        0,
        "no login spent"
    );
    assert_eq!(stack.discord.gateway(|g| g.connections), 0);
    let alerts = stack.sup.log_events(|e| {
        testkit::supervisor::field(e, "program") == "bot"
            && testkit::supervisor::msg(e).starts_with("bot is FATAL")
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(testkit::supervisor::msg(&alerts[0]).contains("Discord logins: 3 of 1000 left"));
}

/// Waits (10 s at most) for the bot's `status` description to be `want`.
fn wait_description(stack: &Stack, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.program("bot")["description"] != want {
        assert!(
            Instant::now() < deadline,
            "wanted {want:?}:\n{}\n{}",
            stack.program("bot"),
            stack.err_log("bot")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One status message that stays true: posted once in the announce channel, then edited in
/// place at most once per `BOT_STATUS_EVERY_MS` (1 s here) however many changes come, its last
/// content what `supervisor status` says; deleted by someone, posted again exactly once. The
/// presence says "deploying ..." during a deploy and clears after.
#[test]
fn one_status_message_is_edited_in_place_and_the_presence_follows_deploys() {
    let stack = Stack::start(BotEnv {
        status_every_ms: 1000,
        ..Default::default()
    });
    stack.wait_ready(1);
    let (option, resolved) = announce_channel_option();
    let id = stack.discord.slash(OWNER_ID, "settings", option, resolved);
    callback(&stack, id);
    let path = format!("/api/v10/channels/{ANNOUNCE_CHANNEL_ID}/messages");
    let board_posts = || {
        stack
            .discord
            .calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path == path)
            .filter(|c| is_board(c.body["content"].as_str().unwrap_or("")))
            .count()
    };
    let board_edits = || {
        stack
            .discord
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.starts_with(&format!("{path}/")))
            .map(|c| c.body["content"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    // 32 state changes (8 restarts, 4 changes each) in a few seconds.
    let started = Instant::now();
    for _ in 0..8 {
        let (code, out) = stack.ctl(&["restart", "app"]);
        assert_eq!(code, 0, "{out}");
    }
    let took = started.elapsed();
    wait_until("the status message", || board_posts() == 1);
    // Quiet: the last change gets its edit within a second.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(board_posts(), 1, "one message");
    let edits = board_edits();
    let most = took.as_secs() as usize + 3;
    assert!(
        !edits.is_empty() && edits.len() <= most,
        "{} edits in {took:?} (at most {most})",
        edits.len()
    );
    // What it says last is what `supervisor status` says: each program in its state.
    let last = edits.last().unwrap();
    assert!(last.starts_with("🟢 All well\n"), "{last}");
    let (_, status) = stack.ctl(&["status"]);
    for line in status.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(state)) = (words.next(), words.next()) else {
            continue;
        };
        assert!(
            last.lines()
                .any(|l| l.split_whitespace().take(2).eq([name, state])),
            "{name} {state} not in:\n{last}"
        );
    }
    // Someone deletes it: the next change posts a new one, exactly one.
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(stack.root().join("data/bot/settings.json")).unwrap(),
    )
    .unwrap();
    let board_id = settings["guilds"][GUILD_ID.to_string()]["status_message"]
        .as_u64()
        .unwrap();
    stack.discord.delete_message(&board_id.to_string());
    let (code, out) = stack.ctl(&["restart", "app"]);
    assert_eq!(code, 0, "{out}");
    wait_until("a new status message", || board_posts() == 2);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(board_posts(), 2);
    // A deploy: the presence says so, then clears.
    stack.push("2");
    let (code, out) = stack.ctl(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    let state_of = |p: &Value| p["activities"][0]["state"].as_str().map(str::to_owned);
    wait_until("the presence to clear after the deploy", || {
        stack.discord.gateway(|g| {
            let states: Vec<Option<String>> = g.presences.iter().map(state_of).collect();
            let deploying = states
                .iter()
                .position(|s| s.as_deref().is_some_and(|s| s.starts_with("deploying")));
            deploying.is_some_and(|i| states[i..].iter().any(Option::is_none))
        })
    });
}
