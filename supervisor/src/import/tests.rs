use super::*;

fn import_text(files: &[(&str, &str)]) -> (tempfile::TempDir, Imported) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let imported = import(&dir.path().join(files[0].0)).unwrap();
    (dir, imported)
}

/// The program tables of the output, without the header comment.
fn body(toml: &str) -> &str {
    &toml[toml.find("\n[").unwrap() + 1..]
}

#[test]
fn every_supported_program_option_maps_one_to_one() {
    let (dir, out) = import_text(&[(
        "supervisord.conf",
        r#"[program:app]
command=/usr/bin/app --name "two words" --pct 100%%
directory=%(here)s/work
user=root
priority=5
autostart=no
autorestart=unexpected
startsecs=3
startretries=7
exitcodes=0,3
stopsignal=INT
stopwaitsecs=20
stopasgroup=false
redirect_stderr=true
stdout_logfile=%(here)s/logs/%(program_name)s.log
stdout_logfile_maxbytes=1MB
stdout_logfile_backups=4
stderr_logfile=NONE
stderr_logfile_maxbytes=1024
stderr_logfile_backups=0
environment=HOME="/home/app",COST="$5",FROM_ENV="%(ENV_HOME)s"
"#,
    )]);
    let here = dir.path().display();
    assert_eq!(
        body(&out.toml),
        format!(
            r#"[program.app]
command = ["/usr/bin/app", "--name", "two words", "--pct", "100%"]
directory = "{here}/work"
user = "root"
priority = 5
autostart = false
autorestart = "unexpected"
startsecs = 3
startretries = 7
exitcodes = [0, 3]
stopsignal = "INT"
stopwaitsecs = 20
# choice: stopasgroup = false in supervisord; signals always go to the whole process group here
redirect_stderr = true
stdout_logfile = "{here}/logs/app.log"
stdout_logfile_maxbytes = "1MB"
stdout_logfile_backups = 4
stderr_logfile = "NONE"
stderr_logfile_maxbytes = 1024
stderr_logfile_backups = 0
pass_env = ["*"]  # choice: supervisord's whole environment; name only what it needs
environment = {{ HOME = "/home/app", COST = "$$5", FROM_ENV = "${{HOME}}" }}
"#
        )
    );
    assert_eq!(out.findings, []);
    // And it is a valid configuration.
    let path = dir.path().join("supervisor.toml");
    let config =
        crate::config::parse_with_env(&path, &out.toml, &|n| (n == "HOME").then(|| "/root".into()))
            .unwrap();
    let p = &config.programs[0];
    let var = |k: &str| {
        p.environment
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(var("COST"), Some("$5"));
    assert_eq!(var("FROM_ENV"), Some("/root"));
}

#[test]
fn numprocs_and_groups() {
    let (_dir, out) = import_text(&[(
        "s.conf",
        "[program:worker]\ncommand=work --id %(process_num)d --group %(group_name)s\nprocess_name=%(program_name)s-%(process_num)d\nnumprocs=2\nnumprocs_start=1\n\n[program:web]\ncommand=web\n[program:api]\ncommand=api\n[group:front]\nprograms=web, api\npriority=5\n",
    )]);
    assert_eq!(
        body(&out.toml),
        r#"[program.worker-1]
group = "worker"  # numprocs = 2: supervisord groups them as worker:*
command = ["work", "--id", "1", "--group", "worker"]
pass_env = ["*"]  # choice: supervisord's whole environment; name only what it needs

[program.worker-2]
group = "worker"  # numprocs = 2: supervisord groups them as worker:*
command = ["work", "--id", "2", "--group", "worker"]
pass_env = ["*"]  # choice: supervisord's whole environment; name only what it needs

[program.web]
group = "front"  # from [group:front]
command = ["web"]
pass_env = ["*"]  # choice: supervisord's whole environment; name only what it needs

[program.api]
group = "front"  # from [group:front]
command = ["api"]
pass_env = ["*"]  # choice: supervisord's whole environment; name only what it needs
"#
    );
    let lines: Vec<String> = out
        .findings
        .iter()
        .map(|f| format!("{}:{}", f.line, f.what))
        .collect();
    assert_eq!(lines, ["13:[group:front] priority"]);
}

#[test]
fn everything_unsupported_is_reported_with_its_line() {
    let (dir, out) = import_text(&[(
        "supervisord.conf",
        "[supervisord]\nnodaemon=true\nminfds=1024\nuser=app\nchildlogdir=/var/log/sv\n[inet_http_server]\nport=9001\n[unix_http_server]\nfile=/run/sv.sock\nchmod=0770\nchown=root:app\npassword=x\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory=x\n[eventlistener:m]\ncommand=m\nevents=PROCESS_LOG\n[fcgi-program:f]\ncommand=f\n[program:p]\ncommand=p\numask=022\nstdout_syslog=true\nbogus=1\n",
    )]);
    let file = dir.path().join("supervisord.conf");
    let report: Vec<String> = out
        .findings
        .iter()
        .map(|f| {
            assert_eq!(f.file, file);
            let kind = match f.severity {
                Severity::Ignored => "ignored",
                Severity::Unsupported => "unsupported",
            };
            format!("{} {} {kind}", f.line, f.what)
        })
        .collect();
    assert_eq!(
        report,
        [
            "2 [supervisord] nodaemon ignored",
            "7 [inet_http_server] port unsupported",
            "12 [unix_http_server] password unsupported",
            "13 [rpcinterface:supervisor] unsupported",
            "15 [eventlistener:m] unsupported",
            "18 [fcgi-program:f] unsupported",
            "22 [program:p] umask unsupported",
            "23 [program:p] stdout_syslog unsupported",
            "24 [program:p] bogus unsupported",
        ]
    );
    assert!(out.toml.contains(
        "[supervisor]\nuser = \"app\"  # the supervisor switches to it at start\nlogdir = \"/var/log/sv\"  # from [supervisord] childlogdir\nsocket = \"/run/sv.sock\"  # from [unix_http_server] file\nsocket_mode = \"0770\"\nsocket_group = \"app\"\n"
    ), "{}", out.toml);
    // supervisord's TCP port without a password: served, on this machine only.
    assert!(
        out.toml.contains("[control.http]\nlisten = \"127.0.0.1:9001\"  # [inet_http_server] port = 9001: no password, so this machine only\n"),
        "{}",
        out.toml
    );
}

#[test]
fn an_event_listener_becomes_a_program_with_events() {
    let (_dir, out) = import_text(&[(
        "supervisord.conf",
        "[eventlistener:mail]\ncommand=crashmail -a -m ops@example.org\nevents=PROCESS_STATE_EXITED, TICK_60,PROCESS_LOG_STDERR\nbuffer_size=25\nresult_handler=supervisor.dispatchers:default_handler\n[eventlistener:pool]\ncommand=l\nprocess_name=%(program_name)s_%(process_num)d\nnumprocs=2\nevents=EVENT\npriority=5\nresult_handler=mine:handler\n",
    )]);
    assert_eq!(
        body(&out.toml),
        "[program.mail]\ncommand = [\"crashmail\", \"-a\", \"-m\", \"ops@example.org\"]\nevents = [\"PROCESS_STATE_EXITED\", \"TICK_60\"]\npriority = -1  # supervisord's default for a listener: up first, stopped last\nbuffer_size = 25\npass_env = [\"*\"]  # choice: supervisord's whole environment; name only what it needs\n\n[program.pool_0]\ngroup = \"pool\"  # numprocs = 2: supervisord groups them as pool:*\ncommand = [\"l\"]\nevents = [\"EVENT\"]\npriority = 5\npass_env = [\"*\"]  # choice: supervisord's whole environment; name only what it needs\n\n[program.pool_1]\ngroup = \"pool\"  # numprocs = 2: supervisord groups them as pool:*\ncommand = [\"l\"]\nevents = [\"EVENT\"]\npriority = 5\npass_env = [\"*\"]  # choice: supervisord's whole environment; name only what it needs\n"
    );
    let lines: Vec<String> = out
        .findings
        .iter()
        .map(|f| format!("{}:{} {}", f.line, f.what, f.advice))
        .collect();
    assert_eq!(
        lines,
        [
            "3:[eventlistener:mail] events PROCESS_LOG_STDERR events are not sent here (only PROCESS_STATE_*, TICK_*, SUPERVISOR_STATE_CHANGE_*, PROCESS_GROUP_*)",
            "12:[eventlistener:pool] result_handler results are OK or FAIL, as supervisord's default handler reads them",
        ]
    );
    // What it wrote is a valid configuration.
    crate::config::parse_with_env(std::path::Path::new("x.toml"), &out.toml, &|_| None).unwrap();
}

#[test]
fn bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.conf");
    let cases = [
        (
            "[program:a]\ncommand=a\nautostart=maybe\n",
            "3: [program:a] autostart: expected true or false",
        ),
        (
            "[program:a]\ncommand=a %(nope)s\n",
            "2: [program:a] command: %(nope)s cannot be expanded here",
        ),
        (
            "[program:a]\ncommand=a\nnumprocs=2\n",
            "3: [program:a] numprocs: numprocs > 1 needs a process_name",
        ),
        (
            "[program:a]\ndirectory=/\n",
            "1: [program:a]: has no command",
        ),
        (
            "[program:a]\ncommand=a \"open\n",
            "2: [program:a] command: unbalanced quotes",
        ),
        (
            "[program:a]\ncommand=a\n[programs:b]\ncommand=b\n",
            "3: [programs:b]: unknown section",
        ),
        (
            "[eventlistener:a]\ncommand=a\n",
            "1: [eventlistener:a]: an event listener needs `events`",
        ),
        (
            "[eventlistener:a]\ncommand=a\nevents=PROCESS_STATE_FATL\n",
            "3: [eventlistener:a] events: unknown event type \"PROCESS_STATE_FATL\"",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&path, text).unwrap();
        let e = import(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:{want}", path.display())),
            "{e}\nwanted {want}"
        );
    }
}

#[test]
fn the_same_input_gives_the_same_output() {
    let files = [
        (
            "a.conf",
            "[program:b]\ncommand=b\n[program:a]\ncommand=a x\nenvironment=Z=1,A=2\n[include]\nfiles=d/*.conf\n",
        ),
        ("d/x.conf", "[program:c]\ncommand=c\n"),
    ];
    let (_d1, one) = import_text(&files);
    let (_d2, two) = import_text(&files);
    assert_eq!(body(&one.toml), body(&two.toml));
    assert!(
        body(&one.toml).starts_with("[program.b]"),
        "file order is kept"
    );
}

#[test]
fn minfds_and_minprocs_raise_every_programs_limits_and_never_lower_them() {
    let (_dir, out) = import_text(&[(
        "supervisord.conf",
        "[supervisord]\nminfds=64\nminprocs=4000000000\n[program:p]\ncommand=p\n",
    )]);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    let (soft, hard) = crate::process::rlimit::current_rlimit(libc::RLIMIT_NOFILE).unwrap();
    let text = |v: u64, n: u64| match v {
        u64::MAX => "infinity".to_owned(),
        v => v.max(n).to_string(),
    };
    let (psoft, phard) = crate::process::rlimit::current_rlimit(libc::RLIMIT_NPROC).unwrap();
    let line = format!(
        "rlimits = {{ nofile = \"{}:{}\", nproc = \"{}:{}\" }}  # from [supervisord] minfds = 64, minprocs = 4000000000\n",
        text(soft, 64),
        text(hard, 64),
        text(psoft, 4_000_000_000),
        text(phard, 4_000_000_000)
    );
    assert!(out.toml.contains(&line), "{}\nwanted {line}", out.toml);
    // The limit in force is above 64: kept, not lowered.
    assert!(soft >= 64 && !line.contains("nofile = \"64:"));
}

#[test]
fn a_section_repeated_in_an_included_file_merges_and_is_named_where_it_is() {
    // As Zulip's configuration does: [unix_http_server] again in an included file.
    let (dir, out) = import_text(&[
        (
            "supervisord.conf",
            "[unix_http_server]\nfile=/run/a.sock\n[include]\nfiles=conf.d/*.conf\n[program:web]\ncommand=web\n",
        ),
        (
            "conf.d/zulip.conf",
            "[unix_http_server]\nchmod=0770\n[program:web]\nstartsecs=-3\n",
        ),
    ]);
    assert!(
        out.toml.contains(
            "socket = \"/run/a.sock\"  # from [unix_http_server] file\nsocket_mode = \"0770\"\n"
        ),
        "{}",
        out.toml
    );
    let included = dir.path().join("conf.d/zulip.conf");
    let main = dir.path().join("supervisord.conf");
    assert_eq!(
        out.origin("program.web.startsecs"),
        Some((included.clone(), 4))
    );
    assert_eq!(out.origin("program.web.command"), Some((main.clone(), 6)));
    assert_eq!(out.origin("program.web.nosuchkey"), Some((main.clone(), 5)));
    assert_eq!(
        out.origin("supervisor.socket_mode"),
        Some((included.clone(), 2))
    );
    // Run as it is, the error in the included option is named there.
    let errors = crate::config::load_reporting(&main).unwrap_err();
    let first = errors.0[0].to_string();
    assert!(
        first.starts_with(&format!("{}:4: program.web.startsecs:", included.display())),
        "{first}"
    );
}
