//! Alerts raised by the supervisor, with real programs: FATAL, a spent start budget, a crash
//! loop (once, not once per exit), unhealthy, and the recovery; kept across a restart.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use fixture::*;
use serde_json::Value;

fn alerts(sup: &Supervisor) -> Vec<Value> {
    let (code, out, err) = ctl(sup, &["alerts", "--json", "-n", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

fn kinds(sup: &Supervisor, program: &str) -> Vec<String> {
    alerts(sup)
        .iter()
        .filter(|a| a["program"] == program)
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fatal_then_recovered_and_kept_across_a_restart() {
    let dir = Supervisor::dir_with(
        r#"
[program.bot]
command = ["@DIR@/bot.sh"]
critical = true
startsecs = "200ms"
startretries = 0
# Recovered once RUNNING this long (a stable run).
backoff = { reset = "300ms" }
"#,
    );
    // Fails until the file `fixed` exists.
    script(
        dir.path(),
        "bot.sh",
        "if [ -e \"$(dirname \"$0\")/fixed\" ]; then exec sleep 1000; fi\nexit 1",
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("bot", "FATAL");
    wait_until("the FATAL alert", || !alerts(&sup).is_empty());
    let a = &alerts(&sup)[0];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["severity"].as_str(),
            a["critical"].as_bool()
        ),
        (Some("fatal"), Some("critical"), Some(true))
    );
    assert_eq!(
        a["message"],
        "bot is FATAL: Exited too quickly (process log may have details)"
    );
    std::fs::write(sup.path("fixed"), "").unwrap();
    assert_eq!(ctl(&sup, &["start", "bot"]).0, 0);
    wait_until("the recovery", || {
        kinds(&sup, "bot") == ["recovered", "fatal"]
    });
    let r = &alerts(&sup)[0];
    assert_eq!(r["severity"], "info");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("bot is RUNNING again after "),
        "{r}"
    );
    // The text form.
    let (_, out, _) = ctl(&sup, &["alerts"]);
    assert!(out.contains("critical fatal         bot is FATAL"), "{out}");
    // A new supervisor on the same data still has them.
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sup.wait_exit(PATIENCE).success());
    let dir = sup.take_dir();
    let sup = Supervisor::start(dir, Mode::Plain);
    assert_eq!(kinds(&sup, "bot")[..2], ["recovered", "fatal"]);
}

#[test]
fn a_crash_loop_is_one_alert_not_one_per_exit() {
    let dir = Supervisor::dir_with(
        r#"
[program.flappy]
command = ["/bin/sh", "-c", "sleep 0.05; exit 1"]
startsecs = 0
autorestart = true
backoff = { initial = "10ms", max = "10ms", jitter = 0 }
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the crash-loop alert", || {
        kinds(&sup, "flappy") == ["crash_loop"]
    });
    // Many more exits follow; no more alerts within the window.
    wait_until("30 spawns", || {
        sup.log_events(|e| msg(e) == "spawned").len() >= 30
    });
    assert_eq!(kinds(&sup, "flappy"), ["crash_loop"]);
    let a = &alerts(&sup)[0];
    assert_eq!(a["severity"], "warning");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .starts_with("flappy restarted 5 times in 10m (last: exit status 1)"),
        "{a}"
    );
}

#[test]
fn a_spent_start_budget_and_an_unhealthy_program() {
    let dir = Supervisor::dir_with(
        r#"
[program.loop]
command = ["/bin/sh", "-c", "exit 1"]
startsecs = 0
autorestart = true
backoff = { initial = "10ms", max = "10ms" }
start_limit = { burst = 2, interval = "1h" }

[program.sick]
command = ["sleep", "1000"]
startsecs = 0
healthcheck = { command = ["false"], interval = "50ms", retries = 1 }
backoff = { initial = "10s", max = "10s" }
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the start-limit alert", || {
        kinds(&sup, "loop").contains(&"start_limit".to_owned())
    });
    wait_until("the unhealthy alert", || {
        kinds(&sup, "sick").contains(&"unhealthy".to_owned())
    });
    let sick = alerts(&sup)
        .into_iter()
        .find(|a| a["program"] == "sick")
        .unwrap();
    assert_eq!(
        sick["message"],
        "sick is unhealthy and restarted: false failed once (last: exit status 1)"
    );
}

#[test]
fn a_client_raises_an_alert_and_bad_ones_change_nothing() {
    let dir = Supervisor::dir_with(
        r#"
[program.bot]
command = ["sleep", "1000"]
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("bot", "RUNNING");
    let message = "TLS certificate renewal failed: Connection refused";
    let (code, out, err) = ctl(
        &sup,
        &[
            "raise",
            "tls",
            message,
            "--severity",
            "critical",
            "--critical",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("raised ") && out.contains("-tls-"), "{out}");
    let a = &alerts(&sup)[0];
    assert_eq!(
        (
            a["program"].as_str(),
            a["kind"].as_str(),
            a["severity"].as_str(),
            a["critical"].as_bool(),
            a["message"].as_str()
        ),
        (
            Some("tls"),
            Some("reported"),
            Some("critical"),
            Some(true),
            Some(message)
        )
    );
    // Refused with a reason, nothing raised: a subject that is not a name, an empty or an
    // overlong message, an unknown severity.
    let long = "x".repeat(1501);
    for (args, says) in [
        (vec!["raise", "../tls", "m"], "subject"),
        (vec!["raise", "tls", "  "], "empty"),
        (vec!["raise", "tls", long.as_str()], "longer than 1500"),
        (
            vec!["raise", "tls", "m", "--severity", "dire"],
            "info, warning, critical",
        ),
    ] {
        let (code, out, err) = ctl(&sup, &args);
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(alerts(&sup).len(), 1);
    // The default severity is warning; the audit trail keeps who raised it.
    assert_eq!(
        ctl(&sup, &["raise", "backup", "the nightly copy failed"]).0,
        0
    );
    let a = &alerts(&sup)[0];
    assert_eq!(
        (a["severity"].as_str(), a["critical"].as_bool()),
        (Some("warning"), Some(false))
    );
    let (_, audit, _) = ctl(&sup, &["audit", "--json"]);
    assert!(audit.contains("\"raise\""), "{audit}");
}

/// A deploy whose new version crashes is rolled back and alerted as such; five of them are
/// not a crash loop of the program (planned restarts are not crashes).
#[test]
fn failed_deploys_are_not_a_crash_loop() {
    use testkit::git;
    let dir = Supervisor::dir_with(
        r#"
[program.app]
command = ["/bin/sh", "@DIR@/app/run.sh"]
startsecs = 0
backoff = { initial = "10ms", max = "10ms", jitter = 0 }

[program.app.deploy]
repo = "@DIR@/app"
healthy_after = "1s"
retry_failed_after = "0s"
"#,
    );
    let root = dir.path().to_owned();
    let work = root.join("work");
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    let push = |body: &str, n: usize| {
        std::fs::write(work.join("run.sh"), format!("# {n}\n{body}\n")).unwrap();
        git(&work, &["add", "run.sh"]);
        git(&work, &["commit", "-q", "-m", &format!("v{n}")]);
        git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    };
    push("exec sleep 1000", 0);
    git(&root, &["clone", "-q", "remote.git", "app"]);
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    for n in 1..=5 {
        push("sleep 0.2; exit 1", n);
        let (_, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
        assert!(
            out.contains("rolled_back") || out.contains("rolled back"),
            "{out}{err}"
        );
    }
    let kinds = kinds(&sup, "app");
    assert_eq!(
        kinds.iter().filter(|k| *k == "rolled_back").count(),
        5,
        "{kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k == "crash_loop"), "{kinds:?}");
}

/// `on_fatal = "shutdown"`: the supervisor exits at once, and the FATAL alert (which waits a
/// moment for the program's last line) is still raised and kept.
#[test]
fn a_fatal_that_stops_the_supervisor_is_still_alerted() {
    let dir = Supervisor::dir_with(
        r#"
[program.bot]
command = ["/bin/sh", "-c", "echo 'the token is gone' >&2; exit 78"]
fatal_exitcodes = [78]
on_fatal = "shutdown"
startsecs = 0
"#,
    );
    let mut sup = Supervisor::start(dir, Mode::Plain);
    let status = sup.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let kept = std::fs::read_to_string(sup.path("data/state/alerts.jsonl")).unwrap_or_default();
    assert!(
        kept.contains("bot is FATAL: exited with fatal exit code 78: the token is gone"),
        "{kept}"
    );
}
