//! The last 24 hours as statusd saw them, for the status page's pictures: each program's state
//! changes, deploys and resident memory. Kept in memory only (statusd restarts with an empty
//! past, and the page says from when it knows), bounded in time and in entries, so that a crash
//! loop cannot grow it.

use std::collections::{BTreeMap, VecDeque};

use supervisor_proto::{DeployResult, ProgramState};

/// How far back the page looks.
pub const WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Entries kept per program and kind; past it the oldest go (a crash loop of a day).
const MAX_ENTRIES: usize = 2000;
/// A memory sample a minute.
pub const SAMPLE_EVERY_MS: u64 = 60 * 1000;

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub at_ms: u64,
    pub state: ProgramState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeployMark {
    pub at_ms: u64,
    pub result: DeployResult,
}

#[derive(Clone, Debug, Default)]
pub struct ProgramHistory {
    pub changes: VecDeque<Change>,
    pub deploys: VecDeque<DeployMark>,
    /// (when, resident bytes of its process group).
    pub memory: VecDeque<(u64, u64)>,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    /// Since when statusd has been watching (Unix ms): before it, the page shows nothing.
    pub since_ms: Option<u64>,
    pub programs: BTreeMap<String, ProgramHistory>,
}

fn push<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= MAX_ENTRIES {
        q.pop_front();
    }
    q.push_back(item);
}

impl History {
    pub fn start(&mut self, now_ms: u64) {
        self.since_ms.get_or_insert(now_ms);
    }

    /// A program is in `state` at `at_ms` (a change, or what a fresh status read says: only a
    /// different state is recorded).
    pub fn state(&mut self, program: &str, state: ProgramState, at_ms: u64) {
        let h = self.programs.entry(program.to_owned()).or_default();
        if h.changes.back().is_some_and(|c| c.state == state) {
            return;
        }
        push(&mut h.changes, Change { at_ms, state });
    }

    pub fn deploy(&mut self, program: &str, result: DeployResult, at_ms: u64) {
        let h = self.programs.entry(program.to_owned()).or_default();
        push(&mut h.deploys, DeployMark { at_ms, result });
    }

    pub fn memory(&mut self, program: &str, bytes: u64, at_ms: u64) {
        let h = self.programs.entry(program.to_owned()).or_default();
        push(&mut h.memory, (at_ms, bytes));
    }

    /// Forgets what is older than the window, keeping for each program the last change before
    /// it (the state the window starts in).
    pub fn prune(&mut self, now_ms: u64) {
        let start = now_ms.saturating_sub(WINDOW_MS);
        for h in self.programs.values_mut() {
            while h.changes.len() > 1 && h.changes[1].at_ms <= start {
                h.changes.pop_front();
            }
            while h.deploys.front().is_some_and(|d| d.at_ms < start) {
                h.deploys.pop_front();
            }
            while h.memory.front().is_some_and(|m| m.0 < start) {
                h.memory.pop_front();
            }
        }
    }

    /// The spans of one program's states within `[start, now]`: (from, to, state). Before
    /// statusd knew anything, no span.
    pub fn spans(&self, program: &str, start: u64, now: u64) -> Vec<(u64, u64, ProgramState)> {
        let Some(h) = self.programs.get(program) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, c) in h.changes.iter().enumerate() {
            let end = h.changes.get(i + 1).map_or(now, |n| n.at_ms).min(now);
            let from = c.at_ms.max(start);
            if end > from {
                out.push((from, end, c.state));
            }
        }
        out
    }

    /// How many times a program was started within `[start, now]` beyond its first start.
    pub fn restarts(&self, program: &str, start: u64) -> usize {
        self.programs.get(program).map_or(0, |h| {
            h.changes
                .iter()
                .filter(|c| c.at_ms >= start && c.state == ProgramState::Starting)
                .count()
                .saturating_sub(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_follow_the_changes_and_start_at_the_window() {
        let mut h = History::default();
        h.state("bot", ProgramState::Starting, 1_000);
        h.state("bot", ProgramState::Running, 2_000);
        h.state("bot", ProgramState::Running, 2_500); // the same state: nothing new
        h.state("bot", ProgramState::Backoff, 5_000);
        assert_eq!(
            h.spans("bot", 1_500, 6_000),
            [
                (1_500, 2_000, ProgramState::Starting),
                (2_000, 5_000, ProgramState::Running),
                (5_000, 6_000, ProgramState::Backoff),
            ]
        );
        assert!(h.spans("nobody", 0, 6_000).is_empty());
    }

    #[test]
    fn pruning_keeps_the_state_the_window_starts_in_and_entries_are_bounded() {
        let mut h = History::default();
        h.state("bot", ProgramState::Running, 10);
        h.state("bot", ProgramState::Fatal, 20);
        h.memory("bot", 5, 15);
        h.prune(WINDOW_MS + 30);
        let bot = &h.programs["bot"];
        assert_eq!(bot.changes.len(), 1);
        assert_eq!(bot.changes[0].state, ProgramState::Fatal);
        assert!(bot.memory.is_empty());
        for i in 0..5_000u64 {
            let state = if i % 2 == 0 {
                ProgramState::Starting
            } else {
                ProgramState::Backoff
            };
            h.state("loop", state, i);
        }
        assert_eq!(h.programs["loop"].changes.len(), MAX_ENTRIES);
        assert_eq!(h.restarts("loop", 0), MAX_ENTRIES / 2 - 1);
    }
}
