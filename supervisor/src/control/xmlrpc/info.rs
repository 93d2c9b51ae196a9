//! The structs of `getProcessInfo` and `getAllConfigInfo`, with supervisord's field names,
//! state codes and conventions (`none` for an unset path, a lone program as its own group).

use dxr::Value;
use supervisor_proto::{ProgramInfo, ProgramState, Stream};

use super::names::group_of;
use super::write::{Field, struct_into, strukt};
use crate::config::{LogTarget, ProgramConfig};

/// supervisord's state codes (`supervisor.states.ProcessStates`).
pub fn state_code(state: ProgramState) -> i32 {
    match state {
        ProgramState::Stopped => 0,
        ProgramState::Starting => 10,
        ProgramState::Running => 20,
        ProgramState::Backoff => 30,
        ProgramState::Stopping => 40,
        ProgramState::Exited => 100,
        ProgramState::Fatal => 200,
    }
}

/// `getProcessInfo`'s struct, with supervisord's field names, written into `out`; `cfg` is
/// the program's configuration (its log files), `now` Unix seconds.
pub fn process_info_into(
    out: &mut String,
    cfg: Option<&ProgramConfig>,
    info: &ProgramInfo,
    now: i64,
) {
    let since = (info.since_ms / 1000) as i64;
    let (start, stop) = match (info.uptime_secs, info.spawns) {
        (Some(up), _) => (now - up as i64, 0),
        (None, 0) => (0, 0),
        // Stopped or exited: when it stopped is known; its start is before that.
        (None, _) => (since, since),
    };
    let log = |stream: Stream| {
        cfg.and_then(|p| match stream {
            Stream::Stdout => p.stdout.path.as_ref(),
            Stream::Stderr if p.redirect_stderr => None,
            Stream::Stderr => p.stderr.path.as_ref(),
        })
        .map(|p| p.to_string_lossy())
        .unwrap_or_default()
    };
    let spawnerr = match info.state {
        ProgramState::Backoff | ProgramState::Fatal => info.description.as_str(),
        _ => "",
    };
    let (stdout, stderr) = (log(Stream::Stdout), log(Stream::Stderr));
    struct_into(
        out,
        &[
            ("name", Field::Str(&info.name)),
            (
                "group",
                Field::Str(info.group.as_deref().unwrap_or(&info.name)),
            ),
            ("description", Field::Str(&info.description)),
            ("start", Field::Int(start)),
            ("stop", Field::Int(stop)),
            ("now", Field::Int(now)),
            ("state", Field::Int(i64::from(state_code(info.state)))),
            ("statename", Field::Str(info.state.as_str())),
            ("spawnerr", Field::Str(spawnerr)),
            (
                "exitstatus",
                Field::Int(i64::from(info.last_exit_code.unwrap_or(0))),
            ),
            ("logfile", Field::Str(&stdout)),
            ("stdout_logfile", Field::Str(&stdout)),
            ("stderr_logfile", Field::Str(&stderr)),
            ("pid", Field::Int(i64::from(info.pid.unwrap_or(0)))),
        ],
    );
}

/// `getAllConfigInfo`'s struct for one program, with supervisord's field names.
pub fn config_info(p: &ProgramConfig, inuse: bool) -> Value {
    let secs =
        |d: std::time::Duration| Value::Integer(i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
    let path = |t: &LogTarget| {
        t.path
            .as_ref()
            .map_or("none".to_owned(), |p| p.display().to_string())
    };
    let bytes = |n: u64| Value::Integer(i32::try_from(n).unwrap_or(i32::MAX));
    let command = shlex::try_join(p.command.iter().map(String::as_str))
        .unwrap_or_else(|_| p.command.join(" "));
    strukt([
        ("name", Value::String(p.name.to_string())),
        ("group", Value::String(group_of(p).to_owned())),
        ("inuse", Value::Boolean(inuse)),
        ("autostart", Value::Boolean(p.autostart)),
        ("command", Value::String(command)),
        (
            "directory",
            Value::String(
                p.directory
                    .as_ref()
                    .map_or("none".to_owned(), |d| d.display().to_string()),
            ),
        ),
        (
            "uid",
            p.user.as_ref().map_or(Value::String("none".into()), |u| {
                Value::Integer(u.uid as i32)
            }),
        ),
        (
            "exitcodes",
            Value::Array(
                p.policy
                    .exitcodes
                    .iter()
                    .map(|c| Value::Integer(*c))
                    .collect(),
            ),
        ),
        ("process_prio", Value::Integer(p.priority)),
        ("group_prio", Value::Integer(p.priority)),
        ("redirect_stderr", Value::Boolean(p.redirect_stderr)),
        ("startsecs", secs(p.policy.startsecs)),
        ("startretries", Value::Integer(p.policy.startretries as i32)),
        ("stopsignal", Value::Integer(p.policy.stopsignal as i32)),
        ("stopwaitsecs", secs(p.policy.stopwaitsecs)),
        ("killasgroup", Value::Boolean(true)),
        ("stdout_logfile", Value::String(path(&p.stdout))),
        (
            "stdout_logfile_backups",
            Value::Integer(p.stdout.backups as i32),
        ),
        ("stdout_logfile_maxbytes", bytes(p.stdout.maxbytes)),
        ("stderr_logfile", Value::String(path(&p.stderr))),
        (
            "stderr_logfile_backups",
            Value::Integer(p.stderr.backups as i32),
        ),
        ("stderr_logfile_maxbytes", bytes(p.stderr.maxbytes)),
        ("serverurl", Value::String("AUTO".into())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_supervisords_number() {
        let codes: Vec<i32> = ProgramState::ALL.iter().map(|s| state_code(*s)).collect();
        assert_eq!(codes, [0, 10, 20, 30, 40, 100, 200]);
    }
}
