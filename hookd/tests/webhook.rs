//! hookd end to end: real HTTP on 127.0.0.1, a real supervisor running hookd and the deployed
//! program, real git with a bare repository as the remote.
//!
//! Needs the supervisor binary beside hookd's (`cargo test --workspace` builds both).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "hookd-test-secret";
const PATIENCE: Duration = Duration::from_secs(30);

fn supervisor_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_hookd")).with_file_name("supervisor");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p supervisor` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/webhooks")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn push(root: &Path, version: &str) -> String {
    let work = root.join("work");
    std::fs::write(
        work.join("run.sh"),
        format!("echo \"version {version}\"\nexec sleep 1000\n"),
    )
    .unwrap();
    git(
        &work,
        &["commit", "-q", "-a", "--allow-empty", "-m", version],
    );
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(&work, &["rev-parse", "HEAD"])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A supervisor running the `app` program (deployable from the local bare remote) and hookd.
struct Stack {
    dir: tempfile::TempDir,
    sup: Child,
    port: u16,
    port_master: u16,
}

impl Stack {
    fn start(steps: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
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
        let (port, port_master) = (free_port(), free_port());
        let hookd = env!("CARGO_BIN_EXE_hookd");
        let config = format!(
            r#"
[program.app]
command = ["/bin/sh", "{root}/app/run.sh"]
startsecs = "200ms"
[program.app.deploy]
repo = "{root}/app"
healthy_after = "300ms"
{steps}

[program.hookd]
command = ["{hookd}"]
startsecs = "300ms"
fatal_exitcodes = [78]
environment = {{ HOOKD_LISTEN = "127.0.0.1:{port}", HOOKD_SECRET = "{SECRET}", HOOKD_PROGRAM = "app", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock", HOOKD_BODY_LIMIT = "65536" }}

[program.hookd-master]
command = ["{hookd}"]
startsecs = "300ms"
environment = {{ HOOKD_LISTEN = "127.0.0.1:{port_master}", HOOKD_SECRET = "{SECRET}", HOOKD_PROGRAM = "app", HOOKD_BRANCH = "master", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock" }}
"#,
            root = root.display()
        );
        std::fs::write(root.join("supervisor.toml"), config).unwrap();
        let sup = Command::new(supervisor_bin())
            .args(["run", "-c"])
            .arg(root.join("supervisor.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stack = Self {
            dir,
            sup,
            port,
            port_master,
        };
        wait_until("hookd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && TcpStream::connect(("127.0.0.1", port_master)).is_ok()
        });
        wait_until("app to run", || stack.app_log().contains("version 1"));
        stack
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn app_log(&self) -> String {
        std::fs::read_to_string(self.root().join("data/logs/app.log")).unwrap_or_default()
    }

    fn history(&self) -> Vec<Value> {
        std::fs::read_to_string(self.root().join("data/deploys/app.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// No deploy ran or runs.
    fn no_deploy(&self) -> bool {
        self.history().is_empty() && !self.root().join("data/deploys/app.inflight").exists()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = nix_kill(self.sup.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sup.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.sup.kill();
        let _ = self.sup.wait();
    }
}

fn nix_kill(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

type Headers = Vec<(&'static str, String)>;

fn sign(body: &[u8]) -> String {
    hookd::signature::sign(SECRET.as_bytes(), body)
}

fn gitea(delivery: &str, signature: Option<String>) -> Headers {
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

fn push_payload(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "after": after, "before": "0".repeat(40)})
        .to_string()
        .into_bytes()
}

#[test]
fn a_signed_push_deploys_the_new_commit() {
    let stack = Stack::start("");
    let v2 = push(stack.root(), "2");
    let body = push_payload("refs/heads/main", &v2);
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("d-1", Some(sign(&body))),
        &body,
    );
    assert_eq!(status, 202, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "deploying");
    wait_until("the deploy to succeed", || {
        stack
            .history()
            .first()
            .is_some_and(|r| r["result"] == "succeeded")
    });
    let record = &stack.history()[0];
    assert_eq!(record["id"], reply["deploy_id"]);
    assert_eq!(record["new_commit"].as_str(), Some(v2.as_str()));
    assert_eq!(record["trigger"], "hookd: gitea push d-1");
    wait_until("version 2", || stack.app_log().contains("version 2"));

    // The same delivery again: acknowledged, not deployed again.
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("d-1", Some(sign(&body))),
        &body,
    );
    assert_eq!((status, reply.trim()), (200, r#"{"status":"duplicate"}"#));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stack.history().len(), 1);
    assert_eq!(http(stack.port, "GET", "/healthz", &[], b"").0, 200);

    // /webhook/NAME names the program; one without a deploy table, or none at all, is 404.
    let v3 = push(stack.root(), "3");
    let body = push_payload("refs/heads/main", &v3);
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook/app",
        &gitea("d-2", Some(sign(&body))),
        &body,
    );
    assert_eq!(status, 202, "{reply}");
    for name in ["hookd", "ghost"] {
        let (status, reply) = http(
            stack.port,
            "POST",
            &format!("/webhook/{name}"),
            &gitea("d-3", Some(sign(&body))),
            &body,
        );
        assert_eq!(status, 404, "{name}: {reply}");
    }
    wait_until("version 3", || stack.app_log().contains("version 3"));
}

#[test]
fn forged_missing_and_malformed_deliveries_change_nothing() {
    let stack = Stack::start("");
    let v2 = push(stack.root(), "2");
    let body = push_payload("refs/heads/main", &v2);
    let wrong = hookd::signature::sign(b"not the secret", &body);
    let mut forged = body.clone();
    forged.extend_from_slice(b" ");
    let cases: Vec<(&str, Headers, Vec<u8>, u16)> = vec![
        ("missing", gitea("f-1", None), body.clone(), 401),
        (
            "empty",
            gitea("f-2", Some(String::new())),
            body.clone(),
            401,
        ),
        ("wrong secret", gitea("f-3", Some(wrong)), body.clone(), 401),
        (
            "body changed after signing",
            gitea("f-4", Some(sign(&body))),
            forged,
            401,
        ),
        (
            "not hex",
            gitea("f-5", Some("zz".into())),
            body.clone(),
            401,
        ),
        (
            "not JSON",
            {
                let mut h = gitea("f-6", Some(sign(b"a=b")));
                h[0].1 = "application/x-www-form-urlencoded".into();
                h
            },
            b"a=b".to_vec(),
            415,
        ),
        (
            "oversize",
            gitea("f-7", Some(sign(&[b'x'; 70_000]))),
            vec![b'x'; 70_000],
            413,
        ),
        (
            "no forge headers",
            vec![("Content-Type", "application/json".into())],
            body.clone(),
            400,
        ),
    ];
    for (what, headers, payload, want) in cases {
        let (status, reply) = http(stack.port, "POST", "/webhook", &headers, &payload);
        assert_eq!(status, want, "{what}: {reply}");
    }
    assert_eq!(http(stack.port, "POST", "/other", &[], b"").0, 404);
    std::thread::sleep(Duration::from_millis(300));
    assert!(stack.no_deploy(), "{:?}", stack.history());
}

#[test]
fn every_fixture_is_handled_as_its_forge_would_deliver_it() {
    let stack = Stack::start("");
    let read = |name: &str| std::fs::read(fixtures().join(name)).unwrap();
    let json = ("Content-Type", "application/json".to_owned());
    let gitea_push = read("gitea__go-gitea-gitea__docs-content-usage-webhooks.en-us.md__push.json");
    let ping = read("github__octokit-webhooks__ping__payload.json");
    let tag_deleted = read("github__octokit-webhooks__push__tag-deleted.payload.json");
    let new_branch = read("github__octokit-webhooks__push__with-new-branch.payload.json");
    let gitlab = read(
        "gitlab__gitlabhq-gitlabhq__doc-user-project-integrations-webhook_events.md__push.json",
    );
    let gogs = read("gogs__gogs__docs-advancing-webhooks.mdx__push.json");
    // The derived vector of SIGNATURE-VECTORS.txt, to be sure we sign as the forges do.
    assert_eq!(
        sign(&gitea_push),
        "5d52db09f5e514ea5ce80b0d1daebbf7d363151879f81241941952e5ba186b8b"
    );
    let github = |event: &str, body: &[u8], id: &str| {
        vec![
            json.clone(),
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Delivery", id.to_owned()),
            ("X-Hub-Signature-256", format!("sha256={}", sign(body))),
        ]
    };
    let expect = |port: u16, headers: Vec<(&str, String)>, body: &[u8], status: u16, text: &str| {
        let (got, reply) = http(port, "POST", "/webhook", &headers, body);
        assert_eq!(got, status, "{reply}");
        assert!(reply.contains(text), "wanted {text:?} in {reply}");
    };
    // main is deployed on `port`, master on `port_master`.
    expect(
        stack.port,
        gitea("g-1", Some(sign(&gitea_push))),
        &gitea_push,
        202,
        "a push to develop; main is the deployed branch",
    );
    expect(stack.port, github("ping", &ping, "p-1"), &ping, 200, "pong");
    expect(
        stack.port,
        github("push", &tag_deleted, "t-1"),
        &tag_deleted,
        202,
        "refs/tags/simple-tag is a tag",
    );
    expect(
        stack.port,
        github("push", &new_branch, "n-1"),
        &new_branch,
        202,
        "a push to master; main is the deployed branch",
    );
    let gitlab_headers = |token: &str| {
        vec![
            json.clone(),
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
        ]
    };
    expect(stack.port, gitlab_headers("wrong"), &gitlab, 401, "invalid");
    expect(
        stack.port,
        gitlab_headers(SECRET),
        &gitlab,
        202,
        "a push to master",
    );
    assert!(stack.no_deploy());
    // Gogs pushes to main: a deploy (of the configured branch's tip, whatever `after` says).
    let gogs_headers = vec![
        json.clone(),
        ("X-Gogs-Event", "push".to_owned()),
        ("X-Gogs-Delivery", "gogs-1".to_owned()),
        ("X-Gogs-Signature", sign(&gogs)),
    ];
    expect(stack.port, gogs_headers, &gogs, 202, "deploying");
    wait_until("the gogs deploy", || stack.history().len() == 1);
    // GitHub's and GitLab's pushes to master, where master is the deployed branch.
    expect(
        stack.port_master,
        github("push", &new_branch, "n-2"),
        &new_branch,
        202,
        "deploying",
    );
    expect(
        stack.port_master,
        gitlab_headers(SECRET),
        &gitlab,
        202,
        "deploying",
    );
    wait_until("every deploy to end", || {
        stack.history().len() >= 2 && !stack.root().join("data/deploys/app.inflight").exists()
    });
    // Nothing new was pushed: the deploys found the tip already running.
    assert!(
        stack.history().iter().all(|r| r["result"] == "unchanged"),
        "{:?}",
        stack.history()
    );
}

#[test]
fn a_burst_of_pushes_costs_at_most_two_deploys_and_hostile_refs_do_nothing() {
    let stack = Stack::start("steps = [[\"sleep\", \"1\"]]");
    let mut last = String::new();
    for i in 0..20 {
        last = push(stack.root(), &format!("2.{i}"));
        let body = push_payload("refs/heads/main", &last);
        let (status, _) = http(
            stack.port,
            "POST",
            "/webhook",
            &gitea(&format!("b-{i}"), Some(sign(&body))),
            &body,
        );
        assert_eq!(status, 202);
    }
    wait_until("the last push running", || {
        stack.app_log().contains("version 2.19")
            && !stack.root().join("data/deploys/app.inflight").exists()
    });
    let history = stack.history();
    assert!(history.len() <= 2, "{history:#?}");
    assert!(
        history
            .iter()
            .any(|r| r["new_commit"].as_str() == Some(last.as_str()))
    );

    // Branch names that a shell would run: valid in git, harmless here.
    for (i, git_ref) in [
        "refs/heads/$(touch pwned)",
        "refs/heads/a;touch pwned",
        "refs/heads/`touch pwned`",
    ]
    .iter()
    .enumerate()
    {
        let body = push_payload(git_ref, &last);
        let (status, reply) = http(
            stack.port,
            "POST",
            "/webhook",
            &gitea(&format!("h-{i}"), Some(sign(&body))),
            &body,
        );
        assert_eq!(status, 202, "{reply}");
        assert!(reply.contains("ignored"), "{reply}");
    }
    for dir in [
        stack.root().to_owned(),
        stack.root().join("app"),
        std::env::current_dir().unwrap(),
    ] {
        assert!(!dir.join("pwned").exists(), "{}", dir.display());
    }
}
