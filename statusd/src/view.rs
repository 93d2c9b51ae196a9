//! What statusd knows of the supervisor, and the task that keeps it current from the `events`
//! stream, reconnecting when the supervisor goes away and comes back.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::history::History;

use supervisor_proto::{
    Client, ClientError, DeployRecord, Event, ProgramInfo, ProgramState, Request, SupervisorInfo,
};

const CLIENT: &str = concat!("statusd/", env!("CARGO_PKG_VERSION"));
/// How often statusd asks the supervisor whether it answers, and how long an answer may take.
const HEARTBEAT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Past this without an answer, the supervisor is unhealthy even though its socket is open: a
/// PID 1 that stopped answering (blocked) must fail `/health`.
pub const ANSWER_MAX_AGE: Duration = Duration::from_secs(5);
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
    /// When the supervisor last answered a request.
    pub answered_at: Option<Instant>,
    /// The last 24 hours, for the page's pictures (shared, not copied, by every clone).
    pub history: Arc<Mutex<History>>,
    /// Counts every change to the view; the live page waits on it.
    pub changes: Changes,
    /// The last TLS probe (`TLS_PROBE`), if there is one.
    pub tls: Option<crate::tls::Probe>,
}

/// A counter of the view's changes, to wait on.
#[derive(Clone, Debug)]
pub struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Changes {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Wall-clock now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Snapshot {
    /// Runs `f` on the history.
    pub fn with_history<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        let mut h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut h)
    }
}

impl Snapshot {
    /// A program's uptime now, from the one read and the time since.
    pub fn uptime(&self, p: &ProgramInfo) -> Option<u64> {
        let since = self.read_at.map_or(0, |t| t.elapsed().as_secs());
        p.uptime_secs
            .map(|u| if self.connected { u + since } else { u })
    }

    /// supervisorctl's description of a program, as of now: a RUNNING program's uptime moves
    /// on from when it was read (`pid 42, uptime 0:05:00`), the rest is as the supervisor said.
    pub fn description(&self, p: &ProgramInfo) -> String {
        match (p.state, p.pid, self.uptime(p)) {
            (ProgramState::Running, Some(pid), Some(up)) => {
                let base = format!("pid {pid}, uptime {}", supervisor_proto::format_uptime(up));
                // What the program says of itself (`STATUS=`) follows, as the supervisor's does.
                match &p.status_text {
                    Some(status) => format!("{base}; {status}"),
                    None => base,
                }
            }
            _ => p.description.clone(),
        }
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
        match self.answered_at.map(|t| t.elapsed()) {
            Some(age) if age <= ANSWER_MAX_AGE => {}
            Some(age) => {
                return Some(format!(
                    "the supervisor has not answered for {} s",
                    age.as_secs()
                ));
            }
            None => return Some("the supervisor has not answered yet".to_owned()),
        }
        // Ready (RUNNING means ready) and live (no failing check) for every critical program.
        let down: Vec<String> = self
            .programs
            .iter()
            .filter(|p| p.critical)
            .filter_map(|p| match (p.state, p.healthy) {
                (ProgramState::Running, Some(false)) => Some(format!("{} is unhealthy", p.name)),
                (ProgramState::Running, _) => None,
                // Why, as the program said it (docs/CONFIG.md: FATAL carries its last words).
                (ProgramState::Fatal, _) if !p.description.is_empty() => {
                    Some(format!("{} is FATAL: {}", p.name, p.description))
                }
                (state, _) => Some(format!("{} is {state}", p.name)),
            })
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

/// Runs `f` on the view's history, without copying the view.
pub fn history<T>(view: &View, f: impl FnOnce(&mut History) -> T) -> T {
    let history = view
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .history
        .clone();
    let mut h = history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut h)
}

fn write(view: &View, f: impl FnOnce(&mut Snapshot)) {
    let mut guard = view
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard);
    guard.changes.bump();
}

/// Keeps the TLS probe's latest result.
pub fn set_tls(view: &View, probe: crate::tls::Probe) {
    write(view, |s| s.tls = Some(probe));
}

/// Keeps `view` current until the task is dropped.
pub async fn follow(socket: &Path, view: View, alerts: Option<crate::alerts::Alerter>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let result = session(socket, &view, alerts.as_ref()).await;
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

/// `what` within [`ANSWER_TIMEOUT`] (several times that for a connection's setup).
async fn answered<T>(
    what: impl std::future::Future<Output = Result<T, ClientError>>,
    limit: Duration,
) -> Result<T, ClientError> {
    match tokio::time::timeout(limit, what).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Frame(supervisor_proto::frame::FrameError::Io(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the supervisor did not answer within {limit:?}"),
            ),
        ))),
    }
}

async fn session(
    socket: &Path,
    view: &View,
    alerts: Option<&crate::alerts::Alerter>,
) -> Result<(), ClientError> {
    let setup = ANSWER_TIMEOUT * 5;
    // Subscribe first, then read: a change between the two is not missed.
    let mut events = answered(
        async { Client::connect(socket, CLIENT).await?.subscribe().await },
        setup,
    )
    .await?;
    let mut client = answered(Client::connect(socket, CLIENT), setup).await?;
    answered(refresh_status(&mut client, view), setup).await?;
    answered(refresh_deploys(&mut client, view), setup).await?;
    write(view, |s| {
        s.connected = true;
        s.error = None;
    });
    tracing::info!("following the supervisor");
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.next() => event?,
            _ = heartbeat.tick() => {
                // An answer renews the health; no answer in time leaves it to age (and
                // /health to fail), while the connection is kept for when it answers again.
                match tokio::time::timeout(ANSWER_TIMEOUT, client.call(Request::Version)).await {
                    Ok(Ok(_)) => write(view, |s| s.answered_at = Some(Instant::now())),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => tracing::warn!("the supervisor did not answer within 1 s"),
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        match &event {
            Event::State {
                program, to, at_ms, ..
            } => history(view, |h| h.state(program, *to, *at_ms)),
            Event::Deploy {
                program,
                stage,
                at_ms,
                ..
            } => {
                if let Some(result) = stage.result() {
                    history(view, |h| h.deploy(program, result, *at_ms));
                }
            }
            _ => {}
        }
        match event {
            Event::Deploy { stage, .. } => {
                if stage.result().is_some() {
                    refresh_deploys(&mut client, view).await?;
                }
            }
            Event::ShuttingDown { .. } => {}
            Event::Alert(alert) => {
                if let Some(alerts) = alerts {
                    alerts.push(alert);
                }
            }
            Event::State { .. }
            | Event::Config { .. }
            | Event::Health { .. }
            | Event::Lagged { .. } => {
                refresh_status(&mut client, view).await?;
            }
        }
    }
    Ok(())
}

async fn refresh_status(client: &mut Client, view: &View) -> Result<(), ClientError> {
    let (supervisor, programs) = client.status().await?;
    // What statusd had not seen happen (at its start, after a lost connection) enters the
    // history at the time the supervisor gives for it.
    history(view, |h| {
        h.start(now_ms());
        for p in &programs {
            h.state(&p.name, p.state, p.since_ms);
        }
        h.prune(now_ms());
    });
    write(view, |s| {
        s.supervisor = Some(supervisor);
        s.programs = programs;
        s.read_at = Some(Instant::now());
        s.answered_at = s.read_at;
    });
    Ok(())
}

async fn refresh_deploys(client: &mut Client, view: &View) -> Result<(), ClientError> {
    let records = client.deploys(Vec::new(), DEPLOYS).await?;
    write(view, |s| s.deploys = records);
    Ok(())
}

/// A program as the supervisor would describe it, for the tests of this crate.
#[cfg(test)]
pub(crate) fn test_program(name: &str, state: ProgramState, critical: bool) -> ProgramInfo {
    ProgramInfo {
        name: name.into(),
        group: None,
        state,
        description: "pid 42, uptime 0:00:01".into(),
        pid: Some(42),
        uptime_secs: Some(1),
        since_ms: 0,
        spawns: 1,
        last_exit: None,
        last_exit_code: None,
        deploy_branch: None,
        critical,
        status_text: None,
        healthy: None,
        check_failures: 0,
        notify_rejected: 0,
        limit_restarts: 0,
        schedule: None,
        poll_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_programs_own_status_follows_its_description() {
        let s = Snapshot {
            connected: true,
            read_at: Some(Instant::now()),
            ..Snapshot::default()
        };
        let mut p = test_program("bot", ProgramState::Running, true);
        p.status_text = Some("connected as Ops to 3 guilds".into());
        assert_eq!(
            s.description(&p),
            "pid 42, uptime 0:00:01; connected as Ops to 3 guilds"
        );
    }

    #[test]
    fn a_running_programs_description_moves_on_with_its_uptime() {
        let s = Snapshot {
            connected: true,
            read_at: Instant::now().checked_sub(Duration::from_secs(65)),
            ..Snapshot::default()
        };
        let running = test_program("bot", ProgramState::Running, true);
        assert_eq!(s.description(&running), "pid 42, uptime 0:01:06");
        let mut fatal = test_program("bot", ProgramState::Fatal, true);
        fatal.description = "Exited too quickly".into();
        assert_eq!(s.description(&fatal), "Exited too quickly");
    }
}

/// The commit a program runs, from its last conclusive deploy.
#[derive(Debug)]
pub struct Running {
    pub commit: Option<String>,
    /// The commit's subject line.
    pub subject: Option<String>,
    pub result: supervisor_proto::DeployResult,
    /// When the deploy that put it there ended (Unix ms).
    pub at_ms: u64,
    pub deploy_id: String,
}

/// The commit a program runs, and when it was deployed, from its last conclusive deploy.
pub fn running_commit(s: &Snapshot, program: &str) -> Option<Running> {
    let d = supervisor_proto::last_conclusive(&s.deploys, program)?;
    let (commit, subject) = d.running_commit();
    Some(Running {
        commit: commit.map(str::to_owned),
        subject: subject.map(str::to_owned),
        result: d.result,
        at_ms: d.started_ms + d.duration_ms,
        deploy_id: d.id.clone(),
    })
}
