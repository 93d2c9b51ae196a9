//! `status`, `pid` and `avail`: what runs, in supervisorctl's words (and `--json`,
//! `--resources`).

use std::io::Write;

use supervisor_proto::{ClientError, ProgramInfo, ProgramState};

use super::args::SocketArg;
use super::connect;
use supervisor::exit::Exit;

/// `avail`: each program of the configuration file, `in use` when the supervisor has it (or
/// its group) and `avail` when `add` would add it, as supervisorctl prints them (by name).
pub async fn avail(socket: &SocketArg) -> Result<Exit, ClientError> {
    let (_, programs) = connect(socket).await?.status().await?;
    let file = match supervisor::config::load(&socket.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "avail reads the configuration file, and {} cannot be read: {e}",
                socket.config.display()
            );
            return Ok(Exit::Failed);
        }
    };
    let group =
        |p: &supervisor::config::ProgramConfig| p.group.clone().unwrap_or(p.name.to_string());
    let in_use = |g: &str| {
        programs
            .iter()
            .any(|r| r.group.as_deref().unwrap_or(r.name.as_str()) == g)
    };
    let mut rows: Vec<(String, String)> = file
        .programs
        .iter()
        .map(|p| {
            let g = group(p);
            let name = match p.group.is_some() {
                true => format!("{g}:{}", p.name),
                false => p.name.to_string(),
            };
            let inuse = programs.iter().any(|r| r.name == p.name.as_str()) || in_use(&g);
            let line = format!(
                "{name:<32} {:<9} {:<9} {}:{}",
                if inuse { "in use" } else { "avail" },
                if p.autostart { "auto" } else { "manual" },
                p.priority,
                p.priority
            );
            (p.name.to_string(), line)
        })
        .collect();
    rows.sort();
    let mut out = std::io::stdout().lock();
    for (_, line) in rows {
        let _ = writeln!(out, "{line}");
    }
    Ok(Exit::Ok)
}

/// `status [NAME...]`: exit 0 when every program shown is RUNNING, 3 when one is not, 4 for
/// an unknown name.
pub async fn status(
    names: Vec<String>,
    json: bool,
    resources: bool,
    socket: &SocketArg,
) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let (supervisor, programs) = connect(socket).await?.status().await?;
    let (shown, unknown) = pick(programs, &names);
    let used = if resources {
        usage(&shown).await
    } else {
        Vec::new()
    };
    if json {
        let mut value = serde_json::json!({ "supervisor": supervisor, "programs": shown });
        for (i, u) in used.iter().enumerate() {
            if let Some((cpu, rss)) = u {
                value["programs"][i]["cpu_percent"] = serde_json::json!(cpu);
                value["programs"][i]["memory_bytes"] = serde_json::json!(rss);
            }
        }
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        for (i, p) in shown.iter().enumerate() {
            match used.get(i) {
                Some(Some((cpu, rss))) => {
                    let mib = *rss as f64 / (1024.0 * 1024.0);
                    let _ = writeln!(
                        out,
                        "{}",
                        status_line(p).replacen(
                            &format!("{:<10}", p.state),
                            &format!("{:<10}cpu {cpu:>5.1}%  mem {mib:>7.1} MiB  ", p.state),
                            1
                        )
                    );
                }
                _ => {
                    let _ = writeln!(out, "{}", status_line(p));
                }
            }
        }
    }
    for name in &unknown {
        let _ = match name.strip_suffix(":*").or(name.strip_suffix(':')) {
            Some(group) => writeln!(out, "{group}: ERROR (no such group)"),
            None => writeln!(out, "{name}: ERROR (no such process)"),
        };
    }
    // supervisorctl's codes: 4 for an unknown name; 3 when a program shown is stopped (STOPPED,
    // EXITED, FATAL), not while it is on its way (STARTING, BACKOFF, STOPPING).
    let stopped = |p: &ProgramInfo| {
        matches!(
            p.state,
            ProgramState::Stopped | ProgramState::Exited | ProgramState::Fatal
        )
    };
    Ok(if !unknown.is_empty() {
        Exit::Unknown
    } else if shown.iter().any(stopped) {
        Exit::NotRunning
    } else {
        Exit::Ok
    })
}

/// `pid [NAME...]`: the supervisor's pid without names, else each program's (0 when stopped).
pub async fn pid(names: Vec<String>, socket: &SocketArg) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    let (supervisor, programs) = connect(socket).await?.pids(names.clone()).await?;
    if names.is_empty() {
        let _ = writeln!(out, "{supervisor}");
    }
    for p in programs {
        let _ = writeln!(out, "{}", p.pid.unwrap_or(0));
    }
    Ok(Exit::Ok)
}

/// CPU percent (over a quarter second) and resident bytes of each program's process group.
async fn usage(programs: &[ProgramInfo]) -> Vec<Option<(f64, u64)>> {
    use supervisor_proto::resources::group_usage;
    const OVER: std::time::Duration = std::time::Duration::from_millis(250);
    let first: Vec<_> = programs
        .iter()
        .map(|p| p.pid.and_then(group_usage))
        .collect();
    tokio::time::sleep(OVER).await;
    programs
        .iter()
        .zip(first)
        .map(|(p, before)| {
            let (before, now) = (before?, p.pid.and_then(group_usage)?);
            let cpu =
                ((now.cpu_seconds - before.cpu_seconds) / OVER.as_secs_f64() * 100.0).max(0.0);
            Some(((cpu * 10.0).round() / 10.0, now.rss_bytes))
        })
        .collect()
}

/// The programs to show, in the daemon's order, and the names that match none.
fn pick(programs: Vec<ProgramInfo>, names: &[String]) -> (Vec<ProgramInfo>, Vec<String>) {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return (programs, Vec::new());
    }
    // supervisord's namespecs: a group's member is `group:name` (or `group:*`), never its bare
    // name; a program outside any group is a group of its own name.
    let matches = |n: &str, p: &ProgramInfo| {
        let group = p.group.as_deref().unwrap_or(&p.name);
        match n.split_once(':') {
            Some((g, "" | "*")) => g == group,
            Some((g, m)) => g == group && m == p.name,
            None => n == group && n == p.name,
        }
    };
    let unknown = names
        .iter()
        .filter(|n| !programs.iter().any(|p| matches(n, p)))
        .cloned()
        .collect();
    let shown = programs
        .into_iter()
        .filter(|p| names.iter().any(|n| matches(n, p)))
        .collect();
    (shown, unknown)
}

/// supervisorctl's status line: `%(name)-32s %(state)-10s%(desc)s`.
/// supervisorctl's line: a program of a group is named `group:name`, as supervisorctl names it.
pub fn status_line(p: &ProgramInfo) -> String {
    let name = match &p.group {
        Some(group) => format!("{group}:{}", p.name),
        None => p.name.clone(),
    };
    format!("{name:<32} {:<10}{}", p.state, p.description)
        .trim_end()
        .to_owned()
}
