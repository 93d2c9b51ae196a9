//! `/metrics`: the view in Prometheus' text format (prometheus-client), with memory and CPU of
//! the supervisor and its programs read from /proc at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use supervisor_proto::ProgramState;

use crate::view::Snapshot;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, FloatGauge> {
    let f = Family::<Labels, FloatGauge>::default();
    registry.register(name, help, f.clone());
    f
}

/// `... Discord logins: 997 of 1000 left ...` in a bot's status: 997.
fn logins_left(status: &str) -> Option<u64> {
    let (_, rest) = status.split_once("Discord logins: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

fn program(name: &str) -> Labels {
    vec![("program".into(), name.into())]
}

/// Resident memory in bytes and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((rss_kib * 1024.0, ticks / hz))
}

/// Renders the metrics of `s`.
pub fn render(
    s: &Snapshot,
    used: &std::collections::HashMap<u32, supervisor_proto::resources::Usage>,
) -> String {
    let mut registry = Registry::default();
    let up = FloatGauge::default();
    registry.register(
        "supervisor_up",
        "Whether statusd reaches the supervisor (1) or not (0)",
        up.clone(),
    );
    up.set(if s.connected { 1.0 } else { 0.0 });

    let state = family(
        &mut registry,
        "supervisor_program_state",
        "1 for the state each program is in",
    );
    let running = family(
        &mut registry,
        "supervisor_program_up",
        "Whether the program is RUNNING",
    );
    let ready = family(
        &mut registry,
        "supervisor_program_ready",
        "Whether the program is ready (RUNNING: its `ready` rule passed)",
    );
    let healthy = family(
        &mut registry,
        "supervisor_program_healthy",
        "Whether the program is ready and no liveness check or watchdog fails",
    );
    // Counts as gauges, as `supervisor_deploys` is: promtool reads the OpenMetrics `_total`
    // samples of a counter family as metrics without help text.
    let check_failures = family(
        &mut registry,
        "supervisor_program_check_failures",
        "Failed readiness and liveness checks since the supervisor started",
    );
    let notify_rejected = family(
        &mut registry,
        "supervisor_program_notify_rejected",
        "Datagrams the program's notify socket dropped (other senders, oversized, garbage)",
    );
    let limit_restarts = family(
        &mut registry,
        "supervisor_program_limit_restarts",
        "Restarts because the program stayed over a memory or CPU ceiling (`limits`)",
    );
    let next_run = family(
        &mut registry,
        "supervisor_program_next_run_timestamp_seconds",
        "A scheduled program's next run (Unix time)",
    );
    let scheduled_runs = family(
        &mut registry,
        "supervisor_program_scheduled_runs",
        "A scheduled program's runs since the supervisor started, by result (ok, failed, skipped)",
    );
    let logins = family(
        &mut registry,
        "discord_logins_remaining",
        "Logins left in Discord's daily budget, as the bot read it at its last login (its status)",
    );
    let spawns = family(
        &mut registry,
        "supervisor_program_spawns",
        "Processes spawned for the program since the supervisor started",
    );
    let uptime = family(
        &mut registry,
        "supervisor_program_uptime_seconds",
        "How long the program's process has run",
    );
    let exit = family(
        &mut registry,
        "supervisor_program_last_exit_code",
        "Exit code of the program's last process",
    );
    let rss = family(
        &mut registry,
        "supervisor_program_resident_memory_bytes",
        "Resident memory of the program's processes (its process group)",
    );
    let cpu = family(
        &mut registry,
        "supervisor_program_cpu_seconds",
        "CPU time of the program's processes (its process group)",
    );
    let deploys = family(
        &mut registry,
        "supervisor_deploys",
        "Recent deploys by program and result",
    );
    let last_deploy = family(
        &mut registry,
        "supervisor_last_deploy_timestamp_seconds",
        "When the program's last deploy started",
    );
    for p in &s.programs {
        for &st in ProgramState::ALL {
            let mut labels = program(&p.name);
            labels.push(("state".into(), st.to_string()));
            state
                .get_or_create(&labels)
                .set(if p.state == st { 1.0 } else { 0.0 });
        }
        running
            .get_or_create(&program(&p.name))
            .set(if p.state == ProgramState::Running {
                1.0
            } else {
                0.0
            });
        let is_ready = p.state == ProgramState::Running;
        ready
            .get_or_create(&program(&p.name))
            .set(if is_ready { 1.0 } else { 0.0 });
        healthy
            .get_or_create(&program(&p.name))
            .set(if is_ready && p.healthy != Some(false) {
                1.0
            } else {
                0.0
            });
        check_failures
            .get_or_create(&program(&p.name))
            .set(p.check_failures as f64);
        notify_rejected
            .get_or_create(&program(&p.name))
            .set(p.notify_rejected as f64);
        limit_restarts
            .get_or_create(&program(&p.name))
            .set(p.limit_restarts as f64);
        spawns.get_or_create(&program(&p.name)).set(p.spawns as f64);
        if let Some(left) = p.status_text.as_deref().and_then(logins_left) {
            logins.get_or_create(&program(&p.name)).set(left as f64);
        }
        if let Some(s) = &p.schedule {
            if let Some(ms) = s.next_run_ms {
                next_run
                    .get_or_create(&program(&p.name))
                    .set(ms as f64 / 1000.0);
            }
            for (result, n) in [
                ("ok", s.runs.saturating_sub(s.failed)),
                ("failed", s.failed),
                ("skipped", s.skipped),
            ] {
                let labels = vec![
                    ("program".into(), p.name.clone()),
                    ("result".into(), result.into()),
                ];
                scheduled_runs.get_or_create(&labels).set(n as f64);
            }
        }
        if let Some(u) = s.uptime(p) {
            uptime.get_or_create(&program(&p.name)).set(u as f64);
        }
        if let Some(code) = p.last_exit_code {
            exit.get_or_create(&program(&p.name)).set(f64::from(code));
        }
        // The whole process group: the program and its children.
        if let Some(u) = p.pid.and_then(|pid| used.get(&pid)) {
            rss.get_or_create(&program(&p.name)).set(u.rss_bytes as f64);
            cpu.get_or_create(&program(&p.name)).set(u.cpu_seconds);
        }
    }
    for d in &s.deploys {
        let labels = vec![
            ("program".into(), d.program.clone()),
            ("result".into(), d.result.to_string()),
        ];
        deploys.get_or_create(&labels).inc();
    }
    let written = family(
        &mut registry,
        "supervisor_last_deploy_written_bytes",
        "Bytes the program's last deploy wrote to storage (its steps: fetch, build, download, unpack)",
    );
    for d in s.deploys.iter().rev() {
        last_deploy
            .get_or_create(&program(&d.program))
            .set(d.started_ms as f64 / 1000.0);
        written
            .get_or_create(&program(&d.program))
            .set(d.written_bytes as f64);
    }
    if let Some((bytes, seconds)) = s.supervisor.as_ref().and_then(|sup| usage(sup.pid)) {
        let mem = FloatGauge::default();
        registry.register(
            "supervisor_resident_memory_bytes",
            "Resident memory of the supervisor",
            mem.clone(),
        );
        mem.set(bytes);
        let c = FloatGauge::default();
        registry.register(
            "supervisor_cpu_seconds",
            "CPU time of the supervisor",
            c.clone(),
        );
        c.set(seconds);
    }
    if let Some(probe) = &s.tls {
        let read = FloatGauge::default();
        registry.register(
            "tls_probe_success",
            "Whether statusd could read the certificate the HTTPS front serves (TLS_PROBE)",
            read.clone(),
        );
        if let crate::tls::ProbeResult::Read(cert) = &probe.result {
            read.set(1.0);
            let expiry = FloatGauge::default();
            registry.register(
                "tls_certificate_expiry_seconds",
                "When the served TLS certificate expires (Unix time, its notAfter)",
                expiry.clone(),
            );
            expiry.set(cert.not_after as f64);
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
    use super::*;
    use crate::view::test_program;
    use supervisor_proto::resources::Usage;

    /// Every metric the provisioned Grafana dashboard (deploy/grafana) queries is one statusd
    /// exports, rendered here with a program, its usage and a deploy so that every family has
    /// samples. (Grafana itself cannot be installed here; this is what can be checked.)
    #[test]
    fn the_grafana_dashboard_queries_exported_metrics() {
        let deploy: supervisor_proto::DeployRecord = serde_json::from_value(serde_json::json!({
            "id": "d-1", "program": "bot", "kind": "deploy", "trigger": "cli",
            "started_ms": 1_795_520_000_000u64, "duration_ms": 10, "old_commit": null,
            "new_commit": null, "result": "succeeded", "message": "", "steps": [], "log": ""
        }))
        .unwrap();
        let s = Snapshot {
            connected: true,
            programs: vec![test_program("bot", ProgramState::Running, true)],
            deploys: vec![deploy],
            read_at: Some(std::time::Instant::now()),
            supervisor: Some(supervisor_proto::SupervisorInfo {
                pid: std::process::id(),
                version: "0".into(),
                started_ms: 0,
                uptime_secs: 1,
                shutting_down: false,
            }),
            ..Snapshot::default()
        };
        let used = std::collections::HashMap::from([(
            42,
            Usage {
                rss_bytes: 1,
                cpu_seconds: 1.0,
                processes: 1,
            },
        )]);
        let text = render(&s, &used);
        let exported: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/dashboards/stack.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("supervisor_") {
                        assert!(
                            exported.contains(&word),
                            "panel {} queries {word}, which statusd does not export: {exported:?}",
                            panel["title"]
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(
            checked >= 10,
            "only {checked} metric names found in the dashboard"
        );
    }

    #[test]
    fn the_bots_login_budget_is_a_gauge() {
        assert_eq!(
            logins_left(
                "connected as ops to 3 guilds, shard 0/1; Discord logins: 997 of 1000 left, resets in 5 h 0 min"
            ),
            Some(997)
        );
        assert_eq!(logins_left("connected as ops"), None);
        let mut bot = test_program("bot", ProgramState::Running, true);
        bot.status_text = Some("Discord logins: 12 of 1000 left, resets in 3 min".into());
        let s = Snapshot {
            connected: true,
            programs: vec![bot],
            ..Snapshot::default()
        };
        let text = render(&s, &std::collections::HashMap::new());
        assert!(
            text.contains("discord_logins_remaining{program=\"bot\"} 12"),
            "{text}"
        );
    }
}
