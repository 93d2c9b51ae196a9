//! What the commands say, as plain functions of plain data: no Discord, no socket. The poise
//! commands in `commands.rs` fetch the data and send what these return.
//!
//! Why this file is past 600 lines: about half of it is its tests, which read each message as
//! the owner sees it; the status message (`board_text`) is the part to move out next.

use std::fmt::Write as _;

use supervisor_proto::{
    Alert, DeployKind, DeployRecord, DeployResult, DeployStage, ProgramInfo, Severity,
    SupervisorInfo,
};

/// Discord's limit on a message's content, in characters.
pub const MESSAGE_LIMIT: usize = 2000;

/// `850 ms`, `2.1 s`, `3 min 5 s`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// `42 s`, `5 min`, `3 h 4 min`, `2 d 3 h`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, (secs / 3600) % 24, (secs / 60) % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The first 10 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Text inside a code block, so that nothing in it can close the block early.
fn fenced(text: &str) -> String {
    text.replace("```", "`\u{200b}``")
}

/// `text` in a code block that fits in `limit` characters: when it is too long, its last
/// lines (the newest, for logs), with a note of how many were left out.
pub fn code_block_tail(text: &str, limit: usize) -> String {
    let text = fenced(text.trim_end_matches('\n'));
    let fence = "```\n".chars().count() + "\n```".chars().count();
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = 0;
    let mut size = 0;
    // Room for the note, reserved in case it is needed.
    let note_room = 40;
    for line in lines.iter().rev() {
        let len = line.chars().count() + 1;
        if size + len + fence + note_room > limit {
            break;
        }
        size += len;
        kept += 1;
    }
    let mut out = String::new();
    let dropped = lines.len() - kept;
    if dropped > 0 {
        let _ = writeln!(out, "({dropped} earlier lines not shown)");
    }
    out.push_str("```\n");
    if kept == 0 && !lines.is_empty() {
        // One line longer than the whole message: its end.
        let last = lines[lines.len() - 1];
        let room = limit.saturating_sub(fence + note_room);
        let skip = last.chars().count().saturating_sub(room);
        out.extend(last.chars().skip(skip));
        out.push('\n');
    }
    for line in &lines[lines.len() - kept..] {
        out.push_str(line);
        out.push('\n');
    }
    if lines.is_empty() {
        out.push_str("(empty)\n");
    }
    out.push_str("```");
    out
}

/// The program table, as `supervisor status` prints it, in a code block.
pub fn status_table(supervisor: &SupervisorInfo, programs: &[ProgramInfo]) -> String {
    let width = programs
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut table = String::new();
    for p in programs {
        let _ = writeln!(table, "{:width$} {:8} {}", p.name, p.state, p.description);
    }
    let header = format!(
        "Supervisor {} up {}, {} programs",
        supervisor.version,
        uptime(supervisor.uptime_secs),
        programs.len()
    );
    let block = code_block_tail(&table, MESSAGE_LIMIT - header.len() - 1);
    format!("{header}\n{block}")
}

/// Every program's uptime and the bot's own.
pub fn uptime_text(bot_secs: u64, supervisor: &SupervisorInfo, programs: &[ProgramInfo]) -> String {
    let mut out = format!(
        "Bot up {}; supervisor up {}.",
        uptime(bot_secs),
        uptime(supervisor.uptime_secs)
    );
    for p in programs {
        let _ = match p.uptime_secs {
            Some(s) => write!(out, "\n- `{}`: up {}", p.name, uptime(s)),
            None => write!(out, "\n- `{}`: {}", p.name, p.state),
        };
    }
    out
}

/// The commit a program runs and its subject, from its last conclusive deploy (newest first).
pub fn running_commit<'a>(
    records: &'a [DeployRecord],
    program: &str,
) -> Option<(&'a str, Option<&'a str>)> {
    match supervisor_proto::last_conclusive(records, program)?.running_commit() {
        (Some(commit), subject) => Some((commit, subject)),
        (None, _) => None,
    }
}

/// `/version`: what this binary was built from, and what the supervisor last deployed.
pub fn version_text(
    version: &str,
    built_from: &str,
    program: &str,
    deployed: Option<(&str, Option<&str>)>,
) -> String {
    let mut out = format!("bot {version}, built from `{}`", short(built_from));
    match deployed {
        Some((commit, subject)) => {
            let _ = write!(out, "\n`{program}` deployed at `{}`", short(commit));
            if let Some(s) = subject {
                let _ = write!(out, ": {s}");
            }
            if !built_from.starts_with(commit) && !commit.starts_with(built_from) {
                out.push_str("\n(this binary is not the deployed commit: a build step has not run yet, or it runs from elsewhere)");
            }
        }
        None => {
            let _ = write!(out, "\n`{program}`: no deploy recorded yet");
        }
    }
    out
}

/// An alert message: the newest of a program's alerts (oldest first in `alerts`), and how many
/// more there were since its last message.
pub fn alert_text(alerts: &[Alert]) -> String {
    let Some(last) = alerts.last() else {
        return String::new();
    };
    let icon = match last.severity {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🟢",
    };
    let mut text = format!("{icon} {}", last.message);
    if alerts.len() > 1 {
        let _ = write!(text, " (and {} earlier alert", alerts.len() - 1);
        text.push_str(if alerts.len() > 2 { "s)" } else { ")" });
    }
    truncate(&text, MESSAGE_LIMIT)
}

/// The commits not deployed again (they failed their health gate), for `/version`.
pub fn quarantine_note(records: &[DeployRecord], program: &str) -> String {
    let commits = supervisor_proto::quarantined(records, program);
    if commits.is_empty() {
        return String::new();
    }
    let list: Vec<String> = commits.iter().map(|c| format!("`{}`", short(c))).collect();
    format!(
        "\nquarantined (failed the health gate; a new push or `deploy --force` is needed): {}",
        list.join(", ")
    )
}

/// A deploy in progress, for the message that follows it.
pub fn deploy_progress(
    program: &str,
    stage: DeployStage,
    commit: Option<&str>,
    message: &str,
) -> String {
    let what = match stage {
        DeployStage::Started => "fetching".to_owned(),
        DeployStage::Fetched => {
            format!("fetched `{}`, building", commit.map(short).unwrap_or("?"))
        }
        DeployStage::Step => "building".to_owned(),
        DeployStage::Switched => "switched to the new version".to_owned(),
        DeployStage::Restarting => "restarting, waiting for it to be ready".to_owned(),
        DeployStage::Ready => "ready, holding the health gate".to_owned(),
        DeployStage::RollingBack => "rolling back".to_owned(),
        other => other.to_string(),
    };
    let mut out = format!("Deploying `{program}`: {what}");
    if !message.is_empty() {
        // The fetched commit's subject, or a step's outcome: someone else's text.
        let _ = write!(out, " ({})", plain(message, SUBJECT_LIMIT));
    }
    out
}

/// A commit subject is written by whoever pushed: at most this many characters of it are shown.
pub const SUBJECT_LIMIT: usize = 200;

/// Text from outside (a commit subject, a step's message) as Discord shows it verbatim: one
/// line, at most `limit` characters (then an ellipsis), every markdown character escaped, so
/// that no bold, spoiler, heading, quote or masked link (`[text](https://...)`) renders.
/// Mentions stay as written: every message the bot posts allows none.
pub fn plain(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    let mut out = String::with_capacity(text.len().min(limit * 2));
    for c in text
        .chars()
        .take(if count > limit { limit - 1 } else { limit })
    {
        let c = if c.is_control() { ' ' } else { c };
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '|' | '`' | '>' | '#' | '[' | ']' | '(' | ')' | '<' | '-'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    if count > limit {
        out.push('…');
    }
    out
}

/// A finished deploy, as announced and as the last word of `/deploy`. Subjects and messages
/// are made inert and short, so that the result, the commits and the duration always show.
pub fn deploy_result(r: &DeployRecord) -> String {
    let took = duration_ms(r.duration_ms);
    let message = plain(&r.message, SUBJECT_LIMIT * 2);
    let commit = |c: &Option<String>, s: &Option<String>| match (c, s) {
        (Some(c), Some(s)) => format!("`{}` {}", short(c), plain(s, SUBJECT_LIMIT)),
        (Some(c), None) => format!("`{}`", short(c)),
        (None, _) => "an unknown commit".to_owned(),
    };
    let text = match (r.result, r.kind) {
        (DeployResult::Succeeded, DeployKind::Rollback) => format!(
            "↩️ `{}` rolled back to {} in {took}.",
            r.program,
            commit(&r.new_commit, &r.new_subject)
        ),
        (DeployResult::Succeeded, _) => format!(
            "✅ `{}` deployed {} in {took}.",
            r.program,
            commit(&r.new_commit, &r.new_subject)
        ),
        (DeployResult::Unchanged, _) => format!(
            "✅ `{}` already runs {}; nothing to deploy.",
            r.program,
            commit(&r.new_commit, &r.new_subject)
        ),
        (DeployResult::RolledBack, _) => format!(
            "⚠️ `{}`: {} failed ({}), rolled back to {} in {took}.",
            r.program,
            commit(&r.new_commit, &r.new_subject),
            message,
            commit(&r.old_commit, &r.old_subject)
        ),
        (DeployResult::Quarantined, _) => format!(
            "⛔ `{}`: {} failed its health gate before; not deployed again until a new push (or `deploy --force`). Still running {}.",
            r.program,
            commit(&r.new_commit, &r.new_subject),
            commit(&r.old_commit, &r.old_subject)
        ),
        (result, _) => format!(
            "❌ Deploy of `{}` {result}: {}. Still running {} ({took}).",
            r.program,
            message,
            commit(&r.old_commit, &r.old_subject)
        ),
    };
    truncate(&text, MESSAGE_LIMIT)
}

/// Whether `r` refuses a commit (`quarantined`) that an older record in `records` (newest
/// first, as `deploys` answers) already refused: said once, not at every redelivery.
pub fn repeated_refusal(r: &DeployRecord, records: &[DeployRecord]) -> bool {
    r.result == DeployResult::Quarantined
        && records
            .iter()
            .skip_while(|o| o.id != r.id)
            .skip(1)
            .any(|o| {
                o.program == r.program
                    && o.result == DeployResult::Quarantined
                    && o.new_commit.is_some()
                    && o.new_commit == r.new_commit
            })
}

/// The one status message kept current in each announce channel: a light (🟢 all running, 🟠
/// something starting, stopping or being deployed, 🔴 something FATAL or crashing), the table as
/// `supervisor status` prints it, and the last deploy.
pub fn board_text(
    supervisor: &SupervisorInfo,
    programs: &[ProgramInfo],
    deploying: Option<&str>,
    last_deploy: Option<&DeployRecord>,
) -> String {
    use supervisor_proto::ProgramState as S;
    let down: Vec<&str> = programs
        .iter()
        .filter(|p| matches!(p.state, S::Fatal | S::Backoff))
        .map(|p| p.name.as_str())
        .collect();
    let busy = programs
        .iter()
        .any(|p| matches!(p.state, S::Starting | S::Stopping));
    let light = match (down.is_empty(), busy || deploying.is_some()) {
        (false, _) => format!("🔴 Down: {}", down.join(", ")),
        (true, true) => match deploying {
            Some(commit) => format!("🟠 Deploying `{}`", short(commit)),
            None => "🟠 Starting or stopping".to_owned(),
        },
        (true, false) => "🟢 All well".to_owned(),
    };
    let mut text = format!("{light}\n{}", status_table(supervisor, programs));
    if let Some(r) = last_deploy {
        let _ = write!(text, "\nLast deploy: {}", deploy_result(r));
    }
    truncate(&text, MESSAGE_LIMIT)
}

/// The bot's presence: what is happening, or nothing when all is well.
pub fn presence_text(programs: &[ProgramInfo], deploying: Option<&str>) -> Option<String> {
    use supervisor_proto::ProgramState as S;
    if let Some(commit) = deploying {
        return Some(format!("deploying {}", short(commit)));
    }
    let down: Vec<&str> = programs
        .iter()
        .filter(|p| matches!(p.state, S::Fatal | S::Backoff))
        .map(|p| p.name.as_str())
        .collect();
    (!down.is_empty()).then(|| format!("degraded: {}", down.join(", ")))
}

/// Whether `url` is a gateway on this machine (`ws://127.0.0.1:7878`, `ws://localhost:...`,
/// `ws://[::1]:...`): a proxy that holds the session, such as gatewayd, where the bot's start
/// spends none of Discord's logins.
pub fn local_gateway(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Discord's login budget as the owner reads it: `Discord logins: 997 of 1000 left, resets in
/// 5 h 12 min`.
pub fn login_budget(remaining: u64, total: u64, reset_after_ms: u64) -> String {
    let minutes = reset_after_ms.div_ceil(60_000);
    let resets = match minutes {
        m if m >= 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    };
    format!("Discord logins: {remaining} of {total} left, resets in {resets}")
}

/// At most `limit` characters, with an ellipsis when cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The shard a guild's events arrive on (Discord's formula).
pub fn shard_of(guild: u64, shards: u32) -> u32 {
    ((guild >> 22) % u64::from(shards.max(1))) as u32
}

/// `/ping`'s answer.
pub fn ping_text(gateway_ms: Option<u128>, rest_ms: u128) -> String {
    match gateway_ms {
        Some(g) => format!("Pong! Gateway {g} ms, REST {rest_ms} ms."),
        None => {
            format!("Pong! Gateway not measured yet (no heartbeat answered), REST {rest_ms} ms.")
        }
    }
}

/// `/help`: every command with its description; owner-only ones marked.
pub fn help_text(commands: &[(String, String)], owner_only: &[String]) -> String {
    let mut out = String::from("Commands (also with the prefix or a mention):");
    for (name, description) in commands {
        let mark = if owner_only.contains(name) {
            " (owners)"
        } else {
            ""
        };
        let _ = write!(out, "\n- `/{name}`{mark}: {description}");
    }
    truncate(&out, MESSAGE_LIMIT)
}

/// The refusal a non-owner gets.
pub const NOT_AN_OWNER: &str =
    "Sorry, only the bot's owners can use this command. Nothing was done.";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_gateway_on_this_machine_is_told_from_discord_s() {
        for local in [
            "ws://127.0.0.1:7878",
            "ws://localhost:7878/?v=10",
            "ws://[::1]:7878",
            "ws://127.0.0.2:1",
        ] {
            assert!(local_gateway(local), "{local}");
        }
        for remote in [
            "wss://gateway.discord.gg",
            "ws://10.0.0.1:7878",
            "ws://localhost.example.org:7878",
            "http://127.0.0.1:7878",
            "ws://[2001:db8::1]:7878",
        ] {
            assert!(!local_gateway(remote), "{remote}");
        }
    }

    fn record(result: &str) -> DeployRecord {
        DeployRecord {
            id: "d-1".into(),
            program: "bot".into(),
            kind: DeployKind::Deploy,
            trigger: "discord".into(),
            started_ms: 0,
            duration_ms: 2140,
            old_commit: Some("1111111111aaaa".into()),
            new_commit: Some("2222222222bbbb".into()),
            old_subject: Some("old one".into()),
            new_subject: Some("Fix /ping".into()),
            result: result.parse().unwrap(),
            message: "the new version exited within healthy_after".into(),
            steps: vec![],
            written_bytes: 0,
            log: String::new(),
        }
    }

    #[test]
    fn results_read_well() {
        assert_eq!(
            deploy_result(&record("succeeded")),
            "✅ `bot` deployed `2222222222` Fix /ping in 2.1 s."
        );
        assert_eq!(
            deploy_result(&record("rolled_back")),
            "⚠️ `bot`: `2222222222` Fix /ping failed (the new version exited within healthy\\_after), rolled back to `1111111111` old one in 2.1 s."
        );
        assert!(deploy_result(&record("failed")).starts_with("❌ Deploy of `bot` failed: "));
        let mut r = record("succeeded");
        r.kind = DeployKind::Rollback;
        assert!(deploy_result(&r).starts_with("↩️ `bot` rolled back to `2222222222`"));
        r.new_subject = Some("x".repeat(5000));
        let text = deploy_result(&r);
        assert!(text.chars().count() < 300, "{text}");
        assert!(
            text.ends_with(&format!("{}… in 2.1 s.", "x".repeat(SUBJECT_LIMIT - 1))),
            "{text}"
        );
    }

    #[test]
    fn the_login_budget_reads_well() {
        assert_eq!(
            login_budget(3, 1000, 5 * 3_600_000),
            "Discord logins: 3 of 1000 left, resets in 5 h 0 min"
        );
        assert_eq!(
            login_budget(997, 1000, 90_000),
            "Discord logins: 997 of 1000 left, resets in 2 min"
        );
    }

    #[test]
    fn a_refusal_is_announced_once_per_commit() {
        let mut first = record("quarantined");
        first.id = "d-1".into();
        let mut again = record("quarantined");
        again.id = "d-2".into();
        let mut other = record("quarantined");
        other.id = "d-3".into();
        other.new_commit = Some("3".repeat(40));
        // Newest first.
        let records = vec![
            other.clone(),
            again.clone(),
            first.clone(),
            record("rolled_back"),
        ];
        assert!(
            !repeated_refusal(&first, &records),
            "the first refusal is said"
        );
        assert!(repeated_refusal(&again, &records), "not the second");
        assert!(
            !repeated_refusal(&other, &records),
            "another commit is news"
        );
        assert!(!repeated_refusal(&record("rolled_back"), &records));
    }

    #[test]
    fn a_subject_renders_inert_and_never_hides_the_result() {
        let mut r = record("rolled_back");
        let hostile = format!(
            "**bold** ||spoiler|| [click](https://evil.example) # big\n> quote {}",
            "_".repeat(3000)
        );
        r.new_subject = Some(hostile);
        let text = deploy_result(&r);
        assert!(text.starts_with(
            "⚠️ `bot`: `2222222222` \\*\\*bold\\*\\* \\|\\|spoiler\\|\\| \\[click\\]\\(https://evil.example\\) \\# big \\> quote \\_"
        ), "{text}");
        assert!(
            !text.contains("[click](") && !text.contains("**") && !text.contains("||"),
            "{text}"
        );
        // The result, the commit it went back to and the duration are all there.
        assert!(
            text.ends_with("… failed (the new version exited within healthy\\_after), rolled back to `1111111111` old one in 2.1 s."),
            "{text}"
        );
        assert!(text.chars().count() <= MESSAGE_LIMIT);
    }

    #[test]
    fn alerts_read_as_the_newest_with_a_count() {
        let alert = |n: u64, severity: Severity| Alert {
            id: format!("{n}-bot"),
            program: "bot".into(),
            kind: supervisor_proto::AlertKind::CrashLoop,
            severity,
            message: format!("bot restarted ({n})"),
            at_ms: n,
            critical: true,
        };
        assert_eq!(
            alert_text(&[alert(1, Severity::Critical)]),
            "🔴 bot restarted (1)"
        );
        assert_eq!(
            alert_text(&[alert(1, Severity::Warning), alert(2, Severity::Info)]),
            "🟢 bot restarted (2) (and 1 earlier alert)"
        );
        let many: Vec<Alert> = (0..5).map(|n| alert(n, Severity::Warning)).collect();
        assert_eq!(
            alert_text(&many),
            "🟠 bot restarted (4) (and 4 earlier alerts)"
        );
        assert_eq!(alert_text(&[]), "");
    }

    #[test]
    fn quarantined_commits_are_named_until_they_run() {
        // Newest first: a rolled-back deploy, then the refused retry of the same commit.
        let records = vec![record("quarantined"), record("rolled_back")];
        assert_eq!(
            quarantine_note(&records, "bot"),
            "\nquarantined (failed the health gate; a new push or `deploy --force` is needed): `2222222222`"
        );
        assert_eq!(quarantine_note(&records, "web"), "");
        // Forced and passing since: no longer quarantined.
        let records = vec![record("succeeded"), record("rolled_back")];
        assert_eq!(quarantine_note(&records, "bot"), "");
        let q = record("quarantined");
        assert!(
            deploy_result(&q)
                .starts_with("⛔ `bot`: `2222222222` Fix /ping failed its health gate before"),
            "{}",
            deploy_result(&q)
        );
    }

    #[test]
    fn long_logs_keep_their_end_and_fit() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let block = code_block_tail(&text, MESSAGE_LIMIT);
        assert!(block.chars().count() <= MESSAGE_LIMIT);
        assert!(block.ends_with("line 999\n```"), "{block}");
        assert!(block.starts_with("("), "{block}");
        let first_kept: usize = block.lines().nth(2).unwrap()[5..].parse().unwrap();
        let dropped = format!("({first_kept} earlier lines not shown)");
        assert!(block.starts_with(&dropped), "{block}");
        // Short text is whole; fences inside cannot close the block.
        assert_eq!(
            code_block_tail("a\n```\nb\n", 100),
            "```\na\n`\u{200b}``\nb\n```"
        );
        // One enormous line: its end.
        let huge = "x".repeat(10_000) + "END";
        let block = code_block_tail(&huge, MESSAGE_LIMIT);
        assert!(block.chars().count() <= MESSAGE_LIMIT && block.contains("END"));
        assert_eq!(code_block_tail("", 100), "```\n(empty)\n```");
    }

    #[test]
    fn durations_and_uptimes() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2140), "2.1 s");
        assert_eq!(duration_ms(185_000), "3 min 5 s");
        assert_eq!(uptime(42), "42 s");
        assert_eq!(uptime(3 * 3600 + 4 * 60), "3 h 4 min");
        assert_eq!(uptime(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn the_running_commit_follows_rollbacks() {
        let mut failed = record("failed");
        failed.id = "d-3".into();
        let rolled = record("rolled_back");
        let records = vec![failed, rolled];
        assert_eq!(
            running_commit(&records, "bot"),
            Some(("1111111111aaaa", Some("old one")))
        );
        assert_eq!(running_commit(&records, "other"), None);
        let v = version_text(
            "0.1.0",
            "1111111111aaaa",
            "bot",
            running_commit(&records, "bot"),
        );
        assert!(!v.contains("not the deployed commit"), "{v}");
        let v = version_text(
            "0.1.0",
            "3333333333",
            "bot",
            running_commit(&records, "bot"),
        );
        assert!(v.contains("not the deployed commit"), "{v}");
    }

    #[test]
    fn guilds_map_to_shards_as_discord_does() {
        // (guild_id >> 22) % shards, worked out by hand.
        assert_eq!(shard_of(197_038_439_483_310_086, 1), 0);
        assert_eq!(shard_of(197_038_439_483_310_086, 1000), 770);
        assert_eq!(shard_of(41_771_983_423_143_937, 7), 2);
    }
}
