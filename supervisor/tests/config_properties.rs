//! Properties of the configuration reader over arbitrary input: no input makes it panic, and
//! every configuration it accepts runs and stops cleanly (durations at their limits included).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");

/// TOML values of every kind, with the extremes that once broke PID 1.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-1e20f64..1e20).prop_map(|x| format!("{x:e}")),
        "[ -~&&[^\"\\\\]]{0,16}".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "true",
            "false",
            "[]",
            "[\"a\", \"b\"]",
            "\"250ms\"",
            "\"7 days\"",
            "\"8 days\"",
            "\"1000000000000s\"",
            "\"-1s\"",
            "9223372036854775807",
            "1.7976931348623157e308",
            "\"${NOPE:-${ALSO:-x}}\"",
            "\"${UNSET}\"",
            "{ initial = \"9223372036854775807s\", max = \"1s\" }",
            "{ initial = \"1s\", multiplier = 100, max = \"7 days\" }",
            "\"0o777\"",
            "[[\"x\"]]",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A key of `[program.p]`: every real one, and a few that are not.
fn program_key() -> impl Strategy<Value = &'static str> {
    let mut keys = supervisor::config::parse::PROGRAM_KEYS.to_vec();
    keys.extend(["startsec", "nokey", "Command"]);
    prop::sample::select(keys)
}

fn document(keys: Vec<(&'static str, String)>, sup: Vec<(&'static str, String)>) -> String {
    let mut text = String::from("[supervisor]\nlogdir = \"logs\"\nsocket = \"s.sock\"\n");
    for (k, v) in sup {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text.push_str("[program.p]\n");
    if !keys.iter().any(|(k, _)| *k == "command") {
        text.push_str("command = [\"sleep\", \"1000\"]\n");
    }
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

fn supervisor_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "shutdown_timeout",
        "socket_mode",
        "deploydir",
        "nokey",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn no_input_makes_the_reader_panic(
        keys in prop::collection::vec((program_key(), value()), 0..10),
        sup in prop::collection::vec((supervisor_key(), value()), 0..3),
        noise in "[ -~\n]{0,40}",
    ) {
        let path = Path::new("/nonexistent/supervisor.toml");
        let text = document(keys, sup);
        let _ = supervisor::config::parse_with_env(path, &text, &|_| None);
        let _ = supervisor::config::parse_with_env(path, &format!("{text}{noise}"), &|_| None);
    }
}

/// A key whose every accepted value is safe to run here (no other user, folder or command),
/// with values of its type, extremes first.
fn runnable_entry() -> impl Strategy<Value = (&'static str, String)> {
    let durations = || {
        prop::sample::select(vec![
            "0",
            "0.5",
            "\"250ms\"",
            "604800",
            "\"7 days\"",
            "\"1m 30s\"",
            "9223372036854775807",
            "\"1000000000000s\"",
        ])
    };
    let owned = |s: &'static str| s.to_owned();
    prop_oneof![
        prop::sample::select(vec!["autostart", "echo_output", "critical"])
            .prop_flat_map(|k| any::<bool>().prop_map(move |b| (k, b.to_string()))),
        prop::sample::select(vec!["true", "false", "\"unexpected\""])
            .prop_map(move |v| ("autorestart", owned(v))),
        prop::sample::select(vec!["[0]", "[0, 2]", "[]"])
            .prop_map(move |v| ("exitcodes", owned(v))),
        durations().prop_map(move |v| ("startsecs", owned(v))),
        durations().prop_map(move |v| ("stopwaitsecs", owned(v))),
        (0u32..=1000).prop_map(|n| ("startretries", n.to_string())),
        any::<i32>().prop_map(|n| ("priority", n.to_string())),
        prop::sample::select(vec![
            "{ initial = \"7 days\", max = \"7 days\", multiplier = 100, jitter = 1 }",
            "{ initial = \"1ms\", max = \"1ms\", multiplier = 1, jitter = 0 }",
            "{ reset = \"7 days\" }",
        ])
        .prop_map(move |v| ("backoff", owned(v))),
        prop::sample::select(vec!["\"1GB\"", "0", "1", "\"4095GB\""])
            .prop_map(move |v| ("stdout_logfile_maxbytes", owned(v))),
        value().prop_map(|v| ("startsecs", v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_accepted_configuration_runs_and_stops(
        keys in prop::collection::vec(runnable_entry(), 1..6),
        timeout in prop::sample::select(vec!["\"1s\"", "\"7 days\"", "0"]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.toml");
        let text = document(keys, vec![("shutdown_timeout", timeout.to_owned())]);
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = supervisor::config::parse_with_env(&path, &text, &|_| None) {
            // Refused with a message (duplicate keys, a value out of range): nothing to run.
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
        let mut child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&path)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Up and listening, then asked to stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.path().join("s.sock").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = dir.path().join("s.sock").exists();
        std::thread::sleep(Duration::from_millis(50));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let stopped = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if stopped.is_none() {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        prop_assert!(started, "never started: {text}");
        prop_assert!(stopped.is_some(), "did not stop within 20 s: {text}");
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        prop_assert!(!stderr.contains("panicked"), "{stderr}\n{text}");
        prop_assert!(status.code() == Some(0), "{status:?}\n{stderr}\n{text}");
    }
}
