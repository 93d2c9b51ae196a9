//! Helpers the integration tests of several crates share (a dev-dependency only).
//!
//! # Layout
//! - `git`, `wait_until`, `PATIENCE`, `free_port`, `http`: the small things every end-to-end
//!   test needs (one patience, one HTTP client for the whole workspace).
//! - [`supervisor`]: the real supervisor in a temporary folder, its JSON log followed.
//! - `nginx`: the shipped TLS front (`deploy/nginx/templates/bot.conf.template`) rendered for
//!   127.0.0.1 with a self-signed certificate, run by the real nginx; `curl` to talk to it.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test code: a panic is a failure

pub mod supervisor;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Another binary of the workspace, beside the test's own (`exe`: `env!("CARGO_BIN_EXE_x")`);
/// fails the test, saying how to build it, when it is missing.
pub fn sibling(exe: &str, name: &str) -> PathBuf {
    let bin = Path::new(exe).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {name}` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// Runs git in `dir` with a fixed identity; fails the test if git fails. Returns its stdout,
/// trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("git: install Debian's git (scripts/test does, as root)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// In `root/work` (a clone of the test's bare remote), commits a `run.sh` that prints
/// `version V` and sleeps, with subject `V`, and pushes it to `main`; returns the commit.
pub fn push_version(root: &Path, version: &str) -> String {
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

/// Polls `cond` every 20 ms until it holds; fails the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from` (127.0.0.2, ...), so
/// that a test can play several clients: std's `connect` cannot choose the source address.
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd as _;
    let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket has no memory preconditions; the descriptor is owned at once below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let local = addr(from, 0);
    let remote = addr(std::net::Ipv4Addr::LOCALHOST, port);
    // SAFETY: both addresses are valid sockaddr_in values of `len` bytes that outlive the calls.
    unsafe {
        if libc::bind(fd, (&raw const local).cast(), len) != 0
            || libc::connect(fd, (&raw const remote).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(stream)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real nginx running the shipped template; stopped (QUIT) on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub https: u16,
    pub http: u16,
    /// The ACME webroot it serves `/.well-known/acme-challenge/` from.
    pub acme: PathBuf,
    /// `nginx -p DIR -c CONF`: add `-s reload` or `-t`.
    pub command: Vec<String>,
}

impl Nginx {
    /// Renders the template (only ports, certificate paths and upstream addresses vary) into a
    /// minimal nginx.conf under `dir`, with a self-signed certificate made there, and starts
    /// nginx in the foreground, listening on 127.0.0.1.
    pub fn start(dir: &Path, hookd: u16, statusd: u16) -> Self {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        self_signed(&cert, &key, "localhost", 1);
        Self::start_with(dir, hookd, statusd, &cert, &key)
    }

    /// As [`Nginx::start`], serving the certificate and key at `cert` and `key`.
    pub fn start_with(dir: &Path, hookd: u16, statusd: u16, cert: &Path, key: &Path) -> Self {
        let (http, https) = (free_port(), free_port());
        let template =
            std::fs::read_to_string(workspace().join("deploy/nginx/templates/bot.conf.template"))
                .unwrap();
        let acme = dir.join("acme");
        std::fs::create_dir_all(&acme).unwrap();
        let site = [
            ("${HTTP_LISTEN}", format!("127.0.0.1:{http}")),
            ("${HTTPS_LISTEN}", format!("127.0.0.1:{https}")),
            ("${PUBLIC_HTTPS_PORT}", https.to_string()),
            ("${TLS_CERT}", cert.display().to_string()),
            ("${TLS_KEY}", key.display().to_string()),
            ("${HOOKD}", format!("127.0.0.1:{hookd}")),
            ("${STATUSD}", format!("127.0.0.1:{statusd}")),
            ("${ACME_WEBROOT}", acme.display().to_string()),
        ]
        .iter()
        .fold(template, |text, (var, value)| text.replace(var, value));
        assert!(
            !site
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("${")),
            "a template variable is left:\n{site}"
        );
        let tmp = dir.join("nginx-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log stderr warn;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
                 {site}\n}}\n",
                dir = dir.display(),
                tmp = tmp.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx: install Debian's nginx-light (scripts/test does, as root)");
        wait_until("nginx to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
        let command = vec![
            "nginx".into(),
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            conf.display().to_string(),
        ];
        Self {
            child,
            https,
            http,
            acme,
            command,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.https)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (the tests' one client); returns the status and
/// the body, or status 0 when nothing listens there.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
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

/// A self-signed certificate for `name`, valid `days`, made by openssl.
pub fn self_signed(cert: &Path, key: &Path, name: &str, days: u32) {
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days"])
        .arg(days.to_string())
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name},IP:127.0.0.1"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl: install Debian's openssl (scripts/test does, as root)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// `curl` (a self-signed certificate accepted, 20 s at most); the status and the body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-k", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl: install Debian's curl (scripts/test does, as root)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
