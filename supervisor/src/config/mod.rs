//! `supervisor.toml`: what the daemon runs and how.
//!
//! Parsing walks the TOML document with its source spans, so that every problem is reported with
//! the file, line and key it concerns, and all of them at once (see [`ConfigErrors`]).
//!
//! # Layout
//! - [`parse`]: the spanned walk from TOML text to [`Config`], and cross-program validation.
//! - [`expand`]: `${VAR}` / `${VAR:-default}` expansion and `.env` files.
//! - [`units`]: durations, byte sizes and signal names as written in the file.
//! - [`text`]: reading a configuration file's text (shared with [`crate::import`]).
//! - [`address`]: listen addresses as supervisord writes them (shared with [`crate::import`]).
//! - [`environ`]: what a child's environment holds, and as which account it runs.
//! - [`health`]: the health keys' types (`ready`, `healthcheck`, `watchdog`, `start_limit`).
//! - [`limits`]: `rlimits`, `oom_score_adj` and `limits` (memory and CPU ceilings).
//! - [`schedule`]: `schedule`, a program run at set times.

pub mod address;
pub mod environ;
pub mod expand;
pub mod health;
pub mod limits;
pub mod parse;
pub mod schedule;
pub mod text;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

pub use parse::{parse, parse_with_env};
use text::read_text;

pub use supervisor_proto::ProgramName;

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    pub supervisor: SupervisorSection,
    pub control: ControlSection,
    /// Programs in start order: by `priority`, then by name.
    pub programs: Vec<ProgramConfig>,
    /// What is valid but probably not meant (a grant naming a program that is not
    /// configured): logged at start, listed by `check`, refused by `check --strict`.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    pub fn program(&self, name: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name.as_str() == name)
    }
}

/// `[supervisor]`: the daemon's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorSection {
    /// A file the supervisor writes its pid to while it runs (supervisord's `pidfile`).
    pub pidfile: Option<PathBuf>,
    /// The user the supervisor switches to at start (supervisord's `user`); it must be root.
    pub user: Option<String>,
    pub logdir: PathBuf,
    pub socket: PathBuf,
    /// Upper bound on a graceful shutdown; everything still alive then is killed.
    pub shutdown_timeout: Duration,
    /// Variables for `${VAR}` expansion and for every program's environment (the real
    /// environment wins over it).
    pub env_file: Option<PathBuf>,
    /// Permission bits of the control socket.
    pub socket_mode: u32,
    /// Group that owns the control socket (name and gid), so its members can connect.
    pub socket_group: Option<(String, u32)>,
    /// Group that may read the logs, deploy records and audit trail from disk. Separate from
    /// [`Self::socket_group`]: connecting to the socket is checked per verb, reading the files
    /// is not, so the programs that may connect do not get the files with it.
    pub files_group: Option<(String, u32)>,
    /// Deploy history and logs (`NAME.jsonl`, `NAME/<id>.log`).
    pub deploydir: PathBuf,
    /// What must outlive the supervisor besides deploys: each program's recent start times
    /// (`starts/NAME`), so that `start_limit` holds across restarts of the container.
    pub statedir: PathBuf,
    /// How programs' output is copied to the supervisor's stdout (`echo_output`).
    pub echo_format: EchoFormat,
}

/// `[supervisor] echo_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EchoFormat {
    /// `name | line`.
    #[default]
    Text,
    /// One JSON object a line: `{"timestamp":..,"program":..,"stream":..,"line":..}`, for log
    /// shippers (with `run --log-format json`, the supervisor's own lines are JSON too).
    Json,
}

/// `[control]`: who may use the control socket beyond root and the supervisor's own user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlSection {
    /// Verb → who is granted it (`[control.allow] status = ["statusd", "hookd"]`,
    /// `deploy = ["hookd:bot"]`).
    pub allow: std::collections::BTreeMap<supervisor_proto::Verb, Vec<Grant>>,
    /// `[control.http]`: supervisord's XML-RPC on a TCP port too (its `[inet_http_server]`).
    pub http: Option<HttpControl>,
}

/// supervisord's XML-RPC on TCP, with its basic authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpControl {
    pub listen: std::net::SocketAddr,
    /// `username` and `password`: the password as written, plain or supervisord's `{SHA}`
    /// and the hex of its SHA-1. `None` only on a loopback address.
    pub credentials: Option<(String, String)>,
    /// Whose grants a client gets once it is let in (`user`): by default the supervisor's
    /// own, every verb, as supervisord's port gives.
    pub uid: Option<u32>,
}

/// One entry of `[control.allow]`: a uid, and the programs it may name (None: any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub uid: u32,
    pub programs: Option<Vec<String>>,
}

/// `autorestart`, with supervisord's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoRestart {
    Always,
    Never,
    /// Restart only when the exit code is not listed in `exitcodes`.
    Unexpected,
}

/// `on_fatal`: what a program reaching FATAL does to the whole supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFatal {
    Ignore,
    /// Shut everything down and exit non-zero: the container's orchestrator then decides.
    Shutdown,
}

/// `backoff = { initial, max, multiplier, jitter, reset }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction (0..=1) by which each delay is randomly stretched or shrunk.
    pub jitter: f64,
    /// A program that stayed RUNNING this long has recovered: its next restart is immediate.
    pub reset: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.1,
            reset: Duration::from_secs(60),
        }
    }
}

/// Where one output stream of a program goes on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct LogTarget {
    /// `None` when the file is `"NONE"`: the output is read (and echoed) but not kept.
    pub path: Option<PathBuf>,
    /// Rotate before the file would grow past this; 0 never rotates.
    pub maxbytes: u64,
    /// How many rotated files (`name.log.1` ...) to keep.
    pub backups: u32,
}

/// The user a program runs as, resolved when the configuration is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The home folder from the password database (the child's `HOME`).
    pub home: String,
}

/// The part of a program's configuration that drives its lifecycle (crate::lifecycle), with
/// supervisord's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub startsecs: Duration,
    pub startretries: u32,
    pub autorestart: AutoRestart,
    pub exitcodes: Vec<i32>,
    pub fatal_exitcodes: Vec<i32>,
    pub stopsignal: Signal,
    pub stopwaitsecs: Duration,
    pub backoff: Backoff,
    /// `Some(ready_timeout)` when RUNNING waits for the program's `ready` rule rather than
    /// `startsecs` (set from `ready` and `ready_timeout` once the program is read).
    pub ready_timeout: Option<Duration>,
    pub start_limit: Option<health::StartLimit>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            startsecs: Duration::from_secs(1),
            startretries: 3,
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            fatal_exitcodes: Vec::new(),
            stopsignal: Signal::SIGTERM,
            stopwaitsecs: Duration::from_secs(10),
            backoff: Backoff::default(),
            ready_timeout: None,
            start_limit: None,
        }
    }
}

/// One `[program.NAME]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramConfig {
    pub name: ProgramName,
    pub command: Vec<String>,
    pub directory: Option<PathBuf>,
    /// What its configuration sets, in the order they apply (the global `env_file`'s variables
    /// that `pass_env` names, its `env_file`, then `environment`); see [`environ`].
    pub environment: Vec<(String, String)>,
    /// The supervisor's variables it receives beyond [`environ::BASE`] (names, `PREFIX*`, `*`).
    pub pass_env: Vec<String>,
    pub user: Option<UserSpec>,
    /// Folders made before each start and owned by `user` (systemd's `StateDirectory=`).
    pub state_dirs: Vec<PathBuf>,
    pub autostart: bool,
    /// How it is started, restarted and stopped: what the lifecycle reads.
    pub policy: Policy,
    pub priority: i32,
    pub redirect_stderr: bool,
    pub stdout: LogTarget,
    pub stderr: LogTarget,
    pub depends_on: Vec<ProgramName>,
    pub on_fatal: OnFatal,
    pub echo_output: bool,
    /// supervisord's process group: `status web:*` names every program of group `web`.
    pub group: Option<String>,
    /// `[program.NAME.deploy]`: how `deploy NAME` updates it from git.
    pub deploy: Option<DeployConfig>,
    /// statusd's `/health` fails while a critical program is not RUNNING and healthy.
    pub critical: bool,
    /// When it counts as RUNNING (`startsecs`, `READY=1`, a log line, a probe).
    pub ready: health::Ready,
    /// Not ready by then is a failed start (only when `ready` waits for something).
    pub ready_timeout: Duration,
    pub healthcheck: Option<health::HealthCheck>,
    /// Once RUNNING, no `WATCHDOG=1` on its notify socket within this is unhealthy.
    pub watchdog: Option<Duration>,
    /// `events`: an event listener, which gets the supervisor's events on its stdin
    /// (supervisord's `[eventlistener:x]`).
    pub listener: Option<crate::listener::ListenerConfig>,
    /// Resource limits set in the child before `exec`.
    pub rlimits: Vec<limits::Rlimit>,
    /// Its place in the OOM killer's order, -1000 (never) to 1000 (first).
    pub oom_score_adj: i32,
    /// Memory and CPU ceilings on its process group, watched from outside.
    pub limits: limits::Ceilings,
    /// Run at set times (a job) instead of kept running.
    pub schedule: Option<schedule::Schedule>,
}

/// `[program.NAME.deploy]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployConfig {
    /// The git working tree (a clone of the remote).
    pub repo: PathBuf,
    pub remote: String,
    /// Where to fetch from instead of the configured remote; and when `repo` is not a git
    /// repository yet, the first deploy creates it (`git init`) and fetches from here.
    pub url: Option<String>,
    pub branch: String,
    /// Build steps run in the working tree after checkout, each without a shell.
    pub steps: Vec<Vec<String>>,
    /// Each git command and step is killed (with its process group) after this.
    pub step_timeout: Duration,
    /// What the build produced (relative to `repo`): copied into `releases/<commit>/`, and
    /// `releases/current` switched to it atomically. Without it, the working tree itself is what
    /// the program runs.
    pub artifact: Option<PathBuf>,
    /// Prebuilt, signed releases downloaded instead of built (`artifact_url`): no repository,
    /// no steps.
    pub download: Option<Download>,
    pub releases: PathBuf,
    pub keep_releases: u32,
    /// How long the new version must stay RUNNING to pass; by default the program's `startsecs`.
    pub healthy_after: Duration,
    /// Who runs git, the build steps and the release copy: `deploy.user`, else the program's
    /// `user`, else the supervisor's. Never root when the program itself is not.
    pub user: Option<UserSpec>,
    /// The steps' environment beyond [`environ::BASE`], as for a program (no `env_file`: a
    /// build runs code pushed by the forge, and gets no secret unless named here).
    pub pass_env: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// Ask the remote for the branch tip this often (`git ls-remote`) and deploy when it moved:
    /// for a machine no forge's webhook can reach.
    pub poll: Option<Duration>,
    /// A commit whose deploy failed (a step, the switch) is not built again for this long
    /// unless forced: a forge that redelivers, or a replayed GitLab token, cannot make the
    /// machine rebuild a broken tip over and over. Zero: no hold.
    pub retry_failed_after: Duration,
}

impl DeployConfig {
    /// Where the deploy's steps run: the repository, or with `artifact_url` (which may have
    /// none) the releases folder.
    pub fn step_directory(&self) -> &Path {
        match self.download {
            Some(_) if self.repo.as_os_str().is_empty() => &self.releases,
            _ => &self.repo,
        }
    }
}

/// Where a prebuilt release is downloaded from and who must have signed it (`artifact_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    /// The release's URL, with `{commit}`, `{short}`, `{branch}`, `{arch}` and `{debian_arch}`
    /// still in it; its signature is the same URL with `.minisig` appended.
    pub url: String,
    /// The minisign public key (its base64 line) that must have signed every release.
    pub signing_key: String,
    /// How long to wait for the release to appear (the forge's CI may still be building it).
    pub wait: Duration,
    /// A larger download is refused; what it unpacks to may be four times this.
    pub max_size: u64,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a line (an unreadable file).
    pub line: usize,
    /// Dotted key path such as `program.bot.startsecs`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{file}: {}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.key, self.message),
            (line, true) => write!(f, "{file}:{line}: {}", self.message),
            (line, false) => write!(f, "{file}:{line}: {}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a configuration, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads and validates the file at `path` against the real environment: a `supervisor.toml`,
/// or a supervisord configuration (recognised by its content), converted in memory as
/// `supervisor import` converts it.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    Ok(load_reporting(path)?.0)
}

/// As [`load`], with what a converted supervisord configuration could not carry over (empty
/// for `supervisor.toml`).
pub fn load_reporting(path: &Path) -> Result<(Config, Vec<crate::import::Finding>), ConfigErrors> {
    let text = read_text(path).map_err(|(line, message)| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line,
            key: String::new(),
            message,
        }])
    })?;
    if !crate::import::is_supervisord(&text) {
        return Ok((parse(path, &text)?, Vec::new()));
    }
    let imported = crate::import::import(path).map_err(|e| {
        let (file, line, key, message) = match e {
            crate::import::ImportError::Ini(e) => (e.file, e.line, String::new(), e.message),
            crate::import::ImportError::Invalid {
                file,
                line,
                what,
                message,
            } => (file, line, what, message),
        };
        ConfigErrors(vec![ConfigError {
            file,
            line,
            key,
            message,
        }])
    })?;
    // Problems found in the converted text, named where they are in the original: the option
    // (or section) they came from. Relative paths are the working directory's, as supervisord
    // reads them.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let config = parse::parse_in(path, &imported.toml, &cwd).map_err(|mut errors| {
        for e in &mut errors.0 {
            let converted = e.line;
            if let Some((file, line)) = imported.origin(&e.key) {
                e.file = file;
                e.line = line;
            }
            e.message = format!(
                "{} (as converted: line {converted} of `supervisor import {}`)",
                e.message,
                path.display()
            );
        }
        errors
    })?;
    Ok((config, imported.findings))
}
