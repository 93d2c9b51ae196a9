//! The shared vocabulary: program states, deploy stages, results and kinds, and the verbs, as
//! types. On the wire they are the same strings as ever (`"RUNNING"`, `"rolled_back"`,
//! `"deploy"`); in code a typo or a missing case is a compile error, and every list of them
//! is derived from the type (`ALL`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string-valued enum: its variants with their wire spelling, `ALL`, `as_str`,
/// `Display` and `FromStr`.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that widths and alignment (`{:<10}`) apply as to a string.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("{s:?} is not a {}", stringify!($name)))
            }
        }
    };
}

vocabulary! {
    /// A program's state, as supervisord names them.
    ProgramState {
        Stopped = "STOPPED",
        Starting = "STARTING",
        Running = "RUNNING",
        Backoff = "BACKOFF",
        Stopping = "STOPPING",
        Exited = "EXITED",
        Fatal = "FATAL",
    }
}

vocabulary! {
    /// How a deploy (or rollback) ended.
    DeployResult {
        /// The new version passed its health gate.
        Succeeded = "succeeded",
        /// The branch tip already ran.
        Unchanged = "unchanged",
        /// Nothing changed (a step failed), or a rollback failed too.
        Failed = "failed",
        /// The new version failed its gate; the previous one runs again.
        RolledBack = "rolled_back",
        /// The supervisor stopped during the deploy.
        Interrupted = "interrupted",
        /// The branch tip failed its health gate before, or its deploy failed within
        /// `retry_failed_after`; nothing was done (`deploy --force` deploys it anyway).
        Quarantined = "quarantined",
    }
}

vocabulary! {
    /// A deploy's progress as `deploy` events report it: the stages, then its result.
    DeployStage {
        Started = "started",
        Fetched = "fetched",
        /// A build step (or the release copy) ended: its name, outcome and duration.
        Step = "step",
        Switched = "switched",
        Restarting = "restarting",
        /// The new version is RUNNING (ready, with a `ready` rule); the gate holds it
        /// `healthy_after`.
        Ready = "ready",
        RollingBack = "rolling_back",
        Succeeded = "succeeded",
        Unchanged = "unchanged",
        Failed = "failed",
        RolledBack = "rolled_back",
        Interrupted = "interrupted",
        Quarantined = "quarantined",
    }
}

vocabulary! {
    /// What a deploy record is.
    DeployKind {
        Deploy = "deploy",
        Rollback = "rollback",
    }
}

vocabulary! {
    /// How much an alert matters.
    Severity {
        /// Good news (a recovery) or a decision (a quarantined commit).
        Info = "info",
        /// Something went wrong and was handled (a restart, a rollback).
        Warning = "warning",
        /// A program is down and stays down until someone acts.
        Critical = "critical",
    }
}

vocabulary! {
    /// What an alert is about.
    AlertKind {
        /// A program went FATAL.
        Fatal = "fatal",
        /// Its start budget (`start_limit`) is spent: FATAL until started by hand.
        StartLimit = "start_limit",
        /// A liveness check or its watchdog failed: it is being restarted.
        Unhealthy = "unhealthy",
        /// It restarted again and again in a short time (before any FATAL).
        CrashLoop = "crash_loop",
        DeployFailed = "deploy_failed",
        RolledBack = "rolled_back",
        Quarantined = "quarantined",
        /// RUNNING again after one of the above.
        Recovered = "recovered",
        /// A scheduled run of the program ended in failure.
        RunFailed = "run_failed",
        /// Raised by a client with the `raise` verb: something outside the supervised programs
        /// (a failed TLS certificate renewal on the host).
        Reported = "reported",
    }
}

vocabulary! {
    /// The verbs of the protocol, as `[control.allow]` and messages spell them.
    Verb {
        Status = "status",
        Start = "start",
        Stop = "stop",
        Restart = "restart",
        Signal = "signal",
        Pid = "pid",
        Tail = "tail",
        Clear = "clear",
        Reread = "reread",
        Update = "update",
        Reload = "reload",
        Add = "add",
        Remove = "remove",
        Events = "events",
        Shutdown = "shutdown",
        Version = "version",
        Check = "check",
        Deploy = "deploy",
        Rollback = "rollback",
        Deploys = "deploys",
        Audit = "audit",
        Alerts = "alerts",
        Raise = "raise",
    }
}

/// Whether the name a client gave (`all`, a program's name, or supervisorctl's `group:name`
/// and `group:*`) selects the program `name` of `group`: the one rule of the daemon and the
/// CLI.
///
/// ```
/// use supervisor_proto::selects;
/// assert!(selects("web:*", "web_1", Some("web")));
/// assert!(selects("web:web_1", "web_1", Some("web")) && !selects("web:web_2", "web_1", Some("web")));
/// assert!(selects("bot", "bot", None) && selects("all", "bot", None));
/// assert!(!selects("web:*", "bot", None) && !selects("bo", "bot", None));
/// ```
pub fn selects(selector: &str, name: &str, group: Option<&str>) -> bool {
    match selector.split_once(':') {
        Some((wanted, member)) => group == Some(wanted) && (member == "*" || member == name),
        None => selector == "all" || selector == name,
    }
}

/// A program's name: `[A-Za-z0-9_.-]+`, because it names log files and appears in CLI verbs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProgramName(String);

impl ProgramName {
    /// Accepts a name made only of letters, digits, `_`, `.` and `-` (not starting with `.`).
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a program name cannot be empty".into());
        }
        if name.starts_with('.') {
            return Err(format!("program name {name:?} cannot start with '.'"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "program name {name:?} contains {bad:?}; use only letters, digits, '_', '-' and '.'"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ProgramName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::new(&name)
    }
}

impl From<ProgramName> for String {
    fn from(name: ProgramName) -> Self {
        name.0
    }
}

impl DeployResult {
    /// Whether a deploy with this result decided what runs: it succeeded, found nothing new,
    /// or rolled back.
    pub fn is_conclusive(self) -> bool {
        matches!(
            self,
            DeployResult::Succeeded | DeployResult::Unchanged | DeployResult::RolledBack
        )
    }
}

impl DeployStage {
    /// The result, when this stage ends the deploy.
    pub fn result(self) -> Option<DeployResult> {
        match self {
            DeployStage::Succeeded => Some(DeployResult::Succeeded),
            DeployStage::Unchanged => Some(DeployResult::Unchanged),
            DeployStage::Failed => Some(DeployResult::Failed),
            DeployStage::RolledBack => Some(DeployResult::RolledBack),
            DeployStage::Interrupted => Some(DeployResult::Interrupted),
            DeployStage::Quarantined => Some(DeployResult::Quarantined),
            DeployStage::Started
            | DeployStage::Fetched
            | DeployStage::Step
            | DeployStage::Switched
            | DeployStage::Restarting
            | DeployStage::Ready
            | DeployStage::RollingBack => None,
        }
    }
}

impl From<DeployResult> for DeployStage {
    fn from(result: DeployResult) -> Self {
        match result {
            DeployResult::Succeeded => DeployStage::Succeeded,
            DeployResult::Unchanged => DeployStage::Unchanged,
            DeployResult::Failed => DeployStage::Failed,
            DeployResult::RolledBack => DeployStage::RolledBack,
            DeployResult::Interrupted => DeployStage::Interrupted,
            DeployResult::Quarantined => DeployStage::Quarantined,
        }
    }
}

impl PartialEq<&str> for ProgramState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_spelling_is_kept_and_read_back() {
        for state in ProgramState::ALL {
            let json = serde_json::to_string(state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(state.as_str().parse::<ProgramState>(), Ok(*state));
        }
        assert_eq!(
            serde_json::to_string(&DeployResult::RolledBack).unwrap(),
            "\"rolled_back\""
        );
        assert!(serde_json::from_str::<DeployStage>("\"built\"").is_err());
        assert_eq!(format!("{:<9}|", ProgramState::Fatal), "FATAL    |");
    }

    #[test]
    fn program_names_are_checked_once_where_they_enter() {
        assert_eq!(ProgramName::new("bot-2.x_y").unwrap().as_str(), "bot-2.x_y");
        for bad in ["", ".hidden", "a/b", "a b", "a:b"] {
            assert!(ProgramName::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ProgramName>("\"../etc\"").is_err());
    }

    #[test]
    fn every_result_is_a_stage_and_back() {
        for result in DeployResult::ALL {
            assert_eq!(DeployStage::from(*result).result(), Some(*result));
            assert_eq!(DeployStage::from(*result).as_str(), result.as_str());
        }
        let progress = DeployStage::ALL
            .iter()
            .filter(|s| s.result().is_none())
            .count();
        assert_eq!(progress + DeployResult::ALL.len(), DeployStage::ALL.len());
    }
}
