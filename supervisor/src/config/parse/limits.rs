//! What a program may use and when it runs: `rlimits`, `limits` (ceilings watched from
//! outside) and `schedule` with its keys (`timezone`, `overlap`, `on_missed`, `jitter`).

use toml::de::{DeTable, DeValue};

use crate::config::ProgramConfig;
use crate::config::limits::{self, Ceilings, RESOURCES, Rlimit};

use super::values::{Env, Value, Walker, get};

pub(super) const LIMITS_KEYS: &[&str] = &["rss", "rss_for", "cpu", "cpu_for"];

impl Walker<'_> {
    /// `rlimits = { nofile = 4096, core = 0, memlock = "64MB", as = "1:infinity" }`.
    pub(super) fn rlimits(&mut self, v: &Value<'_>, path: &str) -> Vec<Rlimit> {
        let Some(t) = self.table(v, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let kpath = format!("{path}.{name}");
            let Some(resource) = RESOURCES.iter().find(|r| r.name == name) else {
                let names: Vec<&str> = RESOURCES.iter().map(|r| r.name).collect();
                self.unknown_key(k, &kpath, &names);
                continue;
            };
            let text = match value.get_ref() {
                DeValue::Integer(i) => i.as_str().to_owned(),
                DeValue::String(s) => s.to_string(),
                _ => {
                    self.type_error(
                        value,
                        &kpath,
                        "a number, a string such as \"64MB\", \"infinity\" or \"SOFT:HARD\"",
                    );
                    continue;
                }
            };
            match limits::parse_rlimit(*resource, &text) {
                Ok((soft, hard)) => out.push(Rlimit {
                    resource: *resource,
                    soft,
                    hard,
                }),
                Err(message) => self.error(value.span(), &kpath, message),
            }
        }
        out
    }

    /// `limits = { rss = "300MB", rss_for = "30s", cpu = "90%", cpu_for = "60s" }`.
    pub(super) fn ceilings(&mut self, v: &Value<'_>, path: &str) -> Option<Ceilings> {
        let t = self.table(v, path)?;
        let before = self.errors.len();
        let (mut rss, mut rss_for, mut cpu, mut cpu_for) = (None, None, None, None);
        for (k, name, kpath, value) in self.entries(t, path, LIMITS_KEYS) {
            match name {
                "rss" => rss = self.bytes(value, &kpath),
                "rss_for" => rss_for = self.duration(value, &kpath),
                "cpu_for" => cpu_for = self.duration(value, &kpath),
                "cpu" => match value.get_ref() {
                    DeValue::String(s) => match limits::parse_percent(s) {
                        Ok(p) => cpu = Some(p),
                        Err(message) => self.error(value.span(), &kpath, message),
                    },
                    _ => self.type_error(value, &kpath, "a percentage of a core such as \"90%\""),
                },
                _ => self.unknown_key(k, &kpath, LIMITS_KEYS),
            }
        }
        if rss_for.is_some() && rss.is_none() {
            self.error(v.span(), path, "rss_for without rss");
        }
        if cpu_for.is_some() && cpu.is_none() {
            self.error(v.span(), path, "cpu_for without cpu");
        }
        (self.errors.len() == before).then(|| Ceilings {
            // Held for 30 s (memory) and 60 s (CPU) unless said otherwise: one sample over is
            // no reason to restart (pm2 restarts on one; users asked for hysteresis).
            rss: rss.map(|r| (r, rss_for.unwrap_or(std::time::Duration::from_secs(30)))),
            cpu: cpu.map(|c| (c, cpu_for.unwrap_or(std::time::Duration::from_secs(60)))),
        })
    }
}

impl Walker<'_> {
    /// `schedule`, with `timezone`, `overlap`, `on_missed` and `jitter` (which mean nothing
    /// without it). A scheduled program is a job: not started at start (`autostart`), not
    /// restarted when it exits (`autorestart`), RUNNING at once (`startsecs`), unless those
    /// keys say otherwise.
    pub(super) fn schedule_keys(
        &mut self,
        t: &DeTable<'_>,
        key: &dyn Fn(&str) -> String,
        env: &Env<'_>,
        p: &mut ProgramConfig,
    ) {
        use crate::config::schedule::{self, OnMissed, Overlap, Schedule};
        let Some((_, v)) = get(t, "schedule") else {
            for k in ["timezone", "overlap", "on_missed", "jitter"] {
                if let Some((name, _)) = get(t, k) {
                    self.error(name.span(), &key(k), "applies only with `schedule`");
                }
            }
            return;
        };
        let before = self.errors.len();
        let text = self.string(v, &key("schedule"), env);
        let when = text.as_deref().and_then(|text| {
            schedule::parse_when(text)
                .map_err(|m| self.error(v.span(), &key("schedule"), m))
                .ok()
        });
        let timezone = get(t, "timezone").and_then(|(_, v)| {
            let name = self.string(v, &key("timezone"), env)?;
            schedule::parse_timezone(&name)
                .map(|tz| (name, tz))
                .map_err(|m| self.error(v.span(), &key("timezone"), m))
                .ok()
        });
        let choice = |w: &mut Self, k: &str, options: &[&str]| -> Option<String> {
            let (_, v) = get(t, k)?;
            let s = w.string(v, &key(k), env)?;
            if options.contains(&s.as_str()) {
                Some(s)
            } else {
                let list: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                w.error(
                    v.span(),
                    &key(k),
                    format!("{s:?} is not one of {}", list.join(", ")),
                );
                None
            }
        };
        let overlap = match choice(self, "overlap", &["skip", "queue", "kill"]).as_deref() {
            Some("queue") => Overlap::Queue,
            Some("kill") => Overlap::Kill,
            _ => Overlap::Skip,
        };
        let on_missed = match choice(self, "on_missed", &["run_once", "skip"]).as_deref() {
            Some("run_once") => OnMissed::RunOnce,
            _ => OnMissed::Skip,
        };
        let jitter = get(t, "jitter")
            .and_then(|(_, v)| self.duration(v, &key("jitter")))
            .unwrap_or_default();
        if let (Some(text), Some(when)) = (text, when) {
            if self.errors.len() == before {
                p.schedule = Some(Schedule {
                    text,
                    when,
                    timezone,
                    overlap,
                    on_missed,
                    jitter,
                });
            }
        }
        if get(t, "autostart").is_none() {
            p.autostart = false;
        }
        if get(t, "autorestart").is_none() {
            p.policy.autorestart = crate::config::AutoRestart::Never;
        }
        if get(t, "startsecs").is_none() {
            p.policy.startsecs = std::time::Duration::ZERO;
        }
    }
}
