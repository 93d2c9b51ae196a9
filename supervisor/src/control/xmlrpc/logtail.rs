//! `GET /logtail/NAME[/stdout|stderr]`: supervisord's follow of a log file, which its
//! `supervisorctl tail -f` reads. The last 1,024 bytes, then what is appended, as a chunked
//! response, until the client goes; a file that shrank (rotated, cleared) is read again from
//! its start, as supervisord's does. Behind the `tail` grant, like the other log reads.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use supervisor_proto::{Body, ErrorKind, Reply, Request, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::names::one_program;
use crate::control::Shared;
use crate::control::audit::Peer;

/// How much of the file's end comes first.
const HEAD: u64 = 1024;
/// How often the file is looked at for more.
const POLL: Duration = Duration::from_millis(200);
/// The most sent at once.
const CHUNK: u64 = 64 * 1024;
/// A chunk the client does not take within this ends the follow.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// What to answer a `/logtail/...` path: the file to follow, or the status to refuse with.
pub async fn file_of(
    shared: &Shared,
    peer: &Peer,
    path: &str,
) -> Result<PathBuf, (u16, &'static str)> {
    let rest = path.trim_start_matches("/logtail/");
    let (spec, channel) = rest.split_once('/').unwrap_or((rest, "stdout"));
    let stream = match channel {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return Err((404, "Not Found")),
    };
    let config = shared.config.borrow().clone();
    let name = one_program(&config, spec)
        .map_err(|_| (404, "Not Found"))?
        .remove(0);
    let request = Request::Tail {
        name,
        stream,
        lines: 0,
    };
    match crate::control::answer(shared, peer, None, request).await {
        Body::Ok(Reply::Tail { path, .. }) => {
            let path = PathBuf::from(path);
            // No file yet (never started) is 404, as supervisord answers it.
            let probe = path.clone();
            match tokio::task::spawn_blocking(move || probe.exists()).await {
                Ok(true) => Ok(path),
                _ => Err((404, "Not Found")),
            }
        }
        Body::Error(e) if e.kind == ErrorKind::Forbidden => Err((403, "Forbidden")),
        _ => Err((404, "Not Found")),
    }
}

/// Follows `path` on `stream` until the client closes it or stops reading.
pub async fn follow<S>(stream: S, path: PathBuf) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    writer
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain;charset=utf-8\r\nTransfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n",
        )
        .await?;
    // None: the first look, from the last HEAD bytes.
    let mut at: Option<u64> = None;
    let mut sink = [0u8; 256];
    loop {
        let file = path.clone();
        let (next, data) = tokio::task::spawn_blocking(move || step(&file, at))
            .await
            .map_err(std::io::Error::other)??;
        at = Some(next);
        if !data.is_empty() {
            let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            match tokio::time::timeout(WRITE_DEADLINE, writer.write_all(&chunk)).await {
                Ok(written) => written?,
                Err(_) => return Ok(()),
            }
            continue;
        }
        tokio::select! {
            // The client's end of stream ends the follow; what it sends is dropped
            // (supervisorctl's client ends its request with an extra CRLF).
            read = reader.read(&mut sink) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One look at the file: where to look next time and what was added since `at` (from the
/// start again when it shrank; its last [`HEAD`] bytes the first time), at most [`CHUNK`].
fn step(path: &std::path::Path, at: Option<u64>) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::{Read, Seek};
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let from = match at {
        None => size.saturating_sub(HEAD),
        Some(at) if size < at => 0,
        Some(at) => at,
    };
    if size <= from {
        return Ok((from, Vec::new()));
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut data = Vec::new();
    file.take((size - from).min(CHUNK)).read_to_end(&mut data)?;
    Ok((from + data.len() as u64, data))
}
