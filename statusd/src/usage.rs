//! Programs' memory and CPU (of their process groups, from /proc), read at most once a second
//! however many requests ask: a pass over /proc costs far more than answering `/status`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use supervisor_proto::resources::{Usage, usage_by_group};

const FRESH: Duration = Duration::from_secs(1);

/// When it was read, for which groups, and what it was.
type Reading = (Instant, Vec<u32>, HashMap<u32, Usage>);

#[derive(Debug, Default)]
pub struct UsageCache {
    last: Mutex<Option<Reading>>,
}

impl UsageCache {
    /// The use of the groups led by `pids`, at most a second old.
    pub fn get(&self, pids: &[u32]) -> HashMap<u32, Usage> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = last
            .as_ref()
            .filter(|(at, asked, _)| at.elapsed() < FRESH && asked == pids);
        if let Some((_, _, usage)) = fresh {
            return usage.clone();
        }
        let usage = usage_by_group(pids);
        *last = Some((Instant::now(), pids.to_vec(), usage.clone()));
        usage
    }
}
