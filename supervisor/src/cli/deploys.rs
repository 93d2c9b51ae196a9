//! Deploys: `deploy` and `rollback` (with `--wait`, a line per stage), and `deploys`, the
//! history.

use std::io::Write;

use supervisor_proto::{ClientError, DeployResult, DeployStage};

use super::args::SocketArg;
use super::{connect, print_json};
use supervisor::exit::Exit;

/// `deploys [NAME...]`: the history, newest first.
pub async fn history(
    names: Vec<String>,
    limit: u32,
    json: bool,
    socket: &SocketArg,
) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let records = connect(socket).await?.deploys(names, limit).await?;
    if json {
        print_json(&mut out, &records);
    } else {
        for r in &records {
            let started: chrono::DateTime<chrono::Local> =
                (std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms)).into();
            let commits = format!(
                "{}..{}",
                r.old_commit
                    .as_deref()
                    .map_or("-", |c| &c[..c.len().min(10)]),
                r.new_commit
                    .as_deref()
                    .map_or("-", |c| &c[..c.len().min(10)])
            );
            // What its steps wrote to storage (an SD card's wear), when anything.
            let written = match r.written_bytes {
                0 => String::new(),
                n => format!("  {:.1} MiB written", n as f64 / (1 << 20) as f64),
            };
            let _ = writeln!(
                out,
                "{:<34} {:<8} {:<11} {:<22} {:>7.1}s  {}{written}",
                r.id,
                r.program,
                r.result,
                commits,
                r.duration_ms as f64 / 1000.0,
                started.format("%b %d %H:%M:%S"),
            );
        }
    }
    Ok(Exit::Ok)
}

fn whoami() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// A deploy of the branch tip (`force`: even a quarantined commit), or a rollback.
#[derive(Clone, Copy, Debug)]
pub enum What<'a> {
    Deploy {
        force: bool,
        commit: Option<&'a str>,
    },
    Rollback,
}

/// How `deploy --wait` follows a deploy.
#[derive(Clone, Copy, Debug)]
pub struct Follow {
    pub wait: bool,
    pub json: bool,
}

/// deploy and rollback: start it, and with `wait` follow its events to the end: a line per
/// stage with the time since the request (each build step with its own duration), or with
/// `json` each event as it came.
pub async fn deploy(
    socket: &SocketArg,
    name: &str,
    what: What<'_>,
    follow: Follow,
) -> Result<Exit, ClientError> {
    use supervisor_proto::Event;
    // Subscribe first, so that no event of this deploy can be missed.
    let mut events = if follow.wait {
        Some(connect(socket).await?.subscribe().await?)
    } else {
        None
    };
    let asked = std::time::Instant::now();
    let mut client = connect(socket).await?;
    let (id, queued) = match what {
        What::Deploy { force, commit } => {
            let trigger = Some(format!("cli ({})", whoami()));
            client.deploy_forced(name, trigger, force, commit).await?
        }
        What::Rollback => client.rollback(name).await?,
    };
    if !follow.json {
        println!(
            "{name}: {} {id}",
            if queued { "queued after" } else { "deploy" }
        );
    }
    let Some(events) = events.as_mut() else {
        return Ok(Exit::Ok);
    };
    // A queued request is done by the deploy that starts after `id`.
    let mut target = (!queued).then(|| id.clone());
    while let Some(event) = events.next().await? {
        let Event::Deploy {
            program,
            id: event_id,
            stage,
            message,
            commit,
            ..
        } = &event
        else {
            continue;
        };
        if program != name {
            continue;
        }
        if target.is_none() && *stage == DeployStage::Started && *event_id != id {
            target = Some(event_id.clone());
        }
        if target.as_deref() != Some(event_id.as_str()) {
            continue;
        }
        if follow.json {
            print_json(&mut std::io::stdout().lock(), &event);
        } else {
            let commit = commit
                .as_ref()
                .map(|c| format!(" {}", &c[..c.len().min(12)]))
                .unwrap_or_default();
            let message = match (stage, message.is_empty()) {
                (DeployStage::Restarting, true) => {
                    ": waiting for the new version to be ready".to_owned()
                }
                (_, true) => String::new(),
                (_, false) => format!(": {message}"),
            };
            let at = asked.elapsed().as_secs_f64();
            println!("[{at:>6.1}s] {name}: {stage}{commit}{message}");
        }
        if let Some(result) = stage.result() {
            return Ok(match result {
                DeployResult::Succeeded | DeployResult::Unchanged => Exit::Ok,
                DeployResult::Failed
                | DeployResult::RolledBack
                | DeployResult::Interrupted
                | DeployResult::Quarantined => Exit::Failed,
            });
        }
    }
    eprintln!("the supervisor went away before the deploy ended");
    Ok(Exit::Failed)
}
