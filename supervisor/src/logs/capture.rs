//! Reading a program's output pipe into its log file and the supervisor's stdout.
//!
//! One task per pipe. The pipe lives as long as the program's configuration, not one process:
//! the daemon keeps the write end and hands a copy to each spawn, so output of consecutive runs
//! stays in order in one reader, and nothing still in the pipe is lost when a process exits.
//! The task waits for readability, reads into a buffer shared by all tasks on the thread, and
//! writes whole lines; only a trailing partial line is kept until its newline arrives. After a
//! small read it lets the output gather for [`GATHER`] before reading again: a program that
//! writes line by line is then read many lines at a time instead of a few per wake-up, and no
//! line waits longer than that to reach the log and the echo.
//! Memory stays bounded: the pipe is not read again until the last chunk is written (and, for
//! the echo, accepted by the bounded queue), so a program writing faster than the disk blocks
//! on its own pipe.

use std::cell::RefCell;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::rotation::LogFile;
use crate::config::ProgramName;
use crate::health::Report;

/// Bytes read from a pipe at once.
const CHUNK: usize = 128 * 1024;
/// A partial line longer than this is written out without waiting for its newline.
const MAX_LINE: usize = 1024 * 1024;
/// Chunks waiting for the echo thread before readers wait for it.
const ECHO_QUEUE: usize = 64;
/// After a read smaller than [`BIG_READ`], the pause before the next: the longest a line
/// waits in the pipe once the reader is awake (docs/CONFIG.md promises 10 ms).
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// A read this big means a fast writer with a full pipe: read again at once, and give the pipe
/// room to gather in (its size grows once to [`BUSY_PIPE`]).
const BIG_READ: usize = 32 * 1024;
/// The pipe size of a busy program: what a fast writer fills in a few gathering pauses, so
/// that it does not wait on us. Only pipes that are seen busy grow (the kernel limits how much
/// pipe memory an unprivileged user may have).
const BUSY_PIPE: libc::c_int = 1024 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// Sends prefixed output lines to the thread that writes them to fd 1, and takes its written
/// buffers back for the next chunks.
#[derive(Clone, Debug)]
pub struct EchoSender {
    tx: mpsc::Sender<Vec<u8>>,
    spare: Spare,
}

/// Buffers the echo thread has written, for the readers to fill again: a burst of output
/// allocates its buffers (and faults their pages in) a few times, not once per chunk.
type Spare = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;
/// At most this many spare buffers are kept, each at most [`SPARE_SIZE`].
const SPARES: usize = 4;
const SPARE_SIZE: usize = 2 * CHUNK;

impl EchoSender {
    /// An empty buffer, a written one if there is one.
    fn buffer(&self) -> Vec<u8> {
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }
}

/// Starts the thread that copies output lines to the supervisor's stdout. Writing there may
/// block (a full pipe to `docker logs`), and must never block the daemon itself. The returned
/// receiver resolves once every sender is gone and everything queued was written.
pub fn start_echo() -> io::Result<(EchoSender, oneshot::Receiver<()>)> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(ECHO_QUEUE);
    let spare: Spare = Arc::default();
    let returned = spare.clone();
    let (done_tx, done_rx) = oneshot::channel();
    // Under Docker our stdout is a pipe: a bigger one takes the echo in fewer, larger writes
    // (fewer round trips with its reader). Not a pipe, or refused: nothing changes.
    let _ = nix::fcntl::fcntl(io::stdout(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(BUSY_PIPE));
    std::thread::Builder::new()
        .name("echo".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let stdout = io::stdout();
            while let Some(mut chunk) = rx.blocking_recv() {
                let mut out = stdout.lock();
                // Nothing useful can be done if our own stdout is gone; the log files still
                // have everything.
                let _ = out.write_all(&chunk).and_then(|()| out.flush());
                drop(out);
                if chunk.capacity() <= SPARE_SIZE {
                    chunk.clear();
                    let mut spare = returned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if spare.len() < SPARES {
                        spare.push(chunk);
                    }
                }
            }
            let _ = done_tx.send(());
        })?;
    Ok((EchoSender { tx, spare }, done_rx))
}

/// A log file with one writer for every stream that goes to it (several programs may share
/// one, as supervisord's `numprocs` workers do). Whole lines are written under the lock, so
/// lines of different streams never mix within a line, and the file rotates once.
pub type SharedLog = Arc<std::sync::Mutex<LogFile>>;

/// How echoed lines look.
#[derive(Clone, Debug)]
pub enum Echo {
    /// `name | line` (the prefix).
    Text(Vec<u8>),
    /// A JSON object a line, for log shippers.
    Json {
        program: String,
        stream: &'static str,
    },
}

/// Where one pipe's bytes go.
#[derive(Debug)]
pub struct Capture {
    /// How each echoed line is written.
    pub style: Echo,
    pub file: Option<SharedLog>,
    pub echo: Option<EchoSender>,
    /// Bumped on SIGUSR2: reopen the file before the next write.
    pub reopen: watch::Receiver<u64>,
    carry: Vec<u8>,
    failing: bool,
    ready: Option<LogWatch>,
    /// The spawn whose readiness line was just written, to report after the write.
    ready_seen: Option<u64>,
    /// The last line written (stderr's): what a program that gave up last said.
    last_line: Option<LastLine>,
}

/// A stream's last non-empty line, as text, at most [`LAST_LINE_MAX`] characters, and when it
/// was written.
pub type LastLine = std::sync::Arc<std::sync::Mutex<(String, Option<std::time::Instant>)>>;

const LAST_LINE_MAX: usize = 200;

/// `ready = { log = "..." }`: the pattern a line must match while a spawn waits for it.
#[derive(Debug)]
pub struct LogWatch {
    pub pattern: regex::bytes::Regex,
    /// The spawn waiting for its line (0: none); cleared here on the first match.
    pub armed: Arc<AtomicU64>,
    /// The spawn that last wrote anything while armed, line or not.
    pub heard: Arc<AtomicU64>,
    pub program: ProgramName,
    pub reports: mpsc::Sender<Report>,
}

impl Capture {
    pub fn new(
        style: Echo,
        file: Option<SharedLog>,
        echo: Option<EchoSender>,
        reopen: watch::Receiver<u64>,
    ) -> Self {
        Self {
            style,
            file,
            echo,
            reopen,
            carry: Vec::new(),
            failing: false,
            ready: None,
            ready_seen: None,
            last_line: None,
        }
    }

    /// Also keeps the last line it writes in `last`.
    pub fn keep_last_line(mut self, last: LastLine) -> Self {
        self.last_line = Some(last);
        self
    }

    /// Also looks for the readiness line in what it writes.
    pub fn watch_ready(mut self, watch: LogWatch) -> Self {
        self.ready = Some(watch);
        self
    }

    /// Reads `reader` until every writer has closed it, then flushes a last partial line.
    pub fn spawn(mut self, reader: OwnedFd) -> io::Result<JoinHandle<()>> {
        // A second descriptor of the read end: if the pipe cannot be watched again after a
        // pause, it is watched from this one, and nothing written to it is lost.
        let spare = reader.try_clone()?;
        let mut rx = pipe::Receiver::from_owned_fd(reader)?;
        Ok(tokio::spawn(async move {
            let mut grown = false;
            loop {
                if rx.readable().await.is_err() {
                    break;
                }
                let read = BUFFER.with_borrow_mut(|buf| match rx.try_read(buf) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some((n, self.absorb(&buf[..n])))),
                    Err(e) => Err(e),
                });
                match read {
                    Ok(None) => break,
                    Ok(Some((n, echo))) => {
                        self.echo(echo).await;
                        if n < BIG_READ {
                            // Out of the poller while gathering: a pipe wakes its reader's
                            // epoll on every write, so a line-by-line writer would wake the
                            // thread once a line for nothing.
                            rx = pause(rx, &spare).await;
                        } else if !grown {
                            grown = true;
                            grow(&rx);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a program's output failed");
                        break;
                    }
                }
            }
            let rest = std::mem::take(&mut self.carry);
            if !rest.is_empty() {
                let mut echo = None;
                self.emit(&rest, &mut echo);
                self.echo(echo).await;
            }
        }))
    }

    async fn echo(&mut self, chunk: Option<Vec<u8>>) {
        if let (Some(echo), Some(chunk)) = (&self.echo, chunk) {
            // A closed queue means the supervisor is exiting; the file already has the bytes.
            let _ = echo.tx.send(chunk).await;
        }
        if let (Some(run), Some(watch)) = (self.ready_seen.take(), &self.ready) {
            let report = Report::LogReady {
                program: watch.program.clone(),
                run,
            };
            let _ = watch.reports.send(report).await;
        }
    }

    /// Takes newly read bytes; writes the complete lines, keeps the partial one.
    fn absorb(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if let Some(watch) = &self.ready {
            let run = watch.armed.load(Ordering::Acquire);
            if run != 0 {
                watch.heard.store(run, Ordering::Release);
            }
        }
        let mut echo = None;
        let Some(last_nl) = memchr::memrchr(b'\n', data) else {
            self.carry.extend_from_slice(data);
            if self.carry.len() >= MAX_LINE {
                let long = std::mem::take(&mut self.carry);
                self.emit(&long, &mut echo);
            }
            return echo;
        };
        let (mut lines, rest) = data.split_at(last_nl + 1);
        if !self.carry.is_empty() {
            // The partial line from before is completed and written on its own; the rest of
            // the chunk is written from the read buffer, never copied (a writer whose blocks
            // end mid-line would otherwise have every chunk copied once more).
            let first_nl = memchr::memchr(b'\n', lines).unwrap_or(lines.len() - 1);
            let mut head = std::mem::take(&mut self.carry);
            head.extend_from_slice(&lines[..=first_nl]);
            self.emit(&head, &mut echo);
            head.clear();
            self.carry = head;
            lines = &lines[first_nl + 1..];
        }
        if !lines.is_empty() {
            self.emit(lines, &mut echo);
        }
        self.carry.extend_from_slice(rest);
        echo
    }

    /// Writes whole lines to the file and appends their prefixed copy to `echo` (a buffer
    /// from the echo's pool, taken at the first call).
    fn emit(&mut self, lines: &[u8], echo: &mut Option<Vec<u8>>) {
        if let Some(last) = &self.last_line {
            let line = lines
                .split(|&b| b == b'\n')
                .rfind(|l| l.iter().any(|b| !b.is_ascii_whitespace()));
            if let Some(line) = line {
                let text: String = String::from_utf8_lossy(line)
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(LAST_LINE_MAX)
                    .collect();
                *last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (text.trim().to_owned(), Some(std::time::Instant::now()));
            }
        }
        let seen = self.ready.as_ref().filter(|watch| {
            watch.armed.load(Ordering::Acquire) != 0
                && lines
                    .split(|&b| b == b'\n')
                    .any(|line| watch.pattern.is_match(line))
        });
        if let Some(watch) = seen {
            let run = watch.armed.swap(0, Ordering::AcqRel);
            if run != 0 {
                self.ready_seen = Some(run);
            }
        }
        if let Some(shared) = self.file.as_ref() {
            // Every capture runs on the daemon's one thread; the lock is contended only while
            // the file is first opened off that thread (daemon::LogFiles), and it is never held
            // across an await.
            let mut file = shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.reopen.has_changed().unwrap_or(false) {
                self.reopen.borrow_and_update();
                if let Err(e) = file.reopen() {
                    tracing::error!(path = %file.path().display(), error = %e, "reopening a log file failed");
                }
            }
            match file.write(lines) {
                Ok(()) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        tracing::error!(path = %file.path().display(), error = %e, "writing a log file failed; output is lost until it works again");
                    }
                    self.failing = true;
                }
            }
        }
        let Some(sender) = self.echo.as_ref() else {
            return;
        };
        let out = echo.get_or_insert_with(|| sender.buffer());
        match &self.style {
            Echo::Text(prefix) => {
                // Newlines found by memchr (vectorised), not a test per byte: for a program
                // that writes short lines this loop is most of the echo's cost.
                let guess = lines.len() / 64 + 1;
                out.reserve(lines.len() + guess * prefix.len());
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', lines) {
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(&lines[start..=nl]);
                    start = nl + 1;
                }
                if start < lines.len() {
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(&lines[start..]);
                    out.push(b'\n');
                }
            }
            Echo::Json { program, stream } => {
                let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
                // The key and form of the supervisor's own JSON log (`--log-format json`).
                let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                out.reserve(lines.len() * 2);
                for line in lines.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    let record = serde_json::json!({
                        "timestamp": ts,
                        "program": program,
                        "stream": stream,
                        "line": String::from_utf8_lossy(line),
                    });
                    out.extend_from_slice(record.to_string().as_bytes());
                    out.push(b'\n');
                }
            }
        }
    }
}

/// Takes the pipe out of the poller for [`GATHER`], then watches it again (from `spare`, a
/// second descriptor of it, if that fails, retrying each second: output waits in the pipe).
async fn pause(rx: pipe::Receiver, spare: &OwnedFd) -> pipe::Receiver {
    let fd = rx.into_nonblocking_fd();
    tokio::time::sleep(GATHER).await;
    let mut again = fd.and_then(pipe::Receiver::from_owned_fd_unchecked);
    loop {
        match again {
            Ok(rx) => return rx,
            Err(e) => {
                tracing::error!(error = %e, "watching a program's output again failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                again = spare
                    .try_clone()
                    .and_then(pipe::Receiver::from_owned_fd_unchecked);
            }
        }
    }
}

/// Grows a busy pipe to [`BUSY_PIPE`]; if the kernel refuses (over the user's pipe memory), the
/// pipe keeps its size and capture goes on.
fn grow(pipe: &pipe::Receiver) {
    use nix::fcntl::{FcntlArg, fcntl};
    if let Err(e) = fcntl(pipe, FcntlArg::F_SETPIPE_SZ(BUSY_PIPE)) {
        tracing::debug!(error = %e, "cannot grow a busy output pipe");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks that end mid-line, a line spread over three chunks, a chunk with no newline:
    /// the file gets exactly the complete lines, in order, and the echo each one prefixed.
    #[test]
    fn lines_split_across_reads_are_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let file = Arc::new(std::sync::Mutex::new(LogFile::open(&path, 0, 0).unwrap()));
        let (tx, mut rx) = mpsc::channel(16);
        let echo = EchoSender {
            tx,
            spare: Arc::default(),
        };
        let (_reopen, reopen_rx) = watch::channel(0);
        let mut capture = Capture::new(
            Echo::Text(b"p | ".to_vec()),
            Some(file),
            Some(echo),
            reopen_rx,
        );
        let chunks: [&[u8]; 6] = [
            b"one\ntw",
            b"o\nthree\nfo",
            b"u",
            b"r\n",
            b"five\nsix\nse",
            b"ven\n",
        ];
        let mut echoed = Vec::new();
        for chunk in chunks {
            if let Some(out) = capture.absorb(chunk) {
                echoed.extend_from_slice(&out);
            }
        }
        assert!(capture.carry.is_empty());
        drop(capture);
        assert!(
            rx.try_recv().is_err(),
            "absorb returns the echo, it does not send it"
        );
        let lines = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lines);
        let prefixed: String = lines.lines().map(|l| format!("p | {l}\n")).collect();
        assert_eq!(String::from_utf8(echoed).unwrap(), prefixed);
    }
}
