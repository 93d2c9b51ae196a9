//! The fake Discord of the bot's tests (`bot/tests/stack/fake_discord.rs`) as a program, for
//! tests that run the bot where a test process cannot reach (the Swarm test's stack: replicas
//! in containers). Driven over HTTP: `/_fake/calls`, `/_fake/gateway`, `/_fake/slash`, `/_fake/say`
//! (also by scripts/bench/gateway.py).
//!
//!   fake_discord [LISTEN_IP [HTTP_PORT [WS_PORT [PUBLIC_HOST]]]]
//!   default:      127.0.0.1  8080        8081      127.0.0.1
//!
//! PUBLIC_HOST is the name its gateway URLs carry (the service's name in a stack). Runs until
//! SIGTERM or SIGINT. The bot's token must be `test-token`.

#![allow(clippy::unwrap_used)] // a test fixture: a bad argument stops it with the reason

#[allow(dead_code)] // the tests' module, of which this uses a part
#[path = "../tests/stack/fake_discord.rs"]
mod fake_discord;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let ip = arg(0, "127.0.0.1");
    let http_port: u16 = arg(1, "8080").parse().expect("HTTP_PORT: a port number");
    let ws_port: u16 = arg(2, "8081").parse().expect("WS_PORT: a port number");
    let public_host = arg(3, "127.0.0.1");
    let fake = fake_discord::FakeDiscord::start_on(&ip, http_port, ws_port, &public_host);
    eprintln!(
        "fake Discord: REST on {ip}:{} ({}), gateway on {ip}:{}",
        fake.http_port,
        fake.api_base(),
        fake.ws_port
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(supervised::shutdown::signal());
    eprintln!("fake Discord: stopping");
}
