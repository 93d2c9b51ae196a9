//! The hub alone: frames in as Discord and bots send them, frames out as bots receive them.

use super::*;
use std::time::Duration;

/// A bot's connection as the hub sees it: what it was sent, with the writer's mark kept as a
/// real writer keeps it (each frame taken counts as written).
struct Bot {
    id: ConnId,
    rx: mpsc::Receiver<Out>,
    written: Arc<AtomicU64>,
}

impl Bot {
    fn connect(hub: &mut Hub, id: ConnId) -> Self {
        let (tx, rx) = mpsc::channel(1000);
        let written = Arc::new(AtomicU64::new(0));
        hub.connected(id, tx, written.clone());
        let mut bot = Self { id, rx, written };
        let hello = bot.frames();
        assert_eq!(hello[0]["op"], 10, "{hello:?}");
        bot
    }

    /// What it was sent since the last call: text frames as JSON, a close as `{"close": code}`.
    fn frames(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(frame) = self.rx.try_recv() {
            match frame {
                Out::Text(text, seq) => {
                    self.written.fetch_max(seq, Ordering::Relaxed);
                    out.push(serde_json::from_str(&text).unwrap());
                }
                Out::Close(code, _) => out.push(json!({"close": code})),
            }
        }
        out
    }

    /// Each frame as `T s` (dispatches), `op N` or `close N`.
    fn seen(&mut self) -> Vec<String> {
        self.frames()
            .iter()
            .map(|f| match (&f["close"], f["op"].as_u64()) {
                (Value::Number(c), _) => format!("close {c}"),
                (_, Some(0)) => {
                    let t = f["t"].as_str().unwrap();
                    match f["d"]["content"].as_str() {
                        Some(c) => format!("{t} {} {c}", f["s"]),
                        None => format!("{t} {}", f["s"]),
                    }
                }
                (_, Some(op)) => format!("op {op} {}", f["d"]),
                _ => panic!("{f}"),
            })
            .collect()
    }

    fn send(&self, hub: &mut Hub, frame: Value) -> Vec<Effect> {
        hub.from_bot(self.id, &frame.to_string(), Instant::now())
    }
}

fn hub(capacity: usize) -> (Hub, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let config = Config {
        token: "tok".into(),
        intents: 4609,
        capacity,
        url: "ws://127.0.0.1:7878".into(),
    };
    (Hub::new(config, None, stats.clone()), stats)
}

fn up(hub: &mut Hub, frame: Value) -> Vec<Effect> {
    hub.from_upstream(&frame.to_string())
}

fn ready(hub: &mut Hub, session: &str) -> Vec<Effect> {
    up(hub, json!({"op": 10, "d": {"heartbeat_interval": 400}}));
    up(
        hub,
        json!({"op": 0, "t": "READY", "s": 1, "d": {
            "v": 10, "user": {"id": "2", "username": "bot"}, "session_id": session,
            "resume_gateway_url": "wss://resume.discord.gg",
            "guilds": [{"id": "1", "unavailable": true}], "shard": [0, 1],
            "application": {"id": "3", "flags": 0},
        }}),
    )
}

/// Discord's events on the held session, numbered on from `s`.
fn message(hub: &mut Hub, s: u64, content: &str) {
    up(
        hub,
        json!({"op": 0, "t": "MESSAGE_CREATE", "s": s, "d": {"id": s.to_string(), "content": content}}),
    );
}

fn identify() -> Value {
    json!({"op": 2, "d": {"token": "Bot tok", "intents": 4609, "shard": [0, 1], "properties": {}}})
}

fn resume(session: &str, seq: u64) -> Value {
    json!({"op": 6, "d": {"token": "Bot tok", "session_id": session, "seq": seq}})
}

fn session_of(frames: &[Value]) -> String {
    frames[0]["d"]["session_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_bot_is_served_ready_and_the_guilds_then_events_as_they_come() {
    let (mut hub, stats) = hub(100);
    let mut first = Bot::connect(&mut hub, 1);
    assert!(first.send(&mut hub, identify()).is_empty());
    assert!(first.frames().is_empty(), "it waits for the held session");
    let effects = ready(&mut hub, "up-1");
    assert_eq!(effects, vec![Effect::Ready]);
    let frames = first.frames();
    assert_eq!(frames.len(), 1);
    let d = &frames[0]["d"];
    assert_eq!(frames[0]["t"], "READY");
    assert_ne!(d["session_id"], "up-1", "the bot's session is its own");
    assert_eq!(
        d["resume_gateway_url"], "ws://127.0.0.1:7878",
        "it resumes here"
    );
    assert_eq!(d["user"]["username"], "bot");
    assert_eq!(d["guilds"], json!([{"id": "1", "unavailable": true}]));
    up(
        &mut hub,
        json!({"op": 0, "t": "GUILD_CREATE", "s": 2, "d": {"id": "1", "name": "ops", "channels": []}}),
    );
    message(&mut hub, 3, "hello");
    assert_eq!(first.seen(), ["GUILD_CREATE 2", "MESSAGE_CREATE 3 hello"]);

    // A second bot (a deploy's new version) is served the guild from the cache and takes
    // the events over; the first, still connected, gets no more.
    let mut second = Bot::connect(&mut hub, 2);
    second.send(&mut hub, identify());
    assert_eq!(second.seen(), ["READY 1", "GUILD_CREATE 2"]);
    message(&mut hub, 4, "after");
    assert_eq!(second.seen(), ["MESSAGE_CREATE 3 after"]);
    assert!(first.frames().is_empty());
    assert_eq!(stats.upstream_identifies.load(Ordering::Relaxed), 1);
    assert_eq!(stats.bot_identifies.load(Ordering::Relaxed), 2);
}

#[test]
fn events_while_no_bot_reads_wait_for_the_next_one_and_are_delivered_once() {
    let (mut hub, stats) = hub(100);
    ready(&mut hub, "up-1");
    let mut first = Bot::connect(&mut hub, 1);
    first.send(&mut hub, identify());
    message(&mut hub, 2, "one");
    assert_eq!(first.seen(), ["READY 1", "MESSAGE_CREATE 2 one"]);
    // Queued for it, but it went away before its writer wrote them: not delivered.
    message(&mut hub, 3, "two");
    hub.disconnected(1);
    message(&mut hub, 4, "three");
    assert_eq!(stats.waiting.load(Ordering::Relaxed), 2);

    let mut second = Bot::connect(&mut hub, 2);
    second.send(&mut hub, identify());
    assert_eq!(
        second.seen(),
        ["READY 1", "MESSAGE_CREATE 2 two", "MESSAGE_CREATE 3 three"]
    );
    assert_eq!(stats.waiting.load(Ordering::Relaxed), 0);
    hub.disconnected(2);
    let mut third = Bot::connect(&mut hub, 3);
    third.send(&mut hub, identify());
    assert_eq!(third.seen(), ["READY 1"], "nothing twice");
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn a_full_buffer_drops_the_oldest_event_no_bot_had_and_counts_it() {
    let (mut hub, stats) = hub(3);
    ready(&mut hub, "up-1");
    for (s, text) in (2..).zip(["a", "b", "c", "d", "e"]) {
        message(&mut hub, s, text);
    }
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
    assert_eq!(stats.waiting.load(Ordering::Relaxed), 3);
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, identify());
    assert_eq!(
        bot.seen(),
        [
            "READY 1",
            "MESSAGE_CREATE 2 c",
            "MESSAGE_CREATE 3 d",
            "MESSAGE_CREATE 4 e"
        ]
    );
    // Delivered events leave the full buffer without counting as drops.
    for s in 7..12 {
        message(&mut hub, s, "live");
    }
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
}

#[test]
fn a_resume_replays_what_the_bot_missed_and_nothing_it_had() {
    let (mut hub, stats) = hub(4);
    ready(&mut hub, "up-1");
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, identify());
    message(&mut hub, 2, "one");
    let frames = bot.frames();
    let session = session_of(&frames);
    assert_eq!(frames[1]["s"], 2);
    hub.disconnected(1);
    message(&mut hub, 3, "two");
    message(&mut hub, 4, "three");

    let mut again = Bot::connect(&mut hub, 2);
    again.send(&mut hub, resume(&session, 2));
    assert_eq!(
        again.seen(),
        [
            "MESSAGE_CREATE 3 two",
            "MESSAGE_CREATE 4 three",
            "RESUMED 4"
        ]
    );
    message(&mut hub, 5, "live");
    assert_eq!(again.seen(), ["MESSAGE_CREATE 5 live"]);
    assert_eq!(stats.bot_resumes.load(Ordering::Relaxed), 1);

    // Unknown session; from before the replay's end; from events the buffer no longer holds.
    let mut stranger = Bot::connect(&mut hub, 3);
    stranger.send(&mut hub, resume("nope", 2));
    assert_eq!(stranger.seen(), ["op 9 false"]);
    let mut early = Bot::connect(&mut hub, 4);
    early.send(&mut hub, resume(&session, 0));
    assert_eq!(early.seen(), ["op 9 false"]);
    hub.disconnected(2);
    for s in 6..11 {
        message(&mut hub, s, "missed");
    }
    let mut late = Bot::connect(&mut hub, 5);
    late.send(&mut hub, resume(&session, 5));
    assert_eq!(late.seen(), ["op 9 false"], "4 kept, 5 missed");
    // Told so, it identifies on the same connection and gets what no bot had.
    late.send(&mut hub, identify());
    assert_eq!(late.seen().len(), 1 + 4);
}

#[test]
fn a_client_is_held_to_discord_s_rules() {
    let (mut hub, _) = hub(10);
    ready(&mut hub, "up-1");
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, json!({"op": 2, "d": {"token": "Bot other"}}));
    assert_eq!(bot.seen(), ["close 4004"], "a wrong token");
    let mut bot = Bot::connect(&mut hub, 2);
    hub.from_bot(2, "{not json", Instant::now());
    assert_eq!(bot.seen(), ["close 4002"]);
    let mut bot = Bot::connect(&mut hub, 3);
    bot.send(&mut hub, json!({"op": 99, "d": null}));
    assert_eq!(bot.seen(), ["close 4001"]);
    let mut bot = Bot::connect(&mut hub, 4);
    bot.send(&mut hub, json!({"op": 3, "d": {"status": "idle"}}));
    assert_eq!(bot.seen(), ["close 4003"], "a presence before IDENTIFY");
    let mut bot = Bot::connect(&mut hub, 5);
    bot.send(
        &mut hub,
        json!({"op": 2, "d": {"token": "tok", "shard": [1, 2]}}),
    );
    assert_eq!(bot.seen(), ["close 4010"], "one session, one shard");

    let mut bot = Bot::connect(&mut hub, 6);
    bot.send(&mut hub, identify());
    bot.frames();
    bot.send(&mut hub, identify());
    assert_eq!(bot.seen(), ["close 4005"]);

    let mut bot = Bot::connect(&mut hub, 7);
    bot.send(&mut hub, identify());
    bot.frames();
    let presence =
        json!({"op": 3, "d": {"status": "dnd", "activities": [], "afk": false, "since": null}});
    assert_eq!(
        bot.send(&mut hub, presence.clone()),
        vec![Effect::Upstream(presence.to_string())]
    );
    bot.send(&mut hub, json!({"op": 1, "d": 1}));
    assert_eq!(bot.seen(), ["op 11 null"]);
    // The held session's heartbeat interval is 400 ms: 600 ms of silence ends it.
    hub.tick(Instant::now() + Duration::from_millis(500));
    assert!(bot.frames().is_empty());
    hub.tick(Instant::now() + Duration::from_millis(700));
    assert_eq!(bot.seen(), ["close 4009"]);

    let mut bot = Bot::connect(&mut hub, 8);
    for _ in 0..COMMANDS_PER_MINUTE {
        bot.send(&mut hub, json!({"op": 1, "d": null}));
    }
    assert_eq!(bot.frames().len(), COMMANDS_PER_MINUTE);
    bot.send(&mut hub, json!({"op": 1, "d": null}));
    assert_eq!(bot.seen(), ["close 4008"], "the 121st command in a minute");
}

#[test]
fn an_invalid_session_upstream_is_passed_on_and_the_new_session_served() {
    let (mut hub, stats) = hub(10);
    ready(&mut hub, "up-1");
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, identify());
    bot.frames();
    // Resumable: the shard resumes; the bot hears nothing.
    up(&mut hub, json!({"op": 9, "d": true}));
    assert!(bot.frames().is_empty());
    up(&mut hub, json!({"op": 9, "d": false}));
    assert_eq!(bot.seen(), ["op 9 false"]);
    assert_eq!(hub.upstream(), None, "nothing to resume");
    bot.send(&mut hub, identify());
    assert!(bot.frames().is_empty(), "it waits for the new session");
    ready(&mut hub, "up-2");
    assert_eq!(bot.seen(), ["READY 1"]);
    assert_eq!(hub.upstream().unwrap().session_id, "up-2");
    assert_eq!(stats.invalid_sessions.load(Ordering::Relaxed), 1);
    assert_eq!(stats.upstream_identifies.load(Ordering::Relaxed), 2);
}

#[test]
fn a_fatal_close_upstream_closes_bots_with_its_code() {
    let (mut hub, _) = hub(10);
    ready(&mut hub, "up-1");
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, identify());
    bot.frames();
    assert!(hub.upstream_closed(None).is_empty(), "the shard reconnects");
    assert!(hub.upstream_closed(Some(4000)).is_empty());
    assert!(bot.frames().is_empty());
    assert_eq!(hub.upstream_closed(Some(4014)), vec![Effect::Fatal(4014)]);
    assert_eq!(bot.seen(), ["close 4014"]);
}

#[test]
fn what_is_kept_lets_the_next_gatewayd_resume_discord_and_its_bots() {
    let (mut hub, _) = hub(10);
    ready(&mut hub, "up-1");
    let mut bot = Bot::connect(&mut hub, 1);
    bot.send(&mut hub, identify());
    message(&mut hub, 2, "one");
    let session = session_of(&bot.frames());
    message(&mut hub, 3, "unread");
    // Queued for the bot, not written when gatewayd stops: the next gatewayd has it.
    hub.shutdown();
    assert_eq!(bot.seen(), ["MESSAGE_CREATE 3 unread", "close 4000"]);
    let kept: Kept =
        serde_json::from_str(&serde_json::to_string(&hub.snapshot().unwrap()).unwrap()).unwrap();
    assert_eq!(
        kept.upstream(),
        Some(&Upstream {
            session_id: "up-1".into(),
            seq: 3,
            resume_url: "wss://resume.discord.gg".into()
        })
    );

    let stats = Arc::new(Stats::default());
    let mut next = Hub::new(hub.config.clone(), Some(kept), stats);
    // Its bot resumes from the kept events before Discord has answered the RESUME.
    let mut bot = Bot::connect(&mut next, 1);
    bot.send(&mut next, resume(&session, 2));
    assert_eq!(bot.seen(), ["MESSAGE_CREATE 3 unread", "RESUMED 3"]);
    // A new bot waits until Discord says RESUMED.
    let mut other = Bot::connect(&mut next, 2);
    other.send(&mut next, identify());
    assert!(other.frames().is_empty());
    let effects = up(&mut next, json!({"op": 0, "t": "RESUMED", "s": 4, "d": {}}));
    assert_eq!(effects, vec![Effect::Ready]);
    assert_eq!(other.seen(), ["READY 1"]);
    assert_eq!(next.upstream().unwrap().seq, 4);
}
