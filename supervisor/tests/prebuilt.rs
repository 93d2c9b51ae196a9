//! Prebuilt releases (`artifact_url`) end to end: a real git remote for the branch tip, a
//! release server on 127.0.0.1, releases packed with tar and signed with Debian's `minisign`
//! (the real tool), the real supervisor deploying them. Every bad release is refused with its
//! reason in the history, the running program untouched and nothing left in `releases/`.
//!
//! Why this file is past 600 lines: the release server (a loopback HTTP server that can hide a
//! file for N requests, stall mid-body and take Gitea-style uploads) and the signing helpers
//! serve every test here, and each test is one scenario end to end.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::*;
use serde_json::Value;
use testkit::git;

/// What the release server does for one path.
#[derive(Clone, Debug, Default)]
struct Behaviour {
    /// Answers 404 to this many requests first (the forge's CI still building).
    hidden_for: u32,
    /// Sends the head and half the body, then nothing for 10 s.
    stall: bool,
}

/// Files under `root`, over HTTP/1.1 on 127.0.0.1, one thread per connection, each closed
/// after one answer. A PUT with `Authorization: token secret` stores a file, as Gitea's
/// generic package registry does; each one is logged in `puts`.
struct ReleaseServer {
    port: u16,
    root: PathBuf,
    behaviours: Arc<Mutex<HashMap<String, Behaviour>>>,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    puts: Arc<Mutex<Vec<String>>>,
}

impl ReleaseServer {
    fn start(root: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Self {
            port,
            root: root.to_owned(),
            behaviours: Arc::default(),
            hits: Arc::default(),
            puts: Arc::default(),
        };
        let (files, behaviours, hits, puts) = (
            server.root.clone(),
            server.behaviours.clone(),
            server.hits.clone(),
            server.puts.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, behaviours, hits, puts) = (
                    files.clone(),
                    behaviours.clone(),
                    hits.clone(),
                    puts.clone(),
                );
                std::thread::spawn(move || answer(stream, &files, &behaviours, &hits, &puts));
            }
        });
        server
    }

    fn set(&self, path: &str, behaviour: Behaviour) {
        self.behaviours
            .lock()
            .unwrap()
            .insert(path.to_owned(), behaviour);
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn answer(
    mut stream: TcpStream,
    files: &Path,
    behaviours: &Mutex<HashMap<String, Behaviour>>,
    hits: &Mutex<HashMap<String, u32>>,
    puts: &Mutex<Vec<String>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    if method == "PUT" {
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(": ")
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_owned())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        if header("authorization").as_deref() != Some("token secret") {
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let file = files.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, body).unwrap();
        puts.lock().unwrap().push(path.to_owned());
        let _ = stream
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let n = {
        let mut hits = hits.lock().unwrap();
        let n = hits.entry(path.to_owned()).or_default();
        *n += 1;
        *n
    };
    let behaviour = behaviours
        .lock()
        .unwrap()
        .get(path)
        .cloned()
        .unwrap_or_default();
    let body = if n <= behaviour.hidden_for {
        None
    } else {
        std::fs::read(files.join(path.trim_start_matches('/'))).ok()
    };
    let Some(body) = body else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method == "HEAD" {
        return;
    }
    if behaviour.stall {
        let _ = stream.write_all(&body[..body.len() / 2]);
        std::thread::sleep(Duration::from_secs(10));
        return;
    }
    let _ = stream.write_all(&body);
}

/// A minisign key pair without a password: (secret key file, public key line).
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .expect("minisign (Debian's `minisign`, installed by scripts/test)");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&public).unwrap();
    (secret, text.lines().last().unwrap().to_owned())
}

/// Signs `file` as the forge's CI does: the trusted comment names the commit and the file.
fn sign(secret: &Path, file: &Path, comment: &str) {
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(secret)
        .arg("-m")
        .arg(file)
        .args(["-t", comment])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn comment(commit: &str, file: &str, subject: &str) -> String {
    format!("commit:{commit}\tfile:{file}\tsubject:{subject}")
}

/// The file name `{arch}` gives on this machine.
fn release_name() -> String {
    let arch = match std::env::consts::ARCH {
        "arm" => "armv7",
        a => a,
    };
    format!("app-{arch}.tar.gz")
}

/// Packs a release folder holding `app` (prints `version N`, then sleeps) and whatever
/// `extra` adds, as `served/bot/<commit>/app-<arch>.tar.gz` (gzip; zstd for a version ending
/// in "zstd"); returns its path.
fn pack(root: &Path, commit: &str, version: &str, extra: impl FnOnce(&Path)) -> PathBuf {
    let src = root.join(format!("pack-{commit}"));
    std::fs::create_dir_all(&src).unwrap();
    let app = script(
        &src,
        "app",
        &format!("echo \"version {version}\"\nexec sleep 1000\n"),
    );
    assert!(app.exists());
    extra(&src);
    let out_dir = root.join("served/bot").join(commit);
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(release_name());
    // What it is packed with is read from the file's first bytes, not its name.
    let compress = if version.ends_with("zstd") {
        "--zstd"
    } else {
        "--gzip"
    };
    let status = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args([compress, "-cf"])
        .arg(&out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Commits (empty) with `subject` and pushes to main; returns the commit.
fn push(root: &Path, subject: &str) -> String {
    let work = root.join("work");
    git(&work, &["commit", "-q", "--allow-empty", "-m", subject]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(&work, &["rev-parse", "HEAD"])
}

fn releases(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn running_pid(sup: &Supervisor) -> u64 {
    let (_, out, _) = ctl(sup, &["status", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["programs"][0]["pid"].as_u64().unwrap_or(0)
}

fn newest(sup: &Supervisor) -> Value {
    let (_, out, _) = ctl(sup, &["deploys", "--json"]);
    let records: Vec<Value> = serde_json::from_str(&out).unwrap();
    records[0].clone()
}

/// The supervisor on `dir`, deploying its program `app` from `artifact_url` (releases signed
/// with `public`, the tip from `dir`'s remote.git), with `more` deploy keys; no release yet, so
/// the program is FATAL until the first deploy.
fn start_deploying(
    dir: tempfile::TempDir,
    artifact_url: &str,
    public: &str,
    more: &str,
) -> Supervisor {
    let root = dir.path().display().to_string();
    let config = format!(
        r#"
[program.app]
command = ["{root}/releases/current/app"]
startsecs = "200ms"
startretries = 0

[program.app.deploy]
url = "{root}/remote.git"
artifact_url = "{artifact_url}"
signing_key = "{public}"
releases = "{root}/releases"
healthy_after = "300ms"
{more}"#
    );
    std::fs::write(dir.path().join("supervisor.toml"), config).unwrap();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "FATAL");
    sup
}

/// Makes and serves a bad release for a commit.
type MakeRelease<'a> = Box<dyn Fn(&str) -> PathBuf + 'a>;

#[test]
fn signed_releases_deploy_and_every_bad_one_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    let (secret, public) = keypair(&root, "forge");
    let (other_secret, _) = keypair(&root, "other");
    let server = ReleaseServer::start(&root.join("served"));
    let url = format!(
        "http://127.0.0.1:{}/bot/{{commit}}/app-{{arch}}.tar.gz",
        server.port
    );
    let more = "artifact_wait = \"3s\"\nartifact_max_size = \"64KB\"\nstep_timeout = \"4s\"\n";
    let sup = start_deploying(dir, &url, &public, more);

    // A good release: downloaded, verified, unpacked, switched to, running; the announcement's
    // subject comes from the signature.
    let v1 = push(&root, "First release");
    let file = pack(&root, &v1, "1", |_| {});
    sign(
        &secret,
        &file,
        &comment(&v1, &release_name(), "First release"),
    );
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("First release"), "{out}");
    wait_until("version 1", || sup.stdout().contains("app | version 1"));
    assert_eq!(
        std::fs::read_link(root.join("releases/current")).unwrap(),
        Path::new(&v1)
    );
    let record = newest(&sup);
    assert_eq!(record["result"], "succeeded", "{record}");
    assert_eq!(record["new_subject"], "First release", "{record}");
    let pid = running_pid(&sup);
    let kept = releases(&root);

    // Each bad release: refused, with its reason; the same process runs; releases/ unchanged.
    let bad: Vec<(&str, MakeRelease<'_>, String)> = vec![
        (
            "a flipped byte",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |_| {});
                sign(&secret, &file, &comment(c, &release_name(), "x"));
                let mut bytes = std::fs::read(&file).unwrap();
                let i = bytes.len() / 2;
                bytes[i] ^= 1;
                std::fs::write(&file, bytes).unwrap();
                file
            }),
            "download failed: unverified: the signature does not match".into(),
        ),
        (
            "a signature from another key",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |_| {});
                sign(&other_secret, &file, &comment(c, &release_name(), "x"));
                file
            }),
            "download failed: unverified: signature from another key".into(),
        ),
        (
            "no signature",
            Box::new(|c: &str| pack(&root, c, "x", |_| {})),
            "wait for the release failed: unverified: no signature at ".into(),
        ),
        (
            "an older commit's signed release",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |_| {});
                sign(&secret, &file, &comment(&v1, &release_name(), "First release"));
                file
            }),
            format!("download failed: unverified: signed for commit {}", &v1[..12]),
        ),
        (
            "a release larger than artifact_max_size",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |src| {
                    // 200 KB that gzip cannot shrink.
                    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
                    let noise: Vec<u8> = (0..200_000)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            x as u8
                        })
                        .collect();
                    std::fs::write(src.join("noise"), noise).unwrap();
                });
                sign(&secret, &file, &comment(c, &release_name(), "x"));
                file
            }),
            "download failed: refused: ".into(),
        ),
        (
            "a link out of the release",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |src| {
                    std::os::unix::fs::symlink("../../../../etc/passwd", src.join("passwd"))
                        .unwrap();
                });
                sign(&secret, &file, &comment(c, &release_name(), "x"));
                file
            }),
            "download failed: refused: ./passwd is a link to ../../../../etc/passwd which leaves the release".into(),
        ),
        (
            "a setuid file",
            Box::new(|c: &str| {
                let file = pack(&root, c, "x", |src| {
                    use std::os::unix::fs::PermissionsExt as _;
                    let tool = script(src, "tool", "true\n");
                    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755))
                        .unwrap();
                });
                sign(&secret, &file, &comment(c, &release_name(), "x"));
                file
            }),
            "download failed: refused: ./tool is setuid; a release never holds one".into(),
        ),
    ];
    for (what, make, reason) in &bad {
        let commit = push(&root, what);
        make(&commit);
        let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
        assert_eq!(code, 1, "{what}: {out}");
        let record = newest(&sup);
        assert_eq!(record["result"], "failed", "{what}: {record}");
        let message = record["message"].as_str().unwrap();
        assert!(message.starts_with(reason.as_str()), "{what}: {message}");
        assert_eq!(
            running_pid(&sup),
            pid,
            "{what}: the running version was touched"
        );
        assert_eq!(releases(&root), kept, "{what}: releases/ changed");
    }

    // A server that stalls mid-body: given up at the read deadline, nothing kept.
    let stalled = push(&root, "stalled");
    let file = pack(&root, &stalled, "x", |_| {});
    sign(&secret, &file, &comment(&stalled, &release_name(), "x"));
    server.set(
        &format!("/bot/{stalled}/{}", release_name()),
        Behaviour {
            stall: true,
            ..Behaviour::default()
        },
    );
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    let message = newest(&sup)["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("download failed: ") && message.contains("no answer for 2s"),
        "{message}"
    );
    assert_eq!(running_pid(&sup), pid);
    assert_eq!(releases(&root), kept);

    // A release that appears only after two looks (the CI was still building): deployed.
    let v2 = push(&root, "Second release");
    let signature = format!("/bot/{v2}/{}.minisig", release_name());
    server.set(
        &signature,
        Behaviour {
            hidden_for: 2,
            ..Behaviour::default()
        },
    );
    let file = pack(&root, &v2, "2 in zstd", |_| {});
    sign(
        &secret,
        &file,
        &comment(&v2, &release_name(), "Second release"),
    );
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("version 2", || {
        sup.stdout().contains("app | version 2 in zstd")
    });
    assert_eq!(newest(&sup)["result"], "succeeded");
    // Two 404s, the wait's success, then the download's own request.
    assert_eq!(server.hits(&signature), 4);
    let log = std::fs::read_to_string(newest(&sup)["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("waiting for the release: "), "{log}");
    assert!(log.contains("signature verified"), "{log}");
}

/// deploy/ci/release, the script the forge's CI runs, run here as it is: it packs and signs a
/// release for each architecture and uploads each into a Gitea-like package registry on
/// 127.0.0.1, release before signature; the supervisor deploys the one for this machine.
#[test]
fn the_ci_script_releases_what_the_supervisor_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    let (secret, public) = keypair(&root, "forge");
    let server = ReleaseServer::start(&root.join("served"));
    let v1 = push(&root, "Built by CI");
    // What a bot in any language gives the script: a file or a folder per architecture.
    let mut args = vec!["--name".to_owned(), "app".to_owned()];
    for arch in ["aarch64", "armv7", "x86_64"] {
        let build = root.join(format!("build-{arch}"));
        std::fs::create_dir_all(&build).unwrap();
        script(
            &build,
            "app",
            &format!("echo \"{arch} build\"\nexec sleep 1000\n"),
        );
        args.extend([
            "--prebuilt".to_owned(),
            format!("{arch}={}", build.join("app").display()),
        ]);
    }
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ci/release");
    let out = Command::new(&script_path)
        .args(&args)
        .args(["--upload", "gitea", "--out"])
        .arg(root.join("dist"))
        .current_dir(root.join("work"))
        .env(
            "MINISIGN_SECRET_KEY",
            std::fs::read_to_string(&secret).unwrap(),
        )
        .env("GITEA_URL", format!("http://127.0.0.1:{}/", server.port))
        .env("GITEA_OWNER", "me")
        .env("GITEA_TOKEN", "secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = format!("/api/packages/me/generic/app/{v1}");
    let mut expected = Vec::new();
    for arch in ["aarch64", "armv7", "x86_64"] {
        let file = format!("app-{arch}.tar.zst");
        expected.push(format!("{base}/{file}"));
        expected.push(format!("{base}/{file}.minisig"));
        // Each is what minisign itself verifies, with the trusted comment the deploy checks.
        let signed = root
            .join("served")
            .join(base.trim_start_matches('/'))
            .join(&file);
        let check = Command::new("minisign")
            .args(["-V", "-P", &public, "-m"])
            .arg(&signed)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{said}");
        assert!(
            said.contains(&format!("commit:{v1}\tfile:{file}\tsubject:Built by CI")),
            "{said}"
        );
    }
    assert_eq!(
        *server.puts.lock().unwrap(),
        expected,
        "each release before its signature"
    );

    let url = format!(
        "http://127.0.0.1:{}/api/packages/me/generic/app/{{commit}}/app-{{arch}}.tar.zst",
        server.port
    );
    let sup = start_deploying(dir, &url, &public, "");
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let arch = match std::env::consts::ARCH {
        "arm" => "armv7",
        a => a,
    };
    wait_until("this machine's build", || {
        sup.stdout().contains(&format!("app | {arch} build"))
    });
    assert_eq!(newest(&sup)["new_subject"], "Built by CI");
}

/// The branch tip of an http(s) remote, learned without git (the small image has none):
/// `supervisor ls-remote` against git's own smart HTTP server (`git http-backend`, as CGI under
/// Python's http.server on 127.0.0.1) says what `git ls-remote` says.
#[test]
fn the_branch_tip_of_an_http_remote_is_learned_without_git() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    // Python's CGI runs the script as nobody when it runs as root: everything must be readable.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    let tip = push(&root, "Served over HTTP");
    std::fs::create_dir(root.join("cgi-bin")).unwrap();
    script(
        &root.join("cgi-bin"),
        "git",
        &format!(
            "export GIT_PROJECT_ROOT={} GIT_HTTP_EXPORT_ALL=1 GIT_CONFIG_COUNT=1 \
             GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'\nexec git http-backend",
            root.display()
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let _server = Terminated(
        Command::new(PYTHON)
            .args([
                "-m",
                "http.server",
                "--cgi",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the git server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/cgi-bin/git/remote.git");
    let ours = Command::new(BIN)
        .args(["ls-remote", "--", &url, "refs/heads/main"])
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let theirs = git(&root, &["ls-remote", &url, "refs/heads/main"]);
    assert_eq!(String::from_utf8_lossy(&ours.stdout).trim(), theirs);
    assert!(theirs.starts_with(&tip), "{theirs}");
    let missing = Command::new(BIN)
        .args(["ls-remote", "--", &url, "refs/heads/nope"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("the remote has no refs/heads/nope"),
        "{missing:?}"
    );
}

/// A machine no webhook reaches: `poll` sees the branch move and deploys that commit's release,
/// and the next push's once its release is there.
#[test]
fn a_poll_deploys_each_new_tip_s_release() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&root, &["clone", "-q", "remote.git", "work"]);
    let (secret, public) = keypair(&root, "forge");
    let server = ReleaseServer::start(&root.join("served"));
    let v1 = push(&root, "Polled one");
    let file = pack(&root, &v1, "1", |_| {});
    sign(&secret, &file, &comment(&v1, &release_name(), "Polled one"));
    let url = format!(
        "http://127.0.0.1:{}/bot/{{commit}}/app-{{arch}}.tar.gz",
        server.port
    );
    let sup = start_deploying(dir, &url, &public, "poll = \"1s\"\n");
    wait_until("version 1", || sup.stdout().contains("app | version 1"));
    let v2 = push(&root, "Polled two");
    let file = pack(&root, &v2, "2", |_| {});
    sign(&secret, &file, &comment(&v2, &release_name(), "Polled two"));
    wait_until("version 2", || sup.stdout().contains("app | version 2"));
    wait_until("its deploy recorded", || {
        newest(&sup)["new_commit"] == v2.as_str()
    });
    let record = newest(&sup);
    assert_eq!(record["result"], "succeeded", "{record}");
    assert_eq!(
        (record["trigger"].as_str(), record["new_subject"].as_str()),
        (
            Some(format!("poll: {}", &v2[..12]).as_str()),
            Some("Polled two")
        )
    );
}
