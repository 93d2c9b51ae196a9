//! hookd's settings, all from the environment (documented in docs/HOOKD.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::signature::Secret;
use crate::source::{Sources, parse_networks};

#[derive(Debug)]
pub struct Settings {
    /// `HOOKD_LISTEN`, default `127.0.0.1:5000`.
    pub listen: SocketAddr,
    /// `HOOKD_SECRET`, or the contents of the file `HOOKD_SECRET_FILE` names.
    pub secret: Secret,
    /// `HOOKD_GITLAB_TOKEN` or `HOOKD_GITLAB_TOKEN_FILE`: the token GitLab sends; without it
    /// GitLab's deliveries are refused.
    pub gitlab_token: Option<Secret>,
    /// `HOOKD_PROGRAM`, default `bot`: what `POST /webhook` deploys.
    pub program: String,
    /// `HOOKD_BRANCH`; by default the program's deploy branch, which the supervisor checks
    /// with the deploy request.
    pub branch: Option<String>,
    /// `SUPERVISOR_SOCKET`, default `data/supervisor.sock`.
    pub socket: PathBuf,
    /// `HOOKD_BODY_LIMIT` in bytes, default 1 MiB.
    pub body_limit: usize,
    /// `HOOKD_ALLOW_FROM` (networks that may deliver; default any) and
    /// `HOOKD_TRUSTED_PROXIES` (whose `X-Forwarded-For` is believed; default none).
    pub sources: Sources,
    /// `HOOKD_PEERS`: other replicas' hookd, `HOST:PORT` each, comma-separated (a name may stand
    /// for several, such as Swarm's `tasks.bot:5000`). A verified push is relayed to every
    /// address they resolve to, which verifies it again; empty (the default): no relay.
    pub peers: Vec<String>,
}

/// A program name as the supervisor accepts it (supervisor-proto's one rule).
pub fn valid_program(name: &str) -> bool {
    supervisor_proto::ProgramName::new(name).is_ok()
}

/// A secret from the variable `NAME`, or from the file `NAME_FILE` names; `Ok(None)` when
/// neither is set (or both are empty).
fn secret_from(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<Secret>, String> {
    if let Some(s) = env(name).filter(|s| !s.is_empty()) {
        return Ok(Secret::new(s.into_bytes()));
    }
    let Some(path) = env(&format!("{name}_FILE")).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {name}_FILE {path}: {e}"))?;
    // A trailing newline from `echo secret > file` is not part of the secret.
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    Secret::new(trimmed.to_vec())
        .map(Some)
        .ok_or_else(|| format!("{name}_FILE {path} is empty"))
}

impl Settings {
    /// Reads the settings through `env`; every problem is reported at once.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut problems = Vec::new();
        let listen = env("HOOKD_LISTEN").unwrap_or_else(|| "127.0.0.1:5000".into());
        let listen = listen
            .parse()
            .map_err(|_| {
                problems.push(format!(
                    "HOOKD_LISTEN={listen:?} is not an address such as 127.0.0.1:5000"
                ))
            })
            .ok();
        let secret = match secret_from(env, "HOOKD_SECRET") {
            Ok(Some(secret)) => Some(secret),
            Ok(None) => {
                problems.push(
                    "no webhook secret: set HOOKD_SECRET or HOOKD_SECRET_FILE (the same secret as in the forge's webhook settings)"
                        .into(),
                );
                None
            }
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let gitlab_token = secret_from(env, "HOOKD_GITLAB_TOKEN").unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        if matches!((&secret, &gitlab_token), (Some(s), Some(t)) if s.same_as(t)) {
            problems.push("HOOKD_GITLAB_TOKEN must differ from HOOKD_SECRET: GitLab sends its token in clear with every delivery, and the HMAC secret of the other forges must never travel".into());
        }
        let program = env("HOOKD_PROGRAM").unwrap_or_else(|| "bot".into());
        if !valid_program(&program) {
            problems.push(format!("HOOKD_PROGRAM={program:?} is not a program name"));
        }
        let branch = env("HOOKD_BRANCH").filter(|b| !b.is_empty());
        let socket = PathBuf::from(
            env("SUPERVISOR_SOCKET").unwrap_or_else(|| "data/supervisor.sock".into()),
        );
        let body_limit = match env("HOOKD_BODY_LIMIT") {
            None => 1 << 20,
            Some(v) => v.parse().unwrap_or_else(|_| {
                problems.push(format!("HOOKD_BODY_LIMIT={v:?} is not a number of bytes"));
                0
            }),
        };
        let mut networks = |name: &str| {
            parse_networks(name, &env(name).unwrap_or_default()).unwrap_or_else(|e| {
                problems.push(e);
                Vec::new()
            })
        };
        let sources = Sources {
            allow: networks("HOOKD_ALLOW_FROM"),
            trusted_proxies: networks("HOOKD_TRUSTED_PROXIES"),
        };
        let mut peers = Vec::new();
        for peer in env("HOOKD_PEERS").unwrap_or_default().split(',') {
            let peer = peer.trim();
            if peer.is_empty() {
                continue;
            }
            match peer.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty()
                        && !host.contains(['/', ' '])
                        && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    peers.push(peer.to_owned())
                }
                _ => problems.push(format!(
                    "HOOKD_PEERS: {peer:?} is not HOST:PORT, such as tasks.bot:5000"
                )),
            }
        }
        match (listen, secret) {
            (Some(listen), Some(secret)) if problems.is_empty() => Ok(Self {
                listen,
                secret,
                gitlab_token,
                program,
                branch,
                socket,
                body_limit,
                sources,
                peers,
            }),
            _ => Err(problems.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Settings::from_env(&|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let s = from(&[("HOOKD_SECRET", "s3cret")]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(s.program, "bot");
        assert_eq!(s.branch, None);
        assert_eq!(s.body_limit, 1 << 20);
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "the secret never shows"
        );
    }

    #[test]
    fn refuses_a_missing_or_empty_secret_and_says_everything() {
        assert_eq!(
            from(&[]).unwrap_err(),
            "no webhook secret: set HOOKD_SECRET or HOOKD_SECRET_FILE (the same secret as in the forge's webhook settings)"
        );
        assert!(from(&[("HOOKD_SECRET", "")]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "\n").unwrap();
        let e = from(&[("HOOKD_SECRET_FILE", file.to_str().unwrap())]).unwrap_err();
        assert!(e.ends_with("is empty"), "{e}");
        std::fs::write(&file, "from-file\n").unwrap();
        assert!(from(&[("HOOKD_SECRET_FILE", file.to_str().unwrap())]).is_ok());
        let e = from(&[("HOOKD_LISTEN", "nowhere"), ("HOOKD_PROGRAM", "a b")]).unwrap_err();
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn a_gitlab_token_is_its_own_setting() {
        assert!(
            from(&[("HOOKD_SECRET", "s")])
                .unwrap()
                .gitlab_token
                .is_none()
        );
        let s = from(&[("HOOKD_SECRET", "s"), ("HOOKD_GITLAB_TOKEN", "t")]).unwrap();
        assert!(
            s.gitlab_token
                .is_some_and(|t| t.same_as(&Secret::new(b"t".to_vec()).unwrap()))
        );
        let e = from(&[("HOOKD_SECRET", "s"), ("HOOKD_GITLAB_TOKEN", "s")]).unwrap_err();
        assert!(
            e.starts_with("HOOKD_GITLAB_TOKEN must differ from HOOKD_SECRET"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let s = from(&[
            ("HOOKD_SECRET", "s"),
            ("HOOKD_GITLAB_TOKEN_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert!(
            s.gitlab_token
                .is_some_and(|t| t.same_as(&Secret::new(b"from-file".to_vec()).unwrap()))
        );
        let e = from(&[
            ("HOOKD_SECRET", "s"),
            ("HOOKD_GITLAB_TOKEN_FILE", "/nonexistent/token"),
        ])
        .unwrap_err();
        assert!(
            e.starts_with("cannot read HOOKD_GITLAB_TOKEN_FILE /nonexistent/token"),
            "{e}"
        );
    }

    #[test]
    fn peers_are_host_and_port() {
        let s = from(&[
            ("HOOKD_SECRET", "s"),
            ("HOOKD_PEERS", " tasks.bot:5000, 10.0.0.7:5000,"),
        ])
        .unwrap();
        assert_eq!(s.peers, ["tasks.bot:5000", "10.0.0.7:5000"]);
        assert!(from(&[("HOOKD_SECRET", "s")]).unwrap().peers.is_empty());
        for bad in ["tasks.bot", "http://bot:5000", ":5000", "bot:0", "bot:x"] {
            let e = from(&[("HOOKD_SECRET", "s"), ("HOOKD_PEERS", bad)]).unwrap_err();
            assert!(e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
    }
}
