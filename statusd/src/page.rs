//! `/`: a small status page, server-rendered, no external assets, readable on a phone, that
//! refreshes itself.

use std::fmt::Write as _;

use supervisor_proto::format_uptime;

use crate::server::running_commit;
use crate::view::Snapshot;

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

pub fn render(s: &Snapshot) -> String {
    let mut h = String::new();
    let health = match s.unhealthy() {
        None => "<p class=ok>Healthy</p>".to_owned(),
        Some(why) => format!("<p class=bad>Unhealthy: {}</p>", escape(&why)),
    };
    let stale = if s.connected {
        ""
    } else {
        "<p class=bad>The supervisor is unreachable; this is what was last known.</p>"
    };
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<meta http-equiv=refresh content=5>
<title>Status</title>
<style>
body{{font:15px/1.4 system-ui,sans-serif;margin:1rem;color:#222;background:#fafafa}}
table{{border-collapse:collapse;width:100%;margin-bottom:1.5rem}}
th,td{{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd}}
.RUNNING{{color:#176c2c;font-weight:600}} .FATAL,.BACKOFF,.EXITED{{color:#a51d1d;font-weight:600}}
.ok{{color:#176c2c}} .bad{{color:#a51d1d}} code{{font-size:90%}}
@media (max-width:600px){{.wide{{display:none}}}}
</style></head><body>
<h1>Status</h1>
{health}{stale}
<h2>Programs</h2>
<table id=programs><tr><th>Program</th><th>State</th><th class=wide>Details</th><th>Uptime</th><th class=wide>Spawns</th></tr>
"#
    );
    for p in &s.programs {
        let uptime = s.uptime(p).map(format_uptime).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class={state}>{state}</td><td class=wide>{}</td><td>{uptime}</td><td class=wide>{}</td></tr>",
            escape(&p.name),
            escape(&s.description(p)),
            p.spawns,
            state = p.state,
        );
    }
    h.push_str("</table>\n<h2>Running commits</h2>\n<table id=commits><tr><th>Program</th><th>Commit</th><th>Deployed</th></tr>\n");
    for p in s.programs.iter().filter(|p| p.deploy_branch.is_some()) {
        let (commit, when) = match running_commit(s, &p.name) {
            Some(r) => (
                format!(
                    "<code>{}</code> {}",
                    short(r.commit.as_deref()),
                    escape(r.subject.as_deref().unwrap_or(""))
                ),
                escape(&format!("{} ({})", r.deploy_id, r.result)),
            ),
            None => ("-".into(), "no deploy recorded".into()),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{commit}</td><td>{when}</td></tr>",
            escape(&p.name)
        );
    }
    if !s.programs.iter().any(|p| p.deploy_branch.is_some()) {
        h.push_str("<tr><td colspan=3>No program has a deploy table.</td></tr>\n");
    }
    h.push_str("</table>\n<h2>Recent deploys</h2>\n<table id=deploys><tr><th>Program</th><th>Result</th><th>Commit</th><th class=wide>Message</th></tr>\n");
    for d in &s.deploys {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=wide>{}</td></tr>",
            escape(&d.program),
            d.result,
            short(d.new_commit.as_deref()),
            escape(&d.message)
        );
    }
    if s.deploys.is_empty() {
        h.push_str("<tr><td colspan=4>No deploy recorded yet.</td></tr>\n");
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_it_shows() {
        assert_eq!(escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }
}
