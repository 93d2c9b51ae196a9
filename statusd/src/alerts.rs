//! Alerts to a webhook, for when the bot cannot post them because it is the program that is
//! down: statusd forwards the supervisor's alerts about `ALERT_PROGRAMS` (default: `bot`) to
//! `ALERT_WEBHOOK_URL`.
//!
//! Two formats (`ALERT_WEBHOOK_FORMAT`): `discord` (the default), Discord's execute-webhook API
//! (`POST /api/webhooks/{id}/{token}` with `content`, no mentions allowed), honouring 429's
//! `retry_after`; and `json`, the alert itself as a JSON object with a `text` field, for ntfy,
//! Slack-like relays and scripts.
//!
//! Nothing here blocks statusd: the follower hands alerts over without waiting (a full queue
//! drops the newest and counts it), and one task sends them. Alerts are coalesced to one message
//! per program per minute (with a count); a message that cannot be sent is kept and retried with
//! a backoff (at most 100 wait; beyond that the oldest go, and the next message says how many).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::json;
use supervisor_proto::{Alert, Severity};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages waiting to be sent.
const OUTBOX: usize = 100;
/// At most one message per program in this time.
const COALESCE: Duration = Duration::from_secs(60);
/// The longest wait between attempts at a failing URL.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a reply is read (a 429's `retry_after`): the rest is not, however much is sent.
const REPLY_LIMIT: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Discord,
    Json,
}

/// `ALERT_*` settings.
#[derive(Clone)]
pub struct AlertSettings {
    pub url: String,
    pub programs: Vec<String>,
    pub format: Format,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the webhook's token.
        f.debug_struct("AlertSettings")
            .field("url", &"<redacted>")
            .field("programs", &self.programs)
            .field("format", &self.format)
            .finish()
    }
}

/// Hands alerts to the sending task; cheap to clone.
#[derive(Clone, Debug)]
pub struct Alerter {
    tx: mpsc::Sender<Alert>,
}

impl Alerter {
    /// Starts the sending task.
    pub fn start(settings: AlertSettings) -> Self {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(run(settings, rx));
        Self { tx }
    }

    /// Never waits: a full queue drops the alert (and the log says so).
    pub fn push(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            tracing::warn!("alert queue full; an alert was dropped");
        }
    }
}

/// One message to send.
#[derive(Debug)]
struct Message {
    body: serde_json::Value,
}

/// The text people read: the newest alert, and how many more it stands for.
pub fn text(last: &Alert, more: usize, dropped: usize) -> String {
    let icon = match last.severity {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🟢",
    };
    let mut t = format!("{icon} {}", last.message);
    if more > 0 {
        t.push_str(&format!(
            " (and {more} earlier alert{})",
            if more > 1 { "s" } else { "" }
        ));
    }
    if dropped > 0 {
        t.push_str(&format!(" [{dropped} older messages not sent]"));
    }
    t
}

fn message(format: Format, last: &Alert, more: usize, dropped: usize) -> Message {
    let text = text(last, more, dropped);
    let body = match format {
        Format::Discord => json!({
            "content": text,
            "allowed_mentions": {"parse": []},
        }),
        Format::Json => {
            let mut v = serde_json::to_value(last).unwrap_or_default();
            v["text"] = json!(text);
            v["more"] = json!(more);
            v
        }
    };
    Message { body }
}

/// Coalescing and the outbox, as plain values (the sender task drives them).
#[derive(Debug, Default)]
struct Queue {
    /// Per program: when its last message went into the outbox, and what waits since.
    programs: HashMap<String, (Option<Instant>, Vec<Alert>)>,
    outbox: VecDeque<Message>,
    dropped: usize,
}

impl Queue {
    fn add(&mut self, alert: Alert) {
        let entry = self
            .programs
            .entry(alert.program.clone())
            .or_insert((None, Vec::new()));
        entry.1.push(alert);
    }

    /// Moves what may go now into the outbox; returns when the next held-back alert may go.
    fn release(&mut self, format: Format, now: Instant) -> Option<Instant> {
        let mut next = None;
        for (last, pending) in self.programs.values_mut() {
            if pending.is_empty() {
                continue;
            }
            let free_at = last.map(|t| t + COALESCE);
            if free_at.is_some_and(|t| t > now) {
                next = match next {
                    Some(n) if n < free_at.unwrap_or(now) => Some(n),
                    _ => free_at,
                };
                continue;
            }
            let Some(newest) = pending.pop() else {
                continue;
            };
            let more = pending.len();
            pending.clear();
            *last = Some(now);
            if self.outbox.len() >= OUTBOX {
                self.outbox.pop_front();
                self.dropped += 1;
            }
            let dropped = std::mem::take(&mut self.dropped);
            self.outbox
                .push_back(message(format, &newest, more, dropped));
        }
        next
    }
}

/// What came of one attempt.
enum Sent {
    Done,
    /// 429: wait this long, then send the same message again.
    Later(Duration),
    Failed(String),
}

async fn send(client: &reqwest::Client, url: &str, m: &Message) -> Sent {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(m.body.to_string())
        .timeout(SEND_TIMEOUT)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return Sent::Failed(e.without_url().to_string()),
    };
    let status = response.status();
    if status.is_success() {
        return Sent::Done;
    }
    if status.as_u16() == 429 {
        let header = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok());
        let body = capped_text(response, REPLY_LIMIT).await;
        // Discord says `retry_after` (seconds, fractional) in the body; others in the header.
        let secs = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["retry_after"].as_f64())
            .or(header)
            .unwrap_or(1.0)
            .clamp(0.0, MAX_BACKOFF.as_secs_f64());
        return Sent::Later(Duration::from_secs_f64(secs));
    }
    if status.is_redirection() {
        return Sent::Failed(format!(
            "the webhook answered {status}; redirects are not followed (set ALERT_WEBHOOK_URL to where it leads)"
        ));
    }
    Sent::Failed(format!("the webhook answered {status}"))
}

/// The first `limit` bytes of a reply's body, as text; a reply that sends more (or never ends)
/// costs no more memory than that, and the request's deadline still holds.
async fn capped_text(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

async fn run(settings: AlertSettings, mut rx: mpsc::Receiver<Alert>) {
    // A webhook that redirects is not followed: the alert (and any token in its URL's path)
    // would go wherever the answer says, inside the network too.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the alert webhook's HTTP client; no alert is sent");
            return;
        }
    };
    let mut queue = Queue::default();
    let mut backoff = Duration::from_secs(1);
    // When the next attempt may be made (after a failure or a 429).
    let mut not_before = Instant::now();
    loop {
        let now = Instant::now();
        let held_until = queue.release(settings.format, now);
        let wake = match (queue.outbox.is_empty(), held_until) {
            (false, _) => Some(not_before.max(now)),
            (true, h) => h,
        };
        let received = match wake {
            Some(at) => tokio::select! {
                r = rx.recv() => Some(r),
                _ = tokio::time::sleep_until(at) => None,
            },
            None => Some(rx.recv().await),
        };
        match received {
            Some(Some(alert)) => {
                let wanted =
                    settings.programs.is_empty() || settings.programs.contains(&alert.program);
                if wanted {
                    queue.add(alert);
                }
                continue;
            }
            Some(None) => return,
            None => {}
        }
        let Some(m) = queue.outbox.front() else {
            continue;
        };
        if Instant::now() < not_before {
            continue;
        }
        match send(&client, &settings.url, m).await {
            Sent::Done => {
                queue.outbox.pop_front();
                backoff = Duration::from_secs(1);
            }
            Sent::Later(wait) => {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "the alert webhook asks to wait"
                );
                not_before = Instant::now() + wait;
            }
            Sent::Failed(e) => {
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), waiting = queue.outbox.len(), "cannot send an alert; keeping it");
                not_before = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_proto::AlertKind;

    fn alert(program: &str, n: u64) -> Alert {
        Alert {
            id: format!("{n}-{program}"),
            program: program.into(),
            kind: AlertKind::CrashLoop,
            severity: Severity::Warning,
            message: format!("{program} restarted ({n})"),
            at_ms: n,
            critical: true,
        }
    }

    #[test]
    fn a_storm_becomes_one_message_a_minute_per_program() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        for n in 0..1000 {
            q.add(alert("bot", n));
        }
        q.add(alert("web", 1));
        assert_eq!(q.release(Format::Discord, t0), None);
        assert_eq!(q.outbox.len(), 2);
        let texts: Vec<String> = q
            .outbox
            .iter()
            .map(|m| m.body["content"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            texts.contains(&"🟠 bot restarted (999) (and 999 earlier alerts)".to_owned()),
            "{texts:?}"
        );
        // More within the minute wait for it.
        q.add(alert("bot", 1000));
        assert_eq!(
            q.release(Format::Discord, t0 + Duration::from_secs(10)),
            Some(t0 + COALESCE)
        );
        assert_eq!(q.outbox.len(), 2);
        q.release(Format::Discord, t0 + COALESCE);
        assert_eq!(q.outbox.len(), 3);
    }

    #[test]
    fn the_json_format_is_the_alert_with_its_text() {
        let m = message(Format::Json, &alert("bot", 7), 2, 0);
        assert_eq!(m.body["program"], "bot");
        assert_eq!(m.body["kind"], "crash_loop");
        assert_eq!(m.body["more"], 2);
        assert_eq!(
            m.body["text"],
            "🟠 bot restarted (7) (and 2 earlier alerts)"
        );
        let m = message(Format::Discord, &alert("bot", 7), 0, 3);
        assert_eq!(m.body["allowed_mentions"]["parse"], serde_json::json!([]));
        assert!(
            m.body["content"]
                .as_str()
                .unwrap_or_default()
                .ends_with("[3 older messages not sent]")
        );
    }
}
