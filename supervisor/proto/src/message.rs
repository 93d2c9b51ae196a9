//! Every message of the protocol. `docs/PROTOCOL.md` shows each as JSON; a test decodes them.
//!
//! Why this file is past 600 lines: it is the protocol's one list of requests, answers, events
//! and records, read side by side with docs/PROTOCOL.md; the vocabulary and the client are
//! already files of their own.

use serde::{Deserialize, Serialize};

use crate::vocabulary::{
    AlertKind, DeployKind, DeployResult, DeployStage, ProgramState, Severity, Verb,
};

/// The version spoken by this crate. A server answers a hello of another version with an
/// `unsupported_version` error and closes the connection.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame a client sends: `{"hello":{"protocol":1,"client":"supervisor-cli/0.1.0"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    pub hello: HelloBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloBody {
    pub protocol: u32,
    /// Who is asking, for the daemon's log (`hookd/0.1.0`).
    pub client: String,
}

/// The server's answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub hello: ServerHelloBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHelloBody {
    pub protocol: u32,
    /// `supervisor/0.1.0`.
    pub server: String,
    /// The supervisor's pid (1 in a container).
    pub pid: u32,
}

/// A request with the id its answer will carry: `{"id":1,"verb":"status","names":[]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    /// Whom the client acts for, when not for itself (the bot: `discord: NAME (ID)`); kept in
    /// the audit trail beside the peer's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client can ask. Program lists may name programs or be `["all"]`; an empty list means
/// every program where that makes sense (`status`, `pid`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status {
        #[serde(default)]
        names: Vec<String>,
    },
    /// Start and wait until RUNNING (or the start failed).
    Start {
        names: Vec<String>,
    },
    /// Stop and wait until STOPPED.
    Stop {
        names: Vec<String>,
    },
    Restart {
        names: Vec<String>,
    },
    /// Send a signal (`"HUP"`, `"USR1"`, ...) to each program's process.
    Signal {
        signal: String,
        names: Vec<String>,
    },
    Pid {
        #[serde(default)]
        names: Vec<String>,
    },
    /// The last lines of a program's log file.
    Tail {
        name: String,
        #[serde(default)]
        stream: Stream,
        #[serde(default = "default_tail_lines")]
        lines: u32,
    },
    /// Empty programs' log files (stdout and stderr) and delete their rotated backups.
    Clear {
        names: Vec<String>,
    },
    /// What `update` would change; changes nothing.
    Reread,
    /// Apply the configuration file: start added programs, stop removed ones, restart changed
    /// ones; unchanged programs keep running untouched.
    Update,
    /// Read the configuration file and restart every program with it (supervisord's
    /// `restart`, supervisorctl's `reload`): all stopped and brought back, started again if
    /// `autostart`; added and removed ones as `update`. The supervisor itself stays.
    Reload,
    /// Add a program, or a group's programs, from the configuration file that the supervisor
    /// does not have yet (supervisorctl's `add`); they start if `autostart`. Nothing else in
    /// the file is applied.
    Add {
        name: String,
    },
    /// Drop a stopped program, or a stopped group's programs, from the supervisor (supervisorctl's
    /// `remove`), whether the file still has them or not; `add` brings them back.
    Remove {
        name: String,
    },
    /// Subscribe: the answer is `subscribed`, then `event` frames until the client leaves.
    Events,
    Shutdown,
    Version,
    /// Validate the configuration file on disk.
    Check,
    /// Deploy the program from its git branch. While one runs, requests coalesce into a single
    /// follow-up deploy.
    Deploy {
        name: String,
        /// Who asked, for the history (`cli`, `hookd: gitea delivery 4f1c...`).
        #[serde(default)]
        trigger: Option<String>,
        /// Deploy the branch tip even when it is quarantined (it failed its health gate
        /// before).
        #[serde(default, skip_serializing_if = "is_false")]
        force: bool,
        /// The commit the asker knows the branch tip to be (a webhook's `after`): when that
        /// commit is held back (quarantined, or failed within `retry_failed_after`), the
        /// request is refused at once (`refused`), with nothing fetched, recorded or announced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// The branch the asker saw pushed (a webhook's ref): a push to a branch other than the
        /// program's deploy branch is refused at once (`other_branch`), with nothing fetched,
        /// recorded or announced. So one request does what needed a `status` first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
    /// Put the previous release back and restart the program.
    Rollback {
        name: String,
    },
    /// Deploy history, newest first.
    Deploys {
        #[serde(default)]
        names: Vec<String>,
        #[serde(default = "default_deploys_limit")]
        limit: u32,
    },
    /// The audit trail of state-changing requests, newest first.
    Audit {
        #[serde(default = "default_deploys_limit")]
        limit: u32,
    },
    /// Recent alerts, newest first (kept across restarts of the supervisor).
    Alerts {
        #[serde(default = "default_deploys_limit")]
        limit: u32,
    },
    /// Raise an alert about something the supervisor cannot see itself (a certificate renewal
    /// that failed on the host): it goes where the supervisor's own alerts go.
    Raise {
        /// What it is about (`tls`): a name as programs have (letters, digits, `_.-`).
        subject: String,
        message: String,
        #[serde(default = "default_raise_severity")]
        severity: Severity,
        /// Treat it as about a `critical` program (the bot also sends it to owners directly).
        #[serde(default, skip_serializing_if = "is_false")]
        critical: bool,
    },
}

fn default_raise_severity() -> Severity {
    Severity::Warning
}

fn default_deploys_limit() -> u32 {
    20
}

fn default_tail_lines() -> u32 {
    10
}

impl Request {
    /// The programs the request names (`[]` for "every program", as `status` reads it), or
    /// `None` for a verb about no program in particular (`update`, `events`, ...). A grant
    /// narrowed to programs checks these.
    pub fn targets(&self) -> Option<Vec<&str>> {
        match self {
            Request::Status { names }
            | Request::Start { names }
            | Request::Stop { names }
            | Request::Restart { names }
            | Request::Signal { names, .. }
            | Request::Pid { names }
            | Request::Clear { names }
            | Request::Deploys { names, .. } => Some(names.iter().map(String::as_str).collect()),
            Request::Tail { name, .. }
            | Request::Deploy { name, .. }
            | Request::Add { name }
            | Request::Remove { name }
            | Request::Rollback { name } => Some(vec![name.as_str()]),
            Request::Reread
            | Request::Update
            | Request::Reload
            | Request::Audit { .. }
            | Request::Alerts { .. }
            | Request::Raise { .. }
            | Request::Events
            | Request::Shutdown
            | Request::Version
            | Request::Check => None,
        }
    }

    /// The verb's name, as `[control.allow]` and messages spell it.
    pub fn verb(&self) -> Verb {
        match self {
            Request::Status { .. } => Verb::Status,
            Request::Start { .. } => Verb::Start,
            Request::Stop { .. } => Verb::Stop,
            Request::Restart { .. } => Verb::Restart,
            Request::Signal { .. } => Verb::Signal,
            Request::Pid { .. } => Verb::Pid,
            Request::Tail { .. } => Verb::Tail,
            Request::Clear { .. } => Verb::Clear,
            Request::Reread => Verb::Reread,
            Request::Update => Verb::Update,
            Request::Reload => Verb::Reload,
            Request::Add { .. } => Verb::Add,
            Request::Remove { .. } => Verb::Remove,
            Request::Events => Verb::Events,
            Request::Shutdown => Verb::Shutdown,
            Request::Version => Verb::Version,
            Request::Check => Verb::Check,
            Request::Deploy { .. } => Verb::Deploy,
            Request::Rollback { .. } => Verb::Rollback,
            Request::Deploys { .. } => Verb::Deploys,
            Request::Audit { .. } => Verb::Audit,
            Request::Alerts { .. } => Verb::Alerts,
            Request::Raise { .. } => Verb::Raise,
        }
    }

    /// Whether the request changes the running system (and so is kept in the audit trail).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Signal { .. }
                | Request::Clear { .. }
                | Request::Update
                | Request::Reload
                | Request::Add { .. }
                | Request::Remove { .. }
                | Request::Shutdown
                | Request::Deploy { .. }
                | Request::Rollback { .. }
                | Request::Raise { .. }
        )
    }
}

/// One of a program's two output streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

/// Everything the server sends after the hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The id of the request this answers (0 for a frame that answers none, such as an error
    /// about an unreadable frame).
    pub id: u64,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Ok(Reply),
    Error(ErrorBody),
    Event(Event),
}

/// Errors are data: a kind for programs, a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame was not valid JSON or not a known request.
    BadRequest,
    /// A frame over the size limit; the connection is closed after this.
    TooLarge,
    UnsupportedVersion,
    /// The peer's uid is not granted this verb.
    Forbidden,
    UnknownProgram,
    /// The configuration file has errors; the message lists them.
    BadConfig,
    /// The supervisor is shutting down and takes no new work.
    ShuttingDown,
    /// Too many connections (from this uid, or in all); sent once, then the connection closes.
    Busy,
    /// A deploy of a commit that is held back (quarantined, or failed just before).
    Refused,
    /// A deploy of a push to a branch other than the program's deploy branch.
    OtherBranch,
    /// A deploy of a program that has no `[program.NAME.deploy]` table.
    NotDeployable,
    /// `add` of what the supervisor already has.
    AlreadyAdded,
    /// `remove` of a program that is not stopped.
    StillRunning,
    Internal,
}

/// Successful answers, one kind per verb family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Status {
        supervisor: SupervisorInfo,
        programs: Vec<ProgramInfo>,
    },
    /// For start, stop, restart and signal: one result per program.
    Actions {
        results: Vec<ActionResult>,
    },
    Pids {
        supervisor: u32,
        programs: Vec<ProgramPid>,
    },
    Tail {
        name: String,
        stream: Stream,
        /// The file the lines come from (the current one; rotated files are not read).
        path: String,
        text: String,
    },
    Changes {
        added: Vec<String>,
        changed: Vec<String>,
        removed: Vec<String>,
        /// False for `reread`, true for `update`.
        applied: bool,
    },
    Subscribed,
    ShuttingDown,
    Version {
        version: String,
        protocol: u32,
    },
    Check {
        path: String,
        errors: Vec<String>,
    },
    /// A deploy (or rollback) was started, or `queued` behind the running one `id`.
    Deploy {
        program: String,
        id: String,
        queued: bool,
    },
    Deploys {
        records: Vec<DeployRecord>,
    },
    Audit {
        records: Vec<AuditRecord>,
    },
    /// The answer to `alerts`, and to `raise` (the one alert it raised).
    Alerts {
        records: Vec<Alert>,
    },
}

/// Something an owner should hear about: a program down, restarting in a loop, unhealthy, a
/// deploy that failed, and its recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique and sorting by time (`1795520030000-bot-7`): what a poster remembers it by.
    pub id: String,
    pub program: String,
    pub kind: AlertKind,
    pub severity: Severity,
    /// For people: `bot is FATAL: started 10 times in 24h: ...`.
    pub message: String,
    pub at_ms: u64,
    /// The program is marked `critical`.
    pub critical: bool,
}

/// One state-changing request, as the audit trail on the data volume keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    /// The peer's uid (SO_PEERCRED) and its process name (`hookd`, `bot`, `supervisor`).
    pub uid: u32,
    pub process: Option<String>,
    /// Whom it acted for (the Discord user, for the bot).
    pub by: Option<String>,
    pub verb: String,
    /// The programs named.
    pub targets: Vec<String>,
    pub ok: bool,
    /// What came of it: the error, or a summary of the answer.
    pub message: String,
}

/// One deploy, as the history file on the data volume keeps it (one JSON line each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    pub id: String,
    pub program: String,
    pub kind: DeployKind,
    pub trigger: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub old_commit: Option<String>,
    pub new_commit: Option<String>,
    /// The subject lines of those commits, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_subject: Option<String>,
    pub result: DeployResult,
    pub message: String,
    pub steps: Vec<StepRecord>,
    /// The steps' written bytes, summed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_bytes: u64,
    /// The full output of git and the build steps.
    pub log: String,
}

impl DeployRecord {
    /// Whether this deploy decided what runs: it succeeded, found nothing new, or rolled back.
    pub fn is_conclusive(&self) -> bool {
        self.result.is_conclusive()
    }

    /// The commit running after this deploy, and its subject: the new one, or the old one when
    /// the deploy was rolled back.
    pub fn running_commit(&self) -> (Option<&str>, Option<&str>) {
        if self.result == DeployResult::RolledBack {
            (self.old_commit.as_deref(), self.old_subject.as_deref())
        } else {
            (self.new_commit.as_deref(), self.new_subject.as_deref())
        }
    }
}

/// The deploy that decided what `program` runs: its newest conclusive one in `records` (newest
/// first, as `deploys` answers).
pub fn last_conclusive<'a>(records: &'a [DeployRecord], program: &str) -> Option<&'a DeployRecord> {
    records
        .iter()
        .find(|d| d.program == program && d.is_conclusive())
}

/// The commits of `program` that failed their health gate (rolled-back deploys) and have not
/// run successfully since, newest first: the supervisor will not deploy them again unless
/// forced. `records` newest first, as `deploys` answers.
pub fn quarantined<'a>(records: &'a [DeployRecord], program: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    let mut succeeded: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.program == program) {
        let Some(commit) = r.new_commit.as_deref() else {
            continue;
        };
        match r.result {
            DeployResult::Succeeded | DeployResult::Unchanged => succeeded.push(commit),
            DeployResult::RolledBack
                if r.kind == DeployKind::Deploy
                    && !succeeded.contains(&commit)
                    && !out.contains(&commit) =>
            {
                out.push(commit)
            }
            _ => {}
        }
    }
    out
}

/// `0:01:02`, `1 day, 2:03:04`, `3 days, 0:00:05`: an uptime as supervisorctl prints it (Python's
/// `timedelta`).
pub fn format_uptime(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        n => format!("{n} days, {hms}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub duration_ms: u64,
    pub ok: bool,
    /// Bytes the step (with every process it waited for) caused to be written to storage, as
    /// the kernel counts them (`wait4`'s block output): the SD card's wear.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorInfo {
    pub pid: u32,
    pub version: String,
    /// Unix time in milliseconds when the supervisor started.
    pub started_ms: u64,
    pub uptime_secs: u64,
    pub shutting_down: bool,
}

/// A program's state as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramInfo {
    pub name: String,
    /// Its group (`group = "web"`), if any: `status web:*` shows the group.
    pub group: Option<String>,
    pub state: ProgramState,
    /// What supervisorctl shows in its third column: `pid 123, uptime 0:01:02`, the FATAL
    /// reason, `Not started`, or the time it stopped.
    pub description: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    /// Unix time in milliseconds of the last state change.
    pub since_ms: u64,
    /// How many times it was spawned since the supervisor started.
    pub spawns: u64,
    /// Why its last process ended (`exit status 1`, `terminated by SIGKILL`, `spawn error: ...`).
    pub last_exit: Option<String>,
    /// The exit code of its last process, when it exited rather than being killed.
    pub last_exit_code: Option<i32>,
    /// The branch `deploy` takes it from, when it has a deploy table.
    pub deploy_branch: Option<String>,
    /// Marked `critical`: health checks fail while it is not RUNNING.
    pub critical: bool,
    /// What the program says it is doing (`STATUS=` on its `NOTIFY_SOCKET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Its liveness while RUNNING, when it has a `healthcheck` or `watchdog`: false from the
    /// first failed check until one passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Readiness and liveness checks that failed since the supervisor started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub check_failures: u64,
    /// Datagrams its notify socket dropped: from outside its process group, oversized, or not
    /// `KEY=VALUE` text.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notify_rejected: u64,
    /// Restarts because it stayed over a `limits` ceiling (memory, CPU) since the supervisor
    /// started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit_restarts: u64,
    /// A scheduled program's schedule, next run and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    /// While its deploy poll fails: how often, the last error, and when it tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_error: Option<String>,
}

/// A scheduled program (`schedule`): when it runs next, and how its runs went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// As configured (`*/5 * * * *`, `every 5m`).
    pub schedule: String,
    /// The next slot, Unix milliseconds.
    pub next_run_ms: Option<u64>,
    /// Runs that ended since the supervisor started, those that failed, slots skipped
    /// because the previous run still ran.
    pub runs: u64,
    pub failed: u64,
    pub skipped: u64,
    /// How the last run ended: `ok`, or why not.
    pub last: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub name: String,
    pub outcome: Outcome,
    /// Why a `failed` action failed, for clients that act on it (exit codes, XML-RPC faults);
    /// absent for every other outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// For people: `started`, `ERROR (already started)`, `ERROR (spawn error: ...)`.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Started,
    AlreadyStarted,
    Stopped,
    NotRunning,
    Signalled,
    /// `clear`: the log files are empty.
    Cleared,
    Failed,
}

/// Why an action failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The program could not be spawned (its command, user, folder or a limit).
    SpawnError,
    /// It was spawned but ended before it was running.
    AbnormalTermination,
    /// A signal for a program that is not running.
    NotRunning,
    /// Anything else: FATAL, removed or shut down meanwhile, a file or signal refused.
    Other,
}

impl Outcome {
    /// Whether the request reached what it asked for (idempotent cases included).
    pub fn is_success(self) -> bool {
        !matches!(self, Outcome::Failed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramPid {
    pub name: String,
    pub pid: Option<u32>,
}

/// Pushed to `events` subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A program changed state.
    State {
        program: String,
        from: ProgramState,
        to: ProgramState,
        pid: Option<u32>,
        description: String,
        /// Unix time in milliseconds.
        at_ms: u64,
    },
    /// The programs were added or removed by `update`.
    Config {
        added: Vec<String>,
        changed: Vec<String>,
        removed: Vec<String>,
        at_ms: u64,
    },
    /// A deploy's progress: `started`, `fetched`, `switched`, `restarting` (`rolling_back`),
    /// then its result (see [`DeployStage`]).
    Deploy {
        program: String,
        id: String,
        stage: DeployStage,
        message: String,
        commit: Option<String>,
        at_ms: u64,
    },
    /// A program's liveness changed: a check failed, it was found unhealthy (and is being
    /// restarted), or it passed again.
    Health {
        program: String,
        healthy: bool,
        /// What failed, or what passed.
        message: String,
        at_ms: u64,
    },
    /// Something an owner should hear about (see [`Alert`]).
    Alert(Alert),
    /// The subscriber was too slow and missed this many events; re-read `status`.
    Lagged { missed: u64 },
    /// The supervisor is shutting down; the stream ends after the last state changes.
    ShuttingDown { at_ms: u64 },
}
