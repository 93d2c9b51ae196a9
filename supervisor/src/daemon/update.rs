//! `reread` and `update` (and SIGHUP): compare the configuration file with what runs, and apply
//! the difference. Unchanged programs are not touched; changed ones are stopped and started
//! with their new configuration; removed ones are stopped and dropped; added ones start if
//! `autostart`. `add` and `remove` do it for one program or group, as supervisorctl's do. Also
//! how a program is set up and the set reindexed (at start too).

use std::time::SystemTime;

use supervisor_proto::{ErrorBody, ErrorKind, Event, Reply};

use super::program::{Program, ProgramSetup, depth};
use super::{Daemon, Retire, schedule};
use crate::config::{self, Config, ProgramConfig};
use crate::control::Acl;
use crate::health::notify;
use crate::lifecycle::{Event as LifeEvent, State};
use crate::status::unix_ms;

/// Program names added, changed and removed.
type Changes = (Vec<String>, Vec<String>, Vec<String>);

impl Daemon {
    pub(super) fn add_program(&mut self, cfg: ProgramConfig) -> anyhow::Result<()> {
        let notify_dir = notify::folder(&self.config.supervisor.socket);
        let mut setup = ProgramSetup {
            notify_dir: &notify_dir,
            statedir: &self.config.supervisor.statedir,
            reports: &self.reports,
            writer: &self.starts_writer,
            log_files: &mut self.log_files,
            echo_format: self.config.supervisor.echo_format,
        };
        let (program, health, captures) = Program::new(cfg, &self.echo, &self.reopen, &mut setup)?;
        self.health.insert(program.cfg.name.as_str(), health);
        let interval = program.cfg.deploy.as_ref().and_then(|d| d.poll);
        let jitter = interval.map_or(0.0, |_| self.jitter.sample());
        self.polls.set(program.cfg.name.as_str(), interval, jitter);
        self.deploys.forget(program.cfg.name.as_str());
        self.programs.push(program);
        self.captures.extend(captures);
        Ok(())
    }

    /// After programs were added, removed or reordered: start order, depths, the pid index.
    pub(super) fn reindex(&mut self) {
        self.programs.sort_by(|a, b| {
            a.cfg
                .priority
                .cmp(&b.cfg.priority)
                .then(a.cfg.name.cmp(&b.cfg.name))
        });
        let depths: Vec<u32> = (0..self.programs.len())
            .map(|i| depth(&self.programs, i, 0))
            .collect();
        for (p, d) in self.programs.iter_mut().zip(depths) {
            p.depth = d;
        }
        let names = self.programs.iter().map(|p| p.cfg.name.as_str()).collect();
        self.polls.keep_only(&names);
        self.alerts.keep_only(&names);
        self.listeners.keep_only(&names);
        self.deploys.keep_only(&names);
        self.health.keep_only(&names);
        let leaders = self
            .programs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.state.pid().map(|pid| (pid, i)));
        self.children.index_programs(leaders);
        self.listeners.groups(&self.programs);
    }

    /// Plans the scheduled programs anew (at start, after `update`).
    pub(super) fn schedule_sync(&mut self) {
        let scheduled = schedule::scheduled(&self.programs);
        let statedir = &self.config.supervisor.statedir;
        let written = self.plans.sync(&scheduled, statedir, &mut self.jitter);
        self.perform(written);
    }

    fn load_new(&self) -> Result<Config, ErrorBody> {
        config::load(&self.config.path).map_err(|e| ErrorBody {
            kind: ErrorKind::BadConfig,
            message: format!("the configuration has errors; nothing changed:\n{e}"),
        })
    }

    fn diff(&self, new: &Config) -> Changes {
        let old = &self.config.programs;
        let added = new
            .programs
            .iter()
            .filter(|p| self.config.program(p.name.as_str()).is_none())
            .map(|p| p.name.to_string())
            .collect();
        let changed = old
            .iter()
            .filter(|p| new.program(p.name.as_str()).is_some_and(|n| n != *p))
            .map(|p| p.name.to_string())
            .collect();
        let removed = old
            .iter()
            .filter(|p| new.program(p.name.as_str()).is_none())
            .map(|p| p.name.to_string())
            .collect();
        (added, changed, removed)
    }

    pub(super) fn reread(&self) -> Result<Reply, ErrorBody> {
        let new = self.load_new()?;
        let (added, changed, removed) = self.diff(&new);
        Ok(Reply::Changes {
            added,
            changed,
            removed,
            applied: false,
        })
    }

    pub(super) fn update(&mut self) -> Result<Reply, ErrorBody> {
        self.apply(false)
    }

    /// `reload` (supervisord's `restart`): as `update`, with every program that stays counted
    /// as changed, so that each is stopped and brought back with the file's configuration.
    pub(super) fn reload(&mut self) -> Result<Reply, ErrorBody> {
        self.apply(true)
    }

    fn apply(&mut self, everything: bool) -> Result<Reply, ErrorBody> {
        if self.shutdown.is_some() {
            return Err(shutting_down());
        }
        let new = self.load_new()?;
        let (added, mut changed, removed) = self.diff(&new);
        if everything {
            changed = self
                .config
                .programs
                .iter()
                .map(|p| p.name.to_string())
                .filter(|n| !removed.contains(n))
                .collect();
        }
        if new.supervisor.socket != self.config.supervisor.socket
            || new.supervisor.socket_mode != self.config.supervisor.socket_mode
            || new.supervisor.socket_group != self.config.supervisor.socket_group
            || new.supervisor.files_group != self.config.supervisor.files_group
            || new.control.http != self.config.control.http
        {
            tracing::warn!(
                "the control socket's, its TCP port's or the files' settings changed; they apply when the supervisor restarts"
            );
        }
        self.acl
            .send_replace(Acl::new(nix::unistd::geteuid().as_raw(), &new.control));
        for name in removed.iter().chain(&changed) {
            let Some(idx) = self.index(name) else {
                continue;
            };
            let retire = match new.program(name) {
                Some(cfg) => Retire::Replace(Box::new(cfg.clone())),
                None => Retire::Remove,
            };
            let p = &mut self.programs[idx];
            p.pending_start = false;
            p.retiring = Some(retire);
            if matches!(
                p.state,
                State::Starting { .. } | State::Running { .. } | State::Backoff { .. }
            ) {
                self.feed(idx, LifeEvent::Stop);
            }
        }
        for name in &added {
            let Some(cfg) = new.program(name) else {
                continue;
            };
            if let Err(e) = self.add_program(cfg.clone()) {
                tracing::error!(program = %name, error = %e, "cannot add the program");
            }
        }
        let mut new = new;
        // Keep the path the daemon was started with (the same file, maybe spelt relatively).
        new.path = self.config.path.clone();
        self.config = new;
        self.applied(added, changed, removed)
    }

    /// `add NAME`: the programs of the file named NAME or in group NAME that the supervisor
    /// does not have, added (and started if `autostart`); the rest of the file is not applied.
    pub(super) fn add(&mut self, name: &str) -> Result<Reply, ErrorBody> {
        if self.shutdown.is_some() {
            return Err(shutting_down());
        }
        let new = self.load_new()?;
        let named: Vec<&crate::config::ProgramConfig> =
            new.programs.iter().filter(|p| named(p, name)).collect();
        if named.is_empty() {
            return Err(ErrorBody {
                kind: ErrorKind::UnknownProgram,
                message: format!(
                    "{name}: ERROR (no such process or group in {})",
                    new.path.display()
                ),
            });
        }
        let fresh: Vec<crate::config::ProgramConfig> = named
            .into_iter()
            .filter(|p| self.index(p.name.as_str()).is_none())
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Err(ErrorBody {
                kind: ErrorKind::AlreadyAdded,
                message: format!("{name}: ERROR (already added)"),
            });
        }
        let mut added = Vec::new();
        for cfg in fresh {
            let program = cfg.name.to_string();
            match self.add_program(cfg.clone()) {
                Ok(()) => {
                    self.config.programs.push(cfg);
                    added.push(program);
                }
                Err(e) => tracing::error!(program = %program, error = %e, "cannot add the program"),
            }
        }
        self.config
            .programs
            .sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        self.applied(added, Vec::new(), Vec::new())
    }

    /// `remove NAME`: the program NAME, or group NAME's programs, dropped; each must be
    /// stopped (STOPPED, EXITED or FATAL).
    pub(super) fn remove(&mut self, name: &str) -> Result<Reply, ErrorBody> {
        let idxs: Vec<usize> = (0..self.programs.len())
            .filter(|&i| named(&self.programs[i].cfg, name))
            .collect();
        if idxs.is_empty() {
            return Err(ErrorBody {
                kind: ErrorKind::UnknownProgram,
                message: format!("{name}: ERROR (no such process or group)"),
            });
        }
        if let Some(&live) = idxs.iter().find(|&&i| {
            let p = &self.programs[i];
            p.state.is_live() || p.retiring.is_some() || p.pending_start
        }) {
            return Err(ErrorBody {
                kind: ErrorKind::StillRunning,
                message: format!(
                    "{name}: ERROR (process/group still running: {} is {})",
                    self.programs[live].cfg.name,
                    self.programs[live].state.name()
                ),
            });
        }
        let mut removed = Vec::new();
        for &i in idxs.iter().rev() {
            let p = self.programs.remove(i);
            removed.push(p.cfg.name.to_string());
        }
        removed.reverse();
        self.config
            .programs
            .retain(|p| !removed.iter().any(|r| r == p.name.as_str()));
        self.applied(Vec::new(), Vec::new(), removed)
    }

    /// After `update`, `add` or `remove`: the order, the published configuration, schedules,
    /// the event.
    fn applied(
        &mut self,
        added: Vec<String>,
        changed: Vec<String>,
        removed: Vec<String>,
    ) -> Result<Reply, ErrorBody> {
        self.published
            .send_replace(std::sync::Arc::new(self.config.clone()));
        self.reindex();
        self.schedule_sync();
        tracing::info!(added = ?added, changed = ?changed, removed = ?removed, "configuration updated");
        let _ = self.events.send(std::sync::Arc::new(Event::Config {
            added: added.clone(),
            changed: changed.clone(),
            removed: removed.clone(),
            at_ms: unix_ms(SystemTime::now()),
        }));
        Ok(Reply::Changes {
            added,
            changed,
            removed,
            applied: true,
        })
    }

    /// SIGHUP: `update`, with the outcome in the log.
    pub(super) fn sighup(&mut self) {
        match self.update() {
            Ok(_) => tracing::info!("SIGHUP: configuration applied"),
            Err(e) => tracing::error!(errors = %e.message, "SIGHUP: configuration not applied"),
        }
    }

    /// Programs that `update` removed or changed, once they have stopped: drop them, or bring
    /// them back with their new configuration. Dropping a program closes our ends of its
    /// pipes; its capture tasks drain and end.
    pub(super) fn retire(&mut self) {
        let mut changed = false;
        let mut i = 0;
        while i < self.programs.len() {
            let p = &self.programs[i];
            if p.retiring.is_none() || p.state.is_live() {
                i += 1;
                continue;
            }
            let p = self.programs.remove(i);
            changed = true;
            if let Some(Retire::Replace(cfg)) = p.retiring {
                let name = cfg.name.clone();
                if let Err(e) = self.add_program(*cfg) {
                    tracing::error!(program = %name, error = %e, "cannot bring the program back");
                }
            }
        }
        if changed {
            self.reindex();
        }
    }
}

fn shutting_down() -> ErrorBody {
    ErrorBody {
        kind: ErrorKind::ShuttingDown,
        message: "the supervisor is shutting down".into(),
    }
}

/// Whether `name` names the program, or its group (supervisorctl's `add`/`remove` take group
/// names; a program outside any group is a group of its own name).
fn named(p: &crate::config::ProgramConfig, name: &str) -> bool {
    let name = name
        .strip_suffix(":*")
        .or(name.strip_suffix(':'))
        .unwrap_or(name);
    p.name.as_str() == name || p.group.as_deref() == Some(name)
}
