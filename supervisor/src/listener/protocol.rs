//! What a listener writes on its stdout, read as supervisord reads it: `READY\n` when it waits
//! for an event, `RESULT N\n` and N bytes (`OK` or `FAIL`) when it is done with one.

/// Where a listener is in the protocol (supervisord's `EventListenerStates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Started, or done with an event: waiting for its `READY`.
    Acknowledged,
    /// Said `READY`: the next event may be sent.
    Ready,
    /// Has an event and has not answered yet.
    Busy,
    /// Broke the protocol: it gets nothing more until it is restarted.
    Unknown,
}

/// What a chunk of its stdout meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It wants an event.
    Ready,
    /// It handled the event it had.
    Ok,
    /// It refused the event it had (`FAIL`): send it again later.
    Rejected,
    /// It broke the protocol (what it wrote, shortened); any event it had goes back to the
    /// pool.
    Violation(String),
}

/// A result longer than this, or a result line this long without its newline, is a broken
/// listener (supervisord waits for ever; here it costs memory, so it is bounded).
const MAX_RESULT: usize = 64 * 1024;
const MAX_LINE: usize = 1024;
const READY: &[u8] = b"READY\n";
const RESULT: &[u8] = b"RESULT ";

#[derive(Debug)]
pub struct Protocol {
    state: State,
    buffer: Vec<u8>,
    /// While busy: the announced length of the result, once its line arrived.
    result_len: Option<usize>,
}

impl Default for Protocol {
    fn default() -> Self {
        Self::new()
    }
}

impl Protocol {
    pub fn new() -> Self {
        Self {
            state: State::Acknowledged,
            buffer: Vec::new(),
            result_len: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// An event was written to its stdin.
    pub fn sent(&mut self) {
        debug_assert_eq!(self.state, State::Ready);
        self.state = State::Busy;
    }

    /// Reads what it wrote; returns what that meant, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Outcome> {
        let mut out = Vec::new();
        if self.state == State::Unknown {
            return out;
        }
        self.buffer.extend_from_slice(data);
        loop {
            match self.state {
                State::Unknown => {
                    self.buffer.clear();
                    break;
                }
                State::Acknowledged => {
                    if self.buffer.len() < READY.len() {
                        if !READY.starts_with(&self.buffer) {
                            out.push(self.violate("expected READY"));
                        }
                        break;
                    }
                    if self.buffer.starts_with(READY) {
                        self.buffer.drain(..READY.len());
                        self.state = State::Ready;
                        out.push(Outcome::Ready);
                    } else {
                        out.push(self.violate("expected READY"));
                    }
                }
                State::Ready => {
                    if !self.buffer.is_empty() {
                        out.push(self.violate("wrote while waiting for an event"));
                    }
                    break;
                }
                State::Busy => match self.result_len {
                    None => {
                        let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') else {
                            if self.buffer.len() > MAX_LINE {
                                out.push(self.violate("result line too long"));
                            }
                            break;
                        };
                        let len = self.buffer[..pos]
                            .strip_prefix(RESULT)
                            .and_then(|n| std::str::from_utf8(n).ok())
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .filter(|&n| n <= MAX_RESULT);
                        match len {
                            Some(n) => {
                                self.buffer.drain(..=pos);
                                self.result_len = Some(n);
                            }
                            None => {
                                out.push(self.violate("bad result line"));
                            }
                        }
                    }
                    Some(n) => {
                        if self.buffer.len() < n {
                            break;
                        }
                        let result: Vec<u8> = self.buffer.drain(..n).collect();
                        self.result_len = None;
                        match result.as_slice() {
                            b"OK" => {
                                self.state = State::Acknowledged;
                                out.push(Outcome::Ok);
                            }
                            b"FAIL" => {
                                self.state = State::Acknowledged;
                                out.push(Outcome::Rejected);
                            }
                            other => {
                                let text = shorten(other);
                                out.push(
                                    self.violate(&format!("result {text:?} is not OK or FAIL")),
                                );
                            }
                        }
                    }
                },
            }
        }
        out
    }

    fn violate(&mut self, what: &str) -> Outcome {
        let seen = shorten(&self.buffer);
        self.state = State::Unknown;
        self.buffer.clear();
        self.result_len = None;
        Outcome::Violation(format!("{what} (it wrote {seen:?})"))
    }
}

fn shorten(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_behaved_listener() {
        let mut p = Protocol::new();
        assert_eq!(p.feed(b"REA"), vec![]);
        assert_eq!(p.feed(b"DY\n"), vec![Outcome::Ready]);
        p.sent();
        assert_eq!(p.state(), State::Busy);
        // Byte by byte, the answer and the next READY in one go.
        let mut seen = Vec::new();
        for b in b"RESULT 2\nOKREADY\n" {
            seen.extend(p.feed(&[*b]));
        }
        assert_eq!(seen, vec![Outcome::Ok, Outcome::Ready]);
        p.sent();
        assert_eq!(
            p.feed(b"RESULT 4\nFAILREADY\n"),
            vec![Outcome::Rejected, Outcome::Ready]
        );
    }

    #[test]
    fn violations_end_in_unknown_and_it_stays_there() {
        let mut p = Protocol::new();
        assert!(matches!(p.feed(b"hello\n")[..], [Outcome::Violation(_)]));
        assert_eq!(p.state(), State::Unknown);
        assert_eq!(p.feed(b"READY\n"), vec![]);

        let mut p = Protocol::new();
        p.feed(b"READY\n");
        assert!(matches!(p.feed(b"x")[..], [Outcome::Violation(_)]));

        let mut p = Protocol::new();
        p.feed(b"READY\n");
        p.sent();
        assert!(matches!(
            p.feed(b"RESULT two\n")[..],
            [Outcome::Violation(_)]
        ));

        let mut p = Protocol::new();
        p.feed(b"READY\n");
        p.sent();
        let out = p.feed(b"RESULT 3\nYES");
        assert!(
            matches!(&out[..], [Outcome::Violation(m)] if m.contains("YES")),
            "{out:?}"
        );

        let mut p = Protocol::new();
        p.feed(b"READY\n");
        p.sent();
        assert!(matches!(p.feed(&[b'R'; 2000])[..], [Outcome::Violation(_)]));
    }

    #[test]
    fn a_partial_ready_that_cannot_become_ready_is_caught_early() {
        let mut p = Protocol::new();
        assert!(matches!(p.feed(b"OK")[..], [Outcome::Violation(_)]));
    }
}
