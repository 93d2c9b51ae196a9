//! A fake Discord for the bot's tests: REST and the gateway on 127.0.0.1, enough of both for
//! the real poise/serenity client to connect, register its commands, receive interactions and
//! messages, and answer them. Every payload it sends is first parsed with serenity's own model
//! types (serenity drops an event it cannot parse with only a debug log, so a fake payload
//! that is wrong would otherwise look like a bot that does not answer).
//!
//! It runs on its own Tokio runtime; the tests talk to it from plain threads. Several shards may
//! connect at once: a guild's events go to the connection of the shard that owns the guild.
//! `bot/examples/fake_discord.rs` runs it as a service (the Swarm test), driven over HTTP by
//! `/_fake/...` routes on its REST port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use poise::serenity_prelude as serenity;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub const APP_ID: u64 = 900_000_000_000_000_001;
pub const BOT_ID: u64 = 900_000_000_000_000_002;
/// The application's owner (from `/oauth2/applications/@me`).
pub const OWNER_ID: u64 = 100_000_000_000_000_001;
/// An owner named in `DISCORD_OWNERS`.
pub const SECOND_OWNER_ID: u64 = 100_000_000_000_000_002;
pub const STRANGER_ID: u64 = 200_000_000_000_000_001;
pub const GUILD_ID: u64 = 300_000_000_000_000_001;
pub const CHANNEL_ID: u64 = 400_000_000_000_000_001;
pub const ANNOUNCE_CHANNEL_ID: u64 = 400_000_000_000_000_002;
/// What the fake asks heartbeats at: short, so that tests see several.
pub const HEARTBEAT_MS: u64 = 400;

/// One REST request the bot made.
#[derive(Debug, Clone)]
pub struct RestCall {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

/// Microseconds from the first call of this in the process to `at` (the clock `/_fake/...`
/// reports times on).
fn micros(at: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    at.saturating_duration_since(start).as_micros() as u64
}

/// What the gateway saw.
#[derive(Debug, Default)]
pub struct GatewayLog {
    pub connections: u32,
    /// IDENTIFY payloads (`d`), in order.
    pub identifies: Vec<Value>,
    pub heartbeats: u32,
    /// Close codes the bot sent (None: closed without a close frame).
    pub closes: Vec<Option<u16>>,
    /// Presence updates (op 3 `d`), in order.
    pub presences: Vec<Value>,
    /// RESUME payloads (`d`) of sessions this fake knows, in order (each answered RESUMED).
    pub resumes: Vec<Value>,
}

/// A gateway connection: its writer and its sequence number.
type Connection = (mpsc::UnboundedSender<WsMessage>, Arc<AtomicU64>);

/// A session READY started: the shard it identified with (`(id, count)`), and its sequence
/// number.
type Session = (Option<(u64, u64)>, Arc<AtomicU64>);

/// The shard that owns `guild` among `count` (Discord's rule).
pub fn shard_of(guild: u64, count: u64) -> u64 {
    (guild >> 22) % count.max(1)
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<RestCall>>,
    gateway: Mutex<GatewayLog>,
    /// Sends text frames to the bot's current gateway connection.
    current: Mutex<Option<Connection>>,
    /// The latest connection of each shard that identified with one: `(id, count)`.
    shards: Mutex<HashMap<u64, (u64, Connection)>>,
    /// Payloads that did not parse with serenity's types (a bug in this fake).
    errors: Mutex<Vec<String>>,
    ids: AtomicU64,
    ws_port: u16,
    /// The host name the gateway URLs it hands out carry.
    public_host: String,
    /// What `GET /gateway` answers instead of this fake's gateway.
    gateway_answer: Mutex<Option<String>>,
    /// Accept IDENTIFY but never send READY (a gateway that hangs the handshake).
    withhold_ready: AtomicBool,
    /// Stop acknowledging heartbeats (a stalled gateway).
    no_acks: AtomicBool,
    /// `session_start_limit.remaining` in `GET /gateway/bot`, plus one (0: the default, 999).
    logins_left: AtomicU64,
    /// Messages deleted (by someone in the channel): editing them is a 404.
    deleted: Mutex<Vec<String>>,
    /// Sessions READY started, by id: the shard they identified with and their sequence
    /// number, which a RESUME continues.
    sessions: Mutex<HashMap<String, Session>>,
}

impl Shared {
    fn next_id(&self) -> u64 {
        800_000_000_000_000_000 + self.ids.fetch_add(1, Ordering::SeqCst)
    }
}

/// Parses `value` as serenity's `T`, recording the error if it does not.
fn checked<T: DeserializeOwned>(shared: &Shared, what: &str, value: Value) -> Value {
    if let Err(e) = serde_json::from_value::<T>(value.clone()) {
        let msg = format!(
            "{what} does not parse as {}: {e}\n{value}",
            std::any::type_name::<T>()
        );
        shared.errors.lock().unwrap().push(msg);
    }
    value
}

pub struct FakeDiscord {
    pub http_port: u16,
    pub ws_port: u16,
    shared: Arc<Shared>,
    /// Dropping it stops the fake's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The id of the direct-message channel with `user`.
pub fn dm_channel(user: u64) -> u64 {
    user + 1_000_000
}

pub fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({
        "id": id.to_string(), "username": name, "discriminator": "0", "global_name": name,
        "avatar": null, "bot": bot,
    })
}

fn member(id: u64, name: &str) -> Value {
    json!({
        "user": user(id, name, false), "roles": [], "joined_at": "2026-01-01T00:00:00+00:00",
        "deaf": false, "mute": false, "flags": 0, "permissions": "2147483647",
    })
}

fn message(shared: &Shared, channel: &str, author: Value, content: &str) -> Value {
    json!({
        "id": shared.next_id().to_string(), "channel_id": channel, "author": author,
        "content": content, "timestamp": "2026-11-24T12:00:00+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0,
        "components": [],
    })
}

impl FakeDiscord {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1", 0, 0, "127.0.0.1")
    }

    /// Listens on `ip` (REST on `http_port`, the gateway on `ws_port`; 0: any free port) and
    /// names its gateway `ws://PUBLIC_HOST:PORT`.
    pub fn start_on(ip: &str, http_port: u16, ws_port: u16, public_host: &str) -> Self {
        let http = std::net::TcpListener::bind((ip, http_port)).unwrap();
        let ws = std::net::TcpListener::bind((ip, ws_port)).unwrap();
        http.set_nonblocking(true).unwrap();
        ws.set_nonblocking(true).unwrap();
        let http_port = http.local_addr().unwrap().port();
        let ws_port = ws.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            ws_port,
            public_host: public_host.to_owned(),
            ..Default::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let http = tokio::net::TcpListener::from_std(http).unwrap();
                let ws = tokio::net::TcpListener::from_std(ws).unwrap();
                let app = control_routes().fallback(rest).with_state(state.clone());
                tokio::spawn(async move {
                    let _ = axum::serve(http, app).await;
                });
                tokio::spawn(async move {
                    while let Ok((tcp, peer)) = ws.accept().await {
                        tokio::spawn(gateway_connection(tcp, peer, state.clone()));
                    }
                });
                let _ = stopped.await;
            });
        });
        Self {
            http_port,
            ws_port,
            shared,
            _stop: stop,
        }
    }

    /// Makes `GET /gateway` name `url` instead of this fake's gateway.
    pub fn answer_gateway_with(&self, url: &str) {
        *self.shared.gateway_answer.lock().unwrap() = Some(url.to_owned());
    }

    /// From now on, IDENTIFY gets no READY.
    pub fn withhold_ready(&self) {
        self.shared.withhold_ready.store(true, Ordering::SeqCst);
    }

    /// From now on, `GET /gateway/bot` says `remaining` logins are left today.
    pub fn set_logins_left(&self, remaining: u64) {
        self.shared
            .logins_left
            .store(remaining + 1, Ordering::SeqCst);
    }

    /// Someone deletes message `id`: from now on, editing it is Discord's 404.
    pub fn delete_message(&self, id: &str) {
        self.shared.deleted.lock().unwrap().push(id.to_owned());
    }

    /// Invalidates the session of the current connection, as Discord does (op 9, not
    /// resumable): the client must identify again.
    pub fn invalidate_session(&self) {
        let current = self.shared.current.lock().unwrap().clone();
        let (tx, _) = current.expect("a connection to invalidate");
        self.shared.sessions.lock().unwrap().clear();
        tx.send(WsMessage::Text(
            json!({"op": 9, "s": null, "t": null, "d": false}).to_string(),
        ))
        .unwrap();
    }

    /// From now on, heartbeats get no acknowledgement.
    pub fn stop_acks(&self) {
        self.shared.no_acks.store(true, Ordering::SeqCst);
    }

    pub fn api_base(&self) -> String {
        format!("http://{}:{}", self.shared.public_host, self.http_port)
    }

    pub fn calls(&self) -> Vec<RestCall> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn gateway<T>(&self, f: impl FnOnce(&GatewayLog) -> T) -> T {
        f(&self.shared.gateway.lock().unwrap())
    }

    /// Waits (up to `within`) for a REST call that `matches`, among those made after the
    /// first `after` calls; returns it and its index.
    pub fn wait_call(
        &self,
        what: &str,
        after: usize,
        within: Duration,
        matches: impl Fn(&RestCall) -> bool,
    ) -> (usize, RestCall) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self
                .calls()
                .into_iter()
                .enumerate()
                .skip(after)
                .find(|(_, c)| matches(c))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; calls: {:#?}",
                &self.calls()[after.min(self.calls().len())..]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The payloads that did not parse with serenity's types: none, or the test fails.
    pub fn assert_payloads_parsed(&self) {
        let errors = self.shared.errors.lock().unwrap();
        assert!(errors.is_empty(), "{}", errors.join("\n\n"));
    }

    /// Sends a dispatch (`op` 0) about the test guild to the bot (the shard that owns it).
    pub fn dispatch(&self, event: &str, d: Value) {
        dispatch(&self.shared, event, d).unwrap();
        self.assert_payloads_parsed();
    }

    /// A slash command from `user` in the test channel. `options` as Discord sends them;
    /// `resolved` for channel options. Returns the interaction's id.
    pub fn slash(&self, user_id: u64, name: &str, options: Value, resolved: Value) -> u64 {
        slash(&self.shared, user_id, name, options, resolved).unwrap()
    }

    /// A button press on the bot's message.
    pub fn press(&self, user_id: u64, custom_id: &str) -> u64 {
        let id = self.shared.next_id();
        let msg = message(
            &self.shared,
            &CHANNEL_ID.to_string(),
            user(BOT_ID, "testbot", true),
            "question",
        );
        let d = json!({
            "id": id.to_string(), "application_id": APP_ID.to_string(), "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "guild_id": GUILD_ID.to_string(), "channel_id": CHANNEL_ID.to_string(),
            "member": member(user_id, &format!("user{user_id}")), "message": msg,
            "token": format!("itoken-{id}"), "version": 1, "locale": "en-US",
            "guild_locale": "en-US", "app_permissions": "2147483647", "entitlements": [],
            "attachment_size_limit": 26_214_400,
        });
        checked::<serenity::Interaction>(&self.shared, "INTERACTION_CREATE", d.clone());
        self.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// A message in the test channel (prefix commands).
    pub fn say(&self, user_id: u64, content: &str) {
        let d = channel_message(&self.shared, user_id, content);
        self.dispatch("MESSAGE_CREATE", d);
    }
}

/// A MESSAGE_CREATE's `d`: `content` from `user_id` in the test channel.
fn channel_message(shared: &Shared, user_id: u64, content: &str) -> Value {
    let mut d = message(
        shared,
        &CHANNEL_ID.to_string(),
        user(user_id, &format!("user{user_id}"), false),
        content,
    );
    d["guild_id"] = json!(GUILD_ID.to_string());
    let mut m = member(user_id, "");
    m.as_object_mut().unwrap().remove("user");
    d["member"] = m;
    checked::<serenity::Message>(shared, "MESSAGE_CREATE", d.clone());
    d
}

/// Sends a dispatch (`op` 0) about the test guild to the shard that owns it (the latest
/// connection when no shard identified).
fn dispatch(shared: &Shared, event: &str, d: Value) -> Result<(), String> {
    let connection = {
        let shards = shared.shards.lock().unwrap();
        match shards.values().next() {
            Some(&(count, _)) => shards
                .get(&shard_of(GUILD_ID, count))
                .map(|(_, c)| c.clone()),
            None => shared.current.lock().unwrap().clone(),
        }
    };
    let (tx, seq) =
        connection.ok_or("no bot (or not the guild's shard) is connected to the gateway")?;
    let s = seq.fetch_add(1, Ordering::SeqCst) + 1;
    let frame = json!({"op": 0, "t": event, "s": s, "d": d});
    checked::<serenity::GatewayEvent>(shared, event, frame.clone());
    tx.send(WsMessage::Text(frame.to_string()))
        .map_err(|_| "the guild's shard is gone".to_owned())
}

/// See [`FakeDiscord::slash`].
fn slash(
    shared: &Shared,
    user_id: u64,
    name: &str,
    options: Value,
    resolved: Value,
) -> Result<u64, String> {
    let id = shared.next_id();
    let d = json!({
        "id": id.to_string(), "application_id": APP_ID.to_string(), "type": 2,
        "data": {
            "id": (id + 1).to_string(), "name": name, "type": 1,
            "options": options, "resolved": resolved,
        },
        "guild_id": GUILD_ID.to_string(), "channel_id": CHANNEL_ID.to_string(),
        "member": member(user_id, &format!("user{user_id}")),
        "token": format!("itoken-{id}"), "version": 1, "locale": "en-US",
        "guild_locale": "en-US", "app_permissions": "2147483647", "entitlements": [],
        "attachment_size_limit": 26_214_400,
    });
    checked::<serenity::Interaction>(shared, "INTERACTION_CREATE", d.clone());
    dispatch(shared, "INTERACTION_CREATE", d)?;
    Ok(id)
}

/// `/_fake/...`: what a test outside this process reads and drives (the Swarm test).
///   GET  /_fake/calls     the REST calls, as `[{method, path, body, at_us}]`
///   GET  /_fake/gateway   `{connections, identifies, heartbeats}`
///   POST /_fake/slash     `{user, name, options, resolved}`: a slash command; answers its id
///   POST /_fake/say       `{user, content}`: a message in the test channel; answers
///                         `{sent_us}`, when it was handed to the gateway connection (the
///                         clock of `at_us`)
fn control_routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/_fake/calls",
            get(|State(shared): State<Arc<Shared>>| async move {
                let calls: Vec<Value> = shared
                    .calls
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|c| json!({"method": c.method, "path": c.path, "body": c.body, "at_us": micros(c.at)}))
                    .collect();
                json_response(StatusCode::OK, &Value::from(calls))
            }),
        )
        .route(
            "/_fake/gateway",
            get(|State(shared): State<Arc<Shared>>| async move {
                let g = shared.gateway.lock().unwrap();
                let v = json!({"connections": g.connections, "identifies": g.identifies, "heartbeats": g.heartbeats});
                json_response(StatusCode::OK, &v)
            }),
        )
        .route(
            "/_fake/say",
            post(|State(shared): State<Arc<Shared>>, body: Bytes| async move {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return json_response(StatusCode::BAD_REQUEST, &json!({"error": "not JSON"}));
                };
                let user = v["user"].as_u64().unwrap_or(OWNER_ID);
                let content = v["content"].as_str().unwrap_or_default();
                let d = channel_message(&shared, user, content);
                match dispatch(&shared, "MESSAGE_CREATE", d) {
                    Ok(()) => json_response(StatusCode::OK, &json!({"sent_us": micros(Instant::now())})),
                    Err(e) => json_response(StatusCode::CONFLICT, &json!({"error": e})),
                }
            }),
        )
        .route(
            "/_fake/slash",
            post(|State(shared): State<Arc<Shared>>, body: Bytes| async move {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return json_response(StatusCode::BAD_REQUEST, &json!({"error": "not JSON"}));
                };
                let user = v["user"].as_u64().unwrap_or(OWNER_ID);
                let name = v["name"].as_str().unwrap_or_default();
                match slash(&shared, user, name, v["options"].clone(), v["resolved"].clone()) {
                    Ok(id) => json_response(StatusCode::OK, &json!({"id": id.to_string()})),
                    Err(e) => json_response(StatusCode::CONFLICT, &json!({"error": e})),
                }
            }),
        )
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&body)}))
    };
    shared.calls.lock().unwrap().push(RestCall {
        method: method.to_string(),
        path: path.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    let parts: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    let ok = |v: Value| json_response(StatusCode::OK, &v);
    let bot = || user(BOT_ID, "testbot", true);
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["gateway"]) => {
            let answer = shared.gateway_answer.lock().unwrap().clone();
            let url =
                answer.unwrap_or_else(|| format!("ws://{}:{}", shared.public_host, shared.ws_port));
            ok(json!({"url": url}))
        }
        // What discord.py asks: the URL with the shard count and the login budget.
        ("GET", ["gateway", "bot"]) => {
            let answer = shared.gateway_answer.lock().unwrap().clone();
            let url =
                answer.unwrap_or_else(|| format!("ws://{}:{}", shared.public_host, shared.ws_port));
            let remaining = match shared.logins_left.load(Ordering::SeqCst) {
                0 => 999,
                n => n - 1,
            };
            ok(json!({
                "url": url, "shards": 1,
                "session_start_limit": {
                    "total": 1000, "remaining": remaining, "reset_after": 18_000_000, "max_concurrency": 1,
                },
            }))
        }
        ("GET", ["oauth2", "applications", "@me"]) => {
            let app = json!({
                "id": APP_ID.to_string(), "name": "testbot", "icon": null, "description": "",
                "bot_public": false, "bot_require_code_grant": false,
                "owner": user(OWNER_ID, "owner", false), "verify_key": "00", "team": null,
                "flags": 0,
            });
            ok(checked::<serenity::CurrentApplicationInfo>(
                &shared,
                "application",
                app,
            ))
        }
        ("GET", ["users", "@me"]) => ok(checked::<serenity::CurrentUser>(&shared, "user", bot())),
        ("PUT", ["applications", _, "commands"]) => ok(json!([])),
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        // A direct message: its channel first (one per user), then a message in it.
        ("POST", ["users", "@me", "channels"]) => {
            let recipient = body["recipient_id"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0);
            let dm = json!({
                "id": dm_channel(recipient).to_string(), "type": 1, "last_message_id": null,
                "recipients": [user(recipient, "owner", false)],
            });
            ok(checked::<serenity::PrivateChannel>(
                &shared,
                "DM channel",
                dm,
            ))
        }
        ("POST", ["channels", channel, "messages"]) => {
            let content = body["content"].as_str().unwrap_or("");
            let m = message(&shared, channel, bot(), content);
            ok(checked::<serenity::Message>(&shared, "message", m))
        }
        ("PATCH", ["channels", _, "messages", id])
            if shared.deleted.lock().unwrap().iter().any(|d| d == id) =>
        {
            json_response(
                StatusCode::NOT_FOUND,
                &json!({"message": "Unknown Message", "code": 10008}),
            )
        }
        ("PATCH", ["channels", channel, "messages", _])
        | ("PATCH" | "GET", ["webhooks", _, _, "messages", channel])
        | ("POST", ["webhooks", _, channel]) => {
            let channel = if channel.parse::<u64>().is_ok() {
                (*channel).to_owned()
            } else {
                CHANNEL_ID.to_string()
            };
            let content = body["content"].as_str().unwrap_or("");
            let m = message(&shared, &channel, bot(), content);
            ok(checked::<serenity::Message>(&shared, "message", m))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "Unknown route (fake Discord)", "code": 0}),
        ),
    }
}

async fn gateway_connection(tcp: tokio::net::TcpStream, _peer: SocketAddr, shared: Arc<Shared>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    shared.gateway.lock().unwrap().connections += 1;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<WsMessage>();
    let seq = Arc::new(AtomicU64::new(0));
    // The numbers of the session this connection is in (another's after a RESUME).
    let mut session_seq = seq.clone();
    *shared.current.lock().unwrap() = Some((tx.clone(), seq.clone()));
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let close = matches!(message, WsMessage::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let send = |frame: Value| {
        checked::<serenity::GatewayEvent>(&shared, "gateway frame", frame.clone());
        let _ = tx.send(WsMessage::Text(frame.to_string()));
    };
    send(json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": HEARTBEAT_MS}}));
    let mut closed = None;
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(WsMessage::Text(t)) => t,
            Ok(WsMessage::Close(c)) => {
                let code = c.map(|c| u16::from(c.code));
                // As Discord: closing with 1000 or 1001 ends the session (no RESUME of it).
                if matches!(code, Some(1000 | 1001)) {
                    shared
                        .sessions
                        .lock()
                        .unwrap()
                        .retain(|_, (_, s)| !Arc::ptr_eq(s, &session_seq));
                }
                closed = Some(code);
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match v["op"].as_u64() {
            Some(2) => {
                shared
                    .gateway
                    .lock()
                    .unwrap()
                    .identifies
                    .push(v["d"].clone());
                // serenity sends `Bot TOKEN`, discord.py the bare token: Discord takes both.
                if v["d"]["token"] != "Bot test-token" && v["d"]["token"] != "test-token" {
                    // What Discord does: close with 4004, "Authentication failed".
                    let _ = tx.send(WsMessage::Close(Some(CloseFrame {
                        code: CloseCode::from(4004),
                        reason: "Authentication failed.".into(),
                    })));
                    continue;
                }
                if shared.withhold_ready.load(Ordering::SeqCst) {
                    continue;
                }
                let s = seq.fetch_add(1, Ordering::SeqCst) + 1;
                // A sharded bot hears of the guild only on the shard that owns it.
                let mut guilds = vec![json!({"id": GUILD_ID.to_string(), "unavailable": true})];
                if let (Some(id), Some(count)) =
                    (v["d"]["shard"][0].as_u64(), v["d"]["shard"][1].as_u64())
                {
                    shared
                        .shards
                        .lock()
                        .unwrap()
                        .insert(id, (count, (tx.clone(), seq.clone())));
                    if shard_of(GUILD_ID, count) != id {
                        guilds.clear();
                    }
                }
                let session = format!("session-{}", shared.next_id());
                let shard = match (v["d"]["shard"][0].as_u64(), v["d"]["shard"][1].as_u64()) {
                    (Some(id), Some(count)) => Some((id, count)),
                    _ => None,
                };
                shared
                    .sessions
                    .lock()
                    .unwrap()
                    .insert(session.clone(), (shard, seq.clone()));
                let ready = json!({
                    "v": 10, "user": user(BOT_ID, "testbot", true),
                    "guilds": guilds,
                    "session_id": session,
                    "resume_gateway_url": format!("ws://{}:{}", shared.public_host, shared.ws_port),
                    "shard": v["d"]["shard"].clone(),
                    "application": {"id": APP_ID.to_string(), "flags": 0},
                    "private_channels": [],
                });
                send(json!({"op": 0, "t": "READY", "s": s, "d": ready}));
            }
            Some(3) => shared
                .gateway
                .lock()
                .unwrap()
                .presences
                .push(v["d"].clone()),
            Some(1) => {
                shared.gateway.lock().unwrap().heartbeats += 1;
                if !shared.no_acks.load(Ordering::SeqCst) {
                    send(json!({"op": 11, "s": null, "t": null, "d": null}));
                }
            }
            // RESUME: a session this fake started continues on this connection (with no
            // events to replay: the fake sends none while nobody is connected); any other is
            // invalid, and the client must identify again.
            Some(6) => {
                let known = shared
                    .sessions
                    .lock()
                    .unwrap()
                    .get(v["d"]["session_id"].as_str().unwrap_or_default())
                    .cloned();
                match known {
                    Some((shard, resumed)) => {
                        shared.gateway.lock().unwrap().resumes.push(v["d"].clone());
                        // The session's numbers go on where they were.
                        session_seq = resumed;
                        let seq = session_seq.clone();
                        *shared.current.lock().unwrap() = Some((tx.clone(), seq.clone()));
                        if let Some((id, count)) = shard {
                            shared
                                .shards
                                .lock()
                                .unwrap()
                                .insert(id, (count, (tx.clone(), seq.clone())));
                        }
                        let s = seq.fetch_add(1, Ordering::SeqCst) + 1;
                        send(json!({"op": 0, "t": "RESUMED", "s": s, "d": {}}));
                    }
                    None => send(json!({"op": 9, "s": null, "t": null, "d": false})),
                }
            }
            _ => {}
        }
    }
    shared.gateway.lock().unwrap().closes.push(closed.flatten());
    writer.abort();
}
