//! From TOML text to a validated [`Config`], collecting every problem with its line and key.
//!
//! The document is parsed into toml's spanned tree and walked by hand rather than through
//! `#[derive(Deserialize)]`: serde stops at the first error, and we promise all of them at once.
//!
//! # Layout, from the bottom up (each file uses only those below it)
//! - [`values`]: the walker, which collects the problems, and the readers of single values.
//! - [`accounts`]: users and groups.
//! - [`supervisor`], [`program`] (with [`health`] and [`limits`]: rlimits, ceilings,
//!   schedules), [`deploy`]: a file per section, each with
//!   its keys in one table, from which the did-you-mean hints come.
//! - [`checks`]: what only the whole document can show (shared log files, `depends_on`).
//! - here: the document, and the socket path alone for the client verbs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::config::expand::{expand, last_value, read_env_file};
use crate::config::{Config, ConfigError, ConfigErrors, ControlSection, ProgramName};

mod accounts;
mod checks;
mod deploy;
mod health;
mod limits;
mod program;
mod supervisor;
mod values;

pub(crate) use accounts::resolve_user;
use checks::{LogUse, key_span};
pub use program::PROGRAM_KEYS;
use values::{Env, Walker, get, suggest};

const SECTIONS: &[&str] = &["supervisor", "program", "control"];

/// Parses `text` as the contents of `path`, expanding `${VAR}` from the process environment.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(path, text, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with relative paths resolved against `base` instead of the file's folder:
/// a supervisord file run as it is resolves them against the working directory, as supervisord
/// does.
pub fn parse_in(path: &Path, text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut w = Walker::new(path, text);
    w.base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
    parse_walker(w, path, text, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with the environment given as a lookup function (for tests).
pub fn parse_with_env(path: &Path, text: &str, env: &Env<'_>) -> Result<Config, ConfigErrors> {
    parse_walker(Walker::new(path, text), path, text, env)
}

fn parse_walker(
    mut w: Walker<'_>,
    path: &Path,
    text: &str,
    env: &Env<'_>,
) -> Result<Config, ConfigErrors> {
    let doc = match DeTable::parse_recoverable(text) {
        (doc, errors) if errors.is_empty() => doc,
        (_, errors) => {
            for e in errors {
                let line = e.span().map_or(0, |s| w.line(s.start));
                w.errors.push(ConfigError {
                    file: path.to_owned(),
                    line,
                    key: String::new(),
                    message: format!("invalid TOML: {}", e.message().trim_end()),
                });
            }
            return Err(w.finish_errors());
        }
    };
    let config = w.document(doc.get_ref(), env);
    if w.errors.is_empty() {
        config.ok_or_else(|| w.finish_errors())
    } else {
        Err(w.finish_errors())
    }
}

impl Walker<'_> {
    fn document(&mut self, doc: &DeTable<'_>, env: &Env<'_>) -> Option<Config> {
        for (key, _) in doc.iter() {
            let name = key.get_ref().as_ref();
            if !SECTIONS.contains(&name) {
                let hint = suggest(name, SECTIONS);
                self.error(key.span(), name, format!("unknown section{hint}"));
            }
        }
        let (sup_span, sup_table) = match get(doc, "supervisor") {
            Some((k, v)) => (k.span(), self.table(v, "supervisor")),
            None => (0..0, None),
        };
        let supervisor = self.supervisor(sup_table, env);
        let global_env = match &supervisor.env_file {
            Some(path) => match read_env_file(path) {
                Ok(vars) => vars,
                Err(message) => {
                    let span = sup_table
                        .and_then(|t| get(t, "env_file"))
                        .map_or(sup_span, |(_, v)| v.span());
                    self.error(span, "supervisor.env_file", message);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let global_lookup = |name: &str| env(name).or_else(|| last_value(&global_env, name));

        let mut programs = Vec::new();
        let mut spans = HashMap::new();
        let mut logs = Vec::new();
        if let Some(table) = get(doc, "program").and_then(|(_, v)| self.table(v, "program")) {
            for (key, value) in table.iter() {
                let raw_name = key.get_ref().as_ref();
                let path = format!("program.{raw_name}");
                let name = match ProgramName::new(raw_name) {
                    Ok(n) => n,
                    Err(message) => {
                        self.error(key.span(), &path, message);
                        continue;
                    }
                };
                let Some(t) = self.table(value, &path) else {
                    continue;
                };
                spans.insert(name.clone(), key.span());
                if let Some(p) = self.program(
                    name,
                    t,
                    key.span(),
                    &supervisor,
                    &global_env,
                    &global_lookup,
                    env,
                ) {
                    for (stream, target) in [("stdout", &p.stdout), ("stderr", &p.stderr)] {
                        if stream == "stderr" && p.redirect_stderr {
                            continue;
                        }
                        if let Some(path) = &target.path {
                            let key = format!("program.{}.{stream}_logfile", p.name);
                            let span = get(t, &format!("{stream}_logfile"))
                                .map_or(key_span(&spans, &p.name), |(_, v)| v.span());
                            logs.push(LogUse {
                                path: path.clone(),
                                key,
                                span,
                                rotation: (target.maxbytes, target.backups),
                            });
                        }
                    }
                    programs.push(p);
                }
            }
        }
        self.shared_logs(&logs);
        self.dependencies(&programs, doc, &spans);
        programs.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        let control = match get(doc, "control") {
            Some((_, v)) => self.control(v, env, &programs),
            None => ControlSection::default(),
        };
        Some(Config {
            control,
            path: std::path::absolute(self.file).unwrap_or_else(|_| self.file.to_owned()),
            supervisor,
            programs,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

#[cfg(test)]
mod tests;

/// Just the control socket's path from the configuration at `path`, for the client verbs:
/// `[supervisor] socket` (expanded as the daemon does, from the environment and the
/// `[supervisor] env_file`) or its default, whatever else the file holds. An error says why
/// it could not be read.
pub fn socket_path(path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A supervisord file: its `[supervisorctl] serverurl` when that is a socket, as
    // supervisorctl reads it; otherwise its `[unix_http_server] file`, as the conversion does.
    if crate::import::is_supervisord(&text) {
        if let Some(socket) = crate::import::supervisorctl_socket(path) {
            return Ok(socket);
        }
        let imported = crate::import::import(path).map_err(|e| e.to_string())?;
        // Relative paths are the working directory's, as supervisord reads them.
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        return socket_from_toml(&imported.toml, &cwd)
            .map_err(|e| format!("{} (converted){e}", path.display()));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    socket_from_toml(&text, base).map_err(|e| format!("{}{e}", path.display()))
}

/// The socket named by a `supervisor.toml` text whose relative paths start at `base`.
fn socket_from_toml(text: &str, base: &Path) -> Result<PathBuf, String> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if let Some(e) = errors.first() {
        return Err(format!(" is not valid TOML: {}", e.message().trim_end()));
    }
    let supervisor = get(doc.get_ref(), "supervisor").map(|(_, v)| v.get_ref());
    let text_of = |key: &str| match supervisor {
        Some(DeValue::Table(t)) => match get(t, key).map(|(_, v)| v.get_ref()) {
            Some(DeValue::String(s)) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    };
    let real = |name: &str| std::env::var(name).ok();
    let file_env = match text_of("env_file") {
        Some(f) => {
            let f = expand(&f, &real).map_err(|e| format!("supervisor.env_file: {e}"))?;
            read_env_file(&base.join(f)).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let lookup = |name: &str| real(name).or_else(|| last_value(&file_env, name));
    let socket = match text_of("socket") {
        Some(s) => expand(&s, &lookup).map_err(|e| format!("supervisor.socket: {e}"))?,
        None => "data/supervisor.sock".to_owned(),
    };
    Ok(base.join(socket))
}
