//! Framing: one JSON document per line (JSON escapes newlines inside strings, so a frame never
//! contains one), at most [`MAX_FRAME`] bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts, newline included.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame larger than {MAX_FRAME} bytes")]
    TooLarge,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("invalid frame: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line (without its newline) into `buf`. `Ok(false)` at a clean end of stream.
/// Never holds more than [`MAX_FRAME`] bytes, however long the peer's line is.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(nl) => (&available[..nl], Some(nl + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() >= MAX_FRAME {
            return Err(FrameError::TooLarge);
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

/// Reads and decodes one frame; `Ok(None)` at a clean end of stream.
pub async fn read<T: DeserializeOwned, R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, FrameError> {
    if !read_line(reader, buf).await? {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(buf)?))
}

/// Encodes and writes one frame.
pub async fn write<T: Serialize, W: AsyncWrite + Unpin>(
    writer: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn reads_lines_and_the_end() {
        block_on(async {
            let mut r = BufReader::new(&b"{\"a\":1}\n{\"b\":2}\n"[..]);
            let mut buf = Vec::new();
            assert!(read_line(&mut r, &mut buf).await.unwrap());
            assert_eq!(buf, b"{\"a\":1}");
            assert!(read_line(&mut r, &mut buf).await.unwrap());
            assert!(!read_line(&mut r, &mut buf).await.unwrap());
        });
    }

    #[test]
    fn refuses_truncated_and_oversized_frames() {
        block_on(async {
            let mut buf = Vec::new();
            let mut r = BufReader::new(&b"{\"a\":"[..]);
            assert!(matches!(
                read_line(&mut r, &mut buf).await,
                Err(FrameError::Truncated)
            ));
            let big = vec![b'x'; MAX_FRAME + 10];
            let mut r = BufReader::new(&big[..]);
            assert!(matches!(
                read_line(&mut r, &mut buf).await,
                Err(FrameError::TooLarge)
            ));
            assert!(buf.len() < MAX_FRAME);
        });
    }
}
