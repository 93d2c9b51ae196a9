//! The binary called as `supervisord` or `supervisorctl` (a symlink in the image): their command
//! lines, translated to ours, so that an existing `CMD ["supervisord", "-c", "..."]` and a
//! `supervisorctl status` health check work unchanged.
//!
//! supervisord's options that matter in a container are taken (`-c`, `-n`, `-u`, `-e`); the
//! others are refused by name with what to do instead, never silently accepted.
//! supervisorctl's `-c` (either format names the socket) and `-s unix:///path` are taken, and
//! its verbs are ours.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where supervisord looks for its configuration without `-c`, in its order (relative ones
/// against the current folder).
const SUPERVISORD_SEARCH: &[&str] = &[
    "../etc/supervisord.conf",
    "../supervisord.conf",
    "supervisord.conf",
    "etc/supervisord.conf",
    "/etc/supervisord.conf",
    "/etc/supervisor/supervisord.conf",
];

/// The arguments as `supervisor` takes them, or why not (exit 2).
pub fn translate(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("supervisor")
        .to_owned();
    match name.as_str() {
        "supervisord" => supervisord(&args[1..], &|p| p.exists()),
        "supervisorctl" => {
            let told = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
            let search = !told("SUPERVISOR_CONFIG") && !told("SUPERVISOR_SOCKET");
            supervisorctl(&args[1..], &|p| search && p.exists())
        }
        _ => Ok(args),
    }
}

fn text(a: &OsString) -> Result<&str, String> {
    a.to_str()
        .ok_or_else(|| format!("{}: not valid UTF-8", a.to_string_lossy()))
}

/// `-c FILE`, `-cFILE`, `--configuration FILE`, `--configuration=FILE`: the value, and how many
/// arguments it took.
fn value(
    args: &[OsString],
    i: usize,
    short: &str,
    long: &str,
) -> Result<Option<(String, usize)>, String> {
    let a = text(&args[i])?;
    if a == short || a == long {
        let v = args
            .get(i + 1)
            .ok_or_else(|| format!("{a} needs a value"))?;
        return Ok(Some((text(v)?.to_owned(), 2)));
    }
    if let Some(v) = a.strip_prefix(&format!("{long}=")) {
        return Ok(Some((v.to_owned(), 1)));
    }
    if short.len() == 2 && a.len() > 2 && a.starts_with(short) && !a.starts_with("--") {
        return Ok(Some((a[2..].to_owned(), 1)));
    }
    Ok(None)
}

fn supervisord(args: &[OsString], exists: &dyn Fn(&Path) -> bool) -> Result<Vec<OsString>, String> {
    let mut config = None;
    let mut out: Vec<OsString> = vec!["supervisor".into(), "run".into()];
    let mut i = 0;
    while i < args.len() {
        if let Some((v, n)) = value(args, i, "-c", "--configuration")? {
            config = Some(v);
            i += n;
            continue;
        }
        if let Some((v, n)) = value(args, i, "-u", "--user")? {
            out.extend(["--user".into(), v.into()]);
            i += n;
            continue;
        }
        if let Some((v, n)) = value(args, i, "-e", "--loglevel")? {
            let level = match v.to_ascii_lowercase().as_str() {
                "critical" | "error" => "error",
                "warn" => "warn",
                "info" => "info",
                "debug" => "debug",
                "trace" | "blather" => "trace",
                other => {
                    return Err(format!(
                        "supervisord: -e {other}: not a level (critical, error, warn, info, debug, trace, blather)"
                    ));
                }
            };
            out.extend(["--log-level".into(), level.into()]);
            i += n;
            continue;
        }
        let a = text(&args[i])?;
        match a {
            // We never daemonize: -n is what we always do.
            "-n" | "--nodaemon" => {}
            "-h" | "--help" => return Ok(vec!["supervisor".into(), "run".into(), "--help".into()]),
            "-v" | "--version" => return Ok(vec!["supervisor".into(), "--version".into()]),
            other => return Err(unsupported_supervisord(other)),
        }
        i += 1;
    }
    let config = match config {
        Some(c) => PathBuf::from(c),
        None => SUPERVISORD_SEARCH
            .iter()
            .map(PathBuf::from)
            .find(|p| exists(p))
            .ok_or_else(|| {
                format!(
                    "supervisord: no configuration file found (looked for {}); name one with -c",
                    SUPERVISORD_SEARCH.join(", ")
                )
            })?,
    };
    out.extend(["-c".into(), config.into_os_string()]);
    Ok(out)
}

fn unsupported_supervisord(option: &str) -> String {
    let flag = option.split('=').next().unwrap_or(option);
    let advice = match flag {
        "-d" | "--directory" => "give each program its `directory`",
        "-l" | "--logfile" | "-y" | "--logfile_maxbytes" | "-z" | "--logfile_backups" => {
            "the supervisor logs to stderr (docker logs); RUST_LOG sets the level"
        }
        "-j" | "--pidfile" => "no pid file: the supervisor is PID 1, or its parent knows it",
        "-i" | "--identifier" => {
            "the control protocol identifies the supervisor by version and pid"
        }
        "-q" | "--childlogdir" => "set [supervisord] childlogdir (our logdir) in the file",
        "-k" | "--nocleanup" => "nothing to clean: logs are named after programs",
        "-a" | "--minfds" | "--minprocs" => "set the limit on the container (docker run --ulimit)",
        "-m" | "--umask" => "set it in the image or a wrapper script",
        "-t" | "--strip_ansi" => "output is kept as written; strip colours in the program",
        "--profile_options" => "not available",
        _ => "not a supervisord option this supervisor knows",
    };
    format!("supervisord: {flag}: not supported here: {advice}")
}

/// supervisorctl's command line. Without `-c` or `-s` (and without our variables), the
/// configuration is found as supervisorctl finds it: supervisord's search (`exists` says which
/// candidate is there), whose `[supervisorctl] serverurl` or `[unix_http_server] file` names the
/// socket.
fn supervisorctl(
    args: &[OsString],
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Vec<OsString>, String> {
    let mut tail: Vec<OsString> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if let Some((v, n)) = value(args, i, "-c", "--configuration")? {
            tail.extend(["-c".into(), v.into()]);
            i += n;
            continue;
        }
        if let Some((v, n)) = value(args, i, "-s", "--serverurl")? {
            let path = match v.strip_prefix("unix://") {
                Some(p) => p.to_owned(),
                None if v.starts_with('/') => v,
                None => {
                    return Err(format!(
                        "supervisorctl: -s {v}: only unix:///path sockets (this supervisorctl speaks to the control socket; the HTTP port of [control.http] is for supervisord's own supervisorctl and other XML-RPC clients)"
                    ));
                }
            };
            tail.extend(["-s".into(), path.into()]);
            i += n;
            continue;
        }
        if let Some((_, n)) =
            value(args, i, "-u", "--username")?.or(value(args, i, "-p", "--password")?)
        {
            // The socket grants verbs by the peer's uid ([control.allow]); there is no password.
            i += n;
            continue;
        }
        let a = text(&args[i])?;
        match a {
            "-h" | "--help" => return Ok(vec!["supervisor".into(), "--help".into()]),
            "-i" | "--interactive" => {
                return Err("supervisorctl: no interactive mode: give the action on the command line (supervisorctl status)".into());
            }
            _ if a.starts_with('-') => {
                return Err(format!(
                    "supervisorctl: {a}: not a supervisorctl option this supervisor knows"
                ));
            }
            _ => break,
        }
    }
    // supervisorctl joins its arguments into one command line and splits it again by white
    // space: `supervisorctl "signal HUP" web` (as Ansible runs it) is `signal HUP web`.
    let mut rest: Vec<OsString> = Vec::new();
    for a in &args[i..] {
        rest.extend(text(a)?.split_whitespace().map(OsString::from));
    }
    let Some(verb) = rest.first() else {
        return Err("supervisorctl: no interactive mode: give the action on the command line (supervisorctl status)".into());
    };
    let verb = text(verb)?;
    let mut out: Vec<OsString> = vec!["supervisor".into()];
    match verb {
        "status" | "start" | "stop" | "restart" | "signal" | "pid" | "tail" | "clear"
        | "reread" | "update" | "reload" | "add" | "remove" | "avail" | "shutdown" | "version" => {
            out.push(verb.into())
        }
        other => {
            return Err(format!(
                "supervisorctl: {other}: not an action this supervisor has (status, start, stop, restart, signal, pid, tail, clear, reread, update, reload, add, remove, avail, shutdown, version)"
            ));
        }
    }
    out.extend(rest[1..].iter().cloned());
    if tail.is_empty() {
        if let Some(found) = SUPERVISORD_SEARCH
            .iter()
            .map(PathBuf::from)
            .find(|p| exists(p))
        {
            tail.extend(["-c".into(), found.into_os_string()]);
        }
    }
    out.extend(tail);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn words(v: Result<Vec<OsString>, String>) -> String {
        match v {
            Ok(v) => v
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn supervisord_command_lines() {
        let t = |l: &str| words(translate(args(l)));
        assert_eq!(
            t("/usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf"),
            "supervisor run -c /etc/supervisor/supervisord.conf"
        );
        assert_eq!(
            t("supervisord --nodaemon --configuration=/a.conf -e debug -u www-data"),
            "supervisor run --log-level debug --user www-data -c /a.conf"
        );
        assert_eq!(t("supervisord -c/a.conf"), "supervisor run -c /a.conf");
        assert!(t("supervisord -c /a.conf -l /var/log/s.log").starts_with(
            "error: supervisord: -l: not supported here: the supervisor logs to stderr"
        ));
        assert!(
            t("supervisord -c /a.conf --pidfile=/run/s.pid").contains("--pidfile: not supported")
        );
        assert!(t("supervisord -e loud").contains("not a level"));
        // Without -c: supervisord's search order.
        let found = supervisord(&[], &|p| p == Path::new("/etc/supervisor/supervisord.conf"));
        assert_eq!(
            words(found),
            "supervisor run -c /etc/supervisor/supervisord.conf"
        );
        assert!(words(supervisord(&[], &|_| false)).contains("no configuration file found"));
    }

    #[test]
    fn supervisorctl_command_lines() {
        // With no configuration to find, whatever this machine has.
        let t = |l: &str| {
            let a = args(l);
            match a[0].to_str() {
                Some("supervisorctl") => words(supervisorctl(&a[1..], &|_| false)),
                _ => words(translate(a)),
            }
        };
        assert_eq!(t("supervisorctl status"), "supervisor status");
        assert_eq!(
            t("supervisorctl -c /etc/supervisor/supervisord.conf restart web:*"),
            "supervisor restart web:* -c /etc/supervisor/supervisord.conf"
        );
        assert_eq!(
            t("supervisorctl -s unix:///var/run/supervisor.sock status nginx"),
            "supervisor status nginx -s /var/run/supervisor.sock"
        );
        assert_eq!(t("supervisorctl -u admin -p secret pid"), "supervisor pid");
        assert!(t("supervisorctl -s http://127.0.0.1:9001 status").contains("only unix:///path"));
        assert!(t("supervisorctl").contains("no interactive mode"));
        assert!(t("supervisorctl fg web").contains("not an action"));
        // One argument holding the verb and its signal, as Ansible's module passes them.
        let ansible = vec![
            OsString::from("supervisorctl"),
            OsString::from("-c"),
            OsString::from("/etc/s.conf"),
            OsString::from("signal HUP"),
            OsString::from("web"),
        ];
        assert_eq!(
            words(translate(ansible)),
            "supervisor signal HUP web -c /etc/s.conf"
        );
        assert_eq!(t("supervisorctl add extra"), "supervisor add extra");
        // No -c, no -s: supervisorctl's search for the configuration.
        let found = supervisorctl(&args("status web"), &|p| {
            p == Path::new("/etc/supervisor/supervisord.conf")
        });
        assert_eq!(
            words(found),
            "supervisor status web -c /etc/supervisor/supervisord.conf"
        );
        let none = supervisorctl(&args("status"), &|_| false);
        assert_eq!(words(none), "supervisor status");
        let told = supervisorctl(&args("-c /a.conf status"), &|_| true);
        assert_eq!(words(told), "supervisor status -c /a.conf");
        assert_eq!(t("supervisorctl avail"), "supervisor avail");
        // The binary's own name passes through untouched.
        assert_eq!(t("supervisor status"), "supervisor status");
    }
}
