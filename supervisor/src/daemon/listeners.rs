//! Event listeners in the daemon: which events happen (state changes, ticks, the supervisor
//! starting and stopping, groups added and removed), which pools want them, and the bytes to
//! and from each listener process.
//!
//! A listener's stdin and stdout are pipes made for each spawn; a task per spawn writes the
//! events the actor hands it and hands back what the listener wrote. The protocol itself
//! ([`crate::listener::protocol`]) and the pools' buffers live in the actor, which never
//! waits on a listener: a listener that stops reading only blocks its own task.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::program::Program;
use crate::config::{ProgramConfig, ProgramName};
use crate::lifecycle::{ExitReason, State};
use crate::listener::protocol::{Outcome, Protocol, State as Wire};
use crate::listener::{self, EventType, Pool, Queued, TICKS};
use crate::process;

/// How long after a shutdown began event listeners may still finish the events they have.
pub(super) const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// What a listener wrote (`None`: its stdout closed), for the spawn `run`.
pub(super) struct Output {
    program: ProgramName,
    run: u64,
    data: Option<Vec<u8>>,
}

/// Chunks of listeners' output waiting for the actor; a listener that floods its stdout then
/// waits on its own pipe.
const OUTPUT_QUEUE: usize = 64;

/// The daemon's side of every pool.
pub(super) struct Listeners {
    pools: HashMap<String, Pool>,
    /// supervisord's global serial: one count for every event, whichever pools take it.
    serial: u64,
    /// The last slice seen for each of [`TICKS`].
    ticks: [u64; 3],
    /// The groups known at the last reindex, for PROCESS_GROUP_ADDED and _REMOVED.
    groups: Vec<String>,
    output: mpsc::Sender<Output>,
    /// Each running listener's channel, by program name.
    conns: HashMap<String, Conn>,
}

/// A running listener's channel.
struct Conn {
    run: u64,
    protocol: Protocol,
    stdin: mpsc::UnboundedSender<Vec<u8>>,
    /// The event it has and has not answered.
    busy: Option<Queued>,
}

/// The pipes of one listener spawn: the child's ends, and ours.
pub(super) struct Pipes {
    pub(super) child_stdin: OwnedFd,
    pub(super) child_stdout: OwnedFd,
    stdin: OwnedFd,
    stdout: OwnedFd,
}

impl Pipes {
    pub(super) fn new() -> std::io::Result<Self> {
        let (child_stdin, stdin) = process::pipe()?;
        let (stdout, child_stdout) = process::pipe()?;
        Ok(Self {
            child_stdin,
            child_stdout,
            stdin,
            stdout,
        })
    }
}

impl Listeners {
    pub(super) fn new() -> (Self, mpsc::Receiver<Output>) {
        let (output, rx) = mpsc::channel(OUTPUT_QUEUE);
        let now = unix_secs();
        let listeners = Self {
            pools: HashMap::new(),
            serial: 0,
            ticks: TICKS.map(|t| listener::time_slice(t.tick_period().unwrap_or(1), now)),
            groups: Vec::new(),
            output,
            conns: HashMap::new(),
        };
        (listeners, rx)
    }

    /// Forgets the channels of programs no longer configured.
    pub(super) fn keep_only(&mut self, programs: &std::collections::HashSet<&str>) {
        self.conns
            .retain(|name, _| programs.contains(name.as_str()));
    }

    /// Starts the task that carries a new listener spawn's bytes; its channel replaces the last
    /// spawn's.
    pub(super) fn connect(&mut self, program: &ProgramName, run: u64, pipes: Pipes) {
        let (stdin, rx) = mpsc::unbounded_channel();
        let Pipes {
            stdin: w,
            stdout: r,
            ..
        } = pipes;
        tokio::spawn(pump(program.clone(), run, w, r, rx, self.output.clone()));
        let conn = Conn {
            run,
            protocol: Protocol::new(),
            stdin,
            busy: None,
        };
        self.conns.insert(program.to_string(), conn);
    }
}

/// Moves one listener spawn's bytes until its stdout closes or the daemon lets go of it.
async fn pump(
    program: ProgramName,
    run: u64,
    stdin: OwnedFd,
    stdout: OwnedFd,
    mut events: mpsc::UnboundedReceiver<Vec<u8>>,
    output: mpsc::Sender<Output>,
) {
    let report = |data| Output {
        program: program.clone(),
        run,
        data,
    };
    let (mut reader, mut writer) = match (
        pipe::Receiver::from_owned_fd(stdout),
        pipe::Sender::from_owned_fd(stdin),
    ) {
        (Ok(r), Ok(w)) => (r, Some(w)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(program = %program, error = %e, "cannot watch an event listener's pipes");
            let _ = output.send(report(None)).await;
            return;
        }
    };
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    if output.send(report(Some(buf[..n].to_vec()))).await.is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = output.send(report(None)).await;
                    return;
                }
            },
            event = events.recv() => match event {
                Some(bytes) => {
                    // A listener that exited or closed its stdin: the event goes back to the
                    // pool when the daemon sees the exit.
                    if let Some(w) = writer.as_mut() {
                        if w.write_all(&bytes).await.is_err() {
                            writer = None;
                        }
                    }
                }
                None => return,
            },
        }
    }
}

/// The pool a listener belongs to: its group (the `[eventlistener:x]` of its `numprocs`), else
/// itself.
fn pool_of(cfg: &ProgramConfig) -> &str {
    cfg.group.as_deref().unwrap_or(cfg.name.as_str())
}

/// A state's process id, also while it stops.
fn pid_of(state: &State) -> Option<Pid> {
    match state {
        State::Starting { pid, .. } | State::Running { pid, .. } | State::Stopping { pid, .. } => {
            Some(*pid)
        }
        _ => None,
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Listeners {
    fn any_listener(programs: &[Program]) -> bool {
        programs.iter().any(|p| p.cfg.listener.is_some())
    }

    /// Queues an event for every pool that wants it and sends what can be sent.
    pub(super) fn notify(&mut self, programs: &[Program], kind: EventType, payload: String) {
        let mut pools: Vec<(String, usize)> = Vec::new();
        for p in programs {
            let pool = pool_of(&p.cfg);
            let listener = p.cfg.listener.as_ref();
            let fresh = listener.filter(|l| l.wants(kind) && !pools.iter().any(|(n, _)| n == pool));
            if let Some(l) = fresh {
                pools.push((pool.to_owned(), l.buffer_size));
            }
        }
        if pools.is_empty() {
            return;
        }
        let serial = self.serial;
        self.serial += 1;
        for (name, size) in &pools {
            let pool = self
                .pools
                .entry(name.clone())
                .or_insert_with(|| Pool::new(*size));
            if let Some(dropped) = pool.push(serial, kind, payload.clone()) {
                tracing::error!(pool = %name, serial = dropped.serial, event = %dropped.kind,
                    buffer_size = size, "event buffer overflowed; discarding the oldest event");
            }
        }
        for (name, _) in pools {
            self.dispatch(programs, &name);
        }
    }

    /// Sends the pool's oldest events to its ready listeners, one each.
    fn dispatch(&mut self, programs: &[Program], pool: &str) {
        loop {
            let Some(buffer) = self.pools.get_mut(pool) else {
                return;
            };
            let Some(kind) = buffer.front().map(|e| e.kind) else {
                return;
            };
            let conns = &self.conns;
            let member = programs.iter().position(|p| {
                p.cfg.listener.as_ref().is_some_and(|l| l.wants(kind))
                    && pool_of(&p.cfg) == pool
                    && matches!(p.state, State::Running { .. })
                    && conns
                        .get(p.cfg.name.as_str())
                        .is_some_and(|c| c.protocol.state() == Wire::Ready)
            });
            let Some(i) = member else {
                return;
            };
            let Some(buffer) = self.pools.get_mut(pool) else {
                return;
            };
            let Some(event) = buffer.pop() else {
                return;
            };
            let name = programs[i].cfg.name.as_str();
            tracing::debug!(program = %name, serial = event.serial,
                event = %event.kind, "event sent to a listener");
            let Some(conn) = self.conns.get_mut(name) else {
                return;
            };
            if conn.stdin.send(event.envelope(pool)).is_err() {
                // Its task is gone (stdout closed): the exit will follow; keep the event.
                buffer.requeue(event);
                return;
            }
            conn.protocol.sent();
            conn.busy = Some(event);
        }
    }

    /// What a listener wrote.
    pub(super) fn output(&mut self, programs: &[Program], out: Output) {
        let Some(idx) = programs
            .iter()
            .position(|p| p.cfg.name.as_str() == out.program.as_str())
        else {
            return;
        };
        let Some(data) = out.data else {
            return; // its exit, reaped, tells the rest
        };
        let p = &programs[idx];
        let name = p.cfg.name.as_str();
        let conns = &mut self.conns;
        let Some(conn) = conns.get_mut(name).filter(|c| c.run == out.run) else {
            return;
        };
        let outcomes = conn.protocol.feed(&data);
        let pool = pool_of(&p.cfg).to_owned();
        for outcome in outcomes {
            let Some(conn) = self.conns.get_mut(out.program.as_str()) else {
                return;
            };
            match outcome {
                Outcome::Ready => {}
                Outcome::Ok => conn.busy = None,
                Outcome::Rejected => {
                    tracing::warn!(program = %out.program, "event listener rejected an event (FAIL); it is sent again");
                    let event = conn.busy.take();
                    self.requeue(&pool, event);
                }
                Outcome::Violation(what) => {
                    tracing::warn!(program = %out.program, %what,
                        "event listener broke the protocol (UNKNOWN state); it gets no more events until it restarts");
                    let event = conn.busy.take();
                    self.requeue(&pool, event);
                }
            }
        }
        self.dispatch(programs, &pool);
    }

    fn requeue(&mut self, pool: &str, event: Option<Queued>) {
        let buffer = self.pools.get_mut(pool);
        let dropped = event
            .zip(buffer)
            .and_then(|(event, buffer)| buffer.requeue(event));
        if let Some(dropped) = dropped {
            tracing::error!(pool = %pool, serial = dropped.serial, event = %dropped.kind,
                "event buffer overflowed; discarding the oldest event");
        }
    }

    /// A listener's environment beyond a program's: where the server is, for listeners that
    /// call back over supervisord's XML-RPC (superlance's memmon restarts programs by it).
    pub(super) fn env(p: &Program, socket: &Path) -> Vec<(String, String)> {
        if p.cfg.listener.is_none() {
            return Vec::new();
        }
        vec![
            (
                "SUPERVISOR_SERVER_URL".to_owned(),
                format!("unix://{}", socket.display()),
            ),
            (
                "SUPERVISOR_GROUP_NAME".to_owned(),
                pool_of(&p.cfg).to_owned(),
            ),
        ]
    }

    /// After program `idx` changed from `previous`: its listener channel (when it is one), and
    /// the PROCESS_STATE event(s) in supervisord's terms.
    pub(super) fn state_change(&mut self, programs: &[Program], idx: usize, previous: &State) {
        let p = &programs[idx];
        if p.cfg.listener.is_some() {
            if !p.state.is_live() {
                if let Some(conn) = self.conns.remove(p.cfg.name.as_str()) {
                    let pool = pool_of(&p.cfg).to_owned();
                    self.requeue(&pool, conn.busy);
                }
            } else if matches!(p.state, State::Running { .. }) {
                let pool = pool_of(&p.cfg).to_owned();
                self.dispatch(programs, &pool);
            }
        }
        if !Self::any_listener(programs) {
            return;
        }
        let p = &programs[idx];
        let (name, group) = (p.cfg.name.to_string(), pool_of(&p.cfg).to_owned());
        let mut from = previous.name().as_str();
        let pid = |s: &State| pid_of(s).map_or_else(|| "0".to_owned(), |p| p.to_string());
        // A crash of a RUNNING program: supervisord passes through EXITED before it restarts
        // (here, before BACKOFF) or gives up; crashmail listens for exactly that.
        if matches!(previous, State::Running { .. })
            && matches!(p.state, State::Backoff { .. } | State::Fatal { .. })
        {
            let expected = match &p.last_exit {
                Some(ExitReason::Exited(code)) => p.cfg.policy.exitcodes.contains(code),
                _ => false,
            };
            let payload = listener::process_state_payload(
                &name,
                &group,
                from,
                &[
                    ("expected", u8::from(expected).to_string()),
                    ("pid", pid(previous)),
                ],
            );
            from = "EXITED";
            self.notify(programs, EventType::ProcessStateExited, payload);
        }
        // A start that failed for the last time: supervisord goes STARTING → BACKOFF → FATAL.
        let failed = match previous {
            State::Spawning { failed_starts, .. } | State::Starting { failed_starts, .. } => {
                Some(failed_starts)
            }
            _ => None,
        };
        let fatal = matches!(programs[idx].state, State::Fatal { .. });
        if let Some(failed_starts) = failed.filter(|_| fatal) {
            let payload = listener::process_state_payload(
                &name,
                &group,
                from,
                &[("tries", (failed_starts + 1).to_string())],
            );
            from = "BACKOFF";
            self.notify(programs, EventType::ProcessStateBackoff, payload);
        }
        let p = &programs[idx];
        let (kind, extra) = match &p.state {
            State::Stopped { .. } => (EventType::ProcessStateStopped, vec![("pid", pid(previous))]),
            State::Spawning { failed_starts, .. } | State::Starting { failed_starts, .. } => (
                EventType::ProcessStateStarting,
                vec![("tries", failed_starts.to_string())],
            ),
            State::Running { .. } => (EventType::ProcessStateRunning, vec![("pid", pid(&p.state))]),
            State::Backoff { failed_starts, .. } => (
                EventType::ProcessStateBackoff,
                vec![("tries", failed_starts.to_string())],
            ),
            State::Stopping { .. } => (
                EventType::ProcessStateStopping,
                vec![("pid", pid(&p.state))],
            ),
            State::Exited { expected, .. } => (
                EventType::ProcessStateExited,
                vec![
                    ("expected", u8::from(*expected).to_string()),
                    ("pid", pid(previous)),
                ],
            ),
            State::Fatal { .. } => (EventType::ProcessStateFatal, vec![]),
        };
        let payload = listener::process_state_payload(&name, &group, from, &extra);
        self.notify(programs, kind, payload);
    }

    /// During shutdown: whether listener `idx` still has events to handle (one in flight, or
    /// its pool's), so that it is stopped once they are done, for at most [`SHUTDOWN_DRAIN`]:
    /// a crash reported just before shutdown should still reach crashmail, and a listener that
    /// never answers must not hold the shutdown up.
    pub(super) fn draining(&self, p: &Program, until: Option<Instant>) -> bool {
        if until.is_some_and(|until| until <= Instant::now()) {
            return false;
        }
        let Some(conn) = self.conns.get(p.cfg.name.as_str()) else {
            return false;
        };
        if conn.protocol.state() == Wire::Unknown {
            return false;
        }
        conn.busy.is_some()
            || self
                .pools
                .get(pool_of(&p.cfg))
                .is_some_and(|pool| !pool.is_empty())
    }

    /// While a listener drains during shutdown: when its time is up.
    pub(super) fn drain_deadline(
        &self,
        programs: &[Program],
        until: Option<Instant>,
    ) -> Option<Instant> {
        let until = until?;
        let waiting = programs.iter().any(|p| self.draining(p, Some(until)));
        waiting.then_some(until)
    }

    /// SUPERVISOR_STATE_CHANGE_RUNNING or _STOPPING.
    pub(super) fn supervisor_state(&mut self, programs: &[Program], kind: EventType) {
        self.notify(programs, kind, String::new());
    }

    /// PROCESS_GROUP_ADDED and _REMOVED for the groups that came and went since the last call.
    pub(super) fn groups(&mut self, programs: &[Program]) {
        let mut now: Vec<String> = Vec::new();
        for p in programs {
            let g = pool_of(&p.cfg);
            if !now.iter().any(|n| n == g) {
                now.push(g.to_owned());
            }
        }
        let before = std::mem::replace(&mut self.groups, now.clone());
        for g in before.iter().filter(|g| !now.contains(g)) {
            self.notify(
                programs,
                EventType::ProcessGroupRemoved,
                format!("groupname:{g}\n"),
            );
        }
        for g in now.iter().filter(|g| !before.contains(g)) {
            self.notify(
                programs,
                EventType::ProcessGroupAdded,
                format!("groupname:{g}\n"),
            );
        }
    }

    /// When the next tick a listener wants is due.
    pub(super) fn deadline(&self, programs: &[Program]) -> Option<Instant> {
        let period = TICKS
            .iter()
            .filter(|t| {
                programs
                    .iter()
                    .any(|p| p.cfg.listener.as_ref().is_some_and(|l| l.wants(**t)))
            })
            .filter_map(|t| t.tick_period())
            .min()?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let next = Duration::from_secs(listener::time_slice(period, now.as_secs()) + period);
        // A little past the boundary, so that the slice has surely changed when it fires.
        Some(Instant::now() + next.saturating_sub(now) + Duration::from_millis(2))
    }

    /// TICK_5, TICK_60 and TICK_3600 whose slice changed.
    pub(super) fn tick(&mut self, programs: &[Program]) {
        let now = unix_secs();
        for (i, kind) in TICKS.into_iter().enumerate() {
            let slice = listener::time_slice(kind.tick_period().unwrap_or(1), now);
            if slice != self.ticks[i] {
                self.ticks[i] = slice;
                self.notify(programs, kind, format!("when:{slice}"));
            }
        }
    }
}
