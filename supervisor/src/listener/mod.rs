//! supervisord's event listeners: programs that receive the supervisor's events on their stdin
//! and acknowledge each on their stdout, so that listeners written for supervisord
//! (superlance's `crashmail`, `fatalmailbatch`, a script that stops the container when a
//! program goes FATAL) run unchanged.
//!
//! This module is the pure part: the event types and their names, the envelope a listener
//! reads, a pool's buffer, and the protocol on the listener's stdout ([`protocol`]). The daemon
//! (`daemon/listeners.rs`) decides what happened and moves the bytes.
//!
//! The protocol, as supervisord documents it: the listener writes `READY\n`; it is sent one
//! event, a header line (`ver:3.0 server:supervisor serial:N pool:NAME poolserial:N
//! eventname:TYPE len:N`) and `len` bytes of payload; it answers `RESULT 2\nOK` (or `RESULT
//! 4\nFAIL`, and the event is sent again later), then `READY\n` for the next one. Anything else
//! puts it in the UNKNOWN state: it receives nothing more until it is restarted.

pub mod protocol;

use std::collections::VecDeque;
use std::fmt;

/// Every event type supervisord names, abstract ones included (a listener may subscribe to
/// `PROCESS_STATE` for all of its kind, or `EVENT` for everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Event,
    ProcessState,
    ProcessStateStopped,
    ProcessStateExited,
    ProcessStateStarting,
    ProcessStateStopping,
    ProcessStateBackoff,
    ProcessStateFatal,
    ProcessStateRunning,
    ProcessStateUnknown,
    ProcessCommunication,
    ProcessCommunicationStdout,
    ProcessCommunicationStderr,
    ProcessLog,
    ProcessLogStdout,
    ProcessLogStderr,
    RemoteCommunication,
    SupervisorStateChange,
    SupervisorStateChangeRunning,
    SupervisorStateChangeStopping,
    Tick,
    Tick5,
    Tick60,
    Tick3600,
    ProcessGroup,
    ProcessGroupAdded,
    ProcessGroupRemoved,
}

impl EventType {
    pub const ALL: &[EventType] = &[
        EventType::Event,
        EventType::ProcessState,
        EventType::ProcessStateStopped,
        EventType::ProcessStateExited,
        EventType::ProcessStateStarting,
        EventType::ProcessStateStopping,
        EventType::ProcessStateBackoff,
        EventType::ProcessStateFatal,
        EventType::ProcessStateRunning,
        EventType::ProcessStateUnknown,
        EventType::ProcessCommunication,
        EventType::ProcessCommunicationStdout,
        EventType::ProcessCommunicationStderr,
        EventType::ProcessLog,
        EventType::ProcessLogStdout,
        EventType::ProcessLogStderr,
        EventType::RemoteCommunication,
        EventType::SupervisorStateChange,
        EventType::SupervisorStateChangeRunning,
        EventType::SupervisorStateChangeStopping,
        EventType::Tick,
        EventType::Tick5,
        EventType::Tick60,
        EventType::Tick3600,
        EventType::ProcessGroup,
        EventType::ProcessGroupAdded,
        EventType::ProcessGroupRemoved,
    ];

    /// The name in `events=` and in the envelope's `eventname:`.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Event => "EVENT",
            EventType::ProcessState => "PROCESS_STATE",
            EventType::ProcessStateStopped => "PROCESS_STATE_STOPPED",
            EventType::ProcessStateExited => "PROCESS_STATE_EXITED",
            EventType::ProcessStateStarting => "PROCESS_STATE_STARTING",
            EventType::ProcessStateStopping => "PROCESS_STATE_STOPPING",
            EventType::ProcessStateBackoff => "PROCESS_STATE_BACKOFF",
            EventType::ProcessStateFatal => "PROCESS_STATE_FATAL",
            EventType::ProcessStateRunning => "PROCESS_STATE_RUNNING",
            EventType::ProcessStateUnknown => "PROCESS_STATE_UNKNOWN",
            EventType::ProcessCommunication => "PROCESS_COMMUNICATION",
            EventType::ProcessCommunicationStdout => "PROCESS_COMMUNICATION_STDOUT",
            EventType::ProcessCommunicationStderr => "PROCESS_COMMUNICATION_STDERR",
            EventType::ProcessLog => "PROCESS_LOG",
            EventType::ProcessLogStdout => "PROCESS_LOG_STDOUT",
            EventType::ProcessLogStderr => "PROCESS_LOG_STDERR",
            EventType::RemoteCommunication => "REMOTE_COMMUNICATION",
            EventType::SupervisorStateChange => "SUPERVISOR_STATE_CHANGE",
            EventType::SupervisorStateChangeRunning => "SUPERVISOR_STATE_CHANGE_RUNNING",
            EventType::SupervisorStateChangeStopping => "SUPERVISOR_STATE_CHANGE_STOPPING",
            EventType::Tick => "TICK",
            EventType::Tick5 => "TICK_5",
            EventType::Tick60 => "TICK_60",
            EventType::Tick3600 => "TICK_3600",
            EventType::ProcessGroup => "PROCESS_GROUP",
            EventType::ProcessGroupAdded => "PROCESS_GROUP_ADDED",
            EventType::ProcessGroupRemoved => "PROCESS_GROUP_REMOVED",
        }
    }

    /// supervisord's name, as written (names are upper case there too).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// The abstract type it is a kind of (`EVENT` has none).
    fn parent(self) -> Option<Self> {
        use EventType as T;
        Some(match self {
            T::Event => return None,
            T::ProcessState
            | T::ProcessCommunication
            | T::ProcessLog
            | T::RemoteCommunication
            | T::SupervisorStateChange
            | T::Tick
            | T::ProcessGroup => T::Event,
            T::ProcessStateStopped
            | T::ProcessStateExited
            | T::ProcessStateStarting
            | T::ProcessStateStopping
            | T::ProcessStateBackoff
            | T::ProcessStateFatal
            | T::ProcessStateRunning
            | T::ProcessStateUnknown => T::ProcessState,
            T::ProcessCommunicationStdout | T::ProcessCommunicationStderr => {
                T::ProcessCommunication
            }
            T::ProcessLogStdout | T::ProcessLogStderr => T::ProcessLog,
            T::SupervisorStateChangeRunning | T::SupervisorStateChangeStopping => {
                T::SupervisorStateChange
            }
            T::Tick5 | T::Tick60 | T::Tick3600 => T::Tick,
            T::ProcessGroupAdded | T::ProcessGroupRemoved => T::ProcessGroup,
        })
    }

    /// Whether a listener subscribed to `self` receives an event of type `sent` (the type
    /// itself, or one of its kinds).
    pub fn covers(self, sent: EventType) -> bool {
        let mut t = Some(sent);
        while let Some(k) = t {
            if k == self {
                return true;
            }
            t = k.parent();
        }
        false
    }

    /// Whether this supervisor sends events of this type (or of a type under it). Output
    /// and communication events need a line-by-line path from the capture to the actor that
    /// is not built; remote communication needs XML-RPC.
    pub fn is_sent(self) -> bool {
        SENT.iter().any(|&s| self.covers(s))
    }

    /// For a `TICK_N`: N seconds.
    pub fn tick_period(self) -> Option<u64> {
        match self {
            EventType::Tick5 => Some(5),
            EventType::Tick60 => Some(60),
            EventType::Tick3600 => Some(3600),
            _ => None,
        }
    }
}

/// The concrete types this supervisor sends.
pub const SENT: &[EventType] = &[
    EventType::ProcessStateStopped,
    EventType::ProcessStateExited,
    EventType::ProcessStateStarting,
    EventType::ProcessStateStopping,
    EventType::ProcessStateBackoff,
    EventType::ProcessStateFatal,
    EventType::ProcessStateRunning,
    EventType::SupervisorStateChangeRunning,
    EventType::SupervisorStateChangeStopping,
    EventType::Tick5,
    EventType::Tick60,
    EventType::Tick3600,
    EventType::ProcessGroupAdded,
    EventType::ProcessGroupRemoved,
];

/// The tick events, shortest period first.
pub const TICKS: [EventType; 3] = [EventType::Tick5, EventType::Tick60, EventType::Tick3600];

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[program.NAME] events` and `buffer_size`: the program is an event listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub events: Vec<EventType>,
    /// Events kept for the pool while no listener is ready; past it the oldest is dropped.
    pub buffer_size: usize,
}

/// supervisord's default `buffer_size`.
pub const DEFAULT_BUFFER_SIZE: usize = 10;

impl ListenerConfig {
    pub fn wants(&self, t: EventType) -> bool {
        self.events.iter().any(|e| e.covers(t))
    }
}

/// One event, as every pool that wants it queues it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The supervisor-wide serial (the same in every pool).
    pub serial: u64,
    /// This pool's own count.
    pub pool_serial: u64,
    pub kind: EventType,
    pub payload: String,
}

impl Queued {
    /// The bytes written to the listener's stdin: the header line and the payload.
    pub fn envelope(&self, pool: &str) -> Vec<u8> {
        format!(
            "ver:3.0 server:supervisor serial:{} pool:{pool} poolserial:{} eventname:{} len:{}\n{}",
            self.serial,
            self.pool_serial,
            self.kind,
            self.payload.len(),
            self.payload
        )
        .into_bytes()
    }
}

/// A pool's events waiting for a ready listener (one buffer for all processes of a pool, as
/// supervisord keeps it).
#[derive(Debug)]
pub struct Pool {
    buffer: VecDeque<Queued>,
    size: usize,
    next_serial: u64,
}

impl Pool {
    pub fn new(size: usize) -> Self {
        Self {
            buffer: VecDeque::new(),
            size: size.max(1),
            next_serial: 0,
        }
    }

    /// Queues an event at the back; returns the event dropped to make room (the oldest).
    pub fn push(&mut self, serial: u64, kind: EventType, payload: String) -> Option<Queued> {
        let queued = Queued {
            serial,
            pool_serial: self.next_serial,
            kind,
            payload,
        };
        self.next_serial += 1;
        let dropped = self.make_room();
        self.buffer.push_back(queued);
        dropped
    }

    /// Puts back an event a listener did not take (it answered FAIL, or died while busy): it is
    /// sent again first.
    pub fn requeue(&mut self, event: Queued) -> Option<Queued> {
        let dropped = self.make_room();
        self.buffer.push_front(event);
        dropped
    }

    fn make_room(&mut self) -> Option<Queued> {
        (self.buffer.len() >= self.size)
            .then(|| self.buffer.pop_front())
            .flatten()
    }

    pub fn front(&self) -> Option<&Queued> {
        self.buffer.front()
    }

    pub fn pop(&mut self) -> Option<Queued> {
        self.buffer.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn resize(&mut self, size: usize) {
        self.size = size.max(1);
        while self.buffer.len() > self.size {
            self.buffer.pop_front();
        }
    }
}

/// The payload of a `PROCESS_STATE_*` event: `processname:x groupname:g from_state:S` and the
/// values its type carries (`tries`, `pid`, `expected`), in supervisord's order.
pub fn process_state_payload(
    process: &str,
    group: &str,
    from: &str,
    extra: &[(&str, String)],
) -> String {
    let mut s = format!("processname:{process} groupname:{group} from_state:{from}");
    for (k, v) in extra {
        s.push(' ');
        s.push_str(k);
        s.push(':');
        s.push_str(v);
    }
    s
}

/// The start of the `period`-second slice that `unix_secs` falls in (supervisord's `when:`).
pub fn time_slice(period: u64, unix_secs: u64) -> u64 {
    unix_secs - unix_secs % period.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_supervisords_list() {
        for &t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(t));
        }
        assert_eq!(
            EventType::ALL.len(),
            27,
            "supervisord 4.2.5 has 27 event types"
        );
        assert_eq!(EventType::parse("process_state"), None);
        assert_eq!(EventType::parse("TICK_30"), None);
    }

    #[test]
    fn abstract_types_cover_their_kinds() {
        use EventType as T;
        assert!(T::ProcessState.covers(T::ProcessStateFatal));
        assert!(T::Event.covers(T::Tick60));
        assert!(T::Tick.covers(T::Tick5));
        assert!(T::ProcessStateFatal.covers(T::ProcessStateFatal));
        assert!(!T::ProcessStateFatal.covers(T::ProcessStateExited));
        assert!(!T::ProcessStateFatal.covers(T::ProcessState));
        assert!(!T::Tick.covers(T::ProcessStateRunning));
    }

    #[test]
    fn what_is_sent() {
        assert!(EventType::Event.is_sent());
        assert!(EventType::ProcessState.is_sent());
        assert!(!EventType::ProcessLog.is_sent());
        assert!(!EventType::ProcessLogStdout.is_sent());
        assert!(!EventType::RemoteCommunication.is_sent());
        assert!(!EventType::ProcessStateUnknown.is_sent());
    }

    #[test]
    fn envelope_is_supervisords() {
        let mut pool = Pool::new(10);
        pool.push(
            21,
            EventType::ProcessStateRunning,
            process_state_payload("cat", "cat", "STARTING", &[("pid", "2766".into())]),
        );
        let e = pool.pop().unwrap();
        assert_eq!(
            String::from_utf8(e.envelope("listener")).unwrap(),
            "ver:3.0 server:supervisor serial:21 pool:listener poolserial:0 eventname:PROCESS_STATE_RUNNING len:58\nprocessname:cat groupname:cat from_state:STARTING pid:2766"
        );
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_a_requeue_goes_first() {
        let mut pool = Pool::new(2);
        assert_eq!(pool.push(0, EventType::Tick5, "when:0".into()), None);
        assert_eq!(pool.push(1, EventType::Tick5, "when:5".into()), None);
        let dropped = pool.push(2, EventType::Tick5, "when:10".into()).unwrap();
        assert_eq!(dropped.serial, 0);
        let first = pool.pop().unwrap();
        assert_eq!((first.serial, first.pool_serial), (1, 1));
        pool.requeue(first.clone());
        assert_eq!(pool.pop(), Some(first));
        assert_eq!(pool.pop().map(|e| e.serial), Some(2));
        assert!(pool.is_empty());
    }

    #[test]
    fn ticks_are_aligned_slices() {
        assert_eq!(time_slice(5, 1_201_063_882), 1_201_063_880);
        assert_eq!(time_slice(60, 119), 60);
        assert_eq!(time_slice(3600, 3599), 0);
    }
}
