//! `[program.NAME.deploy]`: where a program's code comes from and how it is built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::config::{DeployConfig, Download, ProgramName};

use super::accounts::resolve_user;
use super::values::{Env, Value, Walker, set};

pub(super) const DEPLOY_KEYS: &[&str] = &[
    "repo",
    "remote",
    "url",
    "branch",
    "steps",
    "step_timeout",
    "artifact",
    "artifact_url",
    "signing_key",
    "signing_key_file",
    "artifact_wait",
    "artifact_max_size",
    "releases",
    "keep_releases",
    "healthy_after",
    "user",
    "pass_env",
    "environment",
    "poll",
    "retry_failed_after",
];

impl Walker<'_> {
    pub(super) fn deploy(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
        name: &ProgramName,
        startsecs: Duration,
    ) -> Option<DeployConfig> {
        let t = self.table(v, path)?;
        let errors_before = self.errors.len();
        let mut d = DeployConfig {
            repo: PathBuf::new(),
            remote: "origin".into(),
            url: None,
            branch: "main".into(),
            steps: Vec::new(),
            step_timeout: Duration::from_secs(15 * 60),
            artifact: None,
            download: None,
            releases: self.base.join("data/releases").join(name.as_str()),
            keep_releases: 5,
            healthy_after: startsecs,
            user: None,
            pass_env: Vec::new(),
            environment: Vec::new(),
            poll: None,
            retry_failed_after: Duration::from_secs(10 * 60),
        };
        let mut have_repo = false;
        // `artifact_url` and what goes with it, checked together after the loop.
        let mut url: Option<(String, std::ops::Range<usize>)> = None;
        let mut key: Option<(String, std::ops::Range<usize>, String)> = None;
        let mut wait = Duration::from_secs(30 * 60);
        let mut max_size: u64 = 512 << 20;
        let mut download_only: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        // An unusable artifact_url is one error, not also "missing repo" and the like.
        let mut url_given = false;
        for (k, kname, kpath, value) in self.entries(t, path, DEPLOY_KEYS) {
            match kname {
                "repo" => {
                    if let Some(r) = self.string(value, &kpath, env) {
                        d.repo = self.resolve(&r);
                        have_repo = true;
                    }
                }
                "remote" => set(&mut d.remote, self.git_name(value, &kpath, env)),
                "url" => {
                    if let Some(u) = self.git_name(value, &kpath, env) {
                        match check_git_url(&u) {
                            Ok(()) => d.url = Some(u),
                            Err(message) => self.error(value.span(), &kpath, message),
                        }
                    }
                }
                "branch" => set(&mut d.branch, self.git_name(value, &kpath, env)),
                "steps" => {
                    let DeValue::Array(items) = value.get_ref() else {
                        self.type_error(
                            value,
                            &kpath,
                            "an array of commands (each an array of strings)",
                        );
                        continue;
                    };
                    let mut steps = Vec::new();
                    for item in items.iter() {
                        if let Some(argv) = self.argv(item, &kpath, env) {
                            steps.push(argv);
                        }
                    }
                    d.steps = steps;
                }
                "step_timeout" => set(&mut d.step_timeout, self.duration(value, &kpath)),
                "artifact" => {
                    if let Some(a) = self.string(value, &kpath, env) {
                        if Path::new(&a).is_absolute() || a.split('/').any(|c| c == "..") {
                            self.error(
                                value.span(),
                                &kpath,
                                "must be a path inside the repository",
                            );
                        } else {
                            d.artifact = Some(PathBuf::from(a));
                        }
                    }
                }
                "artifact_url" => {
                    url_given = true;
                    if let Some(u) = self.string(value, &kpath, env) {
                        match check_artifact_url(&u) {
                            Ok(()) => url = Some((u, value.span())),
                            Err(message) => self.error(value.span(), &kpath, message),
                        }
                    }
                }
                "signing_key" | "signing_key_file" => {
                    download_only.push((kpath.clone(), value.span()));
                    let Some(text) = self.string(value, &kpath, env) else {
                        continue;
                    };
                    if let Some((_, _, first)) = &key {
                        let message = format!("{first} is set already: name the key once");
                        self.error(value.span(), &kpath, message);
                        continue;
                    }
                    let parsed = if kname == "signing_key" {
                        minisign_key(&text)
                    } else {
                        let file = self.resolve(&text);
                        std::fs::read_to_string(&file)
                            .map_err(|e| format!("cannot read it: {e}"))
                            .and_then(|t| minisign_key_file(&t))
                            .map_err(|m| format!("{}: {m}", file.display()))
                    };
                    match parsed {
                        Ok(k) => key = Some((k, value.span(), kname.to_owned())),
                        Err(message) => self.error(value.span(), &kpath, message),
                    }
                }
                "artifact_wait" => {
                    download_only.push((kpath.clone(), value.span()));
                    set(&mut wait, self.duration(value, &kpath));
                }
                "artifact_max_size" => {
                    download_only.push((kpath.clone(), value.span()));
                    match self.bytes(value, &kpath) {
                        Some(0) => self.error(value.span(), &kpath, "must be more than 0"),
                        Some(n) => max_size = n,
                        None => {}
                    }
                }
                "releases" => {
                    if let Some(r) = self.string(value, &kpath, env) {
                        d.releases = self.resolve(&r);
                    }
                }
                "keep_releases" => set(
                    &mut d.keep_releases,
                    self.integer(value, &kpath, 1, 1000).map(|n| n as u32),
                ),
                "healthy_after" => set(&mut d.healthy_after, self.duration(value, &kpath)),
                "retry_failed_after" => {
                    set(&mut d.retry_failed_after, self.duration(value, &kpath))
                }
                "poll" => match self.expanded_duration(value, &kpath, env) {
                    Some(p) if p.is_zero() => d.poll = None,
                    Some(p) if p < Duration::from_secs(1) => self.error(
                        value.span(),
                        &kpath,
                        "must be at least 1s (or 0: no polling)",
                    ),
                    Some(p) => d.poll = Some(p),
                    None => {}
                },
                "user" => {
                    if let Some(u) = self.string(value, &kpath, env) {
                        match resolve_user(&u) {
                            Ok(spec) => d.user = Some(spec),
                            Err(message) => self.error(value.span(), &kpath, message),
                        }
                    }
                }
                "pass_env" => set(&mut d.pass_env, self.pass_env(value, &kpath, env)),
                "environment" => d.environment = self.environment(value, &kpath, env),
                _ => self.unknown_key(k, &kpath, DEPLOY_KEYS),
            }
        }
        match (url, key) {
            (Some((url, span)), key) => {
                // A prebuilt release: nothing is built here, and nothing unsigned runs.
                for (k, what) in [
                    ("steps", !d.steps.is_empty()),
                    ("artifact", d.artifact.is_some()),
                ] {
                    if what {
                        let message = format!(
                            "artifact_url downloads a prebuilt release; {k} builds one here: set one or the other"
                        );
                        self.error(span.clone(), &format!("{path}.{k}"), message);
                    }
                }
                match key {
                    Some((signing_key, _, _)) => {
                        d.download = Some(Download {
                            url,
                            signing_key,
                            wait,
                            max_size,
                        })
                    }
                    // A key was named but is unusable: that error is said already.
                    None if download_only.iter().any(|(k, _)| k.contains(".signing_key")) => {}
                    None => self.error(
                        span.clone(),
                        &format!("{path}.artifact_url"),
                        "needs signing_key (or signing_key_file): the minisign public key every release must be signed with",
                    ),
                }
                if !have_repo && d.url.is_none() {
                    self.error(
                        span,
                        &format!("{path}.artifact_url"),
                        "needs url (or repo): where `git ls-remote` learns the branch tip when a deploy does not name its commit",
                    );
                }
                have_repo = true;
            }
            (None, _) if url_given => have_repo = true,
            (None, _) => {
                for (kpath, span) in download_only {
                    self.error(span, &kpath, "only with artifact_url");
                }
            }
        }
        if !have_repo {
            self.error(
                v.span(),
                path,
                "missing \"repo\" (the git working tree to deploy from)",
            );
        }
        // A step runs in `repo`: a relative program path with a slash (`.venv/bin/pip`) is the
        // repository's, not the config file's folder's.
        for argv in &mut d.steps {
            if argv[0].contains('/') && !argv[0].starts_with('/') {
                argv[0] = d.repo.join(&argv[0]).to_string_lossy().into_owned();
            }
        }
        (self.errors.len() == errors_before).then_some(d)
    }

    /// A remote or branch name: passed to git as one argument, never through a shell; it may
    /// not look like an option.
    pub(super) fn git_name(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<String> {
        let s = self.string(v, path, env)?;
        if s.is_empty() || s.starts_with('-') || s.contains(char::is_whitespace) {
            self.error(v.span(), path, format!("{s:?} is not a usable git name"));
            return None;
        }
        Some(s)
    }
}

/// Looks a user up by name or numeric uid, with its supplementary groups.
/// Where a deploy may fetch from: `https://`, `http://`, `ssh://`, `git://`, `file://`, scp-like
/// `user@host:path`, or a path. Never a transport helper (`ext::` runs a command, `fd::` reads
/// descriptors); git is also run with `GIT_ALLOW_PROTOCOL`, so this is the early, clear error.
pub(super) fn check_git_url(url: &str) -> Result<(), String> {
    const SCHEMES: &[&str] = &["https://", "http://", "ssh://", "git://", "file://"];
    if url.contains("::") {
        return Err(format!(
            "{url:?} names a git transport helper; use an https://, ssh:// or git:// URL, or a path"
        ));
    }
    match url.split_once("://") {
        Some(_) if SCHEMES.iter().any(|s| url.starts_with(s)) => Ok(()),
        Some((scheme, _)) => Err(format!(
            "{scheme}:// is not a scheme deploys fetch from (https, http, ssh, git, file)"
        )),
        None => Ok(()),
    }
}

/// `artifact_url`: an http(s) URL whose only `{...}` are the ones a deploy fills in.
pub(super) fn check_artifact_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("{url:?} is not an https:// or http:// URL"));
    }
    if url.contains(char::is_whitespace) {
        return Err(format!("{url:?} holds a space"));
    }
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{url:?}: a {{ without its }}"));
        };
        let name = &rest[open + 1..open + close];
        if !crate::deploy::url::PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "{{{name}}} is not a placeholder of artifact_url (known: {})",
                crate::deploy::url::PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// A minisign public key as its base64 line (`RW...`), checked.
fn minisign_key(text: &str) -> Result<String, String> {
    let text = text.trim();
    minisign_verify::PublicKey::from_base64(text)
        .map(|_| text.to_owned())
        .map_err(|_| {
            format!(
                "{text:?} is not a minisign public key (the base64 line of minisign.pub, RW...)"
            )
        })
}

/// The key in a `minisign.pub` file: its last line, after the untrusted comment.
fn minisign_key_file(text: &str) -> Result<String, String> {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or("holds no minisign public key")?;
    minisign_key(line)
}
