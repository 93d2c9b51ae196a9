//! Start-up: everything before the actor's first turn, in the order that keeps a second
//! supervisor and an early signal harmless: the socket (and its lock), the pid file, the TCP
//! port, private folders, signal handlers, the subreaper, the output thread, the control
//! servers, and the programs.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Daemon, listeners};
use crate::config::Config;
use crate::control::{self, Acl};
use crate::dirs;
use crate::health::Report;
use crate::logs::capture::start_echo;
use crate::process;

/// Health reports (notifications, probe results) waiting for the actor before their senders
/// wait; a program flooding its notify socket then waits on its own socket.
const REPORT_QUEUE: usize = 256;

/// The daemon set up, with what feeds its loop and what must live as long as it runs.
pub(super) struct Started {
    pub daemon: Daemon,
    pub signals: Signals,
    pub requests: mpsc::Receiver<control::ControlRequest>,
    pub reports: mpsc::Receiver<Report>,
    pub listener_output: mpsc::Receiver<listeners::Output>,
    pub server: JoinHandle<()>,
    pub http_server: Option<JoinHandle<()>>,
    /// Resolves once the output thread has written everything.
    pub echo_done: oneshot::Receiver<()>,
    pub socket: std::path::PathBuf,
    /// Held while it runs: the socket's lock and the pid file.
    pub _lock: control::socket::SocketLock,
    pub _pidfile: Option<PidFile>,
}

/// Sets the daemon up (see the module's comment); `nofile` is the open-files limit the
/// supervisor was started with, for its children.
pub(super) fn start(config: Config, nofile: Option<libc::rlimit>) -> anyhow::Result<Started> {
    // Nothing it writes is for everyone (DESIGN.md decision 4).
    process::restrict_umask();
    // The socket first: a second supervisor must not touch the first one's programs or logs.
    let sup = &config.supervisor;
    let group = sup.socket_group.as_ref().map(|g| g.1);
    let (listener, lock) = control::socket::bind(&sup.socket, sup.socket_mode, group)?;
    // supervisord's `pidfile`, for what stops the supervisor by it (Selenium's images do).
    let pidfile = match &sup.pidfile {
        Some(path) => Some(PidFile::write(path)?),
        None => None,
    };
    // supervisord's TCP port, when asked for: as supervisord, the supervisor does not start
    // without it.
    let http = match &config.control.http {
        Some(h) => Some((
            std::net::TcpListener::bind(h.listen)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .with_context(|| {
                    format!("cannot listen on {} ([control.http] listen)", h.listen)
                })?,
            h.clone(),
        )),
        None => None,
    };
    let files_group = sup.files_group.as_ref().map(|g| g.1);
    for dir in [&sup.logdir, &sup.deploydir] {
        if let Err(message) = dirs::private(dir, files_group) {
            tracing::warn!(%message, "cannot make a private folder");
        }
    }
    // Handlers next: as PID 1 a signal without a handler is simply dropped, and SIGCHLD must
    // be caught before the first child can exit.
    let signals = Signals::install().context("installing signal handlers")?;
    let subreaper = match std::process::id() {
        1 => Ok(()),
        _ => process::become_subreaper(),
    };
    if let Err(e) = subreaper {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphans will not be reaped by us");
    }
    let (echo_tx, echo_done) = start_echo().context("starting the output thread")?;
    let (requests_tx, requests) = mpsc::channel(64);
    // Slots of Arcs: tokio allocates and writes all 1024 at once (140 KiB of resident memory
    // for the events themselves, 16 KiB so).
    let (events, _) = broadcast::channel(1024);
    let acl = watch::channel(Acl::new(nix::unistd::geteuid().as_raw(), &config.control)).0;
    let published = watch::channel(std::sync::Arc::new(config.clone())).0;
    let audit = control::AuditLog::start(sup.logdir.join("audit.jsonl"))
        .context("starting the audit trail's writer")?;
    let shared = control::Shared {
        requests: requests_tx,
        events: events.clone(),
        acl: acl.subscribe(),
        config: published.subscribe(),
        audit,
    };
    let http_server = http.map(|(listener, h)| {
        tracing::info!(address = %h.listen, authenticated = h.credentials.is_some(), "XML-RPC on TCP");
        let credentials = h.credentials.map(|(username, password)| {
            control::xmlrpc::auth::Credentials { username, password }
        });
        let uid = h.uid.unwrap_or(nix::unistd::geteuid().as_raw());
        tokio::spawn(control::serve_http(listener, shared.clone(), credentials, uid))
    });
    let server = tokio::spawn(control::serve(listener, shared));
    let socket = config.supervisor.socket.clone();
    let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
    let (listeners, listener_output) = listeners::Listeners::new();
    // The path deploy steps run the supervisor by, read now rather than on the actor's thread.
    crate::deploy::git::self_exe();
    let daemon = Daemon::new(
        config,
        nofile,
        echo_tx,
        events,
        (acl, published),
        reports_tx,
        listeners,
    )?;
    tracing::info!(
        pid = std::process::id(),
        programs = daemon.programs.len(),
        config = %daemon.config.path.display(),
        socket = %socket.display(),
        "supervisor started"
    );

    Ok(Started {
        daemon,
        signals,
        requests,
        reports,
        listener_output,
        server,
        http_server,
        echo_done,
        socket,
        _lock: lock,
        _pidfile: pidfile,
    })
}

/// The pid file while the supervisor runs: written at start, removed at the end (if it still
/// holds this pid).
pub(super) struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.0)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Start-up's code (the command line, the configuration reader, the first spawns) is done with
/// shortly after start: its pages go back to the page cache (memory.rs), off the daemon's thread.
pub(super) async fn release_startup_code() {
    tokio::time::sleep(RELEASE_STARTUP_CODE_AFTER).await;
    match tokio::task::spawn_blocking(crate::memory::release_startup_code).await {
        Ok(Ok(bytes)) => tracing::debug!(bytes, "start-up code pages released"),
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot release start-up code pages"),
        Err(_) => {}
    }
}

/// Long enough for the first programs' `startsecs` (1 s by default) to pass.
const RELEASE_STARTUP_CODE_AFTER: Duration = Duration::from_secs(2);

pub(super) struct Signals {
    pub chld: SignalStream,
    pub term: SignalStream,
    pub int: SignalStream,
    pub quit: SignalStream,
    pub hup: SignalStream,
    pub usr1: SignalStream,
    pub usr2: SignalStream,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            chld: signal(SignalKind::child())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}
