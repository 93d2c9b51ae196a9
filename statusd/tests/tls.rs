//! The TLS certificate's life, with real parts: Debian's `pebble` (Let's Encrypt's test ACME
//! server, with `pebble-challtestsrv` answering its DNS) as the CA on 127.0.0.1, certbot as the
//! client, the shipped nginx template in front, `scripts/tls-certificate` between them, a real
//! supervisor for the alert and statusd probing what nginx serves. Issue through nginx's
//! webroot, renew while a request is in flight (it is answered; new connections get the new
//! certificate), a failed renewal (pebble stopped) raised as an alert, nothing else changed;
//! issue before the stack is up; a certificate about to expire; the renewal timer's units.
//!
//! Needs pebble, certbot, nginx, openssl, ss and systemd-analyze (Debian; scripts/test installs
//! them as root).

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binaries and tools: std spawns them

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use testkit::supervisor::{Mode, Supervisor};
use testkit::{Nginx, PATIENCE, free_port, wait_until, workspace};

const DOMAIN: &str = "bot.example.org";

fn supervisor_bin() -> PathBuf {
    testkit::sibling(env!("CARGO_BIN_EXE_statusd"), "supervisor")
}

/// Children killed (and reaped) on drop, last started first.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    fn spawn(&mut self, cmd: &mut Command, what: &str) -> usize {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e} (scripts/test installs it as root)"));
        self.0.push(child);
        self.0.len() - 1
    }

    fn stop(&mut self, index: usize) {
        let child = &mut self.0[index];
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
    }
}

/// The body of a GET to statusd; empty while it does not listen yet.
fn get(port: u16, path: &str) -> String {
    testkit::http(port, "GET", path, &[], b"").1
}

fn status_tls(port: u16) -> Value {
    serde_json::from_str::<Value>(&get(port, "/status")).unwrap_or_default()["tls"].clone()
}

/// `openssl x509` fields of a PEM certificate (the first of a chain).
fn x509(pem: &[u8], field: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", field])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .split_once('=')
        .map_or(text.clone(), |(_, v)| v.trim().to_owned())
}

/// The certificate a new connection to `port` is served, as PEM.
/// Waits until new connections get `chain`'s certificate: `nginx -s reload` only signals the
/// master, and the old workers may accept a connection or two before they stop listening.
fn serves(port: u16, chain: &[u8], what: &str) {
    let want = served_first(chain);
    wait_until(what, || served(port) == want);
}

fn served(port: u16) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", DOMAIN])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    text[begin..end].as_bytes().to_vec()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "{:?}: {}\n{}{}",
        cmd.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The supervisor (for the alerts), with one program: testkit's, its log followed.
fn supervisor() -> Supervisor {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("supervisor.toml"),
        "[program.idle]\ncommand = [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    Supervisor::start(dir, Mode::Plain)
}

/// statusd on `port`, following the supervisor at `socket` and probing nginx's `https` port
/// every second.
fn statusd(children: &mut Children, port: u16, socket: &Path, https: u16) {
    children.spawn(
        Command::new(env!("CARGO_BIN_EXE_statusd"))
            .env("STATUSD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SUPERVISOR_SOCKET", socket)
            .env("TLS_PROBE", format!("127.0.0.1:{https}"))
            .env("TLS_PROBE_NAME", DOMAIN)
            .env("TLS_PROBE_INTERVAL", "1s")
            .env_remove("STATUSD_TOKEN"),
        "statusd",
    );
}

#[test]
fn issued_renewed_under_load_and_a_failed_renewal_is_raised() {
    let supervisor = supervisor();
    let root = supervisor.dir.path();
    let socket = root.join("data/supervisor.sock");
    let mut children = Children::default();

    // nginx with a self-signed certificate (a stack first set up for the LAN, as
    // scripts/pi-setup without DOMAIN leaves it), in front of statusd, probing it every second.
    let tls = root.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let (cert, key) = (tls.join("fullchain.pem"), tls.join("privkey.pem"));
    testkit::self_signed(&cert, &key, DOMAIN, 30);
    let placeholder = std::fs::read(&cert).unwrap();
    let nginx_dir = root.join("nginx");
    std::fs::create_dir(&nginx_dir).unwrap();
    let statusd_port = free_port();
    let nginx = Nginx::start_with(&nginx_dir, free_port(), statusd_port, &cert, &key);
    statusd(&mut children, statusd_port, &socket, nginx.https);
    wait_until("statusd to read the placeholder", || {
        status_tls(statusd_port)["serial"] == x509(&placeholder, "-serial")
    });

    // The CA, validating HTTP-01 on nginx's port 80 stand-in.
    let ca = Ca::start(&mut children, root, nginx.http);
    let pebble = ca.pebble;
    let script = |args: &[&str]| {
        let mut cmd = ca.script(root, args, &tls, &nginx.acme, nginx.http);
        cmd.env("NGINX", nginx.command.join(" "))
            .env("SUPERVISOR", supervisor_bin())
            .env("SUPERVISOR_SOCKET", &socket);
        run(&mut cmd)
    };
    let letsencrypt = root.join("letsencrypt");

    // Issue while nginx holds the HTTP port: the challenge goes through its webroot.
    let out = script(&["issue", DOMAIN, "owner@example.org"]);
    assert!(out.status.success());
    let issued = std::fs::read(&cert).unwrap();
    assert_ne!(issued, placeholder);
    assert!(
        x509(&issued, "-issuer").contains("Pebble"),
        "{}",
        x509(&issued, "-issuer")
    );
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions()) & 0o777
    };
    assert_eq!((mode(&tls), mode(&key)), (0o700, 0o600));
    serves(nginx.https, &issued, "nginx to serve the new one");
    let serial = x509(&issued, "-serial");
    wait_until("statusd to read the issued certificate", || {
        status_tls(statusd_port)["serial"] == serial.as_str()
    });
    // Run again: nothing is due, nothing changes.
    assert!(
        script(&["issue", DOMAIN, "owner@example.org"])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&cert).unwrap(), issued);

    // The metric is the certificate's notAfter; /status's `tls` is as documented.
    let tls_now = status_tls(statusd_port);
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("docs/statusd.openapi.json")).unwrap(),
    )
    .unwrap();
    let documented = &doc["paths"]["/status"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["properties"]["tls"]["properties"];
    for key in tls_now.as_object().unwrap().keys() {
        assert!(
            documented.get(key).is_some(),
            "/status tls.{key} is not in docs/statusd.openapi.json"
        );
    }
    let metrics = get(statusd_port, "/metrics");
    assert!(
        metrics.contains(&format!(
            "tls_certificate_expiry_seconds {}.0",
            tls_now["not_after"]
        )),
        "{metrics}"
    );
    assert!(metrics.contains("tls_probe_success 1"), "{metrics}");
    let page = get(statusd_port, "/");
    assert!(
        page.contains("id=tls-valid") && page.contains(DOMAIN),
        "{page}"
    );
    assert!(
        !page.contains("id=tls>"),
        "no warning for a 5-year certificate: {page}"
    );

    // Renewal (made due: pebble's certificates last years), with a request in flight across
    // nginx's reload: a first request proves the connection, the second is half sent.
    let conf = letsencrypt.join(format!("renewal/{DOMAIN}.conf"));
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("renew_before_expiry = 100000 days\n{text}")).unwrap();
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", nginx.https),
        ])
        .args(["-servername", DOMAIN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_nginx = client.stdin.take().unwrap();
    let lines = {
        let (tx, rx) = mpsc::channel();
        let stdout = client.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let answer = |rx: &mpsc::Receiver<String>| {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(PATIENCE) {
                Ok(line) if line.contains("\"status\":\"ok\"") => return seen,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no answer ({e}); got {seen:?}"),
            }
        }
    };
    write!(to_nginx, "GET /ping HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").unwrap();
    let first = answer(&lines);
    assert!(first[0].starts_with("HTTP/1.1 200"), "{first:?}");
    write!(to_nginx, "GET /ping HTTP/1.1\r\nHost: {DOMAIN}\r\n").unwrap();
    to_nginx.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = script(&["renew"]);
    assert!(out.status.success());
    let renewed = std::fs::read(&cert).unwrap();
    assert_ne!(renewed, issued, "renewed");
    serves(nginx.https, &renewed, "nginx to serve the renewed one");
    // The request in flight through the reload is answered, on its old connection.
    write!(to_nginx, "Connection: close\r\n\r\n").unwrap();
    let second = answer(&lines);
    assert!(second[0].starts_with("HTTP/1.1 200"), "{second:?}");
    drop(to_nginx);
    let _ = client.wait();
    let serial = x509(&renewed, "-serial");
    wait_until("statusd to read the renewed certificate", || {
        status_tls(statusd_port)["serial"] == serial.as_str()
    });

    // The CA is gone: the renewal fails, an alert is raised, the certificate stays.
    children.stop(pebble);
    let out = script(&["renew"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&cert).unwrap(), renewed);
    assert_eq!(
        served(nginx.https),
        served_first(&renewed),
        "still the renewed one"
    );
    let alerts = alerts(&socket);
    let a = &alerts[0];
    assert_eq!(
        (
            a["program"].as_str(),
            a["kind"].as_str(),
            a["severity"].as_str(),
            a["critical"].as_bool()
        ),
        (Some("tls"), Some("reported"), Some("critical"), Some(true)),
        "{alerts}"
    );
    let message = a["message"].as_str().unwrap();
    assert!(
        message.starts_with("TLS certificate renewal failed") && message.contains(DOMAIN),
        "{message}"
    );
}

/// Let's Encrypt's stand-in: pebble on 127.0.0.1, validating HTTP-01 on `http_port`, with
/// pebble-challtestsrv resolving every name to 127.0.0.1.
struct Ca {
    acme: u16,
    dir: PathBuf,
    /// Its index in the children, to stop it.
    pebble: usize,
}

impl Ca {
    fn start(children: &mut Children, root: &Path, http_port: u16) -> Self {
        let dir = root.join("ca");
        std::fs::create_dir_all(&dir).unwrap();
        testkit::self_signed(&dir.join("cert.pem"), &dir.join("key.pem"), "localhost", 2);
        let (acme, dns) = (free_port(), free_port());
        std::fs::write(
            dir.join("pebble.json"),
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{}", free_port()),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )
        .unwrap();
        children.spawn(
            Command::new("pebble-challtestsrv")
                .args([
                    "-defaultIPv6",
                    "",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{}", free_port())]),
            "pebble-challtestsrv (Debian's pebble)",
        );
        let pebble = children.spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(dir.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0"),
            "pebble",
        );
        wait_until("pebble to listen", || {
            TcpStream::connect(("127.0.0.1", acme)).is_ok()
        });
        Self { acme, dir, pebble }
    }

    /// scripts/tls-certificate with `args`, certbot pointed at this CA, its state under `root`.
    fn script(
        &self,
        root: &Path,
        args: &[&str],
        tls: &Path,
        acme_dir: &Path,
        http_port: u16,
    ) -> Command {
        let mut cmd = Command::new(workspace().join("scripts/tls-certificate"));
        cmd.args(args)
            .env("TLS_DIR", tls)
            .env("ACME_DIR", acme_dir)
            .env("LETSENCRYPT_DIR", root.join("letsencrypt"))
            .env(
                "CERTBOT",
                format!(
                    "certbot --server https://127.0.0.1:{}/dir --work-dir {} --logs-dir {}",
                    self.acme,
                    root.join("certbot-work").display(),
                    root.join("certbot-logs").display()
                ),
            )
            .env("REQUESTS_CA_BUNDLE", self.dir.join("cert.pem"))
            .env("HTTP_PORT", http_port.to_string());
        cmd
    }
}

/// Before the stack is up nothing holds the HTTP port: `issue` serves the challenge there
/// itself for the duration, and only copies the certificate into TLS_DIR (no nginx to reload
/// yet: NGINX is `false` here, and would fail the run if called).
#[test]
fn issued_before_the_stack_is_up_through_a_temporary_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut children = Children::default();
    let (tls, acme_dir) = (root.join("tls"), root.join("acme"));
    // The port is free when chosen, but the script binds it later, while the other tests of
    // this file take ports too: a port taken meanwhile is tried again with another, nothing
    // else is.
    let mut attempts = 0;
    let (http_port, _ca) = loop {
        attempts += 1;
        let http_port = free_port();
        let ca = Ca::start(&mut children, root, http_port);
        let mut cmd = ca.script(
            root,
            &["issue", DOMAIN, "owner@example.org"],
            &tls,
            &acme_dir,
            http_port,
        );
        cmd.env("NGINX", "false").env("SUPERVISOR", "false");
        let out = run(&mut cmd);
        if out.status.success() {
            break (http_port, ca);
        }
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        let raced = said.contains("cannot serve") && said.contains("Address already in use");
        assert!(raced && attempts < 3, "issue failed: {said}");
    };
    let issued = std::fs::read(tls.join("fullchain.pem")).unwrap();
    assert!(
        x509(&issued, "-issuer").contains("Pebble"),
        "{}",
        x509(&issued, "-issuer")
    );
    let key = tls.join("privkey.pem");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions()) & 0o777
    };
    assert_eq!((mode(&tls), mode(&key)), (0o700, 0o600));
    // The temporary server is gone with the script.
    assert!(TcpStream::connect(("127.0.0.1", http_port)).is_err());
}

/// `supervisor alerts --json`: the newest first.
fn alerts(socket: &Path) -> Value {
    let out = Command::new(supervisor_bin())
        .args(["alerts", "--json", "-s"])
        .arg(socket)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// statusd's second line: a certificate about to expire (a renewal that never ran) shows a
/// warning on the page and raises one critical alert through the supervisor, not one a probe.
#[test]
fn a_certificate_about_to_expire_warns_and_raises_one_alert() {
    let supervisor = supervisor();
    let root = supervisor.dir.path();
    let socket = root.join("data/supervisor.sock");
    let (cert, key) = (root.join("fullchain.pem"), root.join("privkey.pem"));
    testkit::self_signed(&cert, &key, DOMAIN, 3);
    let nginx_dir = root.join("nginx");
    std::fs::create_dir(&nginx_dir).unwrap();
    let statusd_port = free_port();
    let nginx = Nginx::start_with(&nginx_dir, free_port(), statusd_port, &cert, &key);
    let mut children = Children::default();
    statusd(&mut children, statusd_port, &socket, nginx.https);
    let tls_alerts = || -> Vec<Value> {
        alerts(&socket)
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["program"] == "tls")
            .cloned()
            .collect()
    };
    wait_until("the expiry alert", || !tls_alerts().is_empty());
    let a = &tls_alerts()[0];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["severity"].as_str(),
            a["critical"].as_bool()
        ),
        (Some("reported"), Some("critical"), Some(true)),
        "{a}"
    );
    let message = a["message"].as_str().unwrap();
    // Three days from the certificate's start: 2 or 3 days left, as the second falls.
    let left = ["expires in 2 days:", "expires in 3 days:"];
    assert!(
        message.contains(DOMAIN) && left.iter().any(|l| message.contains(l)),
        "{message}"
    );
    let page = get(statusd_port, "/");
    assert!(
        page.contains("id=tls>") && left.iter().any(|l| page.contains(l)),
        "{page}"
    );
    // Three more probes: still one alert (the next is due in a day).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tls_alerts().len(), 1, "{:?}", tls_alerts());
}

/// The first certificate of a PEM chain, as `openssl s_client` prints it.
fn served_first(chain: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(chain);
    let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    text[..end].trim_start().as_bytes().to_vec()
}

/// The systemd units scripts/pi-setup installs for the renewal, with the checkout's path put
/// in, pass `systemd-analyze verify`.
#[test]
fn the_renewal_timer_units_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = workspace().canonicalize().unwrap();
    for unit in ["bot-tls-renew.service", "bot-tls-renew.timer"] {
        let text = std::fs::read_to_string(checkout.join("deploy/systemd").join(unit)).unwrap();
        std::fs::write(
            dir.path().join(unit),
            text.replace("@CHECKOUT@", &checkout.display().to_string()),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("bot-tls-renew.timer"))
        .arg(dir.path().join("bot-tls-renew.service"))
        .output()
        .expect("systemd-analyze: install Debian's systemd (scripts/test does, as root)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// certbot's deploy hook (`deployed`) runs as root and writes the key into TLS_DIR: a link
/// planted there is never followed, and a folder others could plant one in is refused.
#[test]
fn the_key_is_never_written_through_a_planted_link() {
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lineage = root.join("lineage");
    std::fs::create_dir(&lineage).unwrap();
    std::fs::write(lineage.join("privkey.pem"), "the new key\n").unwrap();
    std::fs::write(lineage.join("fullchain.pem"), "the new chain\n").unwrap();
    let victim = root.join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let deployed = |tls: &Path| {
        let mut cmd = Command::new(workspace().join("scripts/tls-certificate"));
        cmd.arg("deployed")
            .env("RENEWED_LINEAGE", &lineage)
            .env("TLS_DIR", tls)
            .env("TLS_COPY_ONLY", "1")
            .env("NGINX", "false")
            .env("SUPERVISOR", "false");
        run(&mut cmd)
    };
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    // Links where the key and the certificate go, and where the old script put its copies.
    let tls = root.join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o700)).unwrap();
    for name in [
        "privkey.pem",
        "fullchain.pem",
        ".privkey.pem.new",
        ".fullchain.pem.new",
    ] {
        symlink(&victim, tls.join(name)).unwrap();
    }
    assert!(deployed(&tls).status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let key = tls.join("privkey.pem");
    assert!(!key.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "the new key\n");
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(tls.join("fullchain.pem")).unwrap(),
        "the new chain\n"
    );
    // A folder others may write into: refused, nothing written.
    let open = root.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = deployed(&open);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("others may write into it"),
        "{}",
        stderr(&out)
    );
    assert!(!open.join("privkey.pem").exists());
    // TLS_DIR itself a link: refused.
    let linked = root.join("linked");
    symlink(&open, &linked).unwrap();
    let out = deployed(&linked);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a symbolic link"),
        "{}",
        stderr(&out)
    );
    // A folder of another user's (root only can make one).
    if testkit::supervisor::is_root() {
        let theirs = root.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let out = deployed(&theirs);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("belongs to uid 65534"),
            "{}",
            stderr(&out)
        );
        assert!(!theirs.join("privkey.pem").exists());
    }
}
