//! supervisord's fault codes (`supervisor.xmlrpc.Faults` in 4.2.5): clients branch on the
//! number (supervisorctl prints `ERROR (already started)` for 60), so these are its numbers.

use dxr::Fault;

/// A fault of supervisord's, with its name as the fault string's prefix (`BAD_NAME: web`), as
/// supervisord writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    UnknownMethod = 1,
    IncorrectParameters = 2,
    BadArguments = 3,
    ShutdownState = 6,
    BadName = 10,
    BadSignal = 11,
    NoFile = 20,
    Failed = 30,
    AbnormalTermination = 40,
    SpawnError = 50,
    AlreadyStarted = 60,
    NotRunning = 70,
    Success = 80,
    AlreadyAdded = 90,
    StillRunning = 91,
    CantReread = 92,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::UnknownMethod => "UNKNOWN_METHOD",
            Code::IncorrectParameters => "INCORRECT_PARAMETERS",
            Code::BadArguments => "BAD_ARGUMENTS",
            Code::ShutdownState => "SHUTDOWN_STATE",
            Code::BadName => "BAD_NAME",
            Code::BadSignal => "BAD_SIGNAL",
            Code::NoFile => "NO_FILE",
            Code::Failed => "FAILED",
            Code::AbnormalTermination => "ABNORMAL_TERMINATION",
            Code::SpawnError => "SPAWN_ERROR",
            Code::AlreadyStarted => "ALREADY_STARTED",
            Code::NotRunning => "NOT_RUNNING",
            Code::Success => "SUCCESS",
            Code::AlreadyAdded => "ALREADY_ADDED",
            Code::StillRunning => "STILL_RUNNING",
            Code::CantReread => "CANT_REREAD",
        }
    }

    pub fn number(self) -> i32 {
        self as i32
    }

    /// The fault, its string `NAME` or `NAME: detail`.
    pub fn fault(self, detail: impl AsRef<str>) -> Fault {
        let detail = detail.as_ref();
        let text = match detail.is_empty() {
            true => self.name().to_owned(),
            false => format!("{}: {detail}", self.name()),
        };
        Fault::new(self.number(), text)
    }
}
