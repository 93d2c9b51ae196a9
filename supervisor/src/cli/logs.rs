//! Output: `tail` (and `tail -f`, across rotations) and `events`.

use std::io::Write;
use std::path::Path;

use supervisor_proto::{ClientError, Stream};

use super::args::{SocketArg, StreamArg};
use super::connect;
use supervisor::exit::Exit;

/// `tail [-f] [-n N] NAME [stderr]`.
pub async fn tail(
    follow: bool,
    lines: u32,
    name: String,
    stream: StreamArg,
    socket: &SocketArg,
) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let stream = match stream {
        StreamArg::Stdout => Stream::Stdout,
        StreamArg::Stderr => Stream::Stderr,
    };
    let mut client = connect(socket).await?;
    let asked = if follow { 0 } else { lines };
    let (text, path) = client.tail_file(&name, stream, asked).await?;
    if !follow {
        let _ = out.write_all(text.as_bytes());
        return Ok(Exit::Ok);
    }
    drop(client);
    drop(out);
    match super::follow::follow(Path::new(&path), lines, &mut std::io::stdout()).await {
        Ok(()) => Ok(Exit::Ok),
        Err(e) => {
            eprintln!("tail: {path}: {e}");
            Ok(Exit::Failed)
        }
    }
}

/// `events`: every event as a JSON line until the reader or the daemon goes.
pub async fn events(socket: &SocketArg) -> Result<Exit, ClientError> {
    let out = std::io::stdout().lock();
    let client = connect(socket).await?;
    let mut events = client.subscribe().await?;
    drop(out);
    while let Some(event) = events.next().await? {
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(&event).unwrap_or_default();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // the reader went away (`| head`)
        }
    }
    Ok(Exit::Ok)
}
