//! The HTTP endpoints: `POST /webhook`, `POST /webhook/NAME`, `GET /healthz`.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use supervisor_proto::Client;
use tokio::net::TcpListener;

use crate::forge::{self, Decision};
use crate::settings::{Settings, valid_program};

/// Deliveries (body digests) and requested commits remembered to refuse replays.
const REMEMBERED: usize = 1000;
/// How long a call to the supervisor may take; the forge gives up after 5 to 10 s.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(3);

struct App {
    settings: Settings,
    seen: Mutex<Seen>,
    /// For relays to `HOOKD_PEERS` (None: no peers, or no client could be made).
    relay: Option<reqwest::Client>,
}

/// What hookd has acted on, newest last.
#[derive(Default)]
struct Seen {
    bodies: VecDeque<String>,
    /// `program@commit`, in the order they were asked for.
    commits: VecDeque<String>,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = settings.body_limit;
    let relay = if settings.peers.is_empty() {
        None
    } else {
        match crate::relay::client() {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!("no relays to HOOKD_PEERS: cannot make an HTTP client: {e}");
                None
            }
        }
    };
    let app = Arc::new(App {
        settings,
        seen: Mutex::new(Seen::default()),
        relay,
    });
    let webhooks = Router::new()
        .route("/webhook", post(default_program))
        .route("/webhook/{name}", post(named_program))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            only_allowed_sources,
        ));
    let router = Router::new()
        .merge(webhooks)
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    let limits = supervised::http::Limits {
        body_limit: Some(limit as u64),
        ..supervised::http::Limits::default()
    };
    supervised::http::serve(listener, router, limits, Default::default(), shutdown).await
}

/// `HOOKD_ALLOW_FROM`: a delivery from anywhere else is refused before its body is read.
async fn only_allowed_sources(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    // Every header line, in order, is one list (RFC 9110 5.3): a proxy may append a line of its
    // own rather than extend the client's. A line that is not text ends the walk there.
    let lines: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    let client = app.settings.sources.client(peer.ip(), forwarded.as_deref());
    if !app.settings.sources.allows(client) {
        tracing::warn!(%client, %peer, decision = "refused: source not allowed");
        return reply(
            StatusCode::FORBIDDEN,
            json!({"error": "this address may not deliver webhooks here"}),
        );
    }
    next.run(request).await
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn default_program(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let program = app.settings.program.clone();
    handle(&app, &program, &headers, &body).await
}

async fn named_program(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !valid_program(&name) {
        return reply(StatusCode::NOT_FOUND, json!({"error": "no such program"}));
    }
    handle(&app, &name, &headers, &body).await
}

/// Only letters, digits and `-_.` of a header value, for the history (no payload string is
/// used for anything but this record and the log).
fn tidy(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

async fn handle(app: &App, program: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(delivery) = forge::identify(&header) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "not a webhook delivery (no X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event, X-Gogs-Event or X-Gitlab-Event header)"}),
        );
    };
    let forge_name = delivery.forge.name();
    let event = tidy(&delivery.event);
    let id = delivery.id.as_deref().map(tidy).unwrap_or_default();
    let json_body = header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json_body {
        tracing::warn!(
            forge = forge_name,
            event,
            delivery = id,
            decision = "refused: not JSON"
        );
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "send JSON: set the webhook's content type to application/json"}),
        );
    }
    let settings = &app.settings;
    let gitlab_token = settings.gitlab_token.as_ref();
    if let Err(e) = forge::authenticate(
        delivery.forge,
        &header,
        body,
        &settings.secret,
        gitlab_token,
    ) {
        tracing::warn!(forge = forge_name, event, delivery = id, decision = "refused: unauthenticated", reason = %e);
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid or missing signature"}),
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        tracing::warn!(
            forge = forge_name,
            event,
            delivery = id,
            decision = "refused: invalid JSON"
        );
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not valid JSON"}),
        );
    };
    let deployed = app.settings.branch.as_deref();
    match forge::classify(&delivery, &payload, deployed) {
        Decision::Ping => {
            tracing::info!(forge = forge_name, event, delivery = id, decision = "ping");
            reply(StatusCode::OK, json!({"status": "pong"}))
        }
        Decision::Ignore(reason) => {
            tracing::info!(forge = forge_name, event, delivery = id, decision = "ignored", reason = %reason);
            reply(
                StatusCode::ACCEPTED,
                json!({"status": "ignored", "reason": reason}),
            )
        }
        Decision::Deploy { branch, after } => {
            // Replays: the same signed body again (what the signature covers; a delivery id
            // header is not signed), or a push of the commit last asked for.
            // Both per program (`/webhook/NAME`), and the commit per branch: a push the
            // supervisor refuses for its branch must not make the same commit a duplicate on
            // the deploy branch, nor the same body one for another program.
            let body_digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, body));
            let digest = format!("{program}:{body_digest}");
            let commit = format!("{program}@{branch}@{after}");
            if !remember(app, &digest, &commit) {
                tracing::info!(
                    forge = forge_name,
                    event,
                    delivery = id,
                    commit = %after,
                    decision = "duplicate"
                );
                return reply(StatusCode::OK, json!({"status": "duplicate"}));
            }
            let relayed_by = header(crate::relay::RELAYED_BY).map(|by| tidy(&by));
            if let (Some(client), None) = (&app.relay, &relayed_by) {
                crate::relay::spawn(
                    client.clone(),
                    app.settings.peers.clone(),
                    program.to_owned(),
                    headers,
                    Bytes::copy_from_slice(body),
                );
            }
            let mut trigger = format!("hookd: {forge_name} {event} {id}")
                .trim_end()
                .to_owned();
            if let Some(by) = relayed_by {
                trigger = format!("{trigger} relayed by {by}");
            }
            // The supervisor checks the branch unless hookd was given one.
            let pushed = deployed.is_none().then_some(branch.as_str());
            match ask_deploy(&app.settings, program, trigger, pushed, &after).await {
                Ok(Asked::OtherBranch(reason)) => {
                    // The same commit pushed to the deploy branch next must not be a duplicate.
                    forget(app, &digest, &commit);
                    tracing::info!(forge = forge_name, event, delivery = id, decision = "ignored", reason = %reason);
                    reply(
                        StatusCode::ACCEPTED,
                        json!({"status": "ignored", "reason": reason}),
                    )
                }
                Ok(Asked::NotDeployable(message)) => {
                    forget(app, &digest, &commit);
                    tracing::warn!(forge = forge_name, event, delivery = id, program, error = %message, "no deployable program");
                    reply(StatusCode::NOT_FOUND, json!({"error": message}))
                }
                Ok(Asked::Refused(reason)) => {
                    tracing::info!(forge = forge_name, event, delivery = id, decision = "refused", program, commit = %after, %reason);
                    reply(
                        StatusCode::OK,
                        json!({"status": "refused", "program": program, "reason": reason}),
                    )
                }
                Ok(Asked::Started {
                    id: deploy_id,
                    queued,
                }) => {
                    tracing::info!(forge = forge_name, event, delivery = id, decision = "deploy", program, branch, deploy = %deploy_id, queued);
                    reply(
                        StatusCode::ACCEPTED,
                        json!({"status": "deploying", "program": program, "deploy_id": deploy_id, "queued": queued}),
                    )
                }
                Err(e) => {
                    // Let the forge's retry of this delivery through.
                    forget(app, &digest, &commit);
                    tracing::error!(forge = forge_name, event, delivery = id, program, error = %e, "deploy not started");
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": e.to_string()}),
                    )
                }
            }
        }
    }
}

/// Records a delivery (its body's digest) and the commit it asks for; false if the body was
/// seen already, or the commit is the one last asked for (for this program).
fn remember(app: &App, digest: &str, commit: &str) -> bool {
    let mut seen = app
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let program = commit.split('@').next().unwrap_or_default();
    let last_commit = seen
        .commits
        .iter()
        .rev()
        .find(|c| c.split('@').next() == Some(program));
    if seen.bodies.iter().any(|s| s == digest) || last_commit.is_some_and(|c| c == commit) {
        return false;
    }
    if seen.bodies.len() >= REMEMBERED {
        seen.bodies.pop_front();
    }
    if seen.commits.len() >= REMEMBERED {
        seen.commits.pop_front();
    }
    seen.bodies.push_back(digest.to_owned());
    seen.commits.push_back(commit.to_owned());
    true
}

fn forget(app: &App, digest: &str, commit: &str) {
    let mut seen = app
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.bodies.retain(|s| s != digest);
    if seen.commits.back().is_some_and(|c| c == commit) {
        seen.commits.pop_back();
    }
}

/// Why asking the supervisor failed: the forge's retry of the delivery may do better.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error(transparent)]
    Client(#[from] supervisor_proto::ClientError),
    #[error("the supervisor did not answer in time")]
    Timeout,
}

/// One call to the supervisor on a new connection, all within [`SUPERVISOR_TIMEOUT`].
async fn with_client<T, F>(settings: &Settings, call: F) -> Result<T, AskError>
where
    F: AsyncFnOnce(&mut Client) -> Result<T, supervisor_proto::ClientError>,
{
    let asked = async {
        let mut client = Client::connect(
            &settings.socket,
            concat!("hookd/", env!("CARGO_PKG_VERSION")),
        )
        .await?;
        call(&mut client).await
    };
    match tokio::time::timeout(SUPERVISOR_TIMEOUT, asked).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AskError::Timeout),
    }
}

/// What came of asking for a deploy.
enum Asked {
    Started {
        id: String,
        queued: bool,
    },
    /// The pushed commit is held back (quarantined, or failed just before): nothing happens.
    Refused(String),
    /// The push was to another branch than the deploy branch: nothing happens.
    OtherBranch(String),
    /// No such program, or it has no deploy table.
    NotDeployable(String),
}

async fn ask_deploy(
    settings: &Settings,
    program: &str,
    trigger: String,
    branch: Option<&str>,
    after: &str,
) -> Result<Asked, AskError> {
    use supervisor_proto::ErrorKind;
    let asked = with_client(settings, async |c| {
        match c.deploy_push(program, Some(trigger), branch, after).await {
            Ok((id, queued)) => Ok(Asked::Started { id, queued }),
            Err(e) => match e.kind() {
                Some(ErrorKind::Refused) => Ok(Asked::Refused(e.to_string())),
                Some(ErrorKind::OtherBranch) => Ok(Asked::OtherBranch(e.to_string())),
                Some(ErrorKind::UnknownProgram | ErrorKind::NotDeployable) => {
                    Ok(Asked::NotDeployable(e.to_string()))
                }
                _ => Err(e),
            },
        }
    });
    asked.await
}
