//! Relaying a verified push to the other replicas' hookd (`HOOKD_PEERS`), so that every replica
//! of a scaled-out bot deploys, although the forge's webhook reaches only one of them.
//!
//! The delivery goes on as the forge sent it: the same body and the forge's own headers, with
//! its signature, so each peer verifies it with the shared secret exactly as if the forge had
//! sent it; the relay adds no trust. `X-Hookd-Relayed-By` marks it: a peer does not relay a relayed
//! delivery again (no loops), and nothing else changes for it. A peer name may resolve to this
//! replica too; it then refuses its own relay as a duplicate (the body is remembered).
//! Relays run in the background with a deadline each: the forge's answer does not wait for them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, header};

/// Marks a relayed delivery; its value names the replica that relayed it.
pub const RELAYED_BY: &str = "x-hookd-relayed-by";
/// Per peer: resolving, connecting, sending and the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Headers that belong to one hop, or say who sent it, and are not relayed.
fn hop_header(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::FORWARDED,
    ]
    .contains(name)
        || matches!(
            name.as_str(),
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip" | RELAYED_BY
        )
}

/// This replica's name for the peers' logs: the kernel's host name (a container's id under
/// Docker, the pod's name under Kubernetes).
fn own_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Sends the delivery for `program` to every address the peers resolve to, in the background.
pub fn spawn(
    client: reqwest::Client,
    peers: Vec<String>,
    program: String,
    headers: &HeaderMap,
    body: Bytes,
) {
    let mut relayed = HeaderMap::new();
    for (name, value) in headers {
        if !hop_header(name) {
            relayed.append(name.clone(), value.clone());
        }
    }
    if let Ok(me) = own_name().parse() {
        relayed.insert(RELAYED_BY, me);
    }
    tokio::spawn(async move {
        for peer in peers {
            let addrs = match tokio::time::timeout(DEADLINE, tokio::net::lookup_host(&peer)).await {
                Ok(Ok(addrs)) => addrs.collect::<Vec<SocketAddr>>(),
                Ok(Err(e)) => {
                    tracing::warn!(peer, "cannot relay: cannot resolve: {e}");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(peer, "cannot relay: resolving took over {DEADLINE:?}");
                    continue;
                }
            };
            for addr in addrs {
                let url = format!("http://{addr}/webhook/{program}");
                let sent = client
                    .post(&url)
                    .headers(relayed.clone())
                    .body(body.clone())
                    .timeout(DEADLINE)
                    .send()
                    .await;
                match sent {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let text = answer.text().await.unwrap_or_default();
                        tracing::info!(peer, %addr, program, status, answer = %text.trim(), "relayed");
                    }
                    Err(e) => tracing::warn!(peer, %addr, program, "cannot relay: {e}"),
                }
            }
        }
    });
}

/// The client relays use: no proxy from the environment, no redirects.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(DEADLINE)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forge_headers_go_on_and_hop_headers_stay() {
        for kept in [
            "x-gitea-signature",
            "x-github-event",
            "x-gitlab-token",
            "content-type",
        ] {
            assert!(!hop_header(&HeaderName::from_static(kept)), "{kept}");
        }
        for dropped in ["host", "content-length", "x-forwarded-for", RELAYED_BY] {
            assert!(hop_header(&HeaderName::from_static(dropped)), "{dropped}");
        }
    }
}
