//! What a program may use, with real processes: rlimits and the OOM score as the kernel shows
//! them in /proc, a build step's OOM score, memory and CPU ceilings with hysteresis, and
//! scheduled programs.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
#![allow(clippy::disallowed_methods)] // tests run the real binary and tools: std spawns them

mod fixture;

use fixture::*;
use serde_json::Value;
use testkit::git;

fn pid_of(sup: &Supervisor, name: &str) -> u64 {
    let (_, out, _) = ctl(sup, &["status", "--json", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["programs"][0]["pid"].as_u64().unwrap_or(0)
}

/// The `Max open files`-style row of /proc/PID/limits: (soft, hard) as the kernel prints them.
fn limit(pid: u64, row: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("{row} in {text}"));
    let f: Vec<&str> = line[row.len()..].split_whitespace().collect();
    (f[0].to_owned(), f[1].to_owned())
}

#[test]
fn rlimits_and_the_oom_score_reach_the_program() {
    // Lowered below what this machine allows, so that no privilege is needed: a locked-memory
    // limit of at most 4 MiB (Docker's default hard limit is 8 MiB, some systems' 64 KiB).
    let (_, hard) = limit(std::process::id().into(), "Max locked memory");
    let memlock = hard.parse::<u64>().map_or(4 << 20, |h| h.min(4 << 20));
    let dir = Supervisor::dir_with(&format!(
        r#"
[program.limited]
command = ["sleep", "600"]
startsecs = 0
rlimits = {{ nofile = "100:200", core = 0, memlock = {memlock}, as = "2GB:infinity", nproc = 4000 }}
oom_score_adj = 500

[program.plain]
command = ["sleep", "600"]
startsecs = 0
"#
    ));
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("limited", "RUNNING");
    sup.wait_state("plain", "RUNNING");
    let pid = pid_of(&sup, "limited");
    assert_eq!(limit(pid, "Max open files"), ("100".into(), "200".into()));
    assert_eq!(limit(pid, "Max core file size"), ("0".into(), "0".into()));
    let memlock = memlock.to_string();
    assert_eq!(limit(pid, "Max locked memory"), (memlock.clone(), memlock));
    let gib2 = (2u64 << 30).to_string();
    assert_eq!(limit(pid, "Max address space"), (gib2, "unlimited".into()));
    assert_eq!(limit(pid, "Max processes"), ("4000".into(), "4000".into()));
    let score = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(score(pid), "500");
    // A program without the keys: the score 0 (not the supervisor's own), the open-files limit
    // the supervisor was started with.
    let plain = pid_of(&sup, "plain");
    assert_eq!(score(plain), "0");
    let (soft, _) = limit(plain, "Max open files");
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    assert!(
        own.contains(&format!("Max open files            {soft}")),
        "{soft}\n{own}"
    );
    // The supervisor puts itself last, where it may (-1000 needs CAP_SYS_RESOURCE, which
    // Docker does not give root).
    let own = score(sup.pid as u64);
    match can_override_limits() {
        true => assert_eq!(own, "-1000"),
        false => assert_eq!(own, "0"),
    }
}

/// Whether this process has CAP_SYS_RESOURCE (raise hard limits, lower OOM scores).
fn can_override_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap();
    caps & (1 << 24) != 0
}

#[test]
fn a_limit_the_kernel_refuses_is_a_clear_spawn_error() {
    let memlock = std::fs::read_to_string("/proc/self/limits").unwrap();
    if can_override_limits() || memlock.contains("Max locked memory         unlimited") {
        eprintln!("skipped: this process may raise the hard memlock limit");
        return;
    }
    let dir = Supervisor::dir_with(
        r#"
[program.greedy]
command = ["sleep", "600"]
rlimits = { memlock = "infinity" }
startretries = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("greedy", "FATAL");
    assert!(
        field(&fatal, "reason")
            .contains("sleep: cannot set rlimits.memlock: Operation not permitted"),
        "{fatal}"
    );
    // An OOM score below the supervisor's needs the same privilege.
    let dir = Supervisor::dir_with(
        r#"
[program.precious]
command = ["sleep", "600"]
oom_score_adj = -500
startretries = 0
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let fatal = sup.wait_state("precious", "FATAL");
    assert!(
        field(&fatal, "reason").contains("cannot set oom_score_adj to -500: Permission denied"),
        "{fatal}"
    );
}

/// A folder where `app` (a sleep) deploys from `app/`, a clone of remote.git at v1, whose tip is
/// v2, with these build `steps` (a TOML array).
fn sleeper_with_steps(steps: &str) -> tempfile::TempDir {
    let dir = Supervisor::dir_with(&format!(
        r#"
[program.app]
command = ["sleep", "600"]
startsecs = 0

[program.app.deploy]
repo = "@DIR@/app"
steps = {steps}
healthy_after = "100ms"
"#
    ));
    let root = dir.path();
    let work = root.join("work");
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["clone", "-q", "remote.git", "work"]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "v1"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(root, &["clone", "-q", "remote.git", "app"]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "v2"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    dir
}

#[test]
fn a_build_step_is_first_in_the_oom_killers_order() {
    let dir =
        sleeper_with_steps(r#"[["sh", "-c", "cat /proc/self/oom_score_adj > ../step-score"]]"#);
    let root = dir.path().to_owned();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let (code, out, err) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("step-score"))
            .unwrap()
            .trim(),
        "1000"
    );
}

/// A memory cgroup of its own under this test's, limited to `bytes` without swap; None (the
/// test then says why it cannot run) where no memory controller can be written.
struct MemoryCgroup(std::path::PathBuf);

impl MemoryCgroup {
    fn new(bytes: u64) -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        // cgroup v1's memory hierarchy, or v2's unified one where it has the memory controller.
        let v1 = text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers.split(',').any(|c| c == "memory").then(|| {
                std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
            })
        });
        let v2 = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|path| std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        let (base, limits): (std::path::PathBuf, &[&str]) = match (v1, v2) {
            (Some(base), _) => (
                base,
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            ),
            (None, Some(base)) => (base, &["memory.max", "memory.swap.max"]),
            _ => return None,
        };
        let dir = base.join(format!("supervisor-oom-test-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Self(dir);
        std::fs::write(cgroup.0.join(limits[0]), bytes.to_string()).ok()?;
        // Without swap in it, or with swap capped alike, memory runs out rather than pages out.
        let swap = if limits[1] == "memory.swap.max" {
            0
        } else {
            bytes
        };
        let _ = std::fs::write(cgroup.0.join(limits[1]), swap.to_string());
        Some(cgroup)
    }

    fn add(&self, pid: u64) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Its processes back to the parent, then it goes.
        let parent = self.0.parent().unwrap().join("cgroup.procs");
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(&parent, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A build that eats memory until the kernel kills it (the supervisor, the program and the
/// build share a memory cgroup of 256 MB, as on a small board): the build is what the OOM
/// killer takes (steps are first in its order), the deploy fails naming it, and the program
/// and PID 1 carry on untouched.
#[test]
fn root_a_build_that_runs_out_of_memory_fails_the_deploy_and_nothing_else() {
    if !is_root() {
        eprintln!("skipped: needs root (a memory cgroup)");
        return;
    }
    let Some(cgroup) = MemoryCgroup::new(256 << 20) else {
        panic!("no writable memory cgroup (v1's memory hierarchy or v2's memory controller)");
    };
    let dir = sleeper_with_steps(r#"[["tail", "/dev/zero"]]"#);
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_state("app", "RUNNING");
    let (_, status, _) = ctl(&sup, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    let supervisor = status["supervisor"]["pid"].as_u64().unwrap();
    let app = pid_of(&sup, "app");
    let since = status["programs"][0]["since_ms"].as_u64().unwrap();
    let spawns = status["programs"][0]["spawns"].as_u64().unwrap();
    cgroup.add(supervisor);
    cgroup.add(app);
    let (code, out, _) = ctl(&sup, &["deploy", "app", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tail /dev/zero failed: out of memory: the kernel's OOM killer ran during the step (terminated by SIGKILL)"),
        "{out}"
    );
    // The program is the same process, started at the same time; PID 1 answers.
    assert_eq!(pid_of(&sup, "app"), app);
    let (_, status, _) = ctl(&sup, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    let p = &status["programs"][0];
    assert_eq!(
        (p["since_ms"].as_u64(), p["spawns"].as_u64()),
        (Some(since), Some(spawns))
    );
    assert_eq!(status["supervisor"]["pid"].as_u64(), Some(supervisor));
    let (_, alerts, _) = ctl(&sup, &["alerts"]);
    assert!(alerts.contains("out of memory"), "{alerts}");
    drop(sup);
    drop(cgroup);
}

#[test]
fn a_program_over_its_memory_ceiling_is_restarted_and_a_spike_is_not() {
    let dir = Supervisor::dir_with(
        r#"
[program.grower]
command = ["python3", "-c", "import time\nb = b'x' * (400 << 20)\nprint('grown', flush=True)\ntime.sleep(600)"]
startsecs = 0
limits = { rss = "300MB", rss_for = "2s" }
backoff = { initial = "10s" }

[program.spiky]
command = ["python3", "-c", "import time\nb = b'x' * (500 << 20)\nprint('spiked', flush=True)\ntime.sleep(1)\ndel b\nprint('calm', flush=True)\ntime.sleep(600)"]
startsecs = 0
limits = { rss = "300MB", rss_for = "2s" }
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("the grower at 400 MB", || {
        sup.stdout().contains("grower | grown")
    });
    let grown = std::time::Instant::now();
    let stopped = sup.wait_log("the grower restarted for its ceiling", |e| {
        msg(e) == "unhealthy; restarting it" && field(e, "program") == "grower"
    });
    let took = grown.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "restarted {took:?} after it grew"
    );
    let reason = field(&stopped, "reason").to_owned();
    assert!(
        reason.starts_with("memory 4")
            && reason.ends_with("MiB over its limit of 300.0 MiB for 2s"),
        "{stopped}"
    );
    let alert = sup.wait_log("the alert", |e| {
        field(e, "program") == "grower" && msg(e).contains("over its limit")
    });
    assert!(msg(&alert).contains("memory"), "{alert}");
    let (_, out, _) = ctl(&sup, &["status", "--json", "grower"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["programs"][0]["limit_restarts"], 1, "{out}");
    // The spike (500 MB for a second) did not last: the same process, never restarted.
    wait_until("the spike over", || sup.stdout().contains("spiky | calm"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (_, out, _) = ctl(&sup, &["status", "--json", "spiky"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["programs"][0]["spawns"], 1, "{out}");
    assert_eq!(v["programs"][0]["state"], "RUNNING", "{out}");
}

/// The runs a job recorded: (start, end) in seconds, from lines "start end" it appends.
fn runs(path: &std::path::Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// A job that takes `secs` and records its start and end in `runs`.
fn job(dir: &std::path::Path, secs: u32) {
    script(
        dir,
        "job.sh",
        &format!(
            "start=$(date +%s.%N)\nsleep {secs}\necho \"$start $(date +%s.%N)\" >> \"$(dirname \"$0\")/runs\""
        ),
    );
}

fn schedule_status(sup: &Supervisor, name: &str) -> Value {
    let (_, out, _) = ctl(sup, &["status", "--json", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["programs"][0].clone()
}

#[test]
fn a_long_job_every_2s_skips_or_queues_and_never_overlaps() {
    for overlap in ["skip", "queue"] {
        let dir = Supervisor::dir_with(&format!(
            r#"
[program.job]
command = ["@DIR@/job.sh"]
schedule = "every 2s"
overlap = "{overlap}"
"#
        ));
        job(dir.path(), 5);
        let sup = Supervisor::start(dir, Mode::Plain);
        let row = schedule_status(&sup, "job");
        assert_eq!(row["schedule"]["schedule"], "every 2s", "{row}");
        assert!(
            row["description"].as_str().unwrap().contains("next run"),
            "{row}"
        );
        wait_until("two runs over", || runs(&sup.path("runs")).len() >= 2);
        let done = runs(&sup.path("runs"));
        for pair in done.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1 - 0.05,
                "{overlap}: runs overlap: {done:?}"
            );
        }
        let row = schedule_status(&sup, "job");
        match overlap {
            // Slots came while each run ran: skipped, and the next run waits for a slot.
            "skip" => {
                assert!(row["schedule"]["skipped"].as_u64().unwrap() >= 2, "{row}");
                assert!(pair_gap(&done) > 0.5, "{done:?}");
            }
            // Queued: the next run starts as soon as the last one ended.
            _ => {
                assert_eq!(row["schedule"]["skipped"], 0, "{row}");
                assert!(pair_gap(&done) < 1.0, "{done:?}");
            }
        }
        assert_eq!(row["schedule"]["failed"], 0, "{row}");
        assert_eq!(row["schedule"]["last"], "ok", "{row}");
    }
}

/// The pause between the end of the first run and the start of the second.
fn pair_gap(done: &[(f64, f64)]) -> f64 {
    done[1].0 - done[0].1
}

#[test]
fn slots_missed_while_stopped_run_once() {
    let config = r#"
[program.job]
command = ["@DIR@/job.sh"]
schedule = "every 3s"
on_missed = "run_once"
"#;
    let dir = Supervisor::dir_with(config);
    job(dir.path(), 0);
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("a first run", || runs(&sup.path("runs")).len() == 1);
    let dir = sup.stop();
    // Two slots or more pass while no supervisor runs.
    std::thread::sleep(std::time::Duration::from_secs(7));
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let sup = Supervisor::start(dir, Mode::Plain);
    sup.wait_log("the catch-up", |e| {
        msg(e).starts_with("slots missed while the supervisor was down; running once now")
    });
    let row = schedule_status(&sup, "job");
    let next = row["schedule"]["next_run_ms"].as_u64().unwrap() as f64 / 1000.0;
    wait_until("the catch-up run", || runs(&sup.path("runs")).len() == 2);
    // Exactly one run between the restart and the next slot: the catch-up.
    let before_next = runs(&sup.path("runs"))
        .iter()
        .filter(|(s, _)| *s >= started && *s < next - 0.05)
        .count();
    assert_eq!(before_next, 1, "{:?}", runs(&sup.path("runs")));
    let events = sup.log_events(|e| msg(e).starts_with("slots missed"));
    assert_eq!(events.len(), 1);
    assert!(events[0]["missed"].as_u64().unwrap() >= 2, "{}", events[0]);
}

#[test]
fn a_failed_run_is_recorded_and_alerted() {
    let dir = Supervisor::dir_with(
        r#"
[program.job]
command = ["sh", "-c", "exit 3"]
schedule = "every 1s"
"#,
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    let alert = sup.wait_log("the alert", |e| {
        msg(e).starts_with("scheduled run of job failed")
    });
    assert_eq!(msg(&alert), "scheduled run of job failed: exit status 3");
    wait_until("the run recorded", || {
        std::fs::read_to_string(sup.path("data/state/runs/job.jsonl")).is_ok_and(|t| !t.is_empty())
    });
    let text = std::fs::read_to_string(sup.path("data/state/runs/job.jsonl")).unwrap();
    let record: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["ok"], false);
    assert_eq!(record["result"], "exit status 3");
}

#[test]
fn overlap_kill_stops_the_last_run_for_the_next_and_is_no_failure() {
    let dir = Supervisor::dir_with(
        r#"
[program.job]
command = ["@DIR@/job.sh"]
schedule = "every 2s"
overlap = "kill"
"#,
    );
    script(
        dir.path(),
        "job.sh",
        "echo start >> \"$(dirname \"$0\")/starts\"\nexec sleep 60",
    );
    let sup = Supervisor::start(dir, Mode::Plain);
    wait_until("three runs started", || {
        std::fs::read_to_string(sup.path("starts")).is_ok_and(|t| t.lines().count() >= 3)
    });
    let row = schedule_status(&sup, "job");
    assert!(row["schedule"]["runs"].as_u64().unwrap() >= 2, "{row}");
    assert_eq!(row["schedule"]["failed"], 0, "{row}");
    assert!(
        sup.log_events(|e| msg(e).starts_with("scheduled run of job failed"))
            .is_empty(),
        "a killed run is no failure"
    );
}
