use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;
use crate::config::{AutoRestart, Backoff, OnFatal};

fn env(name: &str) -> Option<String> {
    match name {
        "BOT_HOME" => Some("/srv/bot".into()),
        "TOKEN_FILE" => Some("/run/secrets/token".into()),
        _ => None,
    }
}

fn ok(text: &str) -> Config {
    match parse_with_env(Path::new("/etc/app/supervisor.toml"), text, &env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse_with_env(Path::new("conf/supervisor.toml"), text, &env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_follow_supervisord() {
    let c = ok("[program.bot]\ncommand = [\"/usr/bin/bot\"]\n");
    assert_eq!(c.supervisor.logdir, Path::new("/etc/app/data/logs"));
    assert_eq!(
        c.supervisor.socket,
        Path::new("/etc/app/data/supervisor.sock")
    );
    assert_eq!(c.supervisor.shutdown_timeout, Duration::from_secs(30));
    let p = &c.programs[0];
    assert_eq!(p.name.as_str(), "bot");
    assert!(p.autostart);
    assert_eq!(p.policy.autorestart, AutoRestart::Unexpected);
    assert_eq!(p.policy.exitcodes, [0]);
    assert_eq!(p.policy.startsecs, Duration::from_secs(1));
    assert_eq!(p.policy.startretries, 3);
    assert_eq!(p.policy.stopsignal, Signal::SIGTERM);
    assert_eq!(p.policy.stopwaitsecs, Duration::from_secs(10));
    assert_eq!(p.priority, 999);
    assert_eq!(
        p.stdout.path.as_deref(),
        Some(Path::new("/etc/app/data/logs/bot.log"))
    );
    assert_eq!(
        p.stderr.path.as_deref(),
        Some(Path::new("/etc/app/data/logs/bot.err.log"))
    );
    assert_eq!((p.stdout.maxbytes, p.stdout.backups), (50 << 20, 10));
    assert_eq!(p.on_fatal, OnFatal::Ignore);
    assert!(p.echo_output);
}

#[test]
fn every_option_is_read() {
    let c = ok(r#"
[supervisor]
logdir = "/var/log/app"
socket = "run/s.sock"
shutdown_timeout = "12s"

[program.bot]
command = "${BOT_HOME}/bin/bot --token-file '${TOKEN_FILE}' --mode \"a b\""
directory = "${BOT_HOME}"
environment = { RUST_LOG = "info", WORKERS = 4, DEBUG = false }
user = "root"
autostart = false
autorestart = true
exitcodes = [0, 2]
fatal_exitcodes = [78]
startsecs = "250ms"
startretries = 5
stopsignal = "INT"
stopwaitsecs = 3
priority = 10
redirect_stderr = true
stdout_logfile = "logs/bot.out"
stdout_logfile_maxbytes = "1MB"
stdout_logfile_backups = 2
stderr_logfile = "NONE"
stderr_logfile_maxbytes = 1024
stderr_logfile_backups = 0
backoff = { initial = "100ms", max = "10s", multiplier = 3, jitter = 0.2, reset = "1m" }
depends_on = ["db"]
on_fatal = "shutdown"
echo_output = false

[program.db]
command = ["./bin/db", "--port", "${PORT:-5432}"]
priority = 1
"#);
    assert_eq!(c.supervisor.logdir, Path::new("/var/log/app"));
    assert_eq!(c.supervisor.socket, Path::new("/etc/app/run/s.sock"));
    assert_eq!(c.supervisor.shutdown_timeout, Duration::from_secs(12));
    // Start order is by priority.
    assert_eq!(c.programs[0].name.as_str(), "db");
    assert_eq!(
        c.programs[0].command,
        ["/etc/app/./bin/db", "--port", "5432"]
    );
    let p = c.program("bot").unwrap();
    assert_eq!(
        p.command,
        [
            "/srv/bot/bin/bot",
            "--token-file",
            "/run/secrets/token",
            "--mode",
            "a b"
        ]
    );
    assert_eq!(p.directory.as_deref(), Some(Path::new("/srv/bot")));
    let mut env = p.environment.clone();
    env.sort();
    assert_eq!(
        env,
        [
            ("DEBUG".to_string(), "false".to_string()),
            ("RUST_LOG".into(), "info".into()),
            ("WORKERS".into(), "4".into())
        ]
    );
    assert_eq!(p.user.as_ref().map(|u| u.uid), Some(0));
    assert!(!p.autostart);
    assert_eq!(p.policy.autorestart, AutoRestart::Always);
    assert_eq!(p.policy.exitcodes, [0, 2]);
    assert_eq!(p.policy.fatal_exitcodes, [78]);
    assert_eq!(p.policy.startsecs, Duration::from_millis(250));
    assert_eq!(p.policy.startretries, 5);
    assert_eq!(p.policy.stopsignal, Signal::SIGINT);
    assert_eq!(p.policy.stopwaitsecs, Duration::from_secs(3));
    assert_eq!(p.priority, 10);
    assert!(p.redirect_stderr);
    assert_eq!(
        p.stdout.path.as_deref(),
        Some(Path::new("/etc/app/logs/bot.out"))
    );
    assert_eq!((p.stdout.maxbytes, p.stdout.backups), (1 << 20, 2));
    assert_eq!(p.stderr.path, None);
    assert_eq!((p.stderr.maxbytes, p.stderr.backups), (1024, 0));
    assert_eq!(
        p.policy.backoff,
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 3.0,
            jitter: 0.2,
            reset: Duration::from_secs(60)
        }
    );
    assert_eq!(p.depends_on, [ProgramName::new("db").unwrap()]);
    assert_eq!(p.on_fatal, OnFatal::Shutdown);
    assert!(!p.echo_output);
}

#[test]
fn env_files_feed_expansion_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "GLOBAL=g\nSHARED=from-file\n").unwrap();
    std::fs::write(dir.path().join("bot.env"), "LOCAL=l\n").unwrap();
    let path = dir.path().join("supervisor.toml");
    let text = r#"
[supervisor]
env_file = ".env"
[program.bot]
command = ["/bin/echo", "${GLOBAL}", "${LOCAL}", "${SHARED}"]
env_file = "bot.env"
environment = { EXTRA = "x" }
pass_env = ["GLOBAL", "SHARED"]
[program.other]
command = ["/bin/true"]
"#;
    let real = |n: &str| (n == "SHARED").then(|| "from-env".to_string());
    let c = parse_with_env(&path, text, &real).unwrap();
    let p = &c.programs[0];
    // The real environment wins over the global env_file (and passes at spawn, not here).
    assert_eq!(p.command, ["/bin/echo", "g", "l", "from-env"]);
    // Of the global env_file, a program receives only what its pass_env names.
    assert!(c.programs[1].environment.is_empty());
    assert_eq!(
        p.environment,
        [
            ("GLOBAL".to_string(), "g".to_string()),
            ("LOCAL".into(), "l".into()),
            ("EXTRA".into(), "x".into())
        ]
    );
}

/// Each kind of mistake, with the exact message a person reads.
#[test]
fn autostart_may_come_from_the_environment() {
    let run = |value: &str| {
        ok(&format!(
            "[program.a]\ncommand = [\"/bin/a\"]\nautostart = {value}\n"
        ))
        .programs[0]
            .autostart
    };
    assert!(!run("false"));
    assert!(run("\"${NOT_SET:-true}\""));
    assert!(!run("\"${NOT_SET:-false}\""));
    let e = errors("[program.a]\ncommand = [\"/bin/a\"]\nautostart = \"${BOT_HOME}\"\n");
    assert_eq!(
        e,
        [
            "conf/supervisor.toml:3: program.a.autostart: expected true or false, found \"/srv/bot\" (from \"${BOT_HOME}\")"
        ]
    );
}

#[test]
fn each_kind_of_error_names_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nstartsec = 5\n",
            "conf/supervisor.toml:3: program.bot.startsec: unknown key (did you mean \"startsecs\"?)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nautostart = \"yes\"\n",
            "conf/supervisor.toml:3: program.bot.autostart: expected true or false, found \"yes\"",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nstartsecs = -1\n",
            "conf/supervisor.toml:3: program.bot.startsecs: -1 is negative; durations cannot be",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nstopwaitsecs = \"soon\"\n",
            "conf/supervisor.toml:3: program.bot.stopwaitsecs: \"soon\" is not a duration (write seconds as a number, or a string such as \"250ms\", \"2s\", \"1m 30s\")",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nstopsignal = \"TERMINATE\"\n",
            "conf/supervisor.toml:3: program.bot.stopsignal: \"TERMINATE\" is not a signal name (e.g. \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\")",
        ),
        (
            "[program.a]\ncommand = [\"/bin/a\"]\ndepends_on = [\"b\"]\n[program.b]\ncommand = [\"/bin/b\"]\ndepends_on = [\"a\"]\n",
            "conf/supervisor.toml:3: program.a.depends_on: dependency cycle: a -> b -> a",
        ),
        (
            "[program.a]\ncommand = [\"/bin/a\"]\ndepends_on = [\"db\"]\n",
            "conf/supervisor.toml:3: program.a.depends_on: unknown program \"db\"",
        ),
        (
            "[program.a]\ncommand = [\"/bin/a\"]\nstdout_logfile = \"/tmp/x.log\"\n[program.b]\ncommand = [\"/bin/b\"]\nstdout_logfile = \"/tmp/x.log\"\nstdout_logfile_backups = 3\n",
            "conf/supervisor.toml:6: program.b.stdout_logfile: log file /tmp/x.log is shared with program.a.stdout_logfile, which rotates it differently (maxbytes 52428800 and 10 backups there, 52428800 and 3 here): give both the same",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nstartsecs = 9223372036854775807\n",
            "conf/supervisor.toml:3: program.bot.startsecs: 9223372036854775807 s is longer than the longest duration accepted (7 days)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\npass_env = [\"A-B\"]\n",
            "conf/supervisor.toml:3: program.bot.pass_env: \"A-B\" is not a variable name, NAME*, or * (pass_env names the supervisor's variables a program receives)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\n[program.bot.deploy]\nrepo = \"/srv\"\nurl = \"ext::sh -c touch% /tmp/pwned\"\n",
            "conf/supervisor.toml:5: program.bot.deploy.url: \"ext::sh -c touch% /tmp/pwned\" is not a usable git name",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\n[program.bot.deploy]\nrepo = \"/srv\"\nurl = \"ext::ssh\"\n",
            "conf/supervisor.toml:5: program.bot.deploy.url: \"ext::ssh\" names a git transport helper; use an https://, ssh:// or git:// URL, or a path",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\n[program.bot.deploy]\nrepo = \"/srv\"\nurl = \"ftp://x/y\"\n",
            "conf/supervisor.toml:5: program.bot.deploy.url: ftp:// is not a scheme deploys fetch from (https, http, ssh, git, file)",
        ),
        (
            "[program.bot]\ndirectory = \"/srv\"\n",
            "conf/supervisor.toml:1: program.bot: missing \"command\" (the program to run, e.g. command = [\"/usr/bin/bot\", \"--flag\"])",
        ),
        (
            "[program.bot]\ncommand = []\n",
            "conf/supervisor.toml:2: program.bot.command: the command is empty",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nexitcodes = [0, 256]\n",
            "conf/supervisor.toml:3: program.bot.exitcodes: 256 is out of range (0 to 255)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nautorestart = \"always\"\n",
            "conf/supervisor.toml:3: program.bot.autorestart: expected true, false or \"unexpected\", found \"always\"",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\non_fatal = \"exit\"\n",
            "conf/supervisor.toml:3: program.bot.on_fatal: expected \"ignore\" or \"shutdown\", found \"exit\"",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nuser = \"no-such-user-here\"\n",
            "conf/supervisor.toml:3: program.bot.user: unknown user \"no-such-user-here\" (create it, or give a uid)",
        ),
        (
            "[program.bot]\ncommand = [\"${BOT_BIN}\"]\n",
            "conf/supervisor.toml:2: program.bot.command: ${BOT_BIN} is not set (set it in the environment or an env_file, or write ${BOT_BIN:-default})",
        ),
        (
            "[program.\"my bot\"]\ncommand = [\"/bin/bot\"]\n",
            "conf/supervisor.toml:1: program.my bot: program name \"my bot\" contains ' '; use only letters, digits, '_', '-' and '.'",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nbackoff = { initial = \"5s\", max = \"1s\" }\n",
            "conf/supervisor.toml:3: program.bot.backoff: initial (5s) is larger than max (1s)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"]\nbackoff = { multiplier = 0.5 }\n",
            "conf/supervisor.toml:3: program.bot.backoff.multiplier: 0.5 is out of range (1 to 100)",
        ),
        (
            "[supervisor]\nlogdir = 5\n",
            "conf/supervisor.toml:2: supervisor.logdir: expected a string, found an integer",
        ),
        (
            "[supervisr]\n",
            "conf/supervisor.toml:1: supervisr: unknown section (did you mean \"supervisor\"?)",
        ),
        (
            "[program.bot]\ncommand = [\"/bin/bot\"\n",
            "conf/supervisor.toml:2: invalid TOML: unclosed array, expected `]`",
        ),
        (
            "[program.bot]\ncommand = \"/bin/bot 'unclosed\"\n",
            "conf/supervisor.toml:2: program.bot.command: unbalanced quotes in the command line",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(errors(text), [*expected], "for config:\n{text}");
    }
}

#[test]
fn streams_may_share_a_log_file_that_rotates_one_way() {
    let config = parse_with_env(
        Path::new("conf/supervisor.toml"),
        "[program.a]\ncommand = [\"/bin/a\"]\nstdout_logfile = \"/tmp/x.log\"\n[program.b]\ncommand = [\"/bin/b\"]\nstdout_logfile = \"/tmp/x.log\"\n",
        &|_| None,
    )
    .unwrap();
    let paths: Vec<_> = config
        .programs
        .iter()
        .map(|p| p.stdout.path.clone())
        .collect();
    assert_eq!(paths[0], paths[1]);
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let got = errors(
        "[program.a]\ncommand = [\"/bin/a\"]\nstartsecs = -1\nbogus = 1\n\n[program.b]\nautostart = 1\n",
    );
    assert_eq!(
        got,
        [
            "conf/supervisor.toml:3: program.a.startsecs: -1 is negative; durations cannot be",
            "conf/supervisor.toml:4: program.a.bogus: unknown key",
            "conf/supervisor.toml:6: program.b: missing \"command\" (the program to run, e.g. command = [\"/usr/bin/bot\", \"--flag\"])",
            "conf/supervisor.toml:7: program.b.autostart: expected true or false, found an integer",
        ]
    );
}

#[test]
fn an_unreadable_file_says_so() {
    let e = crate::config::load(Path::new("/nonexistent/supervisor.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/supervisor.toml: cannot read the configuration: No such file or directory (os error 2)"
    );
}

#[test]
fn an_event_listener_names_its_events() {
    use crate::listener::EventType;
    let c = ok(
        "[program.mail]\ncommand = [\"/bin/crashmail\"]\nevents = [\"PROCESS_STATE\", \"TICK_60\"]\nbuffer_size = 3\n[program.app]\ncommand = [\"/bin/app\"]\n",
    );
    let l = c.program("mail").unwrap().listener.as_ref().unwrap();
    assert_eq!(l.events, [EventType::ProcessState, EventType::Tick60]);
    assert_eq!(l.buffer_size, 3);
    assert!(c.program("app").unwrap().listener.is_none());
    let c = ok("[program.mail]\ncommand = [\"/bin/m\"]\nevents = [\"EVENT\"]\n");
    assert_eq!(c.programs[0].listener.as_ref().unwrap().buffer_size, 10);

    let cases: &[(&str, &str)] = &[
        (
            "events = [\"PROCESS_STATE_FATL\"]",
            "conf/supervisor.toml:3: program.l.events: unknown event type \"PROCESS_STATE_FATL\" (did you mean \"PROCESS_STATE_FATAL\"?)",
        ),
        (
            "events = [\"PROCESS_LOG_STDOUT\"]",
            "conf/supervisor.toml:3: program.l.events: PROCESS_LOG_STDOUT events are not sent by this supervisor (it sends PROCESS_STATE_*, TICK_*, SUPERVISOR_STATE_CHANGE_* and PROCESS_GROUP_*)",
        ),
        (
            "events = []",
            "conf/supervisor.toml:3: program.l.events: names no event type; a listener needs at least one",
        ),
        (
            "events = \"PROCESS_STATE\"",
            "conf/supervisor.toml:3: program.l.events: expected an array of event types (e.g. [\"PROCESS_STATE_FATAL\"]), found a string",
        ),
        (
            "buffer_size = 5",
            "conf/supervisor.toml:3: program.l.buffer_size: applies only to an event listener (a program with `events`)",
        ),
        (
            "events = [\"TICK_5\"]\nbuffer_size = 0",
            "conf/supervisor.toml:4: program.l.buffer_size: 0 is out of range (1 to 100000)",
        ),
        (
            "events = [\"TICK_5\"]\nredirect_stderr = true",
            "conf/supervisor.toml:4: program.l.redirect_stderr: an event listener's stdout is its channel to the supervisor; its stderr cannot join it (as in supervisord)",
        ),
    ];
    for (lines, expected) in cases {
        let text = format!("[program.l]\ncommand = [\"/bin/l\"]\n{lines}\n");
        assert_eq!(errors(&text), [*expected], "for {lines}");
    }
}

/// docs/CONFIG.md's defaults are the code's: for every key of the `[supervisor]`, program,
/// deploy and health tables whose default is a value, writing that value explicitly changes
/// nothing in what is parsed.
#[test]
fn the_documented_defaults_are_the_defaults() {
    let doc = include_str!("../../../../docs/CONFIG.md");
    // The base: one table of each kind; a listener (for buffer_size) and a program that waits
    // for readiness (for ready_timeout) beside a plain one.
    let base = [
        ("supervisor", ""),
        ("program.p", "command = [\"/bin/true\"]\n"),
        ("program.p.deploy", "repo = \"/srv/p\"\n"),
        // A deploy of prebuilt releases, for the keys that go only with artifact_url.
        ("program.d", "command = [\"/bin/true\"]\n"),
        (
            "program.d.deploy",
            "url = \"https://f/bot.git\"\nartifact_url = \"https://f/{commit}/bot\"\nsigning_key = \"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"\n",
        ),
        (
            "program.l",
            "command = [\"/bin/true\"]\nevents = [\"TICK_5\"]\n",
        ),
        (
            "program.n",
            "command = [\"/bin/true\"]\nready = \"notify\"\n",
        ),
    ];
    let render = |extra: Option<(&str, &str, &str)>| -> String {
        let mut text = String::new();
        for (table, body) in base {
            text.push_str(&format!("[{table}]\n{body}"));
            if let Some((_, key, value)) = extra.filter(|(t, _, _)| *t == table) {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    };
    let parsed = |text: &str| -> String {
        match parse_with_env(Path::new("/etc/app/supervisor.toml"), text, &env) {
            Ok(c) => format!("{c:?}"),
            Err(e) => panic!("{e}\nin:\n{text}"),
        }
    };
    let expected = parsed(&render(None));
    // Which table each documented section's keys go in.
    let mut table = None;
    let mut checked = Vec::new();
    for line in doc.lines() {
        if line.starts_with("## `[supervisor]`") {
            table = Some("supervisor");
        } else if line.starts_with("## `[program.NAME]`") || line.starts_with("### Health") {
            table = Some("program.p");
        } else if line.starts_with("### Deploys") {
            table = Some("program.p.deploy");
        } else if line.starts_with("#") {
            table = None;
        }
        let Some(section) = table else { continue };
        let cells: Vec<&str> = line.split(" | ").collect();
        if !line.starts_with("| `") || cells.len() < 3 {
            continue;
        }
        let keys: Vec<&str> = cells[0]
            .trim_start_matches("| ")
            .split(", ")
            .map(|k| k.trim_end_matches(" **new**").trim_matches('`'))
            .collect();
        let defaults: Vec<&str> = if keys.len() == 1 {
            vec![cells[1]]
        } else {
            cells[1].split(", ").collect()
        };
        for (key, default) in keys.iter().zip(defaults) {
            let value = default.trim().trim_matches('`');
            if !default.trim().starts_with('`') || value.contains("NAME") || value.contains('<') {
                continue; // "required", "none", "the supervisor's", a path with the name
            }
            // A TOML value as written, or else a string (`50MB`, `30s`, `data/logs`).
            let value = if toml::de::DeTable::parse(&format!("v = {value}")).is_ok() {
                value.to_owned()
            } else {
                format!("{value:?}")
            };
            let t = match *key {
                "buffer_size" => "program.l",
                "ready_timeout" => "program.n",
                "artifact_wait" | "artifact_max_size" => "program.d.deploy",
                _ => section,
            };
            let explicit = parsed(&render(Some((t, key, &value))));
            assert_eq!(
                explicit, expected,
                "docs/CONFIG.md says {key} defaults to {value}, but writing it changes the result"
            );
            checked.push(*key);
        }
    }
    // The table rows were found (a changed heading must not make this test vacuous).
    for key in [
        "logdir",
        "shutdown_timeout",
        "autorestart",
        "startsecs",
        "stdout_logfile_maxbytes",
        "stderr_logfile_backups",
        "backoff",
        "buffer_size",
        "step_timeout",
        "keep_releases",
        "artifact_wait",
        "artifact_max_size",
        "ready",
        "ready_timeout",
    ] {
        assert!(
            checked.contains(&key),
            "{key} not checked; checked: {checked:?}"
        );
    }
}

#[test]
fn ready_through_a_variable_takes_every_form() {
    let vars = |name: &str| match name {
        "LOG_READY" => Some(r#"{ log = "Logged in as" }"#.to_owned()),
        "TCP_READY" => Some(r#"{ tcp = "127.0.0.1:8080", interval = "2s" }"#.to_owned()),
        "BAD_KEY" => Some(r#"{ log = "x", port = 3 }"#.to_owned()),
        "NOT_TOML" => Some("{ log = ".to_owned()),
        _ => None,
    };
    let parse = |ready: &str| {
        let text = format!("[program.bot]\ncommand = [\"/usr/bin/bot\"]\nready = \"{ready}\"\n");
        parse_with_env(Path::new("conf/supervisor.toml"), &text, &vars)
    };
    let c = parse("${LOG_READY}").unwrap();
    match &c.programs[0].ready {
        crate::config::health::Ready::Log(p) => assert!(p.0.is_match(b"Logged in as testbot")),
        other => panic!("{other:?}"),
    }
    let c = parse("${TCP_READY}").unwrap();
    match &c.programs[0].ready {
        crate::config::health::Ready::Probe(p) => assert_eq!(p.interval, Duration::from_secs(2)),
        other => panic!("{other:?}"),
    }
    let e = parse("${BAD_KEY}").unwrap_err().to_string();
    assert_eq!(
        e,
        "conf/supervisor.toml:3: program.bot.ready.port: a log readiness rule takes only `log` (in \"{ log = \\\"x\\\", port = 3 }\")"
    );
    let e = parse("${NOT_TOML}").unwrap_err().to_string();
    assert!(
        e.starts_with(
            "conf/supervisor.toml:3: program.bot.ready: \"{ log = \" is not a TOML table:"
        ),
        "{e}"
    );
}

#[test]
fn a_step_program_path_is_relative_to_the_repository() {
    // `steps` before `repo` in the file: the order does not matter.
    let c = ok(
        "[program.bot]\ncommand = \"bot/run\"\n[program.bot.deploy]\nsteps = [[\".venv/bin/pip\", \"install\", \"-r\", \"requirements.txt\"], [\"python3\", \"-m\", \"venv\", \".venv\"], [\"/usr/bin/make\"]]\nrepo = \"src\"\n",
    );
    let p = &c.programs[0];
    assert_eq!(
        p.command[0], "/etc/app/bot/run",
        "a program's is the file's folder's"
    );
    let steps = &p.deploy.as_ref().unwrap().steps;
    assert_eq!(steps[0][0], "/etc/app/src/.venv/bin/pip");
    assert_eq!(steps[0][1..], ["install", "-r", "requirements.txt"]);
    assert_eq!(steps[1][0], "python3", "a bare name is looked up in PATH");
    assert_eq!(steps[2][0], "/usr/bin/make");
}

#[test]
fn a_tcp_port_needs_credentials_beyond_loopback() {
    let c = ok(
        "[control.http]\nlisten = \"*:9001\"\nusername = \"u\"\npassword = \"{SHA}40bd001563085fc35165329ea1ff5c5ecbdbbeef\"\n",
    );
    let http = c.control.http.unwrap();
    assert_eq!(http.listen, "0.0.0.0:9001".parse().unwrap());
    assert_eq!(
        http.credentials,
        Some((
            "u".into(),
            "{SHA}40bd001563085fc35165329ea1ff5c5ecbdbbeef".into()
        ))
    );
    assert_eq!(http.uid, None);
    let local = ok("[control.http]\nlisten = \"localhost:9001\"\n");
    assert_eq!(
        local.control.http.unwrap().listen,
        "127.0.0.1:9001".parse().unwrap()
    );
    assert_eq!(
        errors("[control.http]\nlisten = \"0.0.0.0:9001\"\n"),
        [
            "conf/supervisor.toml:1: control.http: 0.0.0.0:9001 is reachable from other machines: set `username` and `password` (or listen on 127.0.0.1)"
        ]
    );
    assert_eq!(
        errors("[control.http]\nlisten = \"127.0.0.1:9001\"\nusername = \"u\"\n"),
        ["conf/supervisor.toml:1: control.http: `username` and `password` go together"]
    );
    assert_eq!(
        errors("[control.http]\nlisten = \"nine\"\n"),
        [
            "conf/supervisor.toml:2: control.http.listen: \"nine\" is not HOST:PORT (\"127.0.0.1:9001\", \"*:9001\" for every address)"
        ]
    );
}

/// docs/CONFIG.md's part from `heading` to the next heading of any level.
fn doc_section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let Some(start) = doc.find(&format!("\n{heading}\n")) else {
        panic!("docs/CONFIG.md has no heading {heading:?}");
    };
    let rest = &doc[start + heading.len() + 2..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

/// The keys a section's table documents: every `code` in the first cell of each row.
fn documented(section: &str) -> std::collections::BTreeSet<&str> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .collect()
}

/// The key lists the parser checks against are the declaration: docs/CONFIG.md documents each
/// of their keys in its section, and its tables document no key the parser would refuse.
#[test]
fn config_md_documents_exactly_the_keys_the_parser_takes() {
    let doc = include_str!("../../../../docs/CONFIG.md");
    for (heading, keys) in [
        ("## `[supervisor]`", supervisor::SUPERVISOR_KEYS),
        ("## `[program.NAME]`", program::PROGRAM_KEYS),
        (
            "### Deploys (`[program.NAME.deploy]`) **new**",
            deploy::DEPLOY_KEYS,
        ),
    ] {
        let declared: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
        let section = doc_section(doc, heading);
        assert_eq!(documented(section), declared, "{heading}");
    }
    // Tables of tables: each key named in its section's text.
    for (heading, keys) in [
        ("### Restart delay (`backoff`)", program::BACKOFF_KEYS),
        ("### Health **new**", health::READY_PROBE_KEYS),
        ("### Health **new**", health::HEALTHCHECK_KEYS),
        ("### Health **new**", health::START_LIMIT_KEYS),
        ("## `[program.NAME]`", limits::LIMITS_KEYS),
    ] {
        let section = doc_section(doc, heading);
        for key in keys {
            let named = [format!("`{key}`"), format!("{key} ="), format!("`{key} =")];
            assert!(
                named.iter().any(|n| section.contains(n.as_str())),
                "{heading} does not name {key:?}"
            );
        }
    }
}

/// `artifact_url`: signed prebuilt releases, and nothing that would build or run unsigned.
#[test]
fn a_prebuilt_release_needs_its_key_and_nothing_that_builds() {
    const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    let head = "[program.bot]\ncommand = [\"/bin/bot\"]\n[program.bot.deploy]\nurl = \"https://f/bot.git\"\n";
    let c = ok(&format!(
        "{head}artifact_url = \"https://f/{{commit}}/bot-{{arch}}.tar.zst\"\nsigning_key = \"{KEY}\"\nartifact_max_size = \"50MB\"\n"
    ));
    let d = c.programs[0]
        .deploy
        .as_ref()
        .and_then(|d| d.download.clone());
    let d = d.expect("a download");
    assert_eq!((d.signing_key.as_str(), d.max_size), (KEY, 50 << 20));
    assert_eq!(d.wait, Duration::from_secs(1800));
    let dir = tempfile::tempdir().unwrap();
    let pubfile = dir.path().join("minisign.pub");
    std::fs::write(
        &pubfile,
        format!("untrusted comment: minisign public key\n{KEY}\n"),
    )
    .unwrap();
    let c = ok(&format!(
        "{head}artifact_url = \"https://f/{{commit}}\"\nsigning_key_file = {:?}\n",
        pubfile.display().to_string()
    ));
    assert_eq!(
        c.programs[0]
            .deploy
            .as_ref()
            .and_then(|d| d.download.as_ref())
            .map(|d| d.signing_key.as_str()),
        Some(KEY)
    );
    let url = "artifact_url = \"https://f/{commit}\"\n";
    for (lines, expected) in [
        (
            url.to_owned(),
            "conf/supervisor.toml:5: program.bot.deploy.artifact_url: needs signing_key (or signing_key_file): the minisign public key every release must be signed with",
        ),
        (
            format!("{url}signing_key = \"RWnope\"\n"),
            "conf/supervisor.toml:6: program.bot.deploy.signing_key: \"RWnope\" is not a minisign public key (the base64 line of minisign.pub, RW...)",
        ),
        (
            format!("artifact_url = \"https://f/{{tag}}\"\nsigning_key = \"{KEY}\"\n"),
            "conf/supervisor.toml:5: program.bot.deploy.artifact_url: {tag} is not a placeholder of artifact_url (known: {commit}, {short}, {branch}, {arch}, {debian_arch})",
        ),
        (
            format!("artifact_url = \"ftp://f/x\"\nsigning_key = \"{KEY}\"\n"),
            "conf/supervisor.toml:5: program.bot.deploy.artifact_url: \"ftp://f/x\" is not an https:// or http:// URL",
        ),
        (
            format!("{url}signing_key = \"{KEY}\"\nsteps = [[\"make\"]]\n"),
            "conf/supervisor.toml:5: program.bot.deploy.steps: artifact_url downloads a prebuilt release; steps builds one here: set one or the other",
        ),
        (
            format!("signing_key = \"{KEY}\"\nrepo = \"/srv\"\n"),
            "conf/supervisor.toml:5: program.bot.deploy.signing_key: only with artifact_url",
        ),
    ] {
        assert_eq!(errors(&format!("{head}{lines}")), [expected], "for {lines}");
    }
    let missing = errors(&format!("{head}{url}signing_key_file = \"nope.pub\"\n"));
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with("conf/supervisor.toml:6: program.bot.deploy.signing_key_file: /")
            && missing[0].ends_with(
                "/conf/nope.pub: cannot read it: No such file or directory (os error 2)"
            ),
        "{missing:?}"
    );
    // Without url or repo, a deploy that names no commit could not learn the tip.
    let bare = "[program.bot]\ncommand = [\"/bin/bot\"]\n[program.bot.deploy]\n";
    assert_eq!(
        errors(&format!("{bare}{url}signing_key = \"{KEY}\"\n")),
        [
            "conf/supervisor.toml:4: program.bot.deploy.artifact_url: needs url (or repo): where `git ls-remote` learns the branch tip when a deploy does not name its commit"
        ]
    );
}

/// Each table's key list is the one declaration of its keys (accepted, suggested, documented);
/// every key it declares must have a reader. Each is written with a value no key takes (a
/// date): a type error, or another complaint about its value, but never "unknown key".
#[test]
fn every_declared_key_has_a_reader() {
    const DATE: &str = "1979-05-27T07:32:00Z";
    let program = "[program.p]\ncommand = [\"/bin/true\"]\n";
    type Render<'a> = &'a dyn Fn(&str) -> String;
    let tables: [(&[&str], Render); 10] = [
        (supervisor::SUPERVISOR_KEYS, &|k| {
            format!("[supervisor]\n{k} = {DATE}\n{program}")
        }),
        (supervisor::HTTP_KEYS, &|k| {
            format!("[control.http]\n{k} = {DATE}\n{program}")
        }),
        (program::PROGRAM_KEYS, &|k| match k {
            "command" => format!("[program.p]\ncommand = {DATE}\n"),
            _ => format!("{program}{k} = {DATE}\n"),
        }),
        (deploy::DEPLOY_KEYS, &|k| {
            format!("{program}[program.p.deploy]\n{k} = {DATE}\n")
        }),
        (program::BACKOFF_KEYS, &|k| {
            format!("{program}backoff = {{ {k} = {DATE} }}\n")
        }),
        (limits::LIMITS_KEYS, &|k| {
            format!("{program}limits = {{ {k} = {DATE} }}\n")
        }),
        (health::START_LIMIT_KEYS, &|k| {
            format!("{program}start_limit = {{ {k} = {DATE} }}\n")
        }),
        (health::HEALTHCHECK_KEYS, &|k| {
            format!("{program}healthcheck = {{ {k} = {DATE} }}\n")
        }),
        (health::READY_PROBE_KEYS, &|k| {
            format!("{program}ready = {{ {k} = {DATE} }}\n")
        }),
        (&["allow", "http"], &|k| {
            format!("[control]\n{k} = {DATE}\n{program}")
        }),
    ];
    let mut checked = 0;
    for (keys, text) in tables {
        for key in keys {
            let text = text(key);
            let errors = errors(&text);
            assert!(
                !errors.iter().any(|e| e.contains("unknown key")),
                "{key} is declared but not read:\n{text}\n{errors:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} keys");
    // And the list is the gate: a key it does not declare is refused, with a suggestion.
    let refused = errors(&format!("{program}startsec = 1\n"));
    assert!(
        refused
            .iter()
            .any(|e| e.contains("unknown key") && e.contains("startsecs")),
        "{refused:#?}"
    );
}

/// The readiness rules are declared once (`READY_KINDS`): each is parsed as written there into
/// a rule of that kind, docs/CONFIG.md lists each as written, the probes are among them, and a
/// rule that is none of them is refused naming them all.
#[test]
fn every_readiness_kind_is_parsed_and_documented_as_declared() {
    use crate::config::health::READY_KINDS;
    let doc = include_str!("../../../../docs/CONFIG.md");
    let health = doc_section(doc, "### Health **new**");
    for kind in READY_KINDS {
        let written = kind.written.replace("PORT", "8080");
        let c = ok(&format!(
            "[program.bot]\ncommand = [\"/usr/bin/bot\"]\nready = {written}\n"
        ));
        assert_eq!(c.programs[0].ready.kind(), kind.name, "{written}");
        assert!(
            health.contains(&format!("`{}`", kind.written)),
            "docs/CONFIG.md's Health section does not show {}",
            kind.written
        );
    }
    for probe in health::PROBE_KINDS {
        assert!(READY_KINDS.iter().any(|k| k.name == *probe), "{probe}");
    }
    let refused = errors("[program.bot]\ncommand = [\"/usr/bin/bot\"]\nready = \"soon\"\n");
    for kind in READY_KINDS {
        assert!(
            refused.iter().any(|e| e.contains(kind.written)),
            "{refused:#?} does not name {}",
            kind.written
        );
    }
}
