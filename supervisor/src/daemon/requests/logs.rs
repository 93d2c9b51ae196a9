//! `tail` and `clear`: a program's log files, read and emptied off the actor's thread.

use std::path::PathBuf;
use supervisor_proto::{ErrorBody, ErrorKind, Failure, Outcome, Reply, Stream};

use super::super::Daemon;
use super::{Replier, error, failed, off_thread, result};

const TAIL_MAX_LINES: u32 = 1000;

impl Daemon {
    /// `tail`: the last lines of a program's log file, read on a blocking thread.
    pub(super) fn tail(&self, name: &str, stream: Stream, lines: u32, reply: Replier) {
        let path = match self.tail_path(name, stream) {
            Ok(path) => path,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let name = name.to_owned();
        off_thread(reply, move || {
            let text = crate::logs::tail::last_lines_of(&path, lines.min(TAIL_MAX_LINES)).map_err(
                |e| {
                    error(
                        ErrorKind::Internal,
                        format!("cannot read {}: {e}", path.display()),
                    )
                },
            )?;
            Ok(Reply::Tail {
                name,
                stream,
                path: path.display().to_string(),
                text,
            })
        });
    }

    /// The file `tail` reads, or why there is none.
    fn tail_path(&self, name: &str, stream: Stream) -> Result<PathBuf, ErrorBody> {
        let idx = self.index(name).ok_or_else(|| {
            error(
                ErrorKind::UnknownProgram,
                format!("{name}: ERROR (no such process)"),
            )
        })?;
        let cfg = &self.programs[idx].cfg;
        let target = match stream {
            Stream::Stdout => &cfg.stdout,
            Stream::Stderr if cfg.redirect_stderr => {
                return Err(error(
                    ErrorKind::BadRequest,
                    format!("{name} sends stderr to its stdout log (redirect_stderr); tail stdout"),
                ));
            }
            Stream::Stderr => &cfg.stderr,
        };
        let stream_name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let path = target.path.as_ref().ok_or_else(|| {
            error(
                ErrorKind::BadRequest,
                format!(
                    "{name} keeps no {stream_name} log file ({stream_name}_logfile = \"NONE\")"
                ),
            )
        })?;
        Ok(path.clone())
    }

    /// `clear`: each program's log files emptied and their rotated backups deleted, on a
    /// blocking thread; then every writer reopens its file (its size starts again from 0).
    pub(super) fn clear(&mut self, names: &[String], reply: Replier) {
        let ids = match self.targets(names) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let targets: Vec<(String, Vec<(std::path::PathBuf, u32)>)> = ids
            .iter()
            .map(|&i| {
                let cfg = &self.programs[i].cfg;
                let files = [&cfg.stdout, &cfg.stderr]
                    .into_iter()
                    .filter_map(|t| t.path.clone().map(|p| (p, t.backups)))
                    .collect();
                (cfg.name.to_string(), files)
            })
            .collect();
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let cleared = tokio::task::spawn_blocking(move || {
                targets
                    .into_iter()
                    .map(|(name, files)| match clear_files(&files) {
                        Ok(()) => result(&name, Outcome::Cleared, "cleared"),
                        Err(e) => failed(&name, Failure::Other, format!("ERROR ({e})")),
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let answer = match cleared {
                Ok(results) => {
                    let _ = reports.send(crate::health::Report::LogsCleared).await;
                    Ok(Reply::Actions { results })
                }
                Err(e) => Err(error(ErrorKind::Internal, format!("clearing logs: {e}"))),
            };
            let _ = reply.send(answer);
        });
    }
}

/// Empties each log file (the writers append, so they go on from its start) and deletes its
/// rotated backups (`name.log.1` ...). A file not written yet is nothing to clear.
fn clear_files(files: &[(std::path::PathBuf, u32)]) -> std::io::Result<()> {
    for (path, backups) in files {
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => f.set_len(0)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in 1..=*backups {
            match std::fs::remove_file(crate::logs::rotation::backup(path, n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}
