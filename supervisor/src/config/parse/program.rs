//! `[program.NAME]`: its keys, the event-listener keys, exit codes, restart policy, log files
//! and backoff (the health keys are in [`super::health`]).

use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use crate::config::environ;
use crate::config::expand::{last_value, read_env_file};
use crate::config::health::{Ready, defaults};
use crate::config::limits::Ceilings;
use crate::config::{
    AutoRestart, Backoff, LogTarget, OnFatal, Policy, ProgramConfig, ProgramName, SupervisorSection,
};

use super::accounts::resolve_user;
use super::values::{Env, Value, Walker, get, raw, set, suggest};

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
    "rlimits",
    "oom_score_adj",
    "limits",
    "schedule",
    "timezone",
    "overlap",
    "on_missed",
    "jitter",
];

pub(super) const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier", "jitter", "reset"];

impl Walker<'_> {
    #[allow(clippy::too_many_arguments)] // the walker's context, passed down once
    pub(super) fn program(
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
        if let Some((_, v)) = get(t, "env_file") {
            if let Some(p) = self.string(v, &key("env_file"), global_lookup) {
                match read_env_file(&self.resolve(&p)) {
                    Ok(vars) => file_env = vars,
                    Err(message) => self.error(v.span(), &key("env_file"), message),
                }
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
            policy: Policy::default(),
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
            listener: None,
            rlimits: Vec::new(),
            oom_score_adj: 0,
            limits: Ceilings::default(),
            schedule: None,
        };
        let mut environment = Vec::new();
        let mut have_command = false;
        for (k, kname, path, v) in self.entries(t, &prefix, PROGRAM_KEYS) {
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
                "autostart" => set(&mut p.autostart, self.expanded_boolean(v, &path, env)),
                "autorestart" => set(&mut p.policy.autorestart, self.autorestart(v, &path)),
                "exitcodes" => set(&mut p.policy.exitcodes, self.exit_codes(v, &path)),
                "fatal_exitcodes" => set(&mut p.policy.fatal_exitcodes, self.exit_codes(v, &path)),
                "startsecs" => set(&mut p.policy.startsecs, self.duration(v, &path)),
                "startretries" => {
                    set(
                        &mut p.policy.startretries,
                        self.integer(v, &path, 0, 1000).map(|n| n as u32),
                    );
                }
                "stopsignal" => set(&mut p.policy.stopsignal, self.signal(v, &path)),
                "stopwaitsecs" => set(&mut p.policy.stopwaitsecs, self.duration(v, &path)),
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
                "backoff" => set(&mut p.policy.backoff, self.backoff(v, &path)),
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
                "rlimits" => p.rlimits = self.rlimits(v, &path),
                "oom_score_adj" => set(
                    &mut p.oom_score_adj,
                    self.integer(v, &path, -1000, 1000).map(|n| n as i32),
                ),
                "limits" => set(&mut p.limits, self.ceilings(v, &path)),
                // Read together below.
                "schedule" | "timezone" | "overlap" | "on_missed" | "jitter" => {}
                "start_limit" => p.policy.start_limit = self.start_limit(v, &path),
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
                .policy
                .fatal_exitcodes
                .iter()
                .filter(|c| p.policy.exitcodes.contains(c))
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
        if let Some((_, v)) = get(t, "ready_timeout").filter(|_| get(t, "ready").is_none()) {
            self.error(
                v.span(),
                &key("ready_timeout"),
                "applies only when `ready` is \"notify\", a log pattern or a probe (with the default, ready = \"started\", startsecs decides)",
            );
        }
        self.listener_keys(t, &key, &mut p);
        self.schedule_keys(t, &key, env, &mut p);
        p.policy.ready_timeout = p.ready.waits().then_some(p.ready_timeout);
        if let Some((_, v)) = get(t, "deploy") {
            p.deploy = self.deploy(v, &key("deploy"), env, &name, p.policy.startsecs);
            if let Some(d) = p.deploy.as_mut().filter(|d| d.user.is_none()) {
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
    pub(super) fn events(
        &mut self,
        v: &Value<'_>,
        path: &str,
    ) -> Option<Vec<crate::listener::EventType>> {
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
    pub(super) fn listener_keys(
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
        if let Some((_, v)) =
            get(t, "redirect_stderr").filter(|_| p.listener.is_some() && p.redirect_stderr)
        {
            self.error(
                v.span(),
                &key("redirect_stderr"),
                "an event listener's stdout is its channel to the supervisor; its stderr cannot join it (as in supervisord)",
            );
        }
    }

    /// `pass_env`: a list of variable names, `PREFIX*` patterns, or `*`.
    pub(super) fn pass_env(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Vec<String>> {
        let list = self.string_list(v, path, env)?;
        let before = self.errors.len();
        for pattern in &list {
            if let Err(message) = environ::check_pattern(pattern) {
                self.error(v.span(), path, message);
            }
        }
        (self.errors.len() == before).then_some(list)
    }

    pub(super) fn exit_codes(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<i32>> {
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

    pub(super) fn autorestart(&mut self, v: &Value<'_>, path: &str) -> Option<AutoRestart> {
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

    pub(super) fn on_fatal(&mut self, v: &Value<'_>, path: &str) -> Option<OnFatal> {
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

    pub(super) fn logfile(
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

    pub(super) fn backoff(&mut self, v: &Value<'_>, path: &str) -> Option<Backoff> {
        let t = self.table(v, path)?;
        let mut b = Backoff::default();
        let errors_before = self.errors.len();
        for (k, name, kpath, value) in self.entries(t, path, BACKOFF_KEYS) {
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
}
