//! The whole loop, without Docker: the shipped container configuration
//! (deploy/container/supervisor.toml, with its paths and users pointed at this machine) run by
//! the supervisor as PID 1 of a PID namespace; a bare git repository as the forge; the shipped
//! nginx template in front. A signed push through nginx → hookd → a deploy of the bot (the real
//! one, against the fake Discord) → the new release running → `/commit` shows it → the
//! announcement reaches the fake Discord's channel.
//!
//! Needs root (PID namespace, programs as `nobody`), nginx, openssl and curl; the supervisor,
//! hookd and statusd binaries beside the bot's (`cargo test --workspace`).

#![allow(clippy::unwrap_used)]

mod stack;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use stack::*;
use testkit::curl;

const SECRET: &str = "whole-loop-secret";

fn repo_root() -> PathBuf {
    testkit::workspace()
}

fn sibling(name: &str) -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_bot"), name)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // `unshare --fork` does not pass SIGTERM on: signal its child (the namespace's PID 1)
        // too, then make sure.
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for p in children
            .split_whitespace()
            .chain([pid.to_string().as_str()])
        {
            let _ = Command::new("kill").args(["-TERM", p]).status();
        }
        for _ in 0..500 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn root_a_push_through_nginx_redeploys_the_bot_and_it_announces_the_result() {
    if !nix_is_root() {
        eprintln!("skipped: the whole loop needs root (a PID namespace, programs as nobody)");
        return;
    }
    let discord = FakeDiscord::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // `nobody` (hookd, statusd) must reach the socket under here.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.join("data");

    // The forge: a bare repository with the bot's "source"; the build step of this test copies
    // the already-built bot (compiling it from source here would take minutes).
    git(root, &["init", "-q", "--bare", "-b", "main", "forge.git"]);
    git(root, &["clone", "-q", "forge.git", "work"]);
    let work = root.join("work");
    let commit = |n: &str| {
        std::fs::write(work.join("VERSION"), n).unwrap();
        git(&work, &["add", "VERSION"]);
        git(&work, &["commit", "-q", "-m", &format!("Release {n}")]);
        git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        git(&work, &["rev-parse", "HEAD"])
    };
    commit("1");
    let build = root.join("build-release");
    std::fs::write(
        &build,
        format!(
            "#!/bin/sh\nset -e\nmkdir -p target/deploy\ncp {} target/deploy/bot\n",
            sibling("bot").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The image's /usr/local/bin.
    let bin = root.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["statusd", "hookd"] {
        std::os::unix::fs::symlink(sibling(name), bin.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(
        repo_root().join("deploy/container/bot-current"),
        bin.join("bot-current"),
    )
    .unwrap();

    let (hookd_port, statusd_port) = (free_port(), free_port());
    let sup = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(sibling("supervisor"))
        .args(["run", "-c"])
        .arg(repo_root().join("deploy/container/supervisor.toml"))
        .env("APP_DATA", &data)
        .env("BIN_DIR", &bin)
        .env("BOT_BUILD_STEP", &build)
        .env("BOT_IMAGE_BIN", sibling("bot"))
        .env("HOOKD_USER", "nobody")
        .env("STATUSD_USER", "nobody")
        .env("BOT_USER", "nobody")
        .env("GATEWAYD_USER", "nobody")
        .env("BUILD_USER", "daemon")
        .env("CONTROL_GROUP", "nogroup")
        .env("BOT_REPO_URL", root.join("forge.git"))
        .env("HOOKD_SECRET", SECRET)
        .env("HOOKD_LISTEN", format!("127.0.0.1:{hookd_port}"))
        .env("STATUSD_LISTEN", format!("127.0.0.1:{statusd_port}"))
        .env("DISCORD_TOKEN", "test-token")
        .env("DISCORD_API_BASE", discord.api_base())
        .env("DISCORD_RATELIMITER", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _sup = Killed(sup);
    let ctl = |args: &[&str]| -> String {
        let out = Command::new(sibling("supervisor"))
            .args(args)
            .arg("-s")
            .arg(data.join("supervisor.sock"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // gatewayd is off unless GATEWAYD=true: STOPPED, and the bot does not wait for it.
    wait_until("the three programs to run", || {
        serde_json::from_str::<Value>(&ctl(&["status", "--json"])).is_ok_and(|s| {
            s["programs"].as_array().is_some_and(|p| {
                p.len() == 4
                    && p.iter().all(|p| {
                        p["state"]
                            == if p["name"] == "gatewayd" {
                                "STOPPED"
                            } else {
                                "RUNNING"
                            }
                    })
            })
        })
    });
    let status: Value = serde_json::from_str(&ctl(&["status", "--json"])).unwrap();
    assert_eq!(status["supervisor"]["pid"], 1, "the supervisor is PID 1");
    wait_until("the bot to connect", || {
        discord.gateway(|g| g.identifies.len()) == 1
    });
    let settings = discord.slash(
        OWNER_ID,
        "settings",
        json!([{"name": "announce-channel", "type": 1, "options": []}]),
        json!({}),
    );
    discord.wait_call("the settings reply", 0, PATIENCE, |c| {
        c.path
            .starts_with(&format!("/api/v10/interactions/{settings}/"))
    });

    let nginx_dir = root.join("nginx");
    std::fs::create_dir(&nginx_dir).unwrap();
    let nginx = testkit::Nginx::start(&nginx_dir, hookd_port, statusd_port);
    let base = nginx.base();

    // git push, and the forge's signed webhook through nginx.
    let v2 = commit("2");
    let body = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": v2}).to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signature = hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref());
    let (code, reply) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Gitea-Event: push",
        "-H",
        "X-Gitea-Delivery: whole-loop-1",
        "-H",
        &format!("X-Gitea-Signature: {signature}"),
        "--data-binary",
        &body,
        &format!("{base}/webhook"),
    ]);
    assert_eq!(code, 202, "{reply}");

    // The deploy concludes...
    let history = || std::fs::read_to_string(data.join("deploys/bot.jsonl")).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !history().contains("\"result\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no deploy result: {}",
            ctl(&["status"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let record: Value = serde_json::from_str(history().lines().last().unwrap()).unwrap();
    let log = std::fs::read_to_string(record["log"].as_str().unwrap()).unwrap_or_default();
    assert_eq!(record["result"], "succeeded", "{record}\n{log}");
    // ...and the bot is restarted on the new release and announces it.
    wait_until("the new bot to connect", || {
        discord.gateway(|g| g.identifies.len()) == 2
    });
    let channel = format!("/api/v10/channels/{CHANNEL_ID}/messages");
    // The deploy's announcement, not the status message kept in the same channel.
    let (_, post) = discord.wait_call("the announcement", 0, PATIENCE, |c| {
        c.method == "POST"
            && c.path == channel
            && !c.body["content"]
                .as_str()
                .unwrap_or("")
                .contains("\nSupervisor ")
    });
    let text = post.body["content"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("✅ `bot` deployed `{}` Release 2 in ", &v2[..10])),
        "{text}"
    );
    let current = std::fs::read_link(data.join("releases/bot/current")).unwrap();
    assert_eq!(current, Path::new(&v2));
    // /commit, through nginx, shows the new commit.
    let (code, body) = curl(&[&format!("{base}/commit")]);
    assert_eq!(code, 200, "{body}");
    let commit: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(commit["programs"][0]["name"], "bot");
    assert_eq!(commit["programs"][0]["commit"], v2.as_str(), "{commit}");
    assert_eq!(commit["programs"][0]["message"], "Release 2", "{commit}");
    // The new bot answers.
    let ping = discord.slash(OWNER_ID, "ping", json!([]), json!({}));
    discord.wait_call("the new bot's answer", 0, Duration::from_secs(20), |c| {
        c.path
            .starts_with(&format!("/api/v10/interactions/{ping}/"))
    });
    discord.assert_payloads_parsed();

    // Least privilege, as the shipped configuration promises: the bot runs as its user, built
    // by another (daemon here), and each program holds only its own secret.
    let release = std::fs::canonicalize(data.join("releases/bot/current/bot")).unwrap();
    let meta = std::fs::metadata(&release).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        meta.uid(),
        1,
        "the release belongs to the build user (daemon)"
    );
    assert_eq!(meta.mode() & 0o7022, 0, "no setuid/setgid/group-write bits");
    let bots = processes_running(&release);
    assert_eq!(bots.len(), 1, "one bot process from the new release");
    let (uid, environ) = process_facts(bots[0]);
    assert_eq!(uid, 65534, "the bot runs as BOT_USER (nobody)");
    assert!(environ.iter().any(|v| v == "DISCORD_TOKEN=test-token"));
    assert!(
        !environ.iter().any(|v| v.starts_with("HOOKD_SECRET")),
        "{environ:?}"
    );
    let hookds = processes_running(&sibling("hookd"));
    assert_eq!(hookds.len(), 1);
    let (_, environ) = process_facts(hookds[0]);
    assert!(environ.iter().any(|v| v.starts_with("HOOKD_SECRET=")));
    assert!(
        !environ.iter().any(|v| v.starts_with("DISCORD_")),
        "{environ:?}"
    );
    assert!(
        !environ.iter().any(|v| v.starts_with("APP_DATA=")),
        "{environ:?}"
    );
}

/// The pids (as this test sees them, outside the supervisor's PID namespace) whose executable
/// is `exe`.
fn processes_running(exe: &Path) -> Vec<u32> {
    let exe = std::fs::canonicalize(exe).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .collect()
}

/// A process's real uid and environment, from /proc.
fn process_facts(pid: u32) -> (u32, Vec<String>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    (uid, vars)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
