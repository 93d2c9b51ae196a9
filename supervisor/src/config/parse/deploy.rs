//! `[program.NAME.deploy]`: where a program's code comes from and how it is built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::config::{DeployConfig, ProgramName};

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
        for (k, value) in t.iter() {
            let kname = k.get_ref().as_ref();
            let kpath = format!("{path}.{kname}");
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
