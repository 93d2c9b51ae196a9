//! The supervisor's control socket, as the commands use it: one short connection per call, so
//! a supervisor restart costs nothing but the call in flight.

use std::path::PathBuf;

use supervisor_proto::{
    ActionResult, Alert, Client, ClientError, DeployRecord, EventStream, ProgramInfo, Request,
    Stream, SupervisorInfo,
};

/// Said in the hello, and in deploy triggers.
const CLIENT: &str = concat!("bot/", env!("CARGO_PKG_VERSION"));

/// Where the supervisor listens.
#[derive(Debug, Clone)]
pub struct Control {
    pub socket: PathBuf,
}

impl Control {
    /// A connection for one call; made for the Discord user `by`, when there is one (the
    /// supervisor's audit trail names them).
    async fn client(&self, by: Option<&str>) -> Result<Client, ClientError> {
        let mut client = Client::connect(&self.socket, CLIENT).await?;
        if let Some(by) = by {
            client.on_behalf_of(by);
        }
        Ok(client)
    }

    pub async fn status(&self) -> Result<(SupervisorInfo, Vec<ProgramInfo>), ClientError> {
        self.client(None).await?.status().await
    }

    pub async fn tail(
        &self,
        name: &str,
        stream: Stream,
        lines: u32,
    ) -> Result<String, ClientError> {
        self.client(None).await?.tail(name, stream, lines).await
    }

    /// Restarts a program for `by`; the answer is the start's result (the stop's comes
    /// first).
    pub async fn restart(&self, name: &str, by: &str) -> Result<ActionResult, ClientError> {
        let request = Request::Restart {
            names: vec![name.to_owned()],
        };
        let mut results = self.client(Some(by)).await?.act(request).await?;
        results.pop().ok_or_else(|| {
            ClientError::Protocol("the supervisor answered the restart with no result".to_owned())
        })
    }

    /// Starts a deploy for `trigger` (the Discord user, also named to the audit trail): its
    /// id, and whether it was queued behind a running one.
    pub async fn deploy(&self, name: &str, trigger: String) -> Result<(String, bool), ClientError> {
        let by = trigger.clone();
        self.client(Some(&by))
            .await?
            .deploy(name, Some(trigger))
            .await
    }

    /// Deploy history, newest first; every program's when `names` is empty.
    pub async fn deploys(
        &self,
        names: &[&str],
        limit: u32,
    ) -> Result<Vec<DeployRecord>, ClientError> {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        self.client(None).await?.deploys(names, limit).await
    }

    pub async fn alerts(&self, limit: u32) -> Result<Vec<Alert>, ClientError> {
        self.client(None).await?.alerts(limit).await
    }

    pub async fn events(&self) -> Result<EventStream, ClientError> {
        Client::connect(&self.socket, CLIENT)
            .await?
            .subscribe()
            .await
    }
}
