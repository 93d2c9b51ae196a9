//! What can only be checked across programs: log files shared with different rotation, and
//! `depends_on` (unknown programs, cycles).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::config::{ProgramConfig, ProgramName};

use super::values::{Walker, get};

/// A log path with where it was configured, to check that streams sharing a file agree on
/// its rotation.
pub(super) struct LogUse {
    pub(super) path: PathBuf,
    pub(super) key: String,
    pub(super) span: Range<usize>,
    /// maxbytes, backups.
    pub(super) rotation: (u64, u32),
}

impl Walker<'_> {
    /// Streams may share a log file (supervisord's `numprocs` workers with one
    /// `stdout_logfile`): one writer owns it, so it must rotate one way.
    pub(super) fn shared_logs(&mut self, logs: &[LogUse]) {
        let mut seen: BTreeMap<&Path, &LogUse> = BTreeMap::new();
        for log in logs {
            match seen.get(log.path.as_path()) {
                Some(first) if first.rotation != log.rotation => {
                    let message = format!(
                        "log file {} is shared with {}, which rotates it differently (maxbytes {} and {} backups there, {} and {} here): give both the same",
                        log.path.display(),
                        first.key,
                        first.rotation.0,
                        first.rotation.1,
                        log.rotation.0,
                        log.rotation.1
                    );
                    let (span, key) = (log.span.clone(), log.key.clone());
                    self.error(span, &key, message);
                }
                Some(_) => {}
                None => {
                    seen.insert(&log.path, log);
                }
            }
        }
    }

    pub(super) fn dependencies(
        &mut self,
        programs: &[ProgramConfig],
        doc: &DeTable<'_>,
        spans: &HashMap<ProgramName, Range<usize>>,
    ) {
        let deps_span = |name: &ProgramName| {
            get(doc, "program")
                .and_then(|(_, v)| v.get_ref().as_table())
                .and_then(|t| get(t, name.as_str()))
                .and_then(|(_, v)| v.get_ref().as_table())
                .and_then(|t| get(t, "depends_on"))
                .map_or_else(|| key_span(spans, name), |(_, v)| v.span())
        };
        let known: HashMap<&ProgramName, &ProgramConfig> =
            programs.iter().map(|p| (&p.name, p)).collect();
        for p in programs {
            for d in &p.depends_on {
                if !known.contains_key(d) && !spans.contains_key(d) {
                    self.error(
                        deps_span(&p.name),
                        &format!("program.{}.depends_on", p.name),
                        format!("unknown program \"{d}\""),
                    );
                }
            }
        }
        // Report each cycle once, from its smallest member.
        let mut reported = std::collections::HashSet::new();
        let mut names: Vec<_> = known.keys().copied().collect();
        names.sort();
        for start in names {
            if reported.contains(start) {
                continue;
            }
            if let Some(cycle) = find_cycle(start, &known) {
                let text = cycle
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> ");
                for n in &cycle {
                    reported.insert((*n).clone());
                }
                self.error(
                    deps_span(start),
                    &format!("program.{start}.depends_on"),
                    format!("dependency cycle: {text}"),
                );
            }
        }
    }
}

/// A path from `start` back to itself through `depends_on`, if there is one.
fn find_cycle<'a>(
    start: &'a ProgramName,
    known: &HashMap<&'a ProgramName, &'a ProgramConfig>,
) -> Option<Vec<&'a ProgramName>> {
    fn walk<'a>(
        at: &'a ProgramName,
        start: &'a ProgramName,
        known: &HashMap<&'a ProgramName, &'a ProgramConfig>,
        path: &mut Vec<&'a ProgramName>,
        visited: &mut std::collections::HashSet<&'a ProgramName>,
    ) -> bool {
        let Some(p) = known.get(at) else {
            return false;
        };
        for d in &p.depends_on {
            if d == start {
                path.push(d);
                return true;
            }
            if visited.insert(d) {
                path.push(d);
                if walk(d, start, known, path, visited) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut visited = std::collections::HashSet::new();
    walk(start, start, known, &mut path, &mut visited).then_some(path)
}

pub(super) fn key_span(
    spans: &HashMap<ProgramName, Range<usize>>,
    name: &ProgramName,
) -> Range<usize> {
    spans.get(name).cloned().unwrap_or(0..0)
}
