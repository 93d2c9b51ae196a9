//! The stack the end-to-end tests run: a real supervisor (testkit's fixture, its log followed)
//! running hookd, statusd and a program deployable from a local bare git repository; and a
//! small HTTP client.
//!
//! Needs the supervisor and statusd binaries beside hookd's (`cargo test --workspace` builds
//! them all).

#![allow(dead_code)] // each test file uses its own part of this

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const SECRET: &str = "hookd-test-secret";
/// The GitLab token of the `master` hookd (the other has none: it refuses GitLab).
pub const GITLAB_TOKEN: &str = "hookd-test-gitlab-token";
#[allow(unused_imports)] // each test file uses its own part
pub use testkit::supervisor::{Mode, Supervisor};
#[allow(unused_imports)] // each test file uses its own part
pub use testkit::{PATIENCE, connect_from, free_port, git, http, push_version as push, wait_until};

pub fn supervisor_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_hookd"), "supervisor")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A supervisor running the `app` program (deployable from the local bare remote) and hookd.
pub struct Stack {
    /// testkit's: its log is followed, and a wait that fails shows it.
    pub sup: Supervisor,
    pub port: u16,
    pub port_master: u16,
    pub statusd_port: u16,
}

impl Stack {
    pub fn start(steps: &str) -> Self {
        Self::start_as(steps, None)
    }

    /// The stack with hookd and statusd running as `user` (root only), as in the container:
    /// their own uid, granted only their verbs.
    pub fn start_as(steps: &str, user: Option<&str>) -> Self {
        Self::start_with(steps, user, "")
    }

    /// `hookd_env`: more of hookd's environment, as TOML inline-table entries ending in `, `.
    pub fn start_with(steps: &str, user: Option<&str>, hookd_env: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (run_as, grants) = match user {
            Some(u) => {
                // The other user must reach the socket and the binaries' folder.
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
                (
                    format!("user = \"{u}\"\n"),
                    format!(
                        "[supervisor]\nsocket_mode = \"0666\"\n[control.allow]\nstatus = [\"{u}\"]\nevents = [\"{u}\"]\ndeploys = [\"{u}\"]\ndeploy = [\"{u}\"]\n"
                    ),
                )
            }
            None => (String::new(), String::new()),
        };
        git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(root, &["clone", "-q", "remote.git", "work"]);
        std::fs::write(
            root.join("work/run.sh"),
            "echo \"version 1\"\nexec sleep 1000\n",
        )
        .unwrap();
        git(&root.join("work"), &["add", "run.sh"]);
        push(root, "1");
        git(root, &["clone", "-q", "remote.git", "app"]);
        // Port 0: each server takes a free port and logs it; a port picked here could be taken
        // by another test before the server binds it.
        let statusd = testkit::sibling(env!("CARGO_BIN_EXE_hookd"), "statusd");
        let hookd = env!("CARGO_BIN_EXE_hookd");
        // `hookd_env` may name hookd's socket (a test's proxy in front of the supervisor's).
        let hookd_socket = match hookd_env.contains("SUPERVISOR_SOCKET") {
            true => String::new(),
            false => format!(
                "SUPERVISOR_SOCKET = \"{}/data/supervisor.sock\", ",
                root.display()
            ),
        };
        let config = format!(
            r#"{grants}
[program.app]
command = ["/bin/sh", "{root}/app/run.sh"]
startsecs = "200ms"
[program.app.deploy]
repo = "{root}/app"
healthy_after = "300ms"
{steps}

[program.hookd]
command = ["{hookd}"]
{run_as}startsecs = "300ms"
fatal_exitcodes = [78]
environment = {{ {hookd_env}HOOKD_LISTEN = "127.0.0.1:0", HOOKD_SECRET = "{SECRET}", HOOKD_PROGRAM = "app", {hookd_socket}HOOKD_BODY_LIMIT = "65536" }}

[program.hookd-master]
command = ["{hookd}"]
startsecs = "300ms"
environment = {{ HOOKD_LISTEN = "127.0.0.1:0", HOOKD_SECRET = "{SECRET}", HOOKD_GITLAB_TOKEN = "{GITLAB_TOKEN}", HOOKD_PROGRAM = "app", HOOKD_BRANCH = "master", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock" }}

[program.statusd]
command = ["{statusd}"]
{run_as}startsecs = "300ms"
environment = {{ STATUSD_LISTEN = "127.0.0.1:0", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock" }}
"#,
            statusd = statusd.display(),
            root = root.display()
        );
        std::fs::write(root.join("supervisor.toml"), config).unwrap();
        let root = root.to_owned();
        let sup = Supervisor::start(dir, Mode::Plain);
        let listening = |program: &str| {
            let log = root.join(format!("data/logs/{program}.err.log"));
            let mut port = 0;
            wait_until(&format!("{program} to listen"), || {
                port = listened_port(&std::fs::read_to_string(&log).unwrap_or_default());
                port != 0
            });
            port
        };
        let (port, port_master, statusd_port) = (
            listening("hookd"),
            listening("hookd-master"),
            listening("statusd"),
        );
        let stack = Self {
            sup,
            port,
            port_master,
            statusd_port,
        };
        stack.sup.wait_state("app", "RUNNING");
        wait_until("app to run", || stack.app_log().contains("version 1"));
        stack
    }

    pub fn root(&self) -> &Path {
        self.sup.dir.path()
    }

    /// The supervisor's resident memory, from /proc.
    pub fn supervisor_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.sup.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    pub fn app_log(&self) -> String {
        std::fs::read_to_string(self.root().join("data/logs/app.log")).unwrap_or_default()
    }

    pub fn history(&self) -> Vec<Value> {
        testkit::supervisor::deploy_history(self.root(), "app")
    }

    /// No deploy ran or runs.
    pub fn no_deploy(&self) -> bool {
        self.history().is_empty() && !self.root().join("data/deploys/app.inflight").exists()
    }
}

/// The port in a "... listening listen=127.0.0.1:PORT ..." log line; 0 before there is one.
fn listened_port(log: &str) -> u16 {
    log.lines()
        .filter(|l| l.contains(" listening "))
        .find_map(|l| l.split_once(" listen=127.0.0.1:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn nix_kill(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
}

pub type Headers = Vec<(&'static str, String)>;

pub fn sign(body: &[u8]) -> String {
    hookd::signature::sign(SECRET.as_bytes(), body)
}

pub fn gitea(delivery: &str, signature: Option<String>) -> Headers {
    let mut h = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-Gitea-Event", "push".to_owned()),
        ("X-Gitea-Delivery", delivery.to_owned()),
        ("X-GitHub-Event", "push".to_owned()),
    ];
    if let Some(sig) = signature {
        h.push(("X-Gitea-Signature", sig));
    }
    h
}

pub fn push_payload(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "after": after, "before": "0".repeat(40)})
        .to_string()
        .into_bytes()
}
