//! `supervisor import`: a supervisord configuration turned into `supervisor.toml`.
//!
//! Options map one to one where we have them (the configuration uses supervisord's names);
//! `numprocs` expands into numbered programs; `[group:x]` becomes `group = "x"`; `%(...)s`
//! expansions are resolved as supervisord resolves them (`%(ENV_X)s` becomes `${X}`, expanded
//! when our configuration is read, as supervisord does when it reads its own). Everything that
//! has no equivalent is reported with its file and line, and what to do instead; nothing is
//! dropped silently. The output is stable: the same input gives the same text.
//!
//! # Layout
//! - [`ini`]: supervisord's INI dialect and `[include]`.
//! - [`interpolate`]: `%(name)s` expansions and the `environment` syntax.
//!
//! Why this file is past 600 lines: the table of what each supervisord option becomes (or why
//! not) is here with the conversion; that table is the part to move to a file of its own.

pub mod ini;
pub mod interpolate;

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use ini::{IniError, Opt, Section};
use interpolate::{Val, environment_pairs, interpolate};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Not needed here: the behaviour is the same without it.
    Ignored,
    /// Behaviour that is lost; `--strict` refuses to import it.
    Unsupported,
}

/// Something of the input that the output does not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    /// `[eventlistener:memmon]`, or `[program:web] umask`.
    pub what: String,
    pub severity: Severity,
    /// What to do instead.
    pub advice: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Ignored => "ignored",
            Severity::Unsupported => "not supported",
        };
        write!(
            f,
            "{}:{}: {}: {kind}: {}",
            self.file.display(),
            self.line,
            self.what,
            self.advice
        )
    }
}

#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    /// In file order.
    pub findings: Vec<Finding>,
    /// The sections read, and which one each program of the TOML came from: where an error
    /// found in the conversion is in the original.
    pub sections: Vec<Section>,
    pub programs: Vec<(String, usize)>,
}

impl Imported {
    /// The original file and line of a key of the converted TOML (`program.web_0.startsecs`,
    /// `supervisor.logdir`): the option it came from, or its section.
    pub fn origin(&self, key: &str) -> Option<(PathBuf, usize)> {
        let mut parts = key.split('.');
        let (section, option) = match (parts.next()?, parts.next()) {
            ("program", Some(name)) => {
                let &(_, i) = self.programs.iter().find(|(n, _)| n == name)?;
                let option = parts.next().map(|o| o.to_owned());
                (self.sections.get(i)?, option)
            }
            ("supervisor", Some(key)) => {
                let (section, option) = match key {
                    "logdir" => ("supervisord", "childlogdir"),
                    "pidfile" | "user" => ("supervisord", key),
                    "socket" => ("unix_http_server", "file"),
                    "socket_mode" => ("unix_http_server", "chmod"),
                    "socket_group" => ("unix_http_server", "chown"),
                    _ => ("supervisord", key),
                };
                (
                    self.sections.iter().find(|s| s.name == section)?,
                    Some(option.to_owned()),
                )
            }
            ("control", Some("http")) => {
                let option = match parts.next() {
                    Some("listen") => Some("port".to_owned()),
                    other => other.map(str::to_owned),
                };
                (
                    self.sections
                        .iter()
                        .find(|s| s.name == "inet_http_server")?,
                    option,
                )
            }
            _ => return None,
        };
        Some(match option.and_then(|o| section.get(&o)) {
            Some(o) => (o.file.clone(), o.line),
            None => (section.file.clone(), section.line),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Ini(#[from] IniError),
    #[error("{}:{line}: {what}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        what: String,
        message: String,
    },
}

fn invalid(section: &Section, opt: Option<&Opt>, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        file: opt.map_or(&section.file, |o| &o.file).clone(),
        line: opt.map_or(section.line, |o| o.line),
        what: match opt {
            Some(o) => format!("[{}] {}", section.name, o.key),
            None => format!("[{}]", section.name),
        },
        message: message.into(),
    }
}

/// `minfds = N` as supervisord applies it: the soft and hard limits raised to at least N, never
/// lowered; so the limits in force here, now, decide (`nofile = "SOFT:HARD"`).
fn at_least(resource: (&str, libc::__rlimit_resource_t), n: u64) -> String {
    let (name, which) = resource;
    let text = |v: u64| match v {
        crate::config::limits::INFINITY => "infinity".to_owned(),
        v => v.max(n).to_string(),
    };
    let (soft, hard) = crate::process::rlimit::current_rlimit(which).unwrap_or((n, n));
    format!("{name} = \"{}:{}\"", text(soft), text(hard))
}

/// Options of `[supervisord]` and what they become.
fn supervisord_option(key: &str) -> Option<(Severity, &'static str)> {
    Some(match key {
        "logfile" | "logfile_maxbytes" | "logfile_backups" | "loglevel" | "silent" => (
            Severity::Ignored,
            "the supervisor logs to stderr (docker logs); RUST_LOG sets the level",
        ),
        "nodaemon" => (Severity::Ignored, "the supervisor never daemonizes"),
        "nocleanup" => (
            Severity::Ignored,
            "nothing to clean: logs are named after programs",
        ),
        "identifier" => (
            Severity::Ignored,
            "the control protocol identifies the supervisor by its version and pid",
        ),
        "strip_ansi" => (
            Severity::Unsupported,
            "output is kept as written; strip colours in the program",
        ),
        "umask" => (
            Severity::Unsupported,
            "set it in the container's image or a wrapper script",
        ),
        "directory" => (Severity::Unsupported, "give each program its `directory`"),
        _ => return None,
    })
}

/// Program options that have no equivalent.
fn unsupported_program_option(key: &str) -> Option<&'static str> {
    Some(match key {
        "umask" => "set it in a wrapper: command = [\"sh\", \"-c\", \"umask 022; exec ...\"]",
        "serverurl" => "programs reach the control socket at the path in supervisor.toml",
        "stdout_capture_maxbytes"
        | "stderr_capture_maxbytes"
        | "stdout_events_enabled"
        | "stderr_events_enabled" => {
            "PROCESS_LOG and PROCESS_COMMUNICATION events are not sent; listeners get PROCESS_STATE_*, TICK_*, SUPERVISOR_STATE_CHANGE_*, PROCESS_GROUP_*"
        }
        "stdout_syslog" | "stderr_syslog" => {
            "output goes to log files and the supervisor's stdout; forward those"
        }
        _ => return None,
    })
}

/// Whether `text` is a supervisord configuration rather than `supervisor.toml`: a section header
/// only supervisord has (`[supervisord]`, `[program:x]`, `[include]`, ...). TOML's tables are
/// `[supervisor]` and `[program.x]`; a colon cannot appear in a bare TOML key.
pub fn is_supervisord(text: &str) -> bool {
    const SECTIONS: &[&str] = &[
        "supervisord",
        "supervisorctl",
        "unix_http_server",
        "inet_http_server",
        "include",
    ];
    const PREFIXES: &[&str] = &[
        "program:",
        "group:",
        "eventlistener:",
        "fcgi-program:",
        "rpcinterface:",
    ];
    text.lines().any(|line| {
        let Some(name) = line
            .trim()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .map(str::trim)
        else {
            return false;
        };
        SECTIONS.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
    })
}

/// Reads the supervisord configuration at `path` (and its includes) and converts it.
pub fn import(path: &Path) -> Result<Imported, ImportError> {
    // `%(here)s` is the folder of each file, absolute as supervisord makes it.
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let sections = ini::read(path)?;
    let mut findings = Vec::new();
    let mut finding = |s: &Section, o: Option<&Opt>, severity: Severity, advice: &str| {
        findings.push(Finding {
            file: o.map_or(&s.file, |o| &o.file).clone(),
            line: o.map_or(s.line, |o| o.line),
            what: match o {
                Some(o) => format!("[{}] {}", s.name, o.key),
                None => format!("[{}]", s.name),
            },
            severity,
            advice: advice.to_owned(),
        });
    };
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();

    let mut group_of: HashMap<String, String> = HashMap::new();
    let mut global_env: Vec<(String, String)> = Vec::new();
    // `minfds`/`minprocs` as every program's `rlimits` (supervisord raises its own limits,
    // which its programs inherit).
    let mut rlimits: Vec<String> = Vec::new();
    let mut rlimit_notes: Vec<String> = Vec::new();
    let mut sup: Vec<String> = Vec::new();
    let mut http: Vec<String> = Vec::new();
    let mut programs = Vec::new();
    for s in &sections {
        let (kind, name) = s.name.split_once(':').unwrap_or((s.name.as_str(), ""));
        match kind {
            "supervisord" => {
                for o in &s.options {
                    match o.key.as_str() {
                        "childlogdir" => {
                            let v = expand_here(s, o, &host)?;
                            sup.push(format!(
                                "logdir = {}  # from [supervisord] childlogdir",
                                quote(&v)
                            ));
                        }
                        "pidfile" => {
                            let v = expand_here(s, o, &host)?;
                            sup.push(format!("pidfile = {}", quote(&v)));
                        }
                        "user" => {
                            let v = expand_here(s, o, &host)?;
                            sup.push(format!(
                                "user = {}  # the supervisor switches to it at start",
                                quote(&v)
                            ));
                        }
                        "environment" => {
                            let v = expand_here(s, o, &host)?;
                            global_env =
                                environment_pairs(&v).map_err(|m| invalid(s, Some(o), m))?;
                        }
                        "minfds" | "minprocs" => {
                            let n: u64 = o.value.trim().parse().map_err(|_| {
                                invalid(s, Some(o), format!("{:?} is not an integer", o.value))
                            })?;
                            let resource = match o.key.as_str() {
                                "minfds" => ("nofile", libc::RLIMIT_NOFILE),
                                _ => ("nproc", libc::RLIMIT_NPROC),
                            };
                            rlimits.push(at_least(resource, n));
                            rlimit_notes.push(format!("{} = {n}", o.key));
                        }
                        key => match supervisord_option(key) {
                            Some((severity, advice)) => finding(s, Some(o), severity, advice),
                            None => finding(s, Some(o), Severity::Unsupported, "unknown option"),
                        },
                    }
                }
            }
            "unix_http_server" => {
                for o in &s.options {
                    match o.key.as_str() {
                        "file" => {
                            let v = expand_here(s, o, &host)?;
                            sup.push(format!(
                                "socket = {}  # from [unix_http_server] file",
                                quote(&v)
                            ));
                        }
                        "chmod" => sup.push(format!("socket_mode = {}", quote(&o.value))),
                        "chown" => match o.value.split_once(':') {
                            Some((_, group)) => {
                                sup.push(format!("socket_group = {}", quote(group)))
                            }
                            None => finding(
                                s,
                                Some(o),
                                Severity::Unsupported,
                                "the socket belongs to the supervisor's user; let others in with socket_group and [control.allow]",
                            ),
                        },
                        "username" | "password" => finding(
                            s,
                            Some(o),
                            Severity::Unsupported,
                            "the socket grants verbs by the peer's uid: [control.allow]",
                        ),
                        _ => finding(s, Some(o), Severity::Unsupported, "unknown option"),
                    }
                }
            }
            // supervisord's XML-RPC on TCP: ours serves it too (`[control.http]`), but never
            // without a password beyond this machine.
            "inet_http_server" => {
                let mut port = None;
                for o in &s.options {
                    match o.key.as_str() {
                        "port" => {
                            let v = expand_here(s, o, &host)?;
                            let Some(addr) = crate::config::address::listen_address(&v) else {
                                return Err(invalid(
                                    s,
                                    Some(o),
                                    format!("{v:?} is not HOST:PORT (127.0.0.1:9001, *:9001)"),
                                ));
                            };
                            port = Some((o, addr));
                        }
                        "username" | "password" => {
                            let v = expand_here(s, o, &host)?;
                            http.push(format!("{} = {}", o.key, quote(&v)));
                        }
                        _ => finding(s, Some(o), Severity::Unsupported, "unknown option"),
                    }
                }
                let secured = http.len() == 2;
                match port {
                    Some((_, addr)) if secured || addr.ip().is_loopback() => {
                        http.insert(
                            0,
                            format!(
                                "listen = {}  # from [inet_http_server] port",
                                quote(&addr.to_string())
                            ),
                        );
                    }
                    Some((o, addr)) => {
                        let local = std::net::SocketAddr::new(
                            std::net::Ipv4Addr::LOCALHOST.into(),
                            addr.port(),
                        );
                        http.insert(0, format!("listen = {}  # [inet_http_server] port = {}: no password, so this machine only", quote(&local.to_string()), o.value.trim()));
                        finding(
                            s,
                            Some(o),
                            Severity::Unsupported,
                            "without a username and password the port is served on 127.0.0.1 only; set both to reach it from elsewhere",
                        );
                    }
                    None => http.clear(),
                }
            }
            "supervisorctl" => finding(
                s,
                None,
                Severity::Ignored,
                "clients find the socket in supervisor.toml, or take -s / $SUPERVISOR_SOCKET",
            ),
            // Every supervisord.conf carries the standard one, only for supervisorctl: ours
            // works without it. Another factory is a plugin, which would be lost.
            "rpcinterface"
                if s.get("supervisor.rpcinterface_factory").is_some_and(|o| {
                    o.value.trim() == "supervisor.rpcinterface:make_main_rpcinterface"
                }) =>
            {
                finding(
                    s,
                    None,
                    Severity::Ignored,
                    "supervisord's XML-RPC interface is always served on the control socket",
                )
            }
            "rpcinterface" => finding(
                s,
                None,
                Severity::Unsupported,
                "no XML-RPC plugins: only supervisord's own interface is served (docs/PROTOCOL.md)",
            ),
            "eventlistener" => programs.push(s),
            "fcgi-program" => finding(
                s,
                None,
                Severity::Unsupported,
                "no FastCGI sockets: run the server as a program that opens its own socket",
            ),
            "ctlplugin" => finding(s, None, Severity::Unsupported, "no supervisorctl plugins"),
            "include" => {}
            "group" => {
                for o in &s.options {
                    match o.key.as_str() {
                        "programs" => {
                            for p in o.value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                                group_of.insert(p.to_owned(), name.to_owned());
                            }
                        }
                        "priority" => finding(
                            s,
                            Some(o),
                            Severity::Ignored,
                            "programs start by their own priority; set it on them",
                        ),
                        _ => finding(s, Some(o), Severity::Unsupported, "unknown option"),
                    }
                }
            }
            "program" => programs.push(s),
            // supervisord skips a section it does not know; a misspelt `[programs:x]` would
            // then lose a program without a word. Refused, as any other bad input.
            _ => {
                return Err(invalid(
                    s,
                    None,
                    "unknown section (supervisord's are [supervisord], [program:x], [group:x], [eventlistener:x], [include], [unix_http_server], [inet_http_server], [supervisorctl], [rpcinterface:x], [fcgi-program:x]); remove it or correct its name",
                ));
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {} by `supervisor import` (supervisor {}).",
        path.display(),
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(
        "# Where supervisord and this supervisor differ (docs/CONFIG.md):\n\
         # - every restart waits (`backoff`), also after a crash of a RUNNING program;\n\
         # - signals go to the whole process group (stopasgroup/killasgroup are always on);\n\
         # - output lines are also copied to the supervisor's stdout (`echo_output = false` stops it).\n",
    );
    if !sup.is_empty() {
        out.push_str("\n[supervisor]\n");
        for line in &sup {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !http.is_empty() {
        out.push_str("\n[control.http]\n");
        for line in &http {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut origins: Vec<(String, usize)> = Vec::new();
    for s in programs {
        let rlimits = (!rlimits.is_empty()).then(|| {
            format!(
                "rlimits = {{ {} }}  # from [supervisord] {}",
                rlimits.join(", "),
                rlimit_notes.join(", ")
            )
        });
        let names = program(
            s,
            &group_of,
            &global_env,
            rlimits.as_deref(),
            &host,
            &mut out,
            &mut finding,
        )?;
        let index = sections
            .iter()
            .position(|x| std::ptr::eq(x, s))
            .unwrap_or(0);
        origins.extend(names.into_iter().map(|n| (n, index)));
    }
    findings.sort_by(|a, b| a.file.cmp(&b.file).then(a.line.cmp(&b.line)));
    Ok(Imported {
        sections: sections.clone(),
        programs: origins,
        toml: out,
        findings,
    })
}

/// A `[supervisord]`-level value: only `%(here)s`, `%(host_node_name)s` and `%(ENV_X)s`.
/// The socket `[supervisorctl] serverurl` names, when it is a `unix://` URL: where
/// supervisorctl looks for the daemon before `[unix_http_server] file`.
pub fn supervisorctl_socket(path: &Path) -> Option<PathBuf> {
    // `%(here)s` is the file's folder, which a relative path would leave empty.
    let path = std::path::absolute(path).ok()?;
    let sections = ini::read(&path).ok()?;
    let section = sections.iter().find(|s| s.name == "supervisorctl")?;
    let url = section.get("serverurl")?;
    let value = expand_here(section, url, "").ok()?;
    value.trim().strip_prefix("unix://").map(PathBuf::from)
}

fn expand_here(s: &Section, o: &Opt, host: &str) -> Result<String, ImportError> {
    let here = s
        .file
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    interpolate(&o.value, &|name| match name {
        "here" => Some(Val::Text(here.clone())),
        "host_node_name" => Some(Val::Text(host.to_owned())),
        _ => None,
    })
    .map_err(|m| invalid(s, Some(o), m))
}

type Report<'a> = dyn FnMut(&Section, Option<&Opt>, Severity, &str) + 'a;

/// One `[program:x]`: one `[program.NAME]` per process of `numprocs`.
/// Returns the names of the programs it wrote.
fn program(
    s: &Section,
    group_of: &HashMap<String, String>,
    global_env: &[(String, String)],
    rlimits: Option<&str>,
    host: &str,
    out: &mut String,
    report: &mut Report<'_>,
) -> Result<Vec<String>, ImportError> {
    let mut names = Vec::new();
    let prog = s.name.split_once(':').map_or("", |(_, n)| n).to_owned();
    let listener = s.name.starts_with("eventlistener:");
    let events = match listener {
        true => match listener_events(s, report)? {
            Some(events) => Some(events),
            None => return Ok(Vec::new()), // reported: nothing it listens for is sent here
        },
        false => None,
    };
    let int = |key: &str, default: i64| -> Result<i64, ImportError> {
        match s.get(key) {
            Some(o) => o
                .value
                .parse()
                .map_err(|_| invalid(s, Some(o), format!("{:?} is not an integer", o.value))),
            None => Ok(default),
        }
    };
    let numprocs = int("numprocs", 1)?;
    let numprocs_start = int("numprocs_start", 0)?;
    let process_name = s
        .get("process_name")
        .map_or("%(program_name)s", |o| o.value.as_str());
    if numprocs > 1 && !process_name.contains("process_num") {
        return Err(invalid(
            s,
            s.get("numprocs"),
            "numprocs > 1 needs a process_name with %(process_num)s, as in supervisord",
        ));
    }
    let explicit_group = group_of.get(&prog).cloned();
    let group = explicit_group
        .clone()
        .or_else(|| (numprocs > 1).then(|| prog.clone()));
    let here = s
        .file
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();

    // Report what has no equivalent once per section, not once per process.
    for o in dedup(&s.options) {
        if let Some(advice) = unsupported_program_option(&o.key) {
            report(s, Some(o), Severity::Unsupported, advice);
        } else if listener && LISTENER_KEYS.contains(&o.key.as_str()) {
            if o.key == "result_handler"
                && o.value.trim() != "supervisor.dispatchers:default_handler"
            {
                report(
                    s,
                    Some(o),
                    Severity::Unsupported,
                    "results are OK or FAIL, as supervisord's default handler reads them",
                );
            }
        } else if !PROGRAM_KEYS.contains(&o.key.as_str()) {
            report(s, Some(o), Severity::Unsupported, "unknown option");
        }
    }

    for n in numprocs_start..numprocs_start + numprocs.max(0) {
        let lookup = |name: &str| match name {
            "here" => Some(Val::Text(here.clone())),
            "program_name" => Some(Val::Text(prog.clone())),
            "process_num" => Some(Val::Number(n)),
            "group_name" => Some(Val::Text(group.clone().unwrap_or_else(|| prog.clone()))),
            "host_node_name" => Some(Val::Text(host.to_owned())),
            _ => None,
        };
        let expand = |o: &Opt| interpolate(&o.value, &lookup).map_err(|m| invalid(s, Some(o), m));
        let name_opt = s.get("process_name");
        let name = match name_opt {
            Some(o) => expand(o)?,
            None => interpolate(process_name, &lookup).map_err(|m| invalid(s, None, m))?,
        };
        supervisor_proto::ProgramName::new(&name).map_err(|m| invalid(s, name_opt, m))?;
        names.push(name.clone());
        let _ = writeln!(out, "\n[program.{}]", toml_key(&name));
        if let Some(g) = &group {
            let why = if explicit_group.is_some() {
                format!("from [group:{g}]")
            } else {
                format!("numprocs = {numprocs}: supervisord groups them as {g}:*")
            };
            let _ = writeln!(out, "group = {}  # {why}", quote(g));
        }
        let command = s
            .get("command")
            .ok_or_else(|| invalid(s, None, "has no command"))?;
        let line = expand(command)?;
        let argv = shlex::split(&line)
            .ok_or_else(|| invalid(s, Some(command), "unbalanced quotes in the command"))?;
        let _ = writeln!(out, "command = {}", array(&argv));
        if let Some(line) = rlimits {
            let _ = writeln!(out, "{line}");
        }
        if let Some(events) = &events {
            let names: Vec<String> = events.iter().map(|e| e.name().to_owned()).collect();
            let _ = writeln!(out, "events = {}", array(&names));
            if s.get("priority").is_none() {
                let _ = writeln!(
                    out,
                    "priority = -1  # supervisord's default for a listener: up first, stopped last"
                );
            }
        }
        let mut env: Vec<(String, String)> = global_env.to_vec();
        for o in dedup(&s.options) {
            let v = || expand(o);
            match o.key.as_str() {
                "command" | "process_name" | "numprocs" | "numprocs_start" => {}
                "directory" | "user" | "stopsignal" => {
                    let _ = writeln!(out, "{} = {}", o.key, quote(&v()?));
                }
                "priority"
                | "buffer_size"
                | "startsecs"
                | "startretries"
                | "stopwaitsecs"
                | "stdout_logfile_backups"
                | "stderr_logfile_backups" => {
                    let n: i64 = v()?.parse().map_err(|_| {
                        invalid(s, Some(o), format!("{:?} is not an integer", o.value))
                    })?;
                    let _ = writeln!(out, "{} = {n}", o.key);
                }
                "autostart" | "redirect_stderr" => {
                    let b = boolean(&v()?)
                        .ok_or_else(|| invalid(s, Some(o), "expected true or false"))?;
                    let _ = writeln!(out, "{} = {b}", o.key);
                }
                "autorestart" => {
                    let text = v()?.to_lowercase();
                    let value = match (text.as_str(), boolean(&text)) {
                        ("unexpected", _) => "\"unexpected\"".to_owned(),
                        (_, Some(b)) => b.to_string(),
                        _ => return Err(invalid(s, Some(o), "expected true, false or unexpected")),
                    };
                    let _ = writeln!(out, "autorestart = {value}");
                }
                "exitcodes" => {
                    let codes: Result<Vec<i64>, _> =
                        v()?.split(',').map(|c| c.trim().parse::<i64>()).collect();
                    let codes = codes.map_err(|_| {
                        invalid(s, Some(o), "expected exit codes separated by commas")
                    })?;
                    let list: Vec<String> = codes.iter().map(ToString::to_string).collect();
                    let _ = writeln!(out, "exitcodes = [{}]", list.join(", "));
                }
                "stopasgroup" | "killasgroup" if boolean(&o.value) == Some(false) => {
                    let _ = writeln!(
                        out,
                        "# choice: {} = false in supervisord; signals always go to the whole process group here",
                        o.key
                    );
                }
                "stdout_logfile" | "stderr_logfile" => {
                    let path = v()?;
                    match path.as_str() {
                        "AUTO" | "auto" => {}
                        "NONE" | "none" => {
                            let _ = writeln!(out, "{} = \"NONE\"", o.key);
                        }
                        "/dev/stdout" | "/dev/stderr" | "/dev/fd/1" | "/dev/fd/2"
                        | "/proc/self/fd/1" | "/proc/self/fd/2" => {
                            let _ = writeln!(
                                out,
                                "{} = \"NONE\"  # choice: was {path}; echo_output copies every line to the supervisor's stdout",
                                o.key
                            );
                        }
                        _ => {
                            let _ = writeln!(out, "{} = {}", o.key, quote(&path));
                        }
                    }
                }
                "stdout_logfile_maxbytes" | "stderr_logfile_maxbytes" => {
                    let text = v()?;
                    if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
                        let _ = writeln!(out, "{} = {text}", o.key);
                    } else {
                        let _ = writeln!(out, "{} = {}", o.key, quote(&text));
                    }
                }
                "environment" => {
                    let pairs = environment_pairs(&v()?).map_err(|m| invalid(s, Some(o), m))?;
                    for (k, val) in pairs {
                        env.retain(|(existing, _)| *existing != k);
                        env.push((k, val));
                    }
                }
                _ => {} // reported above
            }
        }
        // supervisord hands each program its own whole environment; so does the import (a
        // native configuration passes only what it names: docs/CONFIG.md, pass_env).
        let _ = writeln!(
            out,
            "pass_env = [\"*\"]  # choice: supervisord's whole environment; name only what it needs"
        );
        if !env.is_empty() {
            let items: Vec<String> = env
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), quote(v)))
                .collect();
            let _ = writeln!(out, "environment = {{ {} }}", items.join(", "));
        }
    }
    Ok(names)
}

/// The options of supervisord's `[program:x]` that we map.
const PROGRAM_KEYS: &[&str] = &[
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "priority",
    "autostart",
    "autorestart",
    "startsecs",
    "startretries",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "user",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "environment",
    "directory",
];

/// The options only `[eventlistener:x]` has.
const LISTENER_KEYS: &[&str] = &["events", "buffer_size", "result_handler"];

/// An `[eventlistener:x]`'s `events`: the types this supervisor sends (the others reported);
/// `None` when that leaves nothing, and the whole section is reported instead.
fn listener_events(
    s: &Section,
    report: &mut Report<'_>,
) -> Result<Option<Vec<crate::listener::EventType>>, ImportError> {
    use crate::listener::EventType;
    let Some(o) = s.get("events") else {
        return Err(invalid(
            s,
            None,
            "an event listener needs `events`, as in supervisord",
        ));
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for name in o.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventType::parse(name) {
            Some(t) if t.is_sent() => kept.push(t),
            Some(t) => dropped.push(t.name()),
            None => return Err(invalid(s, Some(o), format!("unknown event type {name:?}"))),
        }
    }
    if !dropped.is_empty() {
        let advice = format!(
            "{} events are not sent here (only PROCESS_STATE_*, TICK_*, SUPERVISOR_STATE_CHANGE_*, PROCESS_GROUP_*)",
            dropped.join(", ")
        );
        if kept.is_empty() {
            report(s, None, Severity::Unsupported, &advice);
            return Ok(None);
        }
        report(s, Some(o), Severity::Unsupported, &advice);
    }
    Ok(Some(kept))
}

/// Options with repeats removed (the last one wins, as in supervisord), in first-seen order.
fn dedup(options: &[Opt]) -> Vec<&Opt> {
    let mut out: Vec<&Opt> = Vec::new();
    for o in options {
        match out.iter_mut().find(|e| e.key == o.key) {
            Some(slot) => *slot = o,
            None => out.push(o),
        }
    }
    out
}

/// supervisord's booleans.
fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A key, bare when TOML allows it.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        quote(k)
    }
}

#[cfg(test)]
mod tests;
