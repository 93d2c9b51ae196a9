//! The real binary refuses settings it cannot use: every problem named at once, exit 78
//! (`EX_CONFIG`, which the shipped configurations list in `fatal_exitcodes`), and nothing
//! started.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use std::process::Command;

fn gatewayd(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayd"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_settings_exit_78_naming_each_problem() {
    let (code, err) = gatewayd(&[
        ("GATEWAY_UPSTREAM_URL", "https://gateway.discord.gg"),
        ("GATEWAY_BUFFER", "lots"),
    ]);
    assert_eq!(code, Some(78), "{err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "gatewayd: no Discord token: set DISCORD_TOKEN or DISCORD_TOKEN_FILE (the bot token from the Developer Portal)",
            "gatewayd: GATEWAY_UPSTREAM_URL=\"https://gateway.discord.gg\" must start with ws:// or wss://",
            "gatewayd: GATEWAY_BUFFER=\"lots\" must be a number of events from 1 to 1000000",
        ]
    );
}

#[test]
fn a_port_in_use_exits_78_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = gatewayd(&[("DISCORD_TOKEN", "t"), ("GATEWAY_LISTEN", &addr)]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!("gatewayd: cannot listen on {addr}")),
        "{err}"
    );
}
