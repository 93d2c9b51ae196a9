//! The shipped nginx front (deploy/nginx/templates/bot.conf.template), run by the real nginx on
//! 127.0.0.1 with a self-signed certificate made here, in front of real hookd and statusd under
//! a real supervisor. Needs nginx, openssl and curl (Debian; scripts/test installs them as root).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

mod stack;

use std::process::Command;

use stack::*;
use testkit::{Nginx, curl};

#[test]
fn the_shipped_nginx_front_routes_limits_and_redirects() {
    let stack = Stack::start("");
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), stack.port, stack.statusd_port);
    let (base, http, https) = (nginx.base(), nginx.http, nginx.https);

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
    // ACME's HTTP-01 answers come from the webroot over plain HTTP, and only those: a missing
    // token is a 404, and no other file is reachable through that path.
    let token = nginx.acme.join(".well-known/acme-challenge/t0ken");
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "t0ken.thumbprint").unwrap();
    std::fs::write(nginx.acme.join("secret"), "no").unwrap();
    let plain = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "--path-as-is", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{http}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        plain("/.well-known/acme-challenge/t0ken"),
        "t0ken.thumbprint\n200"
    );
    assert!(plain("/.well-known/acme-challenge/other").ends_with("\n404"));
    let escape = plain("/.well-known/acme-challenge/../../secret");
    assert!(!escape.ends_with("\n200"), "{escape}");
    assert!(plain("/secret").ends_with("\n301"));
    assert_eq!(stack.history().len(), 1, "only the signed push deployed");
}
