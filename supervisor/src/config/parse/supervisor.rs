//! The `[supervisor]` and `[control]` sections: the daemon's own settings and who may do what.

use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::config::{ControlSection, Grant, HttpControl, ProgramConfig, SupervisorSection};

use super::accounts::{resolve_group, resolve_user};
use super::values::{Env, Value, Walker, raw, suggest};

pub(super) const HTTP_KEYS: &[&str] = &["listen", "username", "password", "user"];
pub(super) const SUPERVISOR_KEYS: &[&str] = &[
    "logdir",
    "pidfile",
    "user",
    "socket",
    "socket_mode",
    "socket_group",
    "files_group",
    "shutdown_timeout",
    "env_file",
    "deploydir",
    "statedir",
    "echo_format",
];

impl Walker<'_> {
    pub(super) fn supervisor(
        &mut self,
        table: Option<&DeTable<'_>>,
        env: &Env<'_>,
    ) -> SupervisorSection {
        let mut s = SupervisorSection {
            pidfile: None,
            user: None,
            logdir: self.base.join("data/logs"),
            socket: self.base.join("data/supervisor.sock"),
            shutdown_timeout: Duration::from_secs(30),
            env_file: None,
            socket_mode: 0o600,
            socket_group: None,
            files_group: None,
            deploydir: self.base.join("data/deploys"),
            statedir: self.base.join("data/state"),
            echo_format: crate::config::EchoFormat::Text,
        };
        let Some(table) = table else {
            return s;
        };
        for (key, name, path, value) in self.entries(table, "supervisor", SUPERVISOR_KEYS) {
            match name {
                "logdir" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.logdir = self.resolve(&v);
                    }
                }
                "socket" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.socket = self.resolve(&v);
                    }
                }
                "pidfile" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.pidfile = Some(self.resolve(&v));
                    }
                }
                "user" => {
                    if let Some(v) = self.string(value, &path, env) {
                        match resolve_user(&v) {
                            Ok(_) => s.user = Some(v),
                            Err(message) => self.error(value.span(), &path, message),
                        }
                    }
                }
                "env_file" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.env_file = Some(self.resolve(&v));
                    }
                }
                "deploydir" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.deploydir = self.resolve(&v);
                    }
                }
                "statedir" => {
                    if let Some(v) = self.string(value, &path, env) {
                        s.statedir = self.resolve(&v);
                    }
                }
                "echo_format" => match self.string(value, &path, env).as_deref() {
                    Some("text") => s.echo_format = crate::config::EchoFormat::Text,
                    Some("json") => s.echo_format = crate::config::EchoFormat::Json,
                    Some(other) => self.error(
                        value.span(),
                        &path,
                        format!("{other:?} is not an echo format (\"text\" or \"json\")"),
                    ),
                    None => {}
                },
                "socket_mode" => {
                    if let Some(mode) = self.mode(value, &path) {
                        s.socket_mode = mode;
                    }
                }
                "socket_group" | "files_group" => {
                    if let Some(g) = self.string(value, &path, env) {
                        match resolve_group(&g) {
                            Ok(gid) if name == "socket_group" => s.socket_group = Some((g, gid)),
                            Ok(gid) => s.files_group = Some((g, gid)),
                            Err(message) => self.error(value.span(), &path, message),
                        }
                    }
                }
                "shutdown_timeout" => {
                    if let Some(d) = self.duration(value, &path) {
                        s.shutdown_timeout = d;
                    }
                }
                _ => self.unknown_key(key, &path, SUPERVISOR_KEYS),
            }
        }
        s
    }

    pub(super) fn control(
        &mut self,
        v: &Value<'_>,
        env: &Env<'_>,
        programs: &[ProgramConfig],
    ) -> ControlSection {
        let mut c = ControlSection::default();
        let Some(t) = self.table(v, "control") else {
            return c;
        };
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let path = format!("control.{name}");
            if name == "http" {
                c.http = self.control_http(value, env);
                continue;
            }
            if name != "allow" {
                self.unknown_key(k, &path, &["allow", "http"]);
                continue;
            }
            let Some(allow) = self.table(value, &path) else {
                continue;
            };
            for (verb, users) in allow.iter() {
                let verb_name = verb.get_ref().as_ref();
                let vpath = format!("control.allow.{verb_name}");
                let Ok(parsed) = verb_name.parse::<supervisor_proto::Verb>() else {
                    let verbs: Vec<&str> = supervisor_proto::Verb::ALL
                        .iter()
                        .map(|v| v.as_str())
                        .collect();
                    let hint = suggest(verb_name, &verbs);
                    self.error(verb.span(), &vpath, format!("unknown verb{hint}"));
                    continue;
                };
                let Some(list) = self.string_list(users, &vpath, env) else {
                    continue;
                };
                let mut grants = Vec::new();
                for entry in list {
                    // `USER`, or `USER:PROGRAM,PROGRAM` to narrow the grant to those programs.
                    let (user, programs) = match entry.split_once(':') {
                        Some((u, p)) => {
                            let names: Vec<String> = p
                                .split(',')
                                .map(|n| n.trim().to_owned())
                                .filter(|n| !n.is_empty())
                                .collect();
                            if names.is_empty() {
                                let message = format!(
                                    "{entry:?} names no program after \":\" (write \"USER\", or \"USER:PROGRAM,PROGRAM\")"
                                );
                                self.error(users.span(), &vpath, message);
                                continue;
                            }
                            let known: Vec<&str> =
                                programs.iter().map(|p| p.name.as_str()).collect();
                            for name in names.iter().filter(|n| !known.contains(&n.as_str())) {
                                let hint = suggest(name, &known);
                                let message = format!(
                                    "{entry:?} names program {name:?}, which is not configured{hint}: the grant gives nothing until a program of that name is added"
                                );
                                self.warning(users.span(), &vpath, message);
                            }
                            (u, Some(names))
                        }
                        None => (entry.as_str(), None),
                    };
                    match resolve_user(user) {
                        Ok(u) => grants.push(Grant {
                            uid: u.uid,
                            programs,
                        }),
                        Err(message) => self.error(users.span(), &vpath, message),
                    }
                }
                c.allow.insert(parsed, grants);
            }
        }
        c
    }

    /// `[control.http]`: `listen` (`HOST:PORT`, `*:PORT` for every address), `username` and
    /// `password` (required unless `listen` is a loopback address), `user` (whose grants).
    fn control_http(&mut self, v: &Value<'_>, env: &Env<'_>) -> Option<HttpControl> {
        let t = self.table(v, "control.http")?;
        let (mut listen, mut username, mut password, mut uid) = (None, None, None, None);
        for (k, name, path, value) in self.entries(t, "control.http", HTTP_KEYS) {
            match name {
                "listen" => {
                    if let Some(text) = self.string(value, &path, env) {
                        match crate::config::address::listen_address(&text) {
                            Some(addr) => listen = Some(addr),
                            None => self.error(
                                value.span(),
                                &path,
                                format!(
                                    "{text:?} is not HOST:PORT (\"127.0.0.1:9001\", \"*:9001\" for every address)"
                                ),
                            ),
                        }
                    }
                }
                "username" => username = self.string(value, &path, env),
                "password" => password = self.string(value, &path, env),
                "user" => {
                    if let Some(user) = self.string(value, &path, env) {
                        match resolve_user(&user) {
                            Ok(u) => uid = Some(u.uid),
                            Err(message) => self.error(value.span(), &path, message),
                        }
                    }
                }
                _ => self.unknown_key(k, &path, HTTP_KEYS),
            }
        }
        let Some(listen) = listen else {
            // An unreadable one is said where it stands.
            if !t.iter().any(|(k, _)| k.get_ref().as_ref() == "listen") {
                self.error(
                    v.span(),
                    "control.http",
                    "no `listen` address (\"127.0.0.1:9001\")".to_owned(),
                );
            }
            return None;
        };
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) if listen.ip().is_loopback() => None,
            (None, None) => {
                self.error(
                    v.span(),
                    "control.http",
                    format!(
                        "{listen} is reachable from other machines: set `username` and `password` (or listen on 127.0.0.1)"
                    ),
                );
                return None;
            }
            _ => {
                self.error(
                    v.span(),
                    "control.http",
                    "`username` and `password` go together".to_owned(),
                );
                return None;
            }
        };
        Some(HttpControl {
            listen,
            credentials,
            uid,
        })
    }

    /// A file mode: an integer (`0o660` in TOML) or an octal string (`"0660"`).
    pub(super) fn mode(&mut self, v: &Value<'_>, path: &str) -> Option<u32> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u32::from_str_radix(i.as_str(), i.radix()).ok(),
            DeValue::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
            _ => {
                self.type_error(v, path, "a mode such as \"0660\"");
                return None;
            }
        };
        match parsed {
            Some(m) if m <= 0o777 => Some(m),
            _ => {
                self.error(
                    v.span(),
                    path,
                    format!(
                        "{} is not a file mode (write it in octal, such as \"0660\")",
                        raw(v)
                    ),
                );
                None
            }
        }
    }
}
