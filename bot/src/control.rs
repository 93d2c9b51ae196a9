//! The supervisor's control socket, as the commands use it: one short connection per call, so
//! a supervisor restart costs nothing but the call in flight.

use std::path::PathBuf;

use supervisor_proto::{
    ActionResult, Client, DeployRecord, EventStream, ProgramInfo, Reply, Request, Stream,
    SupervisorInfo,
};

/// Said in the hello, and in deploy triggers.
const CLIENT: &str = concat!("bot/", env!("CARGO_PKG_VERSION"));

/// Where the supervisor listens.
#[derive(Debug, Clone)]
pub struct Control {
    pub socket: PathBuf,
}

/// A reply of the wrong kind: a bug on one side, reported rather than unwrapped.
fn unexpected(reply: &Reply) -> String {
    format!("the supervisor answered unexpectedly: {reply:?}")
}

impl Control {
    async fn call(&self, request: Request) -> Result<Reply, String> {
        self.call_for(request, None).await
    }

    /// A request made for a Discord user (`by`), whom the supervisor's audit trail names.
    async fn call_for(&self, request: Request, by: Option<&str>) -> Result<Reply, String> {
        let mut client = Client::connect(&self.socket, CLIENT)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(by) = by {
            client.on_behalf_of(by);
        }
        client.call(request).await.map_err(|e| e.to_string())
    }

    pub async fn status(&self) -> Result<(SupervisorInfo, Vec<ProgramInfo>), String> {
        match self.call(Request::Status { names: vec![] }).await? {
            Reply::Status {
                supervisor,
                programs,
            } => Ok((supervisor, programs)),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn tail(&self, name: &str, stream: Stream, lines: u32) -> Result<String, String> {
        let request = Request::Tail {
            name: name.to_owned(),
            stream,
            lines,
        };
        match self.call(request).await? {
            Reply::Tail { text, .. } => Ok(text),
            other => Err(unexpected(&other)),
        }
    }

    /// Restarts a program for `by`; the answer is the start's result (the stop's comes
    /// first).
    pub async fn restart(&self, name: &str, by: &str) -> Result<ActionResult, String> {
        let request = Request::Restart {
            names: vec![name.to_owned()],
        };
        match self.call_for(request, Some(by)).await? {
            Reply::Actions { mut results } => results
                .pop()
                .ok_or_else(|| unexpected(&Reply::Actions { results })),
            other => Err(unexpected(&other)),
        }
    }

    /// Starts a deploy for `trigger` (the Discord user, also named to the audit trail): its
    /// id, and whether it was queued behind a running one.
    pub async fn deploy(&self, name: &str, trigger: String) -> Result<(String, bool), String> {
        let by = trigger.clone();
        let request = Request::Deploy {
            name: name.to_owned(),
            trigger: Some(trigger),
        };
        match self.call_for(request, Some(&by)).await? {
            Reply::Deploy { id, queued, .. } => Ok((id, queued)),
            other => Err(unexpected(&other)),
        }
    }

    /// Deploy history, newest first; every program's when `names` is empty.
    pub async fn deploys(&self, names: &[&str], limit: u32) -> Result<Vec<DeployRecord>, String> {
        let request = Request::Deploys {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            limit,
        };
        match self.call(request).await? {
            Reply::Deploys { records } => Ok(records),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn events(&self) -> Result<EventStream, String> {
        Client::connect(&self.socket, CLIENT)
            .await
            .map_err(|e| e.to_string())?
            .subscribe()
            .await
            .map_err(|e| e.to_string())
    }
}
