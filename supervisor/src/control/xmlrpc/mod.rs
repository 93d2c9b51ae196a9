//! supervisord's XML-RPC interface (`POST /RPC2`), on the control socket beside the JSON
//! protocol: a connection whose first bytes are an HTTP request is served here, so that
//! supervisord's own `supervisorctl -s unix:///PATH`, its monitors (superlance, Telegraf,
//! Netdata, CeSI) and Ansible's supervisorctl module talk to this supervisor unchanged.
//!
//! Each call becomes the control request it stands for and goes through the same grants, audit
//! trail and actor as the JSON protocol ([`super::answer`]); log reads happen on a blocking
//! thread, never on the actor's.
//!
//! # Layout
//! - this file: HTTP/1.1 framing (keep-alive, size caps, deadlines).
//! - [`methods`]: the methods, and how each maps to a control request.
//! - [`help`]: the methods' list, signatures and help.
//! - [`names`]: supervisord's namespecs (`group:name`, `group:*`).
//! - [`write`]: answers written as XML-RPC text.
//! - [`auth`]: basic authentication, for the TCP port.
//! - [`faults`]: supervisord's fault codes.
//! - [`info`]: the process and configuration structs, as supervisord fills them.
//! - [`logs`]: byte-offset log reads as supervisord's `readFile`/`tailFile` do them.
//! - [`logtail`]: `GET /logtail/NAME`, the follow `supervisorctl tail -f` reads.

pub mod auth;
pub mod faults;
pub mod help;
pub mod info;
pub mod logs;
pub mod logtail;
pub mod methods;
pub mod names;
pub mod write;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Shared;
use super::audit::Peer;

/// A request's head (request line and headers) may be this large.
const MAX_HEAD: usize = 16 * 1024;
/// A call's body may be this large: a `system.multicall` of a few thousand calls fits.
pub const MAX_BODY: usize = 1024 * 1024;
/// A request, once begun, must arrive within this; a reply must be taken within this.
const DEADLINE: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(300);
/// How long a closing connection waits for the client's own close.
const LINGER: Duration = Duration::from_secs(1);

/// One parsed request: what the framing needs of it.
struct Head {
    method: String,
    path: String,
    /// `Connection: close`, or HTTP/1.0 without `keep-alive`.
    close: bool,
    length: Option<usize>,
    chunked: bool,
    /// The `Authorization` header, as sent.
    authorization: Option<String>,
    /// Bytes of the body already read past the head.
    consumed: usize,
}

/// Serves HTTP requests on one connection until the client closes it, goes idle, or sends
/// something that is not HTTP/1.x. With `auth` (the TCP port), every request must carry the
/// credentials; the Unix socket knows its peer by uid instead.
pub async fn connection<S>(
    mut stream: S,
    peer: Peer,
    shared: Shared,
    auth: Option<&auth::Credentials>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let served = serve(&mut stream, &peer, &shared, auth).await;
    linger(&mut stream).await;
    served
}

/// A close the client sees after its answer: our side shut for writing, then what it still
/// sends read and dropped until it closes too (for at most [`LINGER`]), so that a client still
/// writing gets its answer rather than a broken pipe.
async fn linger<S>(stream: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

async fn serve<S>(
    stream: &mut S,
    peer: &Peer,
    shared: &Shared,
    auth: Option<&auth::Credentials>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = stream;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&mut stream, &mut buf).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(status) => {
                respond(&mut stream, status, "text/plain", status.1.as_bytes(), true).await?;
                return Ok(());
            }
        };
        if auth.is_some_and(|a| !a.admit(head.authorization.as_deref())) {
            tracing::warn!(peer = ?peer.process, "XML-RPC request without valid credentials");
            let status = (401, "Unauthorized");
            let extra = "WWW-Authenticate: Basic realm=\"default\"\r\n";
            respond_with(
                &mut stream,
                status,
                "text/plain",
                b"Unauthorized",
                true,
                extra,
            )
            .await?;
            return Ok(());
        }
        if head.chunked {
            let status = (411, "Length Required");
            respond(&mut stream, status, "text/plain", b"Length Required", true).await?;
            return Ok(());
        }
        let length = head.length.unwrap_or(0);
        if length > MAX_BODY {
            let text = format!("a call may be {MAX_BODY} bytes at most");
            respond(
                &mut stream,
                (413, "Payload Too Large"),
                "text/plain",
                text.as_bytes(),
                true,
            )
            .await?;
            return Ok(());
        }
        // The body: what came with the head, then the rest.
        buf.drain(..head.consumed);
        while buf.len() < length {
            let mut chunk = [0u8; 8192];
            let want = (length - buf.len()).min(chunk.len());
            let n = match tokio::time::timeout(DEADLINE, stream.read(&mut chunk[..want])).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        match (head.method.as_str(), head.path.as_str()) {
            ("POST", "/RPC2") => {
                let reply = methods::handle(shared, peer, &body).await;
                respond(
                    &mut stream,
                    (200, "OK"),
                    "text/xml",
                    reply.as_bytes(),
                    head.close,
                )
                .await?;
            }
            ("GET", path) if path.starts_with("/logtail/") => {
                match logtail::file_of(shared, peer, path).await {
                    Ok(file) => return logtail::follow(stream, file).await,
                    Err(status) => {
                        respond(&mut stream, status, "text/plain", status.1.as_bytes(), true)
                            .await?;
                        return Ok(());
                    }
                }
            }
            (_, "/RPC2") => {
                respond(
                    &mut stream,
                    (405, "Method Not Allowed"),
                    "text/plain",
                    b"XML-RPC calls are POSTed",
                    head.close,
                )
                .await?;
            }
            _ => {
                respond(
                    &mut stream,
                    (404, "Not Found"),
                    "text/plain",
                    b"Not Found",
                    head.close,
                )
                .await?;
            }
        }
        if head.close {
            return Ok(());
        }
    }
}

/// Reads until a complete head is in `buf`: `Ok(None)` at a clean end of stream or when the
/// connection idles out; `Err` with the status to answer for what cannot be served.
async fn read_head<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<Head>, (u16, &'static str)>
where
    S: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(buf) {
                Ok(httparse::Status::Complete(consumed)) => {
                    return Ok(Some(head_of(&request, consumed)?));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err((431, "Request Header Fields Too Large"));
                }
                Err(_) => return Err((400, "Bad Request")),
            }
            if buf.len() >= MAX_HEAD {
                return Err((431, "Request Header Fields Too Large"));
            }
        }
        // Between requests the connection may idle; a request begun must be finished.
        let wait = if buf.is_empty() { IDLE } else { DEADLINE };
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn head_of(
    request: &httparse::Request<'_, '_>,
    consumed: usize,
) -> Result<Head, (u16, &'static str)> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let length = match header("content-length") {
        Some(text) => Some(text.parse::<usize>().map_err(|_| (400, "Bad Request"))?),
        None => None,
    };
    let connection = header("connection").unwrap_or_default();
    let close = match request.version {
        Some(0) => !connection.contains("keep-alive"),
        _ => connection.contains("close"),
    };
    Ok(Head {
        method: request.method.unwrap_or_default().to_owned(),
        path: request.path.unwrap_or_default().to_owned(),
        close,
        length,
        chunked: header("transfer-encoding").is_some_and(|t| t.contains("chunked")),
        authorization: request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned()),
        consumed,
    })
}

/// Writes one response within [`DEADLINE`].
async fn respond<S>(
    stream: &mut S,
    status: (u16, &str),
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    respond_with(stream, status, content_type, body, close, "").await
}

/// [`respond`], with `extra` header lines (each ended by CRLF).
async fn respond_with<S>(
    stream: &mut S,
    (code, reason): (u16, &str),
    content_type: &str,
    body: &[u8],
    close: bool,
    extra: &str,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nServer: supervisor/{}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await
    };
    match tokio::time::timeout(DEADLINE, write).await {
        Ok(written) => written,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read its reply",
        )),
    }
}
