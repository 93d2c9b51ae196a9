//! `supervisor check` and `supervisor run` on good and bad configurations: output and exit codes.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::process::Command;

use fixture::BIN;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("SUPERVISOR_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const BAD: &str = "[program.bot]\ncommand = [\"/bin/bot\"]\nstartsecs = -1\nautostart = \"yes\"\n\n[program.web]\ndepends_on = [\"db\"]\ncommand = \"/bin/web\"\n";

#[test]
fn check_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("supervisor.toml"), BAD).unwrap();
    let (code, stdout, stderr) = run(&["check"], dir.path());
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "supervisor.toml:3: program.bot.startsecs: -1 is negative; durations cannot be\n\
         supervisor.toml:4: program.bot.autostart: expected true or false, found \"yes\"\n\
         supervisor.toml:7: program.web.depends_on: unknown program \"db\"\n"
    );
}

#[test]
fn run_refuses_a_bad_config_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("custom.toml"), BAD).unwrap();
    let (code, _, stderr) = run(&["run", "-c", "custom.toml"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("supervisor: custom.toml:3: program.bot.startsecs"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing may be created");
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("supervisor.toml"),
        "[program.a]\ncommand = \"sleep 1\"\n",
    )
    .unwrap();
    let (code, stdout, _) = run(&["check"], dir.path());
    assert_eq!(
        (code, stdout.as_str()),
        (0, "supervisor.toml: ok (1 program)\n")
    );
    let (code, _, stderr) = run(&["check", "-c", "missing.toml"], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "missing.toml: cannot read the configuration: No such file or directory (os error 2)\n"
    );
}

#[test]
fn the_shipped_configuration_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (code, stdout, stderr) = run(&["check", "-c", "supervisor.toml"], &root);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "supervisor.toml: ok (4 programs)\n");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef supervisor"),
        ("fish", "complete -c supervisor"),
    ] {
        let (code, stdout, _) = run(&["completions", shell], dir.path());
        assert_eq!(code, 0, "{shell}");
        assert!(
            stdout.contains(marker),
            "{shell}: {}",
            &stdout[..stdout.len().min(200)]
        );
        assert!(stdout.contains("restart"), "{shell} completes the verbs");
    }
}

#[test]
fn check_warns_of_a_grant_naming_no_configured_program_and_strict_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let me = nix::unistd::getuid().as_raw();
    std::fs::write(
        dir.path().join("supervisor.toml"),
        format!(
            "[program.bot]\ncommand = \"sleep 1\"\n\n[control.allow]\ndeploy = [\"{me}:bto,bot\"]\n"
        ),
    )
    .unwrap();
    let warning = format!(
        "warning: supervisor.toml:5: control.allow.deploy: \"{me}:bto,bot\" names program \"bto\", which is not configured (did you mean \"bot\"?): the grant gives nothing until a program of that name is added\n"
    );
    let (code, stdout, stderr) = run(&["check"], dir.path());
    assert_eq!(
        (code, stdout.as_str()),
        (0, "supervisor.toml: ok (1 program)\n")
    );
    assert_eq!(stderr, warning);
    let (code, stdout, stderr) = run(&["check", "--strict"], dir.path());
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        format!("{warning}supervisor.toml: 1 warning(s), refused by --strict\n")
    );
}

#[test]
fn a_configuration_that_is_not_utf8_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("supervisor.toml"),
        b"[program.p]\ncommand = \"sleep \xff\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["check"], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "supervisor.toml:2: not UTF-8: byte 0xff at column 18 (save the file as UTF-8)\n"
    );
    // A supervisord file, and a program name with the bad byte.
    std::fs::write(
        dir.path().join("supervisord.conf"),
        b"[supervisord]\n\n[program:p\xfe]\ncommand=sleep 1\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["run", "-c", "supervisord.conf"], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "supervisor: supervisord.conf:3: not UTF-8: byte 0xfe at column 11 (save the file as UTF-8)\n"
    );
    assert!(!dir.path().join("data").exists(), "nothing may be created");
}

#[test]
fn the_config_option_may_come_before_the_verb() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "[program.a]\ncommand = \"sleep 1\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["-c", "custom.toml", "check"], dir.path());
    assert_eq!(
        (code, stdout.as_str()),
        (0, "custom.toml: ok (1 program)\n"),
        "{stderr}"
    );
    // A client verb: the socket the file names is not there (no daemon), and it says so.
    let (code, _, stderr) = run(&["-c", "custom.toml", "status"], dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("supervisor.sock"), "{stderr}");
}
