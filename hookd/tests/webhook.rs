//! hookd end to end: real HTTP on 127.0.0.1, a real supervisor running hookd and the deployed
//! program, real git with a bare repository as the remote.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod stack;

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use stack::*;

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
    assert_eq!(record["new_subject"], "2", "the commit's subject is kept");
    assert_eq!(record["trigger"], "hookd: gitea push d-1");
    wait_until("version 2", || stack.app_log().contains("version 2"));
    // statusd shows the running commit with its message.
    wait_until("statusd to show the commit", || {
        let (_, body) = http(stack.statusd_port, "GET", "/commit", &[], b"");
        serde_json::from_str::<Value>(&body).is_ok_and(|v| {
            v["programs"][0]["commit"].as_str() == Some(v2.as_str())
                && v["programs"][0]["message"] == "2"
        })
    });

    // The same delivery again: acknowledged, not deployed again.
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("d-1", Some(sign(&body))),
        &body,
    );
    assert_eq!((status, reply.trim()), (200, r#"{"status":"duplicate"}"#));
    // Replays under fresh delivery ids (the id header is not signed), and another signed body
    // for the same commit: duplicates too, however many.
    for n in 0..300 {
        let (status, reply) = http(
            stack.port,
            "POST",
            "/webhook",
            &gitea(&format!("replay-{n}"), Some(sign(&body))),
            &body,
        );
        assert_eq!((status, reply.trim()), (200, r#"{"status":"duplicate"}"#));
    }
    let mut same_commit = body.clone();
    same_commit.push(b'\n');
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("d-1b", Some(sign(&same_commit))),
        &same_commit,
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
    // No GitLab token configured on `port`: the webhook secret is no GitLab token.
    expect(stack.port, gitlab_headers("wrong"), &gitlab, 401, "invalid");
    expect(stack.port, gitlab_headers(SECRET), &gitlab, 401, "invalid");
    expect(
        stack.port_master,
        gitlab_headers(SECRET),
        &gitlab,
        401,
        "invalid",
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
        gitlab_headers(GITLAB_TOKEN),
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
    // The first deploy's build waits for `gate`, so that every push lands while it runs.
    let stack =
        Stack::start(r#"steps = [["sh", "-c", "while [ ! -e ../gate ]; do sleep 0.05; done"]]"#);
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
    std::fs::write(stack.root().join("gate"), "").unwrap();
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

/// A push of a commit the supervisor holds back (it failed its health gate and is quarantined)
/// is answered "refused" at once: nothing fetched, recorded or announced, and no "deploying".
#[test]
fn a_push_of_a_quarantined_commit_is_refused_not_deploying() {
    let stack = Stack::start("");
    // A commit that fails its gate: rolled back and quarantined.
    let work = stack.root().join("work");
    std::fs::write(work.join("run.sh"), "exit 1\n").unwrap();
    testkit::git(&work, &["commit", "-q", "-a", "-m", "broken"]);
    testkit::git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let bad = testkit::git(&work, &["rev-parse", "HEAD"]);
    let body = push_payload("refs/heads/main", &bad);
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("q-1", Some(sign(&body))),
        &body,
    );
    assert_eq!(status, 202, "{reply}");
    wait_until("the rollback", || {
        stack
            .history()
            .last()
            .is_some_and(|r| r["result"] == "rolled_back")
    });
    // Another commit asked for in between (hookd remembers only the last one it asked for).
    let running = testkit::git(&stack.root().join("app"), &["rev-parse", "HEAD"]);
    let other = push_payload("refs/heads/main", &running);
    let (status, _) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("q-2", Some(sign(&other))),
        &other,
    );
    assert_eq!(status, 202);
    wait_until("that deploy to end", || {
        stack.history().len() == 2 && !stack.root().join("data/deploys/app.inflight").exists()
    });
    // The forge redelivers the broken push (a body of its own: whitespace differs).
    let mut again = body.clone();
    again.push(b' ');
    let (status, reply) = http(
        stack.port,
        "POST",
        "/webhook",
        &gitea("q-3", Some(sign(&again))),
        &again,
    );
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "refused", "{reply}");
    assert!(
        reply["reason"]
            .as_str()
            .unwrap()
            .contains("failed its health gate before and is quarantined"),
        "{reply}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stack.history().len(),
        2,
        "nothing recorded: {:?}",
        stack.history()
    );
}

/// A Unix socket in front of the supervisor's: it passes every byte on and keeps what clients
/// sent, connection by connection. `target` is filled in once the supervisor runs.
struct Recorder {
    path: PathBuf,
    target: Arc<Mutex<Option<PathBuf>>>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    _dir: tempfile::TempDir,
}

impl Recorder {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let target: Arc<Mutex<Option<PathBuf>>> = Arc::default();
        let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (t, s) = (target.clone(), sent.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Some(to) = t.lock().unwrap().clone() else {
                    continue;
                };
                let Ok(mut server) = UnixStream::connect(to) else {
                    continue;
                };
                let n = {
                    let mut all = s.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(read) = client.read(&mut buf) {
                        if read == 0 || server.write_all(&buf[..read]).is_err() {
                            break;
                        }
                        s.lock().unwrap()[n].extend_from_slice(&buf[..read]);
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self {
            path,
            target,
            sent,
            _dir: dir,
        }
    }

    /// The verbs of the requests each connection made.
    fn verbs(&self) -> Vec<Vec<String>> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| {
                String::from_utf8_lossy(bytes)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter_map(|v| v["verb"].as_str().map(str::to_owned))
                    .collect()
            })
            .collect()
    }
}

/// A webhook costs the supervisor one connection and one request: the deploy request carries
/// the pushed branch and commit, and the supervisor checks both (no `status` call first, so
/// hookd needs no `status` grant). A push to another branch is refused by the supervisor,
/// answered `ignored`, and does not make the same commit a duplicate on the deploy branch.
#[test]
fn a_webhook_is_one_request_and_the_supervisor_checks_the_branch() {
    let recorder = Recorder::start();
    let env = format!("SUPERVISOR_SOCKET = \"{}\", ", recorder.path.display());
    let stack = Stack::start_with("", None, &env);
    *recorder.target.lock().unwrap() = Some(stack.root().join("data/supervisor.sock"));
    let v2 = push(stack.root(), "2");
    let deliver = |delivery: &str, git_ref: &str| {
        let body = push_payload(git_ref, &v2);
        http(
            stack.port,
            "POST",
            "/webhook",
            &gitea(delivery, Some(sign(&body))),
            &body,
        )
    };
    let (status, reply) = deliver("b-1", "refs/heads/feature");
    assert_eq!(status, 202, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "ignored");
    assert_eq!(
        reply["reason"], "a push to feature; main is the deployed branch",
        "{reply}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(stack.history().is_empty(), "nothing deployed");
    // The same commit on the deploy branch: deployed, not a duplicate.
    let (status, reply) = deliver("b-2", "refs/heads/main");
    assert_eq!(status, 202, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "deploying", "{reply}");
    wait_until("version 2", || stack.app_log().contains("version 2"));
    assert_eq!(
        recorder.verbs(),
        [["deploy".to_owned()], ["deploy".to_owned()]],
        "one connection and one deploy request per webhook"
    );
}
