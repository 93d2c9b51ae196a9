//! The endpoints. Every one answers from the view, without waiting on the supervisor, but
//! `/audit`, which asks it (within 2 s).

use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::settings::Settings;
use crate::view::{self, Snapshot, View, running_commit};

/// statusd takes no request bodies worth more than this.
const BODY_LIMIT: u64 = 64 * 1024;

#[derive(Clone)]
struct App {
    view: View,
    token: Option<Arc<str>>,
    socket: Arc<std::path::Path>,
    usage: Arc<crate::usage::UsageCache>,
    /// Places for `/live` streams: each renders the page at every change and lives for
    /// minutes, so a client opening hundreds must not multiply that work.
    live_slots: Arc<tokio::sync::Semaphore>,
}

/// The endpoints over `view` (kept current by [`view::follow`]), guarded by `token`; `/audit`
/// asks the supervisor at `socket`. The seam for in-process tests: requests sent to the
/// router, no socket.
pub fn app(view: View, token: Option<&str>, socket: &std::path::Path) -> Router {
    let app = App {
        view,
        token: token.map(Arc::from),
        socket: Arc::from(socket),
        usage: Arc::default(),
        live_slots: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE)),
    };
    let protected = Router::new()
        .route("/", get(page))
        .route("/live", get(live))
        .route("/uptime", get(uptime))
        .route("/status", get(status))
        .route("/commit", get(commit))
        .route("/deploys", get(deploys))
        .route("/audit", get(audit))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), bearer));
    Router::new()
        .route(
            "/ping",
            get(|| async { json_reply(StatusCode::OK, json!({"status": "ok"})) }),
        )
        .route("/health", get(health))
        .merge(protected)
        .with_state(app)
}

/// Follows the supervisor and serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let view: View = Arc::new(RwLock::new(Snapshot::default()));
    let follower = {
        let view = view.clone();
        let socket = settings.socket.clone();
        let alerts = settings.alerts.clone().map(crate::alerts::Alerter::start);
        tokio::spawn(async move { view::follow(&socket, view, alerts).await })
    };
    let sampler = tokio::spawn(sample_memory(view.clone()));
    let prober = settings.tls.clone().map(|probe| {
        let view = view.clone();
        let expiry = crate::tls::ExpiryAlert::new(settings.socket.clone());
        tokio::spawn(crate::tls::run(probe, move |p| {
            expiry.consider(&p);
            view::set_tls(&view, p);
        }))
    });
    let router = app(view, settings.token.as_deref(), &settings.socket);
    // Bounded (timeouts, a connection cap; small answers go out at once, without Nagle).
    let limits = supervised::http::Limits {
        body_limit: Some(BODY_LIMIT),
        ..supervised::http::Limits::default()
    };
    let served =
        supervised::http::serve(listener, router, limits, Default::default(), shutdown).await;
    follower.abort();
    sampler.abort();
    if let Some(prober) = prober {
        prober.abort();
    }
    served
}

/// Once a minute, each running program's resident memory into the history (the page's line).
async fn sample_memory(view: View) {
    let mut every = tokio::time::interval(std::time::Duration::from_millis(
        crate::history::SAMPLE_EVERY_MS,
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let s = view::read(&view);
        if !s.connected {
            continue;
        }
        let pids: Vec<u32> = s.programs.iter().filter_map(|p| p.pid).collect();
        let used = supervisor_proto::resources::usage_by_group(&pids);
        let now = view::now_ms();
        view::history(&view, |h| {
            for p in &s.programs {
                if let Some(u) = p.pid.and_then(|pid| used.get(&pid)) {
                    h.memory(&p.name, u.rss_bytes, now);
                }
            }
            h.prune(now);
        });
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Compares without leaking where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bearer(
    State(app): State<App>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "{\"error\":\"a bearer token is required\"}\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn read(app: &App) -> Snapshot {
    view::read(&app.view)
}

async fn health(State(app): State<App>) -> Response {
    match read(&app).unhealthy() {
        None => json_reply(StatusCode::OK, json!({"healthy": true})),
        Some(reason) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"healthy": false, "reason": reason}),
        ),
    }
}

async fn uptime(State(app): State<App>) -> Response {
    let s = read(&app);
    let programs: Vec<Value> = s
        .programs
        .iter()
        .map(|p| json!({"name": p.name, "state": p.state, "uptime_secs": s.uptime(p)}))
        .collect();
    json_reply(
        StatusCode::OK,
        json!({"stale": !s.connected, "supervisor": {"uptime_secs": s.supervisor_uptime()}, "programs": programs}),
    )
}

async fn status(State(app): State<App>) -> Response {
    let s = read(&app);
    let pids: Vec<u32> = s.programs.iter().filter_map(|p| p.pid).collect();
    let used = app.usage.get(&pids);
    let programs: Vec<Value> = s
        .programs
        .iter()
        .map(|p| {
            // Its process group's memory and CPU (from /proc, at most a second old).
            let usage = p.pid.and_then(|pid| used.get(&pid).copied());
            json!({
                "name": p.name,
                "group": p.group,
                "state": p.state,
                "description": s.description(p),
                "pid": p.pid,
                "uptime_secs": s.uptime(p),
                "spawns": p.spawns,
                "last_exit": p.last_exit,
                "last_exit_code": p.last_exit_code,
                "critical": p.critical,
                "memory_bytes": usage.map(|u| u.rss_bytes),
                "cpu_seconds": usage.map(|u| (u.cpu_seconds * 100.0).round() / 100.0),
                "status_text": p.status_text,
                "healthy": p.healthy,
                "check_failures": p.check_failures,
            })
        })
        .collect();
    let supervisor = s.supervisor.as_ref().map(|sup| {
        json!({"pid": sup.pid, "version": sup.version, "uptime_secs": s.supervisor_uptime(), "shutting_down": sup.shutting_down})
    });
    // The served certificate, when TLS_PROBE is set: `days_left` as of now.
    let tls = s.tls.as_ref().map(|t| {
        let mut v = json!(t);
        v["days_left"] = json!(t.days_left(view::now_ms()));
        v
    });
    json_reply(
        StatusCode::OK,
        json!({"stale": !s.connected, "supervisor": supervisor, "programs": programs, "tls": tls}),
    )
}

async fn commit(State(app): State<App>) -> Response {
    let s = read(&app);
    let programs: Vec<Value> = s
        .programs
        .iter()
        .filter(|p| p.deploy_branch.is_some())
        .map(|p| {
            let quarantined = supervisor_proto::quarantined(&s.deploys, &p.name);
            match running_commit(&s, &p.name) {
                Some(r) => json!({
                    "name": p.name, "branch": p.deploy_branch, "commit": r.commit,
                    "message": r.subject, "deployed_ms": r.at_ms, "deploy_id": r.deploy_id,
                    "deploy_result": r.result, "quarantined": quarantined,
                }),
                None => json!({"name": p.name, "branch": p.deploy_branch, "commit": null, "quarantined": quarantined}),
            }
        })
        .collect();
    json_reply(
        StatusCode::OK,
        json!({"stale": !s.connected, "programs": programs}),
    )
}

async fn deploys(State(app): State<App>) -> Response {
    let s = read(&app);
    let records: Vec<Value> = s
        .deploys
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "program": d.program, "kind": d.kind, "result": d.result,
                "message": d.message, "old_commit": d.old_commit, "new_commit": d.new_commit,
                "new_subject": d.new_subject,
                "started_ms": d.started_ms, "duration_ms": d.duration_ms,
            })
        })
        .collect();
    json_reply(
        StatusCode::OK,
        json!({"stale": !s.connected, "deploys": records}),
    )
}

/// The supervisor's audit trail, asked for each time (it is not in the event stream), within
/// a deadline.
async fn audit(State(app): State<App>) -> Response {
    const LIMIT: u32 = 50;
    let asked = async {
        let mut client = supervisor_proto::Client::connect(
            &app.socket,
            concat!("statusd/", env!("CARGO_PKG_VERSION")),
        )
        .await?;
        client.audit(LIMIT).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), asked).await {
        Ok(Ok(records)) => json_reply(StatusCode::OK, json!({"records": records})),
        Ok(Err(e)) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
        Err(_) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the supervisor did not answer within 2 s"}),
        ),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let s = read(&app);
    let pids: Vec<u32> = s.programs.iter().filter_map(|p| p.pid).collect();
    let body = crate::metrics::render(&s, &app.usage.get(&pids));
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Each running program's resident memory, by name (at most a second old).
fn memory(app: &App, s: &Snapshot) -> std::collections::HashMap<String, u64> {
    let pids: Vec<u32> = s.programs.iter().filter_map(|p| p.pid).collect();
    let used = app.usage.get(&pids);
    s.programs
        .iter()
        .filter_map(|p| Some((p.name.clone(), used.get(&p.pid?)?.rss_bytes)))
        .collect()
}

async fn page(State(app): State<App>) -> Response {
    let s = read(&app);
    let body = crate::page::render(&s, &memory(&app, &s), view::now_ms());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// After a change, how long `/live` waits for more before it sends (a burst is one update).
const LIVE_COALESCE: std::time::Duration = std::time::Duration::from_millis(200);
/// Without a change, how often `/live` sends anyway ("3 min ago" moves on).
const LIVE_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);
/// How long one `/live` stream lasts; the browser reconnects by itself (after `retry`).
const LIVE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

/// `/live` streams open at once; more get 503 (the page still shows, without updates).
pub const MAX_LIVE: usize = 32;

/// `/live`: the page's changing part as server-sent events, sent at once, then on every change
/// the supervisor reports (coalesced) and every 30 s.
async fn live(State(app): State<App>) -> Response {
    use axum::response::sse::{Event, Sse};
    let Ok(slot) = app.live_slots.clone().try_acquire_owned() else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_LIVE} live pages are open already: reload later\n"),
        )
            .into_response();
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("30"));
        return response;
    };
    let changes = read(&app).changes.subscribe();
    let until = tokio::time::Instant::now() + LIVE_LIFETIME;
    // The slot goes with the stream's state: given back when the stream ends or the client
    // hangs up (hyper drops the body).
    let stream = futures_util::stream::unfold(
        (app, changes, true, slot),
        move |(app, mut changes, first, slot)| async move {
            if !first {
                let wait = (tokio::time::Instant::now() + LIVE_REFRESH).min(until);
                match tokio::time::timeout_at(wait, changes.changed()).await {
                    Ok(Err(_)) => return None, // statusd is going away
                    Ok(Ok(())) => tokio::time::sleep(LIVE_COALESCE).await,
                    Err(_) => {}
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                changes.borrow_and_update();
            }
            let s = read(&app);
            let html = crate::page::render_live(&s, &memory(&app, &s), view::now_ms());
            let event = Event::default()
                .retry(std::time::Duration::from_secs(2))
                .data(html);
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (app, changes, false, slot),
            ))
        },
    );
    Sse::new(stream).into_response()
}

/// The endpoints in process: requests sent to the router over a snapshot made here.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
    use super::*;
    use crate::view::test_program;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::{Duration, Instant};
    use supervisor_proto::ProgramState;
    use tower::ServiceExt as _;

    fn router(state: ProgramState) -> Router {
        let mut bot = test_program("bot", state, true);
        if state == ProgramState::Fatal {
            bot.description = "exited with fatal exit code 78: bot: no Discord token".into();
        }
        let snapshot = Snapshot {
            connected: true,
            programs: vec![bot, test_program("web", ProgramState::Running, false)],
            read_at: Instant::now().checked_sub(Duration::from_secs(60)),
            answered_at: Some(Instant::now()),
            ..Snapshot::default()
        };
        let view: View = Arc::new(RwLock::new(snapshot));
        app(
            view,
            Some("t0ken"),
            std::path::Path::new("/nonexistent.sock"),
        )
    }

    async fn get(router: Router, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::get(path);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn health_follows_the_critical_programs() {
        let (code, body) = get(router(ProgramState::Running), "/health", None).await;
        assert_eq!((code, body), (StatusCode::OK, json!({"healthy": true})));
        let (code, body) = get(router(ProgramState::Fatal), "/health", None).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        // Why, as the bot said it.
        assert_eq!(
            body["reason"],
            "bot is FATAL: exited with fatal exit code 78: bot: no Discord token"
        );
    }

    #[tokio::test]
    async fn status_needs_the_token_and_shows_uptimes_as_of_now() {
        let (code, _) = get(router(ProgramState::Running), "/status", None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, body) = get(router(ProgramState::Running), "/status", Some("t0ken")).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["programs"][0]["state"], "RUNNING");
        assert_eq!(body["programs"][0]["description"], "pid 42, uptime 0:01:01");
        let (code, _) = get(router(ProgramState::Running), "/ping", None).await;
        assert_eq!(code, StatusCode::OK);
    }

    #[tokio::test]
    async fn audit_says_when_the_supervisor_cannot_be_asked() {
        let (code, body) = get(router(ProgramState::Running), "/audit", Some("t0ken")).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("/nonexistent.sock"),
            "{body}"
        );
    }
}
