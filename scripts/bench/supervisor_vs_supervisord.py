#!/usr/bin/env python3
"""Our supervisor against supervisord, side by side in one run, on the same machine.

Measures, for each: RSS with 3 and 200 programs; exec -> all children spawned; kill -9 ->
respawn; SIGTERM -> everything stopped; capture of 200 MiB of output (time and CPU, against the
`writer | cat > file` floor); idle CPU and wake-ups per second with 200 programs; the round trip
of the `status` command (`supervisor status` against `supervisorctl status`). Prints the
figures and the ratios (supervisord / ours, so > 1 means we are better).

Usage: scripts/bench/supervisor_vs_supervisord.py OUR_BINARY [--quick]
Needs: supervisord (Debian package `supervisor`), seq, sleep, cat. Run as any user.
"""

import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINES = 13_107_200  # "line 0000000001\n" is 16 bytes: 200 MiB
WRITER = ["seq", "-f", "line %010.0f", "1", str(LINES)]
SLEEP = "/bin/sleep"


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def sleepers(pid):
    """Children of `pid` that have exec'd sleep (spawned and running the real program)."""
    return sorted(c for c in children(pid) if comm(c) == "sleep")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def context_switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_for(what, cond, timeout=120, step=0.0005):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(step)


class Ours:
    name = "ours"

    def __init__(self, binary):
        self.binary = binary

    def config(self, d, programs, log_capture=False):
        out = ["[supervisor]", f'logdir = "{d}/logs"', 'shutdown_timeout = "30s"', ""]
        for name, argv in programs:
            args = ", ".join(f'"{a}"' for a in argv)
            out += [
                f"[program.{name}]",
                f"command = [{args}]",
                "startsecs = 0",
                "echo_output = false",
                # A crash after a stable run (here: 1 s) restarts at once.
                'backoff = { reset = "1s" }',
            ]
            if log_capture:
                out += ["autorestart = false", "stdout_logfile_maxbytes = 0"]
            out.append("")
        path = os.path.join(d, "supervisor.toml")
        with open(path, "w") as f:
            f.write("\n".join(out))
        return [self.binary, "run", "-c", path]

    def log_path(self, d, name):
        return os.path.join(d, "logs", f"{name}.log")

    def status_command(self, d):
        return [self.binary, "status", "-s", os.path.join(d, "data", "supervisor.sock")]


class Supervisord:
    name = "supervisord"

    def config(self, d, programs, log_capture=False):
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        out = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={d}/supervisord.log",
            f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}/logs",
            "user=root" if os.geteuid() == 0 else "",
            "[unix_http_server]",
            f"file={d}/supervisord.sock",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{d}/supervisord.sock",
            "",
        ]
        for name, argv in programs:
            out += [
                f"[program:{name}]",
                # supervisord splits like a shell and interpolates %(...)s: quote, double the %.
                "command=" + " ".join(shlex.quote(a) for a in argv).replace("%", "%%"),
                "startsecs=0",
                "autorestart=" + ("false" if log_capture else "true"),
                f"stdout_logfile={d}/logs/{name}.log",
                f"stderr_logfile={d}/logs/{name}.err.log",
            ]
            if log_capture:
                out.append("stdout_logfile_maxbytes=0")
            out.append("")
        path = os.path.join(d, "supervisord.conf")
        with open(path, "w") as f:
            f.write("\n".join(out))
        return ["supervisord", "-c", path]

    def log_path(self, d, name):
        return os.path.join(d, "logs", f"{name}.log")

    def status_command(self, d):
        return ["supervisorctl", "-c", os.path.join(d, "supervisord.conf"), "status"]


def start(impl, d, programs, **kw):
    argv = impl.config(d, programs, **kw)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    return proc, t0


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sleeping(n):
    return [(f"p{i}", [SLEEP, "100000"]) for i in range(n)]


def bench_start_stop_respawn(impl, rounds):
    """exec -> 3 children running; kill -9 -> respawn; SIGTERM -> all stopped; RSS(3)."""
    starts, respawns, stops, rss = [], [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            proc, t0 = start(impl, d, sleeping(3))
            wait_for("3 children", lambda: len(sleepers(proc.pid)) == 3)
            starts.append(time.monotonic() - t0)
            # A stable run (a crash restarts at once), past the release of start-up's pages (2 s).
            time.sleep(3)
            rss.append(rss_kib(proc.pid))
            victim = sleepers(proc.pid)[0]
            t1 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(
                "respawn",
                lambda: len(sleepers(proc.pid)) == 3 and victim not in sleepers(proc.pid),
            )
            respawns.append(time.monotonic() - t1)
            t2 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            stops.append(time.monotonic() - t2)
    return {
        "start 3 (ms)": statistics.median(starts) * 1000,
        "respawn (ms)": statistics.median(respawns) * 1000,
        "stop 3 (ms)": statistics.median(stops) * 1000,
        "RSS 3 programs (KiB)": statistics.median(rss),
    }


def bench_status(impl, rounds):
    """The whole `status` command, process start to exit, against a daemon with 3 programs."""
    with tempfile.TemporaryDirectory() as d:
        proc, _ = start(impl, d, sleeping(3))
        try:
            wait_for("3 children", lambda: len(sleepers(proc.pid)) == 3)
            time.sleep(0.5)
            command = impl.status_command(d)
            times = []
            for _ in range(rounds):
                t0 = time.monotonic()
                done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                times.append(time.monotonic() - t0)
                if b"RUNNING" not in done.stdout:
                    raise RuntimeError(f"{command}: {done.stdout!r} {done.stderr!r}")
        finally:
            stop(proc)
    return {"status round trip (ms)": statistics.median(times) * 1000}


def bench_200(impl, idle_seconds):
    with tempfile.TemporaryDirectory() as d:
        proc, t0 = start(impl, d, sleeping(200))
        try:
            # The first child (running sleep), then all: /proc is polled every 0.5 ms.
            wait_for("a first child", lambda: len(sleepers(proc.pid)) >= 1)
            first = time.monotonic() - t0
            wait_for("200 children", lambda: len(sleepers(proc.pid)) == 200)
            started = time.monotonic() - t0
            # Settled: past our one-time release of start-up's code pages, 2 s after start
            # (supervisor/src/memory.rs), which is not idle work.
            time.sleep(3)
            rss = rss_kib(proc.pid)
            cpu0, cs0 = cpu_seconds(proc.pid), context_switches(proc.pid)
            time.sleep(idle_seconds)
            cpu1, cs1 = cpu_seconds(proc.pid), context_switches(proc.pid)
        finally:
            stop(proc)
    return {
        "first of 200 running (ms)": first * 1000,
        "start 200 (ms)": started * 1000,
        "RSS 200 programs (KiB)": rss,
        "idle CPU 200 (ms/s)": (cpu1 - cpu0) * 1000 / idle_seconds,
        "idle wake-ups 200 (/s)": (cs1 - cs0) / idle_seconds,
    }


def bench_capture(impl):
    with tempfile.TemporaryDirectory() as d:
        proc, t0 = start(impl, d, [("flood", WRITER)], log_capture=True)
        path = impl.log_path(d, "flood")
        try:
            wait_for(
                "200 MiB in the log",
                lambda: os.path.exists(path) and os.path.getsize(path) >= LINES * 16,
                timeout=600,
                step=0.002,
            )
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(proc.pid)
        finally:
            stop(proc)
        size = os.path.getsize(path)
    return {
        "capture 200 MiB (s)": elapsed,
        "capture CPU (s)": cpu,
        "capture lost bytes": LINES * 16 - size,
    }


def capture_floor():
    """`writer | cat > file`: the least any capture can cost."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "out"), "wb") as out:
            t0 = time.monotonic()
            writer = subprocess.Popen(WRITER, stdout=subprocess.PIPE)
            cat = subprocess.Popen(["cat"], stdin=writer.stdout, stdout=out)
            writer.stdout.close()
            _, _, usage = os.wait4(cat.pid, 0)
            cat.returncode = 0
            writer.wait()
            elapsed = time.monotonic() - t0
    return {"capture 200 MiB (s)": elapsed, "capture CPU (s)": usage.ru_utime + usage.ru_stime}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    quick = "--quick" in sys.argv
    impls = [Ours(os.path.abspath(sys.argv[1])), Supervisord()]
    rounds = 3 if quick else 5
    idle = 5 if quick else 10
    results = {}
    for impl in impls:
        r = {}
        print(f"# {impl.name}: start/respawn/stop x{rounds}", flush=True)
        r.update(bench_start_stop_respawn(impl, rounds))
        print(f"# {impl.name}: status round trip x{rounds * 10}", flush=True)
        r.update(bench_status(impl, rounds * 10))
        print(f"# {impl.name}: 200 programs, idle {idle}s", flush=True)
        r.update(bench_200(impl, idle))
        print(f"# {impl.name}: 200 MiB capture", flush=True)
        r.update(bench_capture(impl))
        results[impl.name] = r
        print(f"# {impl.name}: {r}", flush=True)
    print("# cat floor: 200 MiB", flush=True)
    floor = capture_floor()

    ours, theirs = results["ours"], results["supervisord"]
    print()
    print(f"{'measure':<26} {'ours':>12} {'supervisord':>12} {'supervisord/ours':>17}")
    for key in ours:
        a, b = ours[key], theirs[key]
        ratio = f"{b / a:.1f}x" if a else "-"
        print(f"{key:<26} {a:>12.2f} {b:>12.2f} {ratio:>17}")
    print()
    print(f"{'capture vs cat floor':<26} {'ours':>12} {'supervisord':>12} {'cat':>17}")
    for key in ("capture 200 MiB (s)", "capture CPU (s)"):
        f = floor[key]
        print(
            f"{key:<26} {ours[key] / f:>11.2f}x {theirs[key] / f:>11.2f}x {f:>16.2f}s"
        )


if __name__ == "__main__":
    main()
