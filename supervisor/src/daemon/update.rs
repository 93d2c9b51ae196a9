//! `reread` and `update` (and SIGHUP): compare the configuration file with what runs, and apply
//! the difference. Unchanged programs are not touched; changed ones are stopped and started
//! with their new configuration; removed ones are stopped and dropped; added ones start if
//! `autostart`.

use std::time::SystemTime;

use supervisor_proto::{ErrorBody, ErrorKind, Event, Reply};

use super::{Daemon, Retire};
use crate::config::{self, Config};
use crate::control::Acl;
use crate::lifecycle::{Event as LifeEvent, State};
use crate::status::unix_ms;

/// Program names added, changed and removed.
type Changes = (Vec<String>, Vec<String>, Vec<String>);

impl Daemon {
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
        if self.shutdown.is_some() {
            return Err(ErrorBody {
                kind: ErrorKind::ShuttingDown,
                message: "the supervisor is shutting down".into(),
            });
        }
        let new = self.load_new()?;
        let (added, changed, removed) = self.diff(&new);
        if new.supervisor.socket != self.config.supervisor.socket
            || new.supervisor.socket_mode != self.config.supervisor.socket_mode
            || new.supervisor.socket_group != self.config.supervisor.socket_group
            || new.supervisor.files_group != self.config.supervisor.files_group
        {
            tracing::warn!(
                "the control socket's or the files' settings changed; they apply when the supervisor restarts"
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
