//! The shipped nginx front (deploy/nginx/templates/bot.conf.template), run by the real nginx on
//! 127.0.0.1 with a self-signed certificate made here, in front of real hookd and statusd under
//! a real supervisor. Needs nginx, openssl and curl (Debian; .ci/run installs them).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix_kill(self.0.id(), "QUIT");
        let _ = self.0.wait();
    }
}

/// Renders the template (only ports, certificate paths and upstream addresses vary) into a
/// minimal nginx.conf under `dir` and starts nginx in the foreground.
fn nginx(dir: &Path, http: u16, https: u16, hookd: u16, statusd: u16) -> Nginx {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/templates/bot.conf.template"),
    )
    .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl: install Debian's openssl (.ci/run does)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let site = [
        ("${HTTP_LISTEN}", format!("127.0.0.1:{http}")),
        ("${HTTPS_LISTEN}", format!("127.0.0.1:{https}")),
        ("${PUBLIC_HTTPS_PORT}", https.to_string()),
        ("${TLS_CERT}", cert.display().to_string()),
        ("${TLS_KEY}", key.display().to_string()),
        ("${HOOKD}", format!("127.0.0.1:{hookd}")),
        ("${STATUSD}", format!("127.0.0.1:{statusd}")),
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
        .expect("nginx: install Debian's nginx-light (.ci/run does)");
    wait_until("nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
    });
    Nginx(child)
}

/// `curl` over HTTPS (the self-signed certificate accepted); returns the status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-k", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl: install Debian's curl (.ci/run does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_shipped_nginx_front_routes_limits_and_redirects() {
    let stack = Stack::start("");
    let (http, https) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let _nginx = nginx(dir.path(), http, https, stack.port, stack.statusd_port);
    let base = format!("https://127.0.0.1:{https}");

    // A signed push through HTTPS deploys.
    let v2 = push(stack.root(), "2");
    let body = push_payload("refs/heads/main", &v2);
    let body_file = dir.path().join("push.json");
    std::fs::write(&body_file, &body).unwrap();
    let signature = format!("X-Gitea-Signature: {}", sign(&body));
    let (code, reply) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Gitea-Event: push",
        "-H",
        "X-Gitea-Delivery: through-nginx",
        "-H",
        &signature,
        "--data-binary",
        &format!("@{}", body_file.display()),
        &format!("{base}/webhook"),
    ]);
    assert_eq!(code, 202, "{reply}");
    assert!(reply.contains("deploying"), "{reply}");
    wait_until("the deploy", || {
        stack
            .history()
            .first()
            .is_some_and(|r| r["result"] == "succeeded")
    });
    wait_until("version 2", || stack.app_log().contains("version 2"));

    // The status API is reachable; only GET.
    let (code, reply) = curl(&[&format!("{base}/status")]);
    assert_eq!(code, 200, "{reply}");
    assert!(reply.contains("\"app\""), "{reply}");
    assert_eq!(curl(&[&format!("{base}/health")]).0, 200);
    assert_eq!(curl(&[&format!("{base}/")]).0, 200);
    assert_eq!(curl(&["-X", "POST", &format!("{base}/status")]).0, 403);
    assert_eq!(
        curl(&[&format!("{base}/webhook")]).0,
        403,
        "webhooks are POST only"
    );

    // Nothing else is routed.
    for path in ["/nope", "/healthz", "/webhook/a/b", "/status/x", "/.env"] {
        assert_eq!(curl(&[&format!("{base}{path}")]).0, 404, "{path}");
    }

    // An oversize body is refused by nginx before hookd sees it.
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let (code, reply) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Gitea-Event: push",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{base}/webhook"),
    ]);
    assert_eq!(code, 413, "{reply}");
    assert!(
        reply.contains("nginx"),
        "the refusal comes from nginx: {reply}"
    );

    // Plain HTTP redirects to HTTPS.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://127.0.0.1:{http}/status"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("301 https://127.0.0.1:{https}/status")
    );
    assert_eq!(stack.history().len(), 1, "only the signed push deployed");
}
