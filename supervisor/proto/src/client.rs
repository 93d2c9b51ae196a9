//! The async client that the CLI, hookd, statusd and the bot use.

use std::path::Path;

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::Severity;
use crate::frame::{self, FrameError};
use crate::message::{
    ActionResult, Alert, AuditRecord, Body, ClientHello, DeployRecord, ErrorBody, ErrorKind, Event,
    HelloBody, PROTOCOL_VERSION, ProgramInfo, ProgramPid, Reply, Request, RequestFrame,
    ServerFrame, ServerHello, Stream, SupervisorInfo,
};

/// What `reread` found, or `update` applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// False for `reread`, true for `update`.
    pub applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the supervisor at {path}: {source} (is it running? `supervisor run` starts it)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    /// The supervisor answered with an error.
    #[error("{}", .0.message)]
    Server(ErrorBody),
    #[error("the supervisor closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// The server's error kind, when the server sent one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Server(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// An answer of the wrong kind: a bug on one side, reported rather than unwrapped.
fn unexpected(verb: &str, reply: &Reply) -> ClientError {
    ClientError::Protocol(format!(
        "the supervisor answered {verb} unexpectedly: {reply:?}"
    ))
}

/// One connection to the supervisor, after a successful handshake.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    next_id: u64,
    /// Whom the requests are made for (see [`RequestFrame::by`]).
    by: Option<String>,
    /// What the server said about itself.
    pub server: ServerHello,
}

impl Client {
    /// Connects to the socket at `path` and says hello as `client` (`hookd/0.1.0`).
    pub async fn connect(path: &Path, client: &str) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, mut writer) = stream.into_split();
        let mut reader = BufReader::new(r);
        let hello = ClientHello {
            hello: HelloBody {
                protocol: PROTOCOL_VERSION,
                client: client.to_owned(),
            },
        };
        frame::write(&mut writer, &hello).await?;
        let mut buf = Vec::new();
        if !frame::read_line(&mut reader, &mut buf).await? {
            return Err(ClientError::Closed);
        }
        // An error frame instead of a hello: a version mismatch, say.
        if let Ok(ServerFrame {
            body: Body::Error(e),
            ..
        }) = serde_json::from_slice(&buf)
        {
            return Err(ClientError::Server(e));
        }
        let server: ServerHello = serde_json::from_slice(&buf).map_err(FrameError::from)?;
        Ok(Self {
            reader,
            writer,
            buf,
            next_id: 1,
            by: None,
            server,
        })
    }

    /// Sends `request` and waits for its answer.
    pub async fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let id = self.send(request).await?;
        loop {
            let frame = self.receive().await?;
            if frame.id != id {
                continue;
            }
            return match frame.body {
                Body::Ok(reply) => Ok(reply),
                Body::Error(e) => Err(ClientError::Server(e)),
                Body::Event(_) => Err(ClientError::Protocol("an event answered a request".into())),
            };
        }
    }

    /// `status`: the supervisor and every program.
    pub async fn status(&mut self) -> Result<(SupervisorInfo, Vec<ProgramInfo>), ClientError> {
        match self.call(Request::Status { names: Vec::new() }).await? {
            Reply::Status {
                supervisor,
                programs,
            } => Ok((supervisor, programs)),
            other => Err(unexpected("status", &other)),
        }
    }

    /// `start`, `stop`, `restart` or `signal`: one result per program.
    pub async fn act(&mut self, request: Request) -> Result<Vec<ActionResult>, ClientError> {
        let verb = request.verb();
        match self.call(request).await? {
            Reply::Actions { results } => Ok(results),
            other => Err(unexpected(verb.as_str(), &other)),
        }
    }

    /// `tail`: the last `lines` lines of a program's stream.
    pub async fn tail(
        &mut self,
        name: &str,
        stream: Stream,
        lines: u32,
    ) -> Result<String, ClientError> {
        let request = Request::Tail {
            name: name.to_owned(),
            stream,
            lines,
        };
        match self.call(request).await? {
            Reply::Tail { text, .. } => Ok(text),
            other => Err(unexpected("tail", &other)),
        }
    }

    /// `tail` with the file the lines come from (what `tail -f` follows).
    pub async fn tail_file(
        &mut self,
        name: &str,
        stream: Stream,
        lines: u32,
    ) -> Result<(String, String), ClientError> {
        let request = Request::Tail {
            name: name.to_owned(),
            stream,
            lines,
        };
        match self.call(request).await? {
            Reply::Tail { text, path, .. } => Ok((text, path)),
            other => Err(unexpected("tail", &other)),
        }
    }

    /// `deploy`: the deploy's id, and whether it was queued behind a running one.
    pub async fn deploy(
        &mut self,
        name: &str,
        trigger: Option<String>,
    ) -> Result<(String, bool), ClientError> {
        self.deploy_forced(name, trigger, false, None).await
    }

    /// `deploy`, with `force`: also a commit quarantined for failing its health gate; with
    /// `commit`: that commit (a prebuilt release's), refused at once if it is held back.
    pub async fn deploy_forced(
        &mut self,
        name: &str,
        trigger: Option<String>,
        force: bool,
        commit: Option<&str>,
    ) -> Result<(String, bool), ClientError> {
        self.deploy_request(Request::Deploy {
            name: name.to_owned(),
            trigger,
            force,
            commit: commit.map(str::to_owned),
            branch: None,
        })
        .await
    }

    /// `deploy` of a push: `commit` is what the asker knows the branch tip to be, and `branch`
    /// (if given) the branch pushed to. Refused at once (a `Server` error of kind `Refused` or
    /// `OtherBranch`) when that commit is held back or the branch is not the deploy branch.
    pub async fn deploy_push(
        &mut self,
        name: &str,
        trigger: Option<String>,
        branch: Option<&str>,
        commit: &str,
    ) -> Result<(String, bool), ClientError> {
        self.deploy_request(Request::Deploy {
            name: name.to_owned(),
            trigger,
            force: false,
            commit: Some(commit.to_owned()),
            branch: branch.map(str::to_owned),
        })
        .await
    }

    async fn deploy_request(&mut self, request: Request) -> Result<(String, bool), ClientError> {
        match self.call(request).await? {
            Reply::Deploy { id, queued, .. } => Ok((id, queued)),
            other => Err(unexpected("deploy", &other)),
        }
    }

    /// `rollback`: the rollback's id, and whether it was queued behind a running deploy.
    pub async fn rollback(&mut self, name: &str) -> Result<(String, bool), ClientError> {
        let request = Request::Rollback {
            name: name.to_owned(),
        };
        match self.call(request).await? {
            Reply::Deploy { id, queued, .. } => Ok((id, queued)),
            other => Err(unexpected("rollback", &other)),
        }
    }

    /// `pid`: the supervisor's pid and each named program's (every program's when empty).
    pub async fn pids(
        &mut self,
        names: Vec<String>,
    ) -> Result<(u32, Vec<ProgramPid>), ClientError> {
        match self.call(Request::Pid { names }).await? {
            Reply::Pids {
                supervisor,
                programs,
            } => Ok((supervisor, programs)),
            other => Err(unexpected("pid", &other)),
        }
    }

    /// `version`: the daemon's version.
    pub async fn version(&mut self) -> Result<String, ClientError> {
        match self.call(Request::Version).await? {
            Reply::Version { version, .. } => Ok(version),
            other => Err(unexpected("version", &other)),
        }
    }

    /// `reread` (`apply` false) or `update` (true): added, changed and removed programs.
    pub async fn changes(&mut self, apply: bool) -> Result<Changes, ClientError> {
        let request = if apply {
            Request::Update
        } else {
            Request::Reread
        };
        match self.call(request).await? {
            Reply::Changes {
                added,
                changed,
                removed,
                applied,
            } => Ok(Changes {
                added,
                changed,
                removed,
                applied,
            }),
            other => Err(unexpected(if apply { "update" } else { "reread" }, &other)),
        }
    }

    /// `shutdown`: the daemon stops everything and exits.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        match self.call(Request::Shutdown).await? {
            Reply::ShuttingDown => Ok(()),
            other => Err(unexpected("shutdown", &other)),
        }
    }

    /// `deploys`: the history of `names` (every program's when empty), newest first.
    pub async fn deploys(
        &mut self,
        names: Vec<String>,
        limit: u32,
    ) -> Result<Vec<DeployRecord>, ClientError> {
        match self.call(Request::Deploys { names, limit }).await? {
            Reply::Deploys { records } => Ok(records),
            other => Err(unexpected("deploys", &other)),
        }
    }

    /// `audit`: the newest `limit` records of the audit trail.
    pub async fn audit(&mut self, limit: u32) -> Result<Vec<AuditRecord>, ClientError> {
        match self.call(Request::Audit { limit }).await? {
            Reply::Audit { records } => Ok(records),
            other => Err(unexpected("audit", &other)),
        }
    }

    /// `alerts`: the newest `limit` alerts, newest first.
    pub async fn alerts(&mut self, limit: u32) -> Result<Vec<Alert>, ClientError> {
        match self.call(Request::Alerts { limit }).await? {
            Reply::Alerts { records } => Ok(records),
            other => Err(unexpected("alerts", &other)),
        }
    }

    /// `raise`: an alert about `subject`; the answer is the alert as it was raised.
    pub async fn raise(
        &mut self,
        subject: &str,
        message: &str,
        severity: Severity,
        critical: bool,
    ) -> Result<Alert, ClientError> {
        let request = Request::Raise {
            subject: subject.to_owned(),
            message: message.to_owned(),
            severity,
            critical,
        };
        match self.call(request).await? {
            Reply::Alerts { mut records } if records.len() == 1 => Ok(records.remove(0)),
            other => Err(unexpected("raise", &other)),
        }
    }

    /// Subscribes to the event stream; the connection is then used for events only.
    pub async fn subscribe(mut self) -> Result<EventStream, ClientError> {
        match self.call(Request::Events).await? {
            Reply::Subscribed => Ok(EventStream { client: self }),
            other => Err(ClientError::Protocol(format!(
                "expected subscribed, got {other:?}"
            ))),
        }
    }

    /// Makes the following requests on behalf of `who` (recorded in the audit trail).
    pub fn on_behalf_of(&mut self, who: impl Into<String>) {
        self.by = Some(who.into());
    }

    async fn send(&mut self, request: Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = RequestFrame {
            id,
            by: self.by.clone(),
            request,
        };
        frame::write(&mut self.writer, &frame).await?;
        Ok(id)
    }

    async fn receive(&mut self) -> Result<ServerFrame, ClientError> {
        match frame::read(&mut self.reader, &mut self.buf).await? {
            Some(frame) => Ok(frame),
            None => Err(ClientError::Closed),
        }
    }
}

/// Events from a subscription, in order.
#[derive(Debug)]
pub struct EventStream {
    client: Client,
}

impl EventStream {
    /// The next event; `Ok(None)` when the supervisor ended the stream (it is shutting down).
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            let frame = match self.client.receive().await {
                Ok(f) => f,
                Err(ClientError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            };
            match frame.body {
                Body::Event(e) => return Ok(Some(e)),
                Body::Error(e) => return Err(ClientError::Server(e)),
                Body::Ok(_) => continue,
            }
        }
    }
}
