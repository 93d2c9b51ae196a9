//! From TOML text to a validated [`Config`], collecting every problem with its line and key.
//!
//! The document is parsed into toml's spanned tree and walked by hand rather than through
//! `#[derive(Deserialize)]`: serde stops at the first error, and we promise all of them at once.
//!
//! Why this file is long: one walker holds every section's reader and the value readers they
//! share. The next step is a file per section (document, program, deploy, control) over the
//! value readers, with each section's keys in one table.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod health;

use super::environ;
use super::expand::{expand, last_value, read_env_file};
use super::health::{Ready, defaults};
use super::units::{parse_bytes, parse_duration, parse_signal};
use super::{
    AutoRestart, Backoff, Config, ConfigError, ConfigErrors, ControlSection, DeployConfig, Grant,
    LogTarget, OnFatal, ProgramConfig, ProgramName, SupervisorSection, UserSpec,
};

type Value<'i> = Spanned<DeValue<'i>>;
type Env<'e> = dyn Fn(&str) -> Option<String> + 'e;

const SUPERVISOR_KEYS: &[&str] = &[
    "logdir",
    "socket",
    "socket_mode",
    "socket_group",
    "shutdown_timeout",
    "env_file",
    "deploydir",
    "statedir",
    "echo_format",
];
const SECTIONS: &[&str] = &["supervisor", "program", "control"];
/// Every key of `[program.NAME]`.
pub const PROGRAM_KEYS: &[&str] = &[
    "command",
    "directory",
    "environment",
    "env_file",
    "pass_env",
    "user",
    "state_dirs",
    "autostart",
    "autorestart",
    "exitcodes",
    "fatal_exitcodes",
    "startsecs",
    "startretries",
    "stopsignal",
    "stopwaitsecs",
    "priority",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "backoff",
    "depends_on",
    "on_fatal",
    "echo_output",
    "group",
    "deploy",
    "critical",
    "ready",
    "ready_timeout",
    "healthcheck",
    "watchdog",
    "start_limit",
    "events",
    "buffer_size",
];
const DEPLOY_KEYS: &[&str] = &[
    "repo",
    "remote",
    "url",
    "branch",
    "steps",
    "step_timeout",
    "artifact",
    "releases",
    "keep_releases",
    "healthy_after",
    "user",
    "pass_env",
    "environment",
    "poll",
];
/// The longest duration any key accepts (a week: longer than any sensible timeout, and far
/// from the limits of the clock's arithmetic).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier", "jitter", "reset"];

/// Parses `text` as the contents of `path`, expanding `${VAR}` from the process environment.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(path, text, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with the environment given as a lookup function (for tests).
pub fn parse_with_env(path: &Path, text: &str, env: &Env<'_>) -> Result<Config, ConfigErrors> {
    let mut w = Walker::new(path, text);
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

struct Walker<'a> {
    file: &'a Path,
    src: &'a str,
    /// The folder relative paths resolve against.
    base: PathBuf,
    errors: Vec<ConfigError>,
}

/// A log path with where it was configured, to check that streams sharing a file agree on
/// its rotation.
struct LogUse {
    path: PathBuf,
    key: String,
    span: Range<usize>,
    /// maxbytes, backups.
    rotation: (u64, u32),
}

impl<'a> Walker<'a> {
    fn new(file: &'a Path, src: &'a str) -> Self {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
        let base = absolute
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self {
            file,
            src,
            base,
            errors: Vec::new(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn finish_errors(&mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by(|a, b| a.line.cmp(&b.line).then_with(|| a.key.cmp(&b.key)));
        errors.dedup();
        ConfigErrors(errors)
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

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
        if let Some((_, value)) = get(doc, "program")
            && let Some(table) = self.table(value, "program")
        {
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
            Some((_, v)) => self.control(v, env),
            None => ControlSection::default(),
        };
        Some(Config {
            control,
            path: std::path::absolute(self.file).unwrap_or_else(|_| self.file.to_owned()),
            supervisor,
            programs,
        })
    }

    fn supervisor(&mut self, table: Option<&DeTable<'_>>, env: &Env<'_>) -> SupervisorSection {
        let mut s = SupervisorSection {
            logdir: self.base.join("data/logs"),
            socket: self.base.join("data/supervisor.sock"),
            shutdown_timeout: Duration::from_secs(30),
            env_file: None,
            socket_mode: 0o600,
            socket_group: None,
            deploydir: self.base.join("data/deploys"),
            statedir: self.base.join("data/state"),
            echo_format: super::EchoFormat::Text,
        };
        let Some(table) = table else {
            return s;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let path = format!("supervisor.{name}");
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
                    Some("text") => s.echo_format = super::EchoFormat::Text,
                    Some("json") => s.echo_format = super::EchoFormat::Json,
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
                "socket_group" => {
                    if let Some(g) = self.string(value, &path, env) {
                        match resolve_group(&g) {
                            Ok(gid) => s.socket_group = Some((g, gid)),
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

    #[allow(clippy::too_many_arguments)] // the walker's context, passed down once
    fn program(
        &mut self,
        name: ProgramName,
        t: &DeTable<'_>,
        span: Range<usize>,
        sup: &SupervisorSection,
        global_env: &[(String, String)],
        global_lookup: &Env<'_>,
        real_env: &Env<'_>,
    ) -> Option<ProgramConfig> {
        let prefix = format!("program.{name}");
        let key = |k: &str| format!("{prefix}.{k}");

        // The program's env_file feeds both its environment and its own `${VAR}` expansion.
        let mut file_env = Vec::new();
        if let Some((_, v)) = get(t, "env_file")
            && let Some(p) = self.string(v, &key("env_file"), global_lookup)
        {
            match read_env_file(&self.resolve(&p)) {
                Ok(vars) => file_env = vars,
                Err(message) => self.error(v.span(), &key("env_file"), message),
            }
        }
        let lookup = |n: &str| last_value(&file_env, n).or_else(|| global_lookup(n));
        let env: &Env<'_> = &lookup;

        let mut p = ProgramConfig {
            name: name.clone(),
            command: Vec::new(),
            directory: None,
            environment: Vec::new(),
            pass_env: Vec::new(),
            user: None,
            state_dirs: Vec::new(),
            autostart: true,
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            fatal_exitcodes: Vec::new(),
            startsecs: Duration::from_secs(1),
            startretries: 3,
            stopsignal: Signal::SIGTERM,
            stopwaitsecs: Duration::from_secs(10),
            priority: 999,
            redirect_stderr: false,
            stdout: LogTarget {
                path: Some(sup.logdir.join(format!("{name}.log"))),
                maxbytes: 50 << 20,
                backups: 10,
            },
            stderr: LogTarget {
                path: Some(sup.logdir.join(format!("{name}.err.log"))),
                maxbytes: 50 << 20,
                backups: 10,
            },
            backoff: Backoff::default(),
            depends_on: Vec::new(),
            on_fatal: OnFatal::Ignore,
            echo_output: true,
            group: None,
            deploy: None,
            critical: false,
            ready: Ready::Started,
            ready_timeout: defaults::READY_TIMEOUT,
            healthcheck: None,
            watchdog: None,
            start_limit: None,
            listener: None,
        };
        let mut environment = Vec::new();
        let mut have_command = false;
        for (k, v) in t.iter() {
            let kname = k.get_ref().as_ref();
            let path = key(kname);
            match kname {
                "command" => {
                    if let Some(c) = self.command(v, &path, env) {
                        p.command = c;
                        have_command = true;
                    } else {
                        have_command = true; // already reported
                    }
                }
                "directory" => {
                    if let Some(d) = self.string(v, &path, env) {
                        p.directory = Some(self.resolve(&d));
                    }
                }
                "environment" => environment = self.environment(v, &path, env),
                "env_file" => {} // read above
                "pass_env" => set(&mut p.pass_env, self.pass_env(v, &path, env)),
                "state_dirs" => {
                    if let Some(list) = self.string_list(v, &path, env) {
                        p.state_dirs = list.iter().map(|d| self.resolve(d)).collect();
                    }
                }
                "user" => {
                    if let Some(u) = self.string(v, &path, env) {
                        match resolve_user(&u) {
                            Ok(spec) => p.user = Some(spec),
                            Err(message) => self.error(v.span(), &path, message),
                        }
                    }
                }
                "autostart" => set(&mut p.autostart, self.boolean(v, &path)),
                "autorestart" => set(&mut p.autorestart, self.autorestart(v, &path)),
                "exitcodes" => set(&mut p.exitcodes, self.exit_codes(v, &path)),
                "fatal_exitcodes" => set(&mut p.fatal_exitcodes, self.exit_codes(v, &path)),
                "startsecs" => set(&mut p.startsecs, self.duration(v, &path)),
                "startretries" => {
                    set(
                        &mut p.startretries,
                        self.integer(v, &path, 0, 1000).map(|n| n as u32),
                    );
                }
                "stopsignal" => set(&mut p.stopsignal, self.signal(v, &path)),
                "stopwaitsecs" => set(&mut p.stopwaitsecs, self.duration(v, &path)),
                "priority" => set(
                    &mut p.priority,
                    self.integer(v, &path, -1_000_000, 1_000_000)
                        .map(|n| n as i32),
                ),
                "redirect_stderr" => set(&mut p.redirect_stderr, self.boolean(v, &path)),
                "stdout_logfile" => set(
                    &mut p.stdout.path,
                    self.logfile(v, &path, env, sup, &name, "log"),
                ),
                "stderr_logfile" => set(
                    &mut p.stderr.path,
                    self.logfile(v, &path, env, sup, &name, "err.log"),
                ),
                "stdout_logfile_maxbytes" => set(&mut p.stdout.maxbytes, self.bytes(v, &path)),
                "stderr_logfile_maxbytes" => set(&mut p.stderr.maxbytes, self.bytes(v, &path)),
                "stdout_logfile_backups" => set(
                    &mut p.stdout.backups,
                    self.integer(v, &path, 0, 1000).map(|n| n as u32),
                ),
                "stderr_logfile_backups" => set(
                    &mut p.stderr.backups,
                    self.integer(v, &path, 0, 1000).map(|n| n as u32),
                ),
                "backoff" => set(&mut p.backoff, self.backoff(v, &path)),
                "depends_on" => {
                    if let Some(list) = self.string_list(v, &path, env) {
                        let mut deps = Vec::new();
                        for d in list {
                            match ProgramName::new(&d) {
                                Ok(n) if n == name => {
                                    self.error(v.span(), &path, "a program cannot depend on itself")
                                }
                                Ok(n) => deps.push(n),
                                Err(message) => self.error(v.span(), &path, message),
                            }
                        }
                        p.depends_on = deps;
                    }
                }
                "on_fatal" => set(&mut p.on_fatal, self.on_fatal(v, &path)),
                "echo_output" => set(&mut p.echo_output, self.boolean(v, &path)),
                "deploy" => {} // read below, once startsecs is known
                "critical" => set(&mut p.critical, self.boolean(v, &path)),
                "ready" => set(&mut p.ready, self.ready(v, &path, env)),
                "ready_timeout" => set(&mut p.ready_timeout, self.positive(v, &path)),
                "healthcheck" => p.healthcheck = self.healthcheck(v, &path, env),
                "watchdog" => set(&mut p.watchdog, self.watchdog(v, &path, env)),
                "start_limit" => p.start_limit = self.start_limit(v, &path),
                "events" => {
                    if let Some(events) = self.events(v, &path) {
                        p.listener = Some(crate::listener::ListenerConfig {
                            events,
                            buffer_size: crate::listener::DEFAULT_BUFFER_SIZE,
                        });
                    }
                }
                "buffer_size" => {} // read below, with events
                "group" => {
                    if let Some(g) = self.string(v, &path, env) {
                        match ProgramName::new(&g) {
                            Ok(_) => p.group = Some(g),
                            Err(message) => self.error(
                                v.span(),
                                &path,
                                message.replace("program name", "group name"),
                            ),
                        }
                    }
                }
                _ => self.unknown_key(k, &path, PROGRAM_KEYS),
            }
        }
        if !have_command {
            self.error(
                span,
                &prefix,
                "missing \"command\" (the program to run, e.g. command = [\"/usr/bin/bot\", \"--flag\"])",
            );
        }
        if let Some((_, v)) = get(t, "exitcodes") {
            let overlap: Vec<_> = p
                .fatal_exitcodes
                .iter()
                .filter(|c| p.exitcodes.contains(c))
                .collect();
            if !overlap.is_empty() {
                self.error(
                    v.span(),
                    &key("exitcodes"),
                    format!(
                        "exit code {} is listed both here and in fatal_exitcodes",
                        overlap[0]
                    ),
                );
            }
        }
        // Without `ready`, a timeout for readiness is a mistake worth naming; with an explicit
        // ready = "started" (perhaps from `${VAR}`) it simply does not apply.
        if let Some((_, v)) = get(t, "ready_timeout")
            && get(t, "ready").is_none()
        {
            self.error(
                v.span(),
                &key("ready_timeout"),
                "applies only when `ready` is \"notify\", a log pattern or a probe (with the default, ready = \"started\", startsecs decides)",
            );
        }
        self.listener_keys(t, &key, &mut p);
        if let Some((_, v)) = get(t, "deploy") {
            p.deploy = self.deploy(v, &key("deploy"), env, &name, p.startsecs);
            if let Some(d) = p.deploy.as_mut()
                && d.user.is_none()
            {
                d.user.clone_from(&p.user);
            }
        }
        // What the configuration sets (environ.rs): the global env_file's variables that
        // pass_env names and the real environment lacks (the real one passes at spawn), then the
        // program's env_file, then its `environment` table.
        p.environment = global_env
            .iter()
            .filter(|(k, _)| p.pass_env.iter().any(|pat| environ::matches(pat, k)))
            .filter(|(k, _)| real_env(k).is_none())
            .cloned()
            .collect();
        p.environment.extend(file_env);
        p.environment.extend(environment);
        Some(p)
    }

    /// `events = [...]`: supervisord's event types, each one this supervisor sends.
    fn events(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<crate::listener::EventType>> {
        use crate::listener::EventType;
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(
                v,
                path,
                "an array of event types (e.g. [\"PROCESS_STATE_FATAL\"])",
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let DeValue::String(name) = item.get_ref() else {
                self.type_error(item, path, "an event type name");
                return None;
            };
            match EventType::parse(name) {
                Some(t) if t.is_sent() => out.push(t),
                Some(t) => self.error(
                    item.span(),
                    path,
                    format!("{t} events are not sent by this supervisor (it sends PROCESS_STATE_*, TICK_*, SUPERVISOR_STATE_CHANGE_* and PROCESS_GROUP_*)"),
                ),
                None => {
                    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
                    let hint = suggest(name, &names);
                    self.error(item.span(), path, format!("unknown event type {name:?}{hint}"));
                }
            }
        }
        if out.is_empty() && items.is_empty() {
            self.error(
                v.span(),
                path,
                "names no event type; a listener needs at least one",
            );
            return None;
        }
        (out.len() == items.len()).then_some(out)
    }

    /// What only a listener may set, once its `events` are known.
    fn listener_keys(
        &mut self,
        t: &DeTable<'_>,
        key: &dyn Fn(&str) -> String,
        p: &mut ProgramConfig,
    ) {
        if let Some((_, v)) = get(t, "buffer_size") {
            let size = self.integer(v, &key("buffer_size"), 1, 100_000);
            match (p.listener.as_mut(), size) {
                (Some(l), Some(n)) => l.buffer_size = n as usize,
                (None, _) if get(t, "events").is_none() => self.error(
                    v.span(),
                    &key("buffer_size"),
                    "applies only to an event listener (a program with `events`)",
                ),
                _ => {}
            }
        }
        if p.listener.is_some()
            && p.redirect_stderr
            && let Some((_, v)) = get(t, "redirect_stderr")
        {
            self.error(
                v.span(),
                &key("redirect_stderr"),
                "an event listener's stdout is its channel to the supervisor; its stderr cannot join it (as in supervisord)",
            );
        }
    }

    fn control(&mut self, v: &Value<'_>, env: &Env<'_>) -> ControlSection {
        let mut c = ControlSection::default();
        let Some(t) = self.table(v, "control") else {
            return c;
        };
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let path = format!("control.{name}");
            if name != "allow" {
                self.unknown_key(k, &path, &["allow"]);
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

    fn deploy(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
        name: &ProgramName,
        startsecs: Duration,
    ) -> Option<DeployConfig> {
        let t = self.table(v, path)?;
        let errors_before = self.errors.len();
        let mut d = DeployConfig {
            repo: PathBuf::new(),
            remote: "origin".into(),
            url: None,
            branch: "main".into(),
            steps: Vec::new(),
            step_timeout: Duration::from_secs(15 * 60),
            artifact: None,
            releases: self.base.join("data/releases").join(name.as_str()),
            keep_releases: 5,
            healthy_after: startsecs,
            user: None,
            pass_env: Vec::new(),
            environment: Vec::new(),
            poll: None,
        };
        let mut have_repo = false;
        for (k, value) in t.iter() {
            let kname = k.get_ref().as_ref();
            let kpath = format!("{path}.{kname}");
            match kname {
                "repo" => {
                    if let Some(r) = self.string(value, &kpath, env) {
                        d.repo = self.resolve(&r);
                        have_repo = true;
                    }
                }
                "remote" => set(&mut d.remote, self.git_name(value, &kpath, env)),
                "url" => {
                    if let Some(u) = self.git_name(value, &kpath, env) {
                        match check_git_url(&u) {
                            Ok(()) => d.url = Some(u),
                            Err(message) => self.error(value.span(), &kpath, message),
                        }
                    }
                }
                "branch" => set(&mut d.branch, self.git_name(value, &kpath, env)),
                "steps" => {
                    let DeValue::Array(items) = value.get_ref() else {
                        self.type_error(
                            value,
                            &kpath,
                            "an array of commands (each an array of strings)",
                        );
                        continue;
                    };
                    let mut steps = Vec::new();
                    for item in items.iter() {
                        if let Some(argv) = self.command(item, &kpath, env) {
                            steps.push(argv);
                        }
                    }
                    d.steps = steps;
                }
                "step_timeout" => set(&mut d.step_timeout, self.duration(value, &kpath)),
                "artifact" => {
                    if let Some(a) = self.string(value, &kpath, env) {
                        if Path::new(&a).is_absolute() || a.split('/').any(|c| c == "..") {
                            self.error(
                                value.span(),
                                &kpath,
                                "must be a path inside the repository",
                            );
                        } else {
                            d.artifact = Some(PathBuf::from(a));
                        }
                    }
                }
                "releases" => {
                    if let Some(r) = self.string(value, &kpath, env) {
                        d.releases = self.resolve(&r);
                    }
                }
                "keep_releases" => set(
                    &mut d.keep_releases,
                    self.integer(value, &kpath, 1, 1000).map(|n| n as u32),
                ),
                "healthy_after" => set(&mut d.healthy_after, self.duration(value, &kpath)),
                "poll" => match self.expanded_duration(value, &kpath, env) {
                    Some(p) if p.is_zero() => d.poll = None,
                    Some(p) if p < Duration::from_secs(1) => self.error(
                        value.span(),
                        &kpath,
                        "must be at least 1s (or 0: no polling)",
                    ),
                    Some(p) => d.poll = Some(p),
                    None => {}
                },
                "user" => {
                    if let Some(u) = self.string(value, &kpath, env) {
                        match resolve_user(&u) {
                            Ok(spec) => d.user = Some(spec),
                            Err(message) => self.error(value.span(), &kpath, message),
                        }
                    }
                }
                "pass_env" => set(&mut d.pass_env, self.pass_env(value, &kpath, env)),
                "environment" => d.environment = self.environment(value, &kpath, env),
                _ => self.unknown_key(k, &kpath, DEPLOY_KEYS),
            }
        }
        if !have_repo {
            self.error(
                v.span(),
                path,
                "missing \"repo\" (the git working tree to deploy from)",
            );
        }
        (self.errors.len() == errors_before).then_some(d)
    }

    /// `pass_env`: a list of variable names, `PREFIX*` patterns, or `*`.
    fn pass_env(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<Vec<String>> {
        let list = self.string_list(v, path, env)?;
        let before = self.errors.len();
        for pattern in &list {
            if let Err(message) = environ::check_pattern(pattern) {
                self.error(v.span(), path, message);
            }
        }
        (self.errors.len() == before).then_some(list)
    }

    /// A remote or branch name: passed to git as one argument, never through a shell; it may
    /// not look like an option.
    fn git_name(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<String> {
        let s = self.string(v, path, env)?;
        if s.is_empty() || s.starts_with('-') || s.contains(char::is_whitespace) {
            self.error(v.span(), path, format!("{s:?} is not a usable git name"));
            return None;
        }
        Some(s)
    }

    /// A file mode: an integer (`0o660` in TOML) or an octal string (`"0660"`).
    fn mode(&mut self, v: &Value<'_>, path: &str) -> Option<u32> {
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

    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        path: &str,
        known: &[&str],
    ) {
        let hint = suggest(key.get_ref(), known);
        self.error(key.span(), path, format!("unknown key{hint}"));
    }

    fn type_error(&mut self, v: &Value<'_>, path: &str, expected: &str) {
        let found = v.get_ref().type_str();
        self.error(
            v.span(),
            path,
            format!("expected {expected}, found {}", article(found)),
        );
    }

    fn table<'t, 'i>(&mut self, v: &'t Value<'i>, path: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(v, path, "a table");
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => match expand(s, env) {
                Ok(s) => Some(s),
                Err(message) => {
                    self.error(v.span(), path, message);
                    None
                }
            },
            _ => {
                self.type_error(v, path, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(v, path, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, path: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.type_error(v, path, "an integer");
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span(),
                    path,
                    format!("{} is out of range ({min} to {max})", raw(v)),
                );
                None
            }
        }
    }

    fn duration(&mut self, v: &Value<'_>, path: &str) -> Option<Duration> {
        let result = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n < 0 => Err(format!("{n} is negative; durations cannot be")),
                Ok(n) => Ok(Duration::from_secs(n as u64)),
                Err(_) => Err(format!("{} is too large", i.as_str())),
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(x) if x < 0.0 => Err(format!("{x} is negative; durations cannot be")),
                Ok(x) => {
                    Duration::try_from_secs_f64(x).map_err(|_| format!("{x} is not a duration"))
                }
                Err(_) => Err(format!("{} is not a duration", f.as_str())),
            },
            DeValue::String(s) => parse_duration(s),
            _ => {
                self.type_error(
                    v,
                    path,
                    "a duration (seconds, or a string such as \"250ms\")",
                );
                return None;
            }
        };
        // Bounded, so that every deadline computed from it (now + duration) exists.
        let result = result.and_then(|d| {
            if d > MAX_DURATION {
                Err(format!(
                    "{} s is longer than the longest duration accepted (7 days)",
                    d.as_secs()
                ))
            } else {
                Ok(d)
            }
        });
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    fn bytes(&mut self, v: &Value<'_>, path: &str) -> Option<u64> {
        let result = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(format!("{} is not a size in bytes", i.as_str())),
            },
            DeValue::String(s) => parse_bytes(s),
            _ => {
                self.type_error(v, path, "a size (bytes, or a string such as \"50MB\")");
                return None;
            }
        };
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    fn signal(&mut self, v: &Value<'_>, path: &str) -> Option<Signal> {
        let result = match v.get_ref() {
            DeValue::String(s) => parse_signal(s),
            DeValue::Integer(i) => parse_signal(i.as_str()),
            _ => {
                self.type_error(v, path, "a signal name such as \"TERM\"");
                return None;
            }
        };
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    fn string_list(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v, path, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match self.string(item, path, env) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn command(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<Vec<String>> {
        let argv = match v.get_ref() {
            DeValue::String(_) => {
                let line = self.string(v, path, env)?;
                match shlex::split(&line) {
                    Some(words) => words,
                    None => {
                        self.error(v.span(), path, "unbalanced quotes in the command line");
                        return None;
                    }
                }
            }
            DeValue::Array(_) => self.string_list(v, path, env)?,
            _ => {
                self.type_error(v, path, "an array of strings (or a command line string)");
                return None;
            }
        };
        if argv.first().is_none_or(|a| a.is_empty()) {
            self.error(v.span(), path, "the command is empty");
            return None;
        }
        let mut argv = argv;
        // A relative program path with a slash is relative to the config file, like every path.
        if argv[0].contains('/') && !argv[0].starts_with('/') {
            argv[0] = self.resolve(&argv[0]).to_string_lossy().into_owned();
        }
        Some(argv)
    }

    fn environment(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Vec<(String, String)> {
        let Some(t) = self.table(v, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let kpath = format!("{path}.{name}");
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error(k.span(), &kpath, "not a valid environment variable name");
                continue;
            }
            let text = match value.get_ref() {
                DeValue::String(_) => self.string(value, &kpath, env),
                DeValue::Integer(i) => Some(i.as_str().to_owned()),
                DeValue::Float(f) => Some(f.as_str().to_owned()),
                DeValue::Boolean(b) => Some(b.to_string()),
                _ => {
                    self.type_error(value, &kpath, "a string");
                    None
                }
            };
            if let Some(text) = text {
                out.push((name.to_owned(), text));
            }
        }
        out
    }

    fn exit_codes(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<i32>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v, path, "an array of exit codes");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.integer(item, path, 0, 255) {
                Some(n) => out.push(n as i32),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn autorestart(&mut self, v: &Value<'_>, path: &str) -> Option<AutoRestart> {
        match v.get_ref() {
            DeValue::Boolean(true) => Some(AutoRestart::Always),
            DeValue::Boolean(false) => Some(AutoRestart::Never),
            DeValue::String(s) if s == "unexpected" => Some(AutoRestart::Unexpected),
            DeValue::String(s) if s == "true" || s == "false" => {
                self.error(
                    v.span(),
                    path,
                    format!(
                        "write {s} without quotes (autorestart is true, false or \"unexpected\")"
                    ),
                );
                None
            }
            _ => {
                self.error(
                    v.span(),
                    path,
                    format!("expected true, false or \"unexpected\", found {}", raw(v)),
                );
                None
            }
        }
    }

    fn on_fatal(&mut self, v: &Value<'_>, path: &str) -> Option<OnFatal> {
        match v.get_ref() {
            DeValue::String(s) if s == "ignore" => Some(OnFatal::Ignore),
            DeValue::String(s) if s == "shutdown" => Some(OnFatal::Shutdown),
            _ => {
                self.error(
                    v.span(),
                    path,
                    format!("expected \"ignore\" or \"shutdown\", found {}", raw(v)),
                );
                None
            }
        }
    }

    fn logfile(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
        sup: &SupervisorSection,
        name: &ProgramName,
        suffix: &str,
    ) -> Option<Option<PathBuf>> {
        let s = self.string(v, path, env)?;
        Some(match s.as_str() {
            "NONE" => None,
            "AUTO" => Some(sup.logdir.join(format!("{name}.{suffix}"))),
            "" => {
                self.error(
                    v.span(),
                    path,
                    "empty path (write \"NONE\" to keep no log file)",
                );
                return None;
            }
            other => Some(self.resolve(other)),
        })
    }

    fn backoff(&mut self, v: &Value<'_>, path: &str) -> Option<Backoff> {
        let t = self.table(v, path)?;
        let mut b = Backoff::default();
        let errors_before = self.errors.len();
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let kpath = format!("{path}.{name}");
            match name {
                "initial" => set(&mut b.initial, self.duration(value, &kpath)),
                "max" => set(&mut b.max, self.duration(value, &kpath)),
                "reset" => set(&mut b.reset, self.duration(value, &kpath)),
                "multiplier" => match self.number(value, &kpath) {
                    Some(m) if (1.0..=100.0).contains(&m) => b.multiplier = m,
                    Some(m) => self.error(
                        value.span(),
                        &kpath,
                        format!("{m} is out of range (1 to 100)"),
                    ),
                    None => {}
                },
                "jitter" => match self.number(value, &kpath) {
                    Some(j) if (0.0..=1.0).contains(&j) => b.jitter = j,
                    Some(j) => self.error(
                        value.span(),
                        &kpath,
                        format!("{j} is out of range (0 to 1)"),
                    ),
                    None => {}
                },
                _ => self.unknown_key(k, &kpath, BACKOFF_KEYS),
            }
        }
        if b.initial > b.max {
            self.error(
                v.span(),
                path,
                format!("initial ({:?}) is larger than max ({:?})", b.initial, b.max),
            );
        }
        (self.errors.len() == errors_before).then_some(b)
    }

    fn number(&mut self, v: &Value<'_>, path: &str) -> Option<f64> {
        match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse().ok(),
            _ => {
                self.type_error(v, path, "a number");
                None
            }
        }
    }

    /// Streams may share a log file (supervisord's `numprocs` workers with one
    /// `stdout_logfile`): one writer owns it, so it must rotate one way.
    fn shared_logs(&mut self, logs: &[LogUse]) {
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

    fn dependencies(
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

fn key_span(spans: &HashMap<ProgramName, Range<usize>>, name: &ProgramName) -> Range<usize> {
    spans.get(name).cloned().unwrap_or(0..0)
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn get<'t, 'i>(
    t: &'t DeTable<'i>,
    key: &str,
) -> Option<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Value<'i>)> {
    t.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// The value as written, for messages.
fn raw(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => article(other.type_str()),
    }
}

/// ` (did you mean "x"?)` when a known key is close to the unknown one.
fn suggest(unknown: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Looks a group up by name or numeric gid.
fn resolve_group(spec: &str) -> Result<u32, String> {
    use nix::unistd::{Gid, Group};
    match spec.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(spec),
    }
    .map_err(|e| format!("cannot look up group \"{spec}\": {e}"))?
    .map(|g| g.gid.as_raw())
    .ok_or_else(|| format!("unknown group \"{spec}\""))
}

/// Looks a user up by name or numeric uid, with its supplementary groups.
/// Where a deploy may fetch from: `https://`, `http://`, `ssh://`, `git://`, `file://`, scp-like
/// `user@host:path`, or a path. Never a transport helper (`ext::` runs a command, `fd::` reads
/// descriptors); git is also run with `GIT_ALLOW_PROTOCOL`, so this is the early, clear error.
fn check_git_url(url: &str) -> Result<(), String> {
    const SCHEMES: &[&str] = &["https://", "http://", "ssh://", "git://", "file://"];
    if url.contains("::") {
        return Err(format!(
            "{url:?} names a git transport helper; use an https://, ssh:// or git:// URL, or a path"
        ));
    }
    match url.split_once("://") {
        Some(_) if SCHEMES.iter().any(|s| url.starts_with(s)) => Ok(()),
        Some((scheme, _)) => Err(format!(
            "{scheme}:// is not a scheme deploys fetch from (https, http, ssh, git, file)"
        )),
        None => Ok(()),
    }
}

pub(crate) fn resolve_user(spec: &str) -> Result<UserSpec, String> {
    use nix::unistd::{Uid, User, getgrouplist};
    let user = match spec.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(spec),
    }
    .map_err(|e| format!("cannot look up user \"{spec}\": {e}"))?
    .ok_or_else(|| format!("unknown user \"{spec}\" (create it, or give a uid)"))?;
    let groups = std::ffi::CString::new(user.name.clone())
        .ok()
        .and_then(|name| getgrouplist(&name, user.gid).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid.as_raw()]);
    Ok(UserSpec {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir.to_string_lossy().into_owned(),
    })
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
    // A supervisord file: its `[unix_http_server] file`, as the conversion reads it.
    if crate::import::is_supervisord(&text) {
        let imported = crate::import::import(path).map_err(|e| e.to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        return socket_from_toml(&imported.toml, base)
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
