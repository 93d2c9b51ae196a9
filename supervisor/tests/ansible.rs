//! Ansible's `community.general.supervisorctl` module (Debian's ansible) managing a program of
//! ours, through our binary called as `supervisorctl` and through supervisord's own
//! `supervisorctl` over our XML-RPC: every state succeeds, a second run of the same state is
//! unchanged, and /proc agrees with what it reports.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::path::Path;
use std::process::{Command, Stdio};

use fixture::*;

fn conf() -> String {
    supervisord_conf("\n[program:web]\ncommand=/bin/sleep 1000\n")
}

/// The program Ansible is asked to manage: in the file, not yet added.
const EXTRA: &str = r#"
[program:extra]
command=/bin/sh -c 'trap "echo hup" HUP; while true; do sleep 0.1; done'
startsecs=0
stdout_logfile=%(here)s/logs/extra.log
"#;

/// Runs the module once per state given, in one playbook: `(changed, failed, msg)` each.
fn play(dir: &Path, ctl: &Path, states: &[&str]) -> Vec<(bool, bool, String)> {
    let tasks: String = states
        .iter()
        .map(|state| {
            let signal = match *state {
                "signalled" => "\n        signal: HUP",
                _ => "",
            };
            format!(
                "    - community.general.supervisorctl:\n        name: extra\n        state: {state}\n        config: {}\n        supervisorctl_path: {}{signal}\n",
                dir.join("supervisord.conf").display(),
                ctl.display()
            )
        })
        .collect();
    let book = dir.join("play.yml");
    std::fs::write(
        &book,
        format!("- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}"),
    )
    .unwrap();
    let out = Command::new("ansible-playbook")
        .args(["-i", "localhost,", "-c", "local"])
        .arg(&book)
        .env("ANSIBLE_STDOUT_CALLBACK", "json")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .output()
        .unwrap_or_else(|e| panic!("ansible-playbook: {e} (scripts/test installs ansible)"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["plays"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let h = &t["hosts"]["localhost"];
            (
                h["changed"].as_bool().unwrap_or(false),
                h["failed"].as_bool().unwrap_or(false),
                h["msg"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `extra`'s pid as our CLI reports it (0 when it is not running), checked against /proc.
fn pid(dir: &Path) -> u32 {
    let out = Command::new(BIN)
        .args(["pid", "extra", "-c"])
        .arg(dir.join("supervisord.conf"))
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if pid != 0 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("trap"),
            "/proc/{pid} is extra"
        );
    }
    pid
}

fn manage_a_program_with(ctl: impl Fn(&Path) -> std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["run", "logs"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("supervisord.conf"), conf()).unwrap();
    let _daemon = Terminated(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(root.join("supervisord.conf"))
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the socket", || root.join("run/supervisor.sock").exists());
    std::fs::write(root.join("supervisord.conf"), format!("{}{EXTRA}", conf())).unwrap();
    let ctl = ctl(root);
    let ok = |states: &[&str], changed: &[bool]| {
        let results = play(root, &ctl, states);
        let got: Vec<bool> = results.iter().map(|r| r.0).collect();
        assert!(results.iter().all(|r| !r.1), "{states:?}: {results:?}");
        assert_eq!(got, changed, "{states:?} changed: {results:?}");
    };
    // present: added (and started: autostart); again: unchanged.
    ok(&["present", "present"], &[true, false]);
    wait_until("extra running", || pid(root) != 0);
    let first = pid(root);
    ok(&["stopped", "stopped"], &[true, false]);
    assert_eq!(pid(root), 0);
    assert!(!Path::new(&format!("/proc/{first}")).exists(), "stopped");
    ok(&["started", "started"], &[true, false]);
    let started = pid(root);
    assert_ne!(started, 0);
    ok(&["restarted"], &[true]);
    let restarted = pid(root);
    assert!(restarted != 0 && restarted != started, "a new process");
    ok(&["signalled"], &[true]);
    wait_until("extra to note its HUP", || {
        std::fs::read_to_string(root.join("logs/extra.log"))
            .unwrap_or_default()
            .contains("hup")
    });
    assert_eq!(pid(root), restarted, "a HUP does not restart it");
    ok(&["stopped", "absent", "absent"], &[true, true, false]);
    let status = Command::new(BIN)
        .args(["status", "-c"])
        .arg(root.join("supervisord.conf"))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.starts_with("web ") && !status.contains("extra"),
        "{status}"
    );
}

#[test]
fn ansible_manages_a_program_through_our_supervisorctl() {
    manage_a_program_with(|root| {
        // Our binary called as supervisorctl, as the image installs it.
        let link = root.join("supervisorctl");
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        link
    });
}

#[test]
fn ansible_manages_a_program_through_supervisords_supervisorctl() {
    // Debian's, in Python, talking XML-RPC to our socket.
    manage_a_program_with(|_| std::path::PathBuf::from("/usr/bin/supervisorctl"));
}
