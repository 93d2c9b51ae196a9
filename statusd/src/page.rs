//! `/`: the status page, server-rendered, no external assets, readable on a phone. States in
//! words and colour, times as "3 min ago" with the exact time on hover, the running commit with
//! its subject, and the last 24 hours drawn as inline SVG: each program's states, deploys and
//! rollbacks on a timeline, and its memory. `/live` sends the same content again (server-sent
//! events) whenever the supervisor reports a change; without JavaScript the page reloads itself.

use std::collections::HashMap;
use std::fmt::Write as _;

use supervisor_proto::{DeployResult, ProgramState};

use crate::history::{History, WINDOW_MS};
use crate::view::{Snapshot, running_commit};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn short(commit: Option<&str>) -> String {
    commit.map_or("-".into(), |c| c.chars().take(10).collect())
}

/// A state in words, for people.
fn words(state: ProgramState) -> &'static str {
    match state {
        ProgramState::Running => "Running",
        ProgramState::Starting => "Starting",
        ProgramState::Backoff => "Restarting soon",
        ProgramState::Stopping => "Stopping",
        ProgramState::Stopped => "Stopped",
        ProgramState::Exited => "Exited",
        ProgramState::Fatal => "Failed",
    }
}

/// A state's colour, the same in the table and on the timeline.
fn colour(state: ProgramState) -> &'static str {
    match state {
        ProgramState::Running => "#1a7f37",
        ProgramState::Starting | ProgramState::Stopping => "#bf8700",
        ProgramState::Backoff => "#e16f24",
        ProgramState::Fatal | ProgramState::Exited => "#cf222e",
        ProgramState::Stopped => "#8c959f",
    }
}

fn deploy_colour(result: DeployResult) -> &'static str {
    match result {
        DeployResult::Succeeded | DeployResult::Unchanged => "#0969da",
        DeployResult::Quarantined => "#8250df",
        _ => "#cf222e",
    }
}

/// "3 min ago", for a time `at_ms` before `now_ms`.
pub fn ago(now_ms: u64, at_ms: u64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..10 => "just now".into(),
        10..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A time as "3 min ago", with the exact time (UTC) on hover and for machines.
fn time(now_ms: u64, at_ms: u64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(at_ms as i64) else {
        return "-".into();
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.format("%Y-%m-%dT%H:%M:%SZ"),
        t.format("%Y-%m-%d %H:%M:%S UTC"),
        ago(now_ms, at_ms)
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn badge(state: ProgramState) -> String {
    format!(
        "<span class=badge style=\"background:{}\" data-state={state} title={state}>{}</span>",
        colour(state),
        words(state)
    )
}

/// The whole page: the live part, and what keeps it live.
pub fn render(s: &Snapshot, memory: &HashMap<String, u64>, now_ms: u64) -> String {
    format!(
        r#"<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<noscript><meta http-equiv=refresh content=10></noscript>
<title>Status</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}}
main{{max-width:64rem;margin:0 auto;padding:1rem}}
h1{{font-size:1.5rem;margin:.2rem 0 .6rem}} h2{{font-size:1.1rem;margin:1.6rem 0 .5rem}}
table{{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}}
th,td{{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #eaeef2;vertical-align:middle}}
th{{font-weight:600;font-size:.85rem;color:#59636e}}
.badge{{display:inline-block;color:#fff;border-radius:1rem;padding:.05rem .6rem;font-size:.85rem;font-weight:600;white-space:nowrap}}
.banner{{padding:.7rem 1rem;border-radius:6px;color:#fff;font-weight:600;margin:.4rem 0}}
.ok{{background:#1a7f37}} .bad{{background:#cf222e}} .stale{{background:#bf8700}}
.muted{{color:#59636e;font-size:.85rem}} code{{font-size:90%}}
svg{{display:block;width:100%}} .tl{{height:18px;background:#eaeef2;border-radius:3px}}
.mem{{height:32px}} .legend span{{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin:0 .25rem 0 .8rem;vertical-align:-1px}}
@media (max-width:640px){{.wide{{display:none}}}}
</style></head><body>
<main id=live>
{live}</main>
<script>
if (window.EventSource) {{
  const live = new EventSource("live");
  live.onopen = () => {{ document.body.dataset.live = "connected"; }};
  live.onerror = () => {{ document.body.dataset.live = "reconnecting"; }};
  live.onmessage = (e) => {{ document.getElementById("live").innerHTML = e.data; }};
}}
</script>
</body></html>
"#,
        live = render_live(s, memory, now_ms)
    )
}

/// What `/live` sends: everything that changes.
pub fn render_live(s: &Snapshot, memory: &HashMap<String, u64>, now_ms: u64) -> String {
    let mut h = String::new();
    h.push_str("<h1>Status</h1>\n");
    match s.unhealthy() {
        None => h.push_str("<div class=\"banner ok\" id=health>All systems working</div>\n"),
        Some(why) => {
            let _ = writeln!(
                h,
                "<div class=\"banner bad\" id=health>Not healthy: {}</div>",
                escape(&why)
            );
        }
    }
    if !s.connected {
        h.push_str("<div class=\"banner stale\">The supervisor is unreachable; this is what was last known.</div>\n");
    }
    if let Some(warning) = s.tls.as_ref().and_then(|t| t.warning(now_ms)) {
        let _ = writeln!(
            h,
            "<div class=\"banner stale\" id=tls>{}</div>",
            escape(&warning)
        );
    }
    if let Some(up) = s.supervisor_uptime() {
        let _ = writeln!(
            h,
            "<p class=muted>Supervisor up {}; page updated {}.</p>",
            supervisor_proto::format_uptime(up),
            time(now_ms, now_ms)
        );
    }
    let read = s.tls.as_ref().and_then(|t| match &t.result {
        crate::tls::ProbeResult::Read(cert) => Some((t, cert)),
        _ => None,
    });
    if let Some((t, cert)) = read {
        let until = chrono::DateTime::from_timestamp(cert.not_after, 0)
            .map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M UTC").to_string());
        let _ = writeln!(
            h,
            "<p class=muted id=tls-valid>TLS certificate for {} valid until {until} ({} days).</p>",
            escape(&t.name),
            t.days_left(now_ms).unwrap_or(0)
        );
    }

    h.push_str("<h2>Programs</h2>\n<table id=programs><tr><th>Program</th><th>State</th><th>Since</th><th class=wide>Details</th><th>Memory</th></tr>\n");
    for p in &s.programs {
        let since = if p.since_ms > 0 {
            time(now_ms, p.since_ms)
        } else {
            "-".into()
        };
        let mem = memory.get(&p.name).map_or("-".into(), |b| mib(*b));
        let health = match p.healthy {
            Some(false) => " <span class=badge style=\"background:#cf222e\">unhealthy</span>",
            _ => "",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}{health}</td><td>{since}</td><td class=wide>{}</td><td>{mem}</td></tr>",
            escape(&p.name),
            badge(p.state),
            escape(&s.description(p)),
        );
    }
    if s.programs.is_empty() {
        h.push_str("<tr><td colspan=5>No program known yet.</td></tr>\n");
    }
    h.push_str("</table>\n");

    h.push_str("<h2>Running commits</h2>\n<table id=commits><tr><th>Program</th><th>Commit</th><th>Deployed</th></tr>\n");
    let deployable: Vec<_> = s
        .programs
        .iter()
        .filter(|p| p.deploy_branch.is_some())
        .collect();
    for p in &deployable {
        let (commit, when) = match running_commit(s, &p.name) {
            Some(r) => (
                format!(
                    "<code>{}</code> {}",
                    short(r.commit.as_deref()),
                    escape(r.subject.as_deref().unwrap_or(""))
                ),
                format!(
                    "{} <span class=muted>({})</span>",
                    time(now_ms, r.at_ms),
                    r.result
                ),
            ),
            None => ("-".into(), "no deploy recorded".into()),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{commit}</td><td>{when}</td></tr>",
            escape(&p.name)
        );
    }
    if deployable.is_empty() {
        h.push_str("<tr><td colspan=3>No program has a deploy table.</td></tr>\n");
    }
    h.push_str("</table>\n");

    s.with_history(|history| timelines(&mut h, s, history, now_ms));

    h.push_str("<h2>Recent deploys</h2>\n<table id=deploys><tr><th>Program</th><th>Result</th><th>Commit</th><th>When</th><th class=wide>Message</th></tr>\n");
    for d in &s.deploys {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><span class=badge style=\"background:{}\">{}</span></td><td><code>{}</code></td><td>{}</td><td class=wide>{}</td></tr>",
            escape(&d.program),
            deploy_colour(d.result),
            d.result,
            short(d.new_commit.as_deref()),
            time(now_ms, d.started_ms + d.duration_ms),
            escape(&d.message)
        );
    }
    if s.deploys.is_empty() {
        h.push_str("<tr><td colspan=5>No deploy recorded yet.</td></tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// "Last 24 hours" (or since statusd began watching, when that is shorter): a timeline and a
/// memory line per program, from the left edge to now at the right.
fn timelines(h: &mut String, s: &Snapshot, history: &History, now_ms: u64) {
    let day = now_ms.saturating_sub(WINDOW_MS);
    let start = history.since_ms.map_or(day, |since| since.max(day));
    // A window of at least a minute, so that a page opened at once still has a scale.
    let start = start.min(now_ms.saturating_sub(60_000));
    if start > day {
        let _ = writeln!(
            h,
            "<h2>Since statusd started watching</h2>\n<p class=muted>statusd started watching {}; the timeline grows to the last 24 hours.</p>",
            time(now_ms, history.since_ms.unwrap_or(start))
        );
    } else {
        h.push_str("<h2>Last 24 hours</h2>\n");
    }
    let span = now_ms.saturating_sub(start).max(1) as f64;
    let x = |at: u64| at.saturating_sub(start) as f64 / span * 1440.0;
    h.push_str("<p class=legend muted>");
    for state in [
        ProgramState::Running,
        ProgramState::Starting,
        ProgramState::Backoff,
        ProgramState::Fatal,
        ProgramState::Stopped,
    ] {
        let _ = write!(
            h,
            "<span style=\"background:{}\"></span>{}",
            colour(state),
            words(state)
        );
    }
    let _ = writeln!(
        h,
        "<span style=\"background:{}\"></span>deploy<span style=\"background:{}\"></span>rollback or failed deploy</p>",
        deploy_colour(DeployResult::Succeeded),
        deploy_colour(DeployResult::RolledBack)
    );
    let _ = writeln!(
        h,
        "<table id=history><tr><th>Program</th><th style=\"width:70%\">{} → now</th></tr>",
        ago(now_ms, start)
    );
    for p in &s.programs {
        let restarts = history.restarts(&p.name, start);
        let _ = write!(
            h,
            "<tr><td>{}<br><span class=muted>{restarts} restart{}</span></td><td>",
            escape(&p.name),
            if restarts == 1 { "" } else { "s" }
        );
        let _ = write!(
            h,
            "<svg class=tl viewBox=\"0 0 1440 18\" preserveAspectRatio=none role=img aria-label=\"{} over 24 hours\">",
            escape(&p.name)
        );
        for (from, to, state) in history.spans(&p.name, start, now_ms) {
            let (x0, x1) = (x(from), x(to));
            let _ = write!(
                h,
                "<rect x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"18\" fill=\"{}\" data-state={state}><title>{}: {}</title></rect>",
                (x1 - x0).max(0.8),
                colour(state),
                words(state),
                ago(now_ms, from)
            );
        }
        if let Some(ph) = history.programs.get(&p.name) {
            for d in ph.deploys.iter().filter(|d| d.at_ms >= start) {
                let _ = write!(
                    h,
                    "<rect x=\"{:.1}\" y=\"0\" width=\"4\" height=\"18\" fill=\"{}\" data-deploy={}><title>deploy {}: {}</title></rect>",
                    (x(d.at_ms) - 2.0).max(0.0),
                    deploy_colour(d.result),
                    d.result,
                    d.result,
                    ago(now_ms, d.at_ms)
                );
            }
        }
        h.push_str("</svg>");
        memory_line(h, history, &p.name, start, now_ms, &x);
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n");
}

/// Resident memory over the window, scaled to its peak.
fn memory_line(
    h: &mut String,
    history: &History,
    program: &str,
    start: u64,
    now_ms: u64,
    x: &dyn Fn(u64) -> f64,
) {
    let Some(samples) = history.programs.get(program).map(|p| &p.memory) else {
        return;
    };
    let inside: Vec<(u64, u64)> = samples
        .iter()
        .copied()
        .filter(|(at, _)| *at >= start && *at <= now_ms)
        .collect();
    let Some(peak) = inside.iter().map(|(_, b)| *b).max().filter(|&p| p > 0) else {
        return;
    };
    let points: Vec<String> = inside
        .iter()
        .map(|(at, b)| {
            format!(
                "{:.1},{:.1}",
                x(*at),
                30.0 - (*b as f64 / peak as f64) * 28.0
            )
        })
        .collect();
    let _ = write!(
        h,
        "<svg class=mem viewBox=\"0 0 1440 32\" preserveAspectRatio=none role=img aria-label=\"memory of {}\"><polyline fill=none stroke=\"#0969da\" stroke-width=\"2\" vector-effect=non-scaling-stroke points=\"{}\"/></svg><span class=muted>memory: peak {}, now {}</span>",
        escape(program),
        points.join(" "),
        mib(peak),
        inside.last().map_or("-".into(), |(_, b)| mib(*b))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::test_program;

    #[test]
    fn escapes_what_it_shows() {
        assert_eq!(escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = 100_000_000;
        assert_eq!(ago(now, now - 3_000), "just now");
        assert_eq!(ago(now, now - 42_000), "42 s ago");
        assert_eq!(ago(now, now - 3 * 60_000 - 5_000), "3 min ago");
        assert_eq!(ago(now, now - 5 * 3_600_000), "5 h ago");
        assert_eq!(ago(now + 3 * 86_400_000, now), "3 days ago");
        assert_eq!(ago(now, now + 5_000), "just now", "a clock that went back");
        let t = time(1_796_029_200_000, 1_796_029_020_000);
        assert_eq!(
            t,
            "<time datetime=\"2026-11-30T08:57:00Z\" title=\"2026-11-30 08:57:00 UTC\">3 min ago</time>"
        );
    }

    #[test]
    fn the_timeline_draws_each_state_and_deploy_in_its_colour() {
        let now = 100 * 3_600_000;
        let s = Snapshot {
            connected: true,
            programs: vec![test_program("bot", ProgramState::Running, true)],
            ..Snapshot::default()
        };
        s.with_history(|h| {
            h.start(now - 25 * 3_600_000);
            h.state("bot", ProgramState::Starting, now - 2 * 3_600_000);
            h.state("bot", ProgramState::Fatal, now - 3_600_000);
            h.state("bot", ProgramState::Running, now - 1_800_000);
            h.deploy("bot", DeployResult::RolledBack, now - 600_000);
            h.memory("bot", 10 << 20, now - 60_000);
            h.memory("bot", 20 << 20, now);
        });
        let page = render_live(&s, &HashMap::new(), now);
        let history = page.split("<table id=history>").nth(1).unwrap_or_default();
        // FATAL from an hour ago (x = 1380 of 1440 minutes) for 30 minutes.
        assert!(
            history.contains("<rect x=\"1380.0\" y=\"0\" width=\"30.0\" height=\"18\" fill=\"#cf222e\" data-state=FATAL>"),
            "{history}"
        );
        assert!(history.contains("data-deploy=rolled_back"), "{history}");
        assert!(
            history.contains("memory: peak 20.0 MiB, now 20.0 MiB"),
            "{history}"
        );
        assert!(page.contains("<h2>Last 24 hours</h2>"), "{page}");

        // Watching for two hours: the timeline is those two hours.
        s.with_history(|h| h.since_ms = Some(now - 2 * 3_600_000));
        let page = render_live(&s, &HashMap::new(), now);
        assert!(
            page.contains("<h2>Since statusd started watching</h2>"),
            "{page}"
        );
        assert!(
            page.contains("<rect x=\"720.0\" y=\"0\" width=\"360.0\" height=\"18\" fill=\"#cf222e\" data-state=FATAL>"),
            "{page}"
        );
    }
}
