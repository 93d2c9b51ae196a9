//! The binary's exit codes, in one place (README, "Exit codes"): supervisorctl 4.x's for the
//! client verbs, and the daemon's.

use std::process::ExitCode;

use supervisor_proto::{ClientError, ErrorKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done. `status`: no program shown is stopped. The daemon: a clean shutdown.
    Ok = 0,
    /// An action failed (a start that did not reach RUNNING, a refused request, a deploy that
    /// did not succeed). The daemon: a program with `on_fatal = "shutdown"` went FATAL.
    Failed = 1,
    /// Usage or configuration error (the daemon's too: an invalid configuration).
    Usage = 2,
    /// `status`: some program shown is stopped (STOPPED, EXITED or FATAL).
    NotRunning = 3,
    /// An unknown program name, or no daemon to ask.
    Unknown = 4,
    /// start, restart, signal: the program is dead (it would not start, or is not running), as
    /// supervisorctl's LSB code 7 says.
    Dead = 7,
}

impl Exit {
    /// What a client error means for the exit code: the one place that decides it.
    pub fn of(error: &ClientError) -> Self {
        match error {
            ClientError::Connect { .. } => Self::Unknown,
            ClientError::Server(body) => match body.kind {
                ErrorKind::UnknownProgram => Self::Unknown,
                ErrorKind::BadConfig | ErrorKind::BadRequest => Self::Usage,
                _ => Self::Failed,
            },
            _ => Self::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
