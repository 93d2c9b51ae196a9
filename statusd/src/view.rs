//! What statusd knows of the supervisor, and the task that keeps it current from the `events`
//! stream, reconnecting when the supervisor goes away and comes back.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use supervisor_proto::{
    Client, ClientError, DeployRecord, Event, ProgramInfo, Reply, Request, SupervisorInfo,
};

const CLIENT: &str = concat!("statusd/", env!("CARGO_PKG_VERSION"));
/// Deploy records kept for `/deploys` and the page.
const DEPLOYS: u32 = 20;

/// The last state read from the supervisor.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Whether the events stream is open now; when false, everything else is stale.
    pub connected: bool,
    pub supervisor: Option<SupervisorInfo>,
    pub programs: Vec<ProgramInfo>,
    /// Newest first.
    pub deploys: Vec<DeployRecord>,
    /// When `programs` was read: uptimes grow from there.
    pub read_at: Option<Instant>,
    /// Why the supervisor is unreachable, when it is.
    pub error: Option<String>,
}

impl Snapshot {
    /// A program's uptime now, from the one read and the time since.
    pub fn uptime(&self, p: &ProgramInfo) -> Option<u64> {
        let since = self.read_at.map_or(0, |t| t.elapsed().as_secs());
        p.uptime_secs
            .map(|u| if self.connected { u + since } else { u })
    }

    pub fn supervisor_uptime(&self) -> Option<u64> {
        let since = self.read_at.map_or(0, |t| t.elapsed().as_secs());
        self.supervisor.as_ref().map(|s| s.uptime_secs + since)
    }

    /// Why the stack is unhealthy, if it is.
    pub fn unhealthy(&self) -> Option<String> {
        if !self.connected {
            return Some(format!(
                "the supervisor is unreachable{}",
                self.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        let down: Vec<String> = self
            .programs
            .iter()
            .filter(|p| p.critical && p.state != "RUNNING")
            .map(|p| format!("{} is {}", p.name, p.state))
            .collect();
        (!down.is_empty()).then(|| down.join("; "))
    }
}

pub type View = Arc<RwLock<Snapshot>>;

pub fn read(view: &View) -> Snapshot {
    view.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write(view: &View, f: impl FnOnce(&mut Snapshot)) {
    let mut guard = view
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard);
}

/// Keeps `view` current until the task is dropped.
pub async fn follow(socket: &Path, view: View) {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let result = session(socket, &view).await;
        let error = match result {
            Ok(()) => "the supervisor ended the event stream".to_owned(),
            Err(e) => e.to_string(),
        };
        write(&view, |s| {
            s.connected = false;
            s.error = Some(error.clone());
        });
        tracing::warn!(error = %error, "lost the supervisor; reconnecting");
        if started.elapsed() > Duration::from_secs(5) {
            delay = Duration::from_millis(100);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn session(socket: &Path, view: &View) -> Result<(), ClientError> {
    // Subscribe first, then read: a change between the two is not missed.
    let mut events = Client::connect(socket, CLIENT).await?.subscribe().await?;
    let mut client = Client::connect(socket, CLIENT).await?;
    refresh_status(&mut client, view).await?;
    refresh_deploys(&mut client, view).await?;
    write(view, |s| {
        s.connected = true;
        s.error = None;
    });
    tracing::info!("following the supervisor");
    while let Some(event) = events.next().await? {
        match event {
            Event::Deploy { stage, .. } => {
                if matches!(
                    stage.as_str(),
                    "succeeded" | "unchanged" | "failed" | "rolled_back" | "interrupted"
                ) {
                    refresh_deploys(&mut client, view).await?;
                }
            }
            Event::ShuttingDown { .. } => {}
            Event::State { .. } | Event::Config { .. } | Event::Lagged { .. } => {
                refresh_status(&mut client, view).await?;
            }
        }
    }
    Ok(())
}

async fn refresh_status(client: &mut Client, view: &View) -> Result<(), ClientError> {
    if let Reply::Status {
        supervisor,
        programs,
    } = client.call(Request::Status { names: Vec::new() }).await?
    {
        write(view, |s| {
            s.supervisor = Some(supervisor);
            s.programs = programs;
            s.read_at = Some(Instant::now());
        });
    }
    Ok(())
}

async fn refresh_deploys(client: &mut Client, view: &View) -> Result<(), ClientError> {
    let request = Request::Deploys {
        names: Vec::new(),
        limit: DEPLOYS,
    };
    if let Reply::Deploys { records } = client.call(request).await? {
        write(view, |s| s.deploys = records);
    }
    Ok(())
}
