//! gatewayd between the real bot and the fake Discord, under a real supervisor: the bot's
//! restarts and deploys cost Discord no login, an event sent while the bot is down is
//! answered once it is back, an invalid session upstream costs exactly one login, and
//! gatewayd's own restart resumes the session instead of identifying.

#![allow(clippy::unwrap_used)]

mod stack;

use std::time::Duration;

use stack::*;

/// Commands registered so far: the bot does it once a process, after its first READY.
fn registrations(stack: &Stack) -> usize {
    stack
        .discord
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/commands"))
        .count()
}

fn wait_registrations(stack: &Stack, n: usize) {
    wait_until(
        &format!("the bot's start number {n} to be served READY"),
        || registrations(stack) >= n,
    );
}

fn identifies(stack: &Stack) -> usize {
    stack.discord.gateway(|g| g.identifies.len())
}

/// The bot's replies to `!status` among the REST calls after the first `after`.
fn status_replies(stack: &Stack, after: usize) -> usize {
    let path = format!("/api/v10/channels/{CHANNEL_ID}/messages");
    stack.discord.calls()[after..]
        .iter()
        .filter(|c| {
            c.method == "POST"
                && c.path == path
                && c.body["content"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Supervisor "))
        })
        .count()
}

/// Says `!status` and waits for the one reply (and a while longer for a second, which fails).
fn answered_once(stack: &Stack, what: &str) {
    let before = stack.discord.calls().len();
    stack.discord.say(STRANGER_ID, "!status");
    wait_until(what, || status_replies(stack, before) >= 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status_replies(stack, before), 1, "{what}: answered once");
}

fn metric(stack: &Stack, name: &str) -> Option<f64> {
    let config = std::fs::read_to_string(stack.root().join("supervisor.toml")).unwrap();
    let port = config
        .split("GATEWAY_METRICS_LISTEN = \"127.0.0.1:")
        .nth(1)?
        .split('"')
        .next()?;
    let (status, text) = testkit::http(port.parse().ok()?, "GET", "/metrics", &[], b"");
    if status != 200 {
        return None;
    }
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn restarts_and_deploys_cost_discord_nothing_and_lose_no_event() {
    // Three logins left today, below the bot's reserve of 5: through gatewayd its starts spend
    // none, so it starts anyway.
    let stack = Stack::start(BotEnv {
        gatewayd: true,
        self_deploy: true,
        logins_left: Some(3),
        ..Default::default()
    });
    wait_registrations(&stack, 1);
    assert_eq!(identifies(&stack), 1);
    let identify = stack.discord.gateway(|g| g.identifies[0].clone());
    assert_eq!(
        identify["intents"], 37377,
        "gatewayd identifies with DISCORD_INTENTS"
    );
    answered_once(&stack, "the bot answering through gatewayd");

    // 10 restarts and 3 deploys of the bot: each new bot is served READY by gatewayd.
    let mut starts = 1;
    for _ in 0..10 {
        let (code, out) = stack.ctl(&["restart", "bot"]);
        assert_eq!(code, 0, "{out}");
        starts += 1;
        wait_registrations(&stack, starts);
    }
    for version in ["2", "3", "4"] {
        stack.push(version);
        let (code, out) = stack.ctl(&["deploy", "bot", "--wait"]);
        assert_eq!(code, 0, "{out}");
        starts += 1;
        wait_registrations(&stack, starts);
    }
    assert_eq!(
        identifies(&stack),
        1,
        "no IDENTIFY upstream after the first"
    );
    assert_eq!(
        stack.discord.gateway(|g| g.connections),
        1,
        "one connection to Discord"
    );
    answered_once(&stack, "the 14th bot answering");

    // A message while the bot is down waits in gatewayd and is answered once it is back.
    let (code, out) = stack.ctl(&["stop", "bot"]);
    assert_eq!(code, 0, "{out}");
    let before = stack.discord.calls().len();
    stack.discord.say(STRANGER_ID, "!status");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_replies(&stack, before), 0, "nobody to answer yet");
    assert_eq!(metric(&stack, "gatewayd_events_waiting"), Some(1.0));
    let (code, out) = stack.ctl(&["start", "bot"]);
    assert_eq!(code, 0, "{out}");
    wait_until(
        "the message sent while the bot was down to be answered",
        || status_replies(&stack, before) >= 1,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status_replies(&stack, before), 1, "answered exactly once");
    assert_eq!(metric(&stack, "gatewayd_events_waiting"), Some(0.0));
    assert_eq!(metric(&stack, "gatewayd_events_dropped_total"), Some(0.0));

    // Discord invalidates the session: gatewayd identifies once, the bot is told and is
    // served the new session.
    stack.discord.invalidate_session();
    wait_until("gatewayd to identify again", || identifies(&stack) >= 2);
    answered_once(&stack, "the bot answering on the new session");
    assert_eq!(
        identifies(&stack),
        2,
        "exactly one IDENTIFY for an invalid session"
    );

    // gatewayd's own restart resumes the kept session: one RESUME, no IDENTIFY.
    let bot_pid = stack.program("bot")["pid"].clone();
    let (code, out) = stack.ctl(&["restart", "gatewayd"]);
    assert_eq!(code, 0, "{out}");
    wait_until("gatewayd to resume", || {
        stack.discord.gateway(|g| g.resumes.len()) >= 1
    });
    answered_once(&stack, "the bot answering through the restarted gatewayd");
    assert_eq!(
        stack.discord.gateway(|g| g.resumes.len()),
        1,
        "{}{}",
        stack.log("gatewayd"),
        stack.err_log("gatewayd")
    );
    assert_eq!(identifies(&stack), 2, "no IDENTIFY for gatewayd's restart");
    assert_eq!(
        stack.program("bot")["pid"],
        bot_pid,
        "the bot itself kept running: {}\n{}",
        stack.err_log("bot"),
        stack.log("bot")
    );
    let mode = std::fs::metadata(stack.root().join("data/gatewayd/session.json"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "the kept session is its owner's only"
    );
    stack.discord.assert_payloads_parsed();
    assert!(
        !stack.err_log("bot").contains("did not close"),
        "gatewayd answers a bot's close frame: {}",
        stack.err_log("bot")
    );
}
