#!/usr/bin/env python3
"""statusd against the seed's FastAPI status API (uvicorn, one worker), in one run, same
machine, same load: wrk -t2 -c50 -d10s on /ping and /commit after a 2 s unmeasured warm-up
(and the same with -t1, the control for wrk's own threads),
the server on core 0 and wrk on core 1. The seed's /commit runs `git rev-parse HEAD` per request, as the seed did; ours answers
from the deploy history statusd follows. Prints requests/s, p99 latency, RSS, and the ratios.

Usage: scripts/bench/status_vs_seed.py SUPERVISOR STATUSD PYTHON_WITH_FASTAPI [--duration 10s]
(scripts/bench/status.sh installs what is needed and builds the binaries.)
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

SEED_API = '''
import subprocess, time
from fastapi import FastAPI

app = FastAPI()
STARTED = time.time()

@app.get("/ping")
def ping():
    return {"status": "ok"}

@app.get("/uptime")
def uptime():
    return {"uptime": time.time() - STARTED}

@app.get("/commit")
def commit():
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"commit": sha}
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.org")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(port, path, duration, threads=2):
    out = subprocess.run(["taskset", "-c", "1", "wrk", f"-t{threads}", "-c50", f"-d{duration}", "--latency",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    supervisor, statusd, python = (os.path.abspath(a) for a in sys.argv[1:4])
    duration = sys.argv[sys.argv.index("--duration") + 1] if "--duration" in sys.argv else "10s"
    results = {}
    with tempfile.TemporaryDirectory() as root:
        git(root, "init", "-q", "--bare", "-b", "main", "remote.git")
        git(root, "clone", "-q", "remote.git", "work")
        work = os.path.join(root, "work")
        with open(os.path.join(work, "run.sh"), "w") as f:
            f.write("exec sleep 100000\n")
        git(work, "add", "run.sh")
        git(work, "commit", "-q", "-m", "v1")
        git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
        git(root, "clone", "-q", "remote.git", "app")
        config = os.path.join(root, "supervisor.toml")
        with open(config, "w") as f:
            f.write(f'[program.bot]\ncommand = ["/bin/sh", "{root}/app/run.sh"]\nstartsecs = 0\n'
                    f'echo_output = false\n[program.bot.deploy]\nrepo = "{root}/app"\n')
        sup = subprocess.Popen([supervisor, "run", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = os.path.join(root, "data", "supervisor.sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        # One deploy, so that /commit has something to say.
        subprocess.run([supervisor, "deploy", "bot", "--wait", "-s", sock], check=True, stdout=subprocess.DEVNULL)

        ours_port, seed_port = free_port(), free_port()
        ours = subprocess.Popen(["taskset", "-c", "0", statusd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, STATUSD_LISTEN=f"127.0.0.1:{ours_port}", SUPERVISOR_SOCKET=sock))
        api = os.path.join(root, "seed_api.py")
        with open(api, "w") as f:
            f.write(f"REPO = {os.path.join(root, 'app')!r}\n" + SEED_API)
        seed = subprocess.Popen(["taskset", "-c", "0", python, "-m", "uvicorn", "seed_api:app", "--host", "127.0.0.1",
                                 "--port", str(seed_port), "--workers", "1", "--log-level", "warning"],
                                cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(ours_port)
            wait_port(seed_port)
            time.sleep(1)
            for name, port, proc in (("ours", ours_port, ours), ("seed", seed_port, seed)):
                # Warm up: open the connections and fault the pages in, unmeasured.
                wrk(port, "/ping", "2s")
                for path in ("/ping", "/commit"):
                    print(f"# {name} {path}", flush=True)
                    results[(name, path)] = wrk(port, path, duration)
                    # The control: the same load from one wrk thread. With -t2, wrk's two threads
                    # share core 1 and each waits out the other's time slice (4 ms at HZ=250),
                    # which shows up in the tail when the server is fast enough to keep wrk busy.
                    results[(name, path, "t1")] = wrk(port, path, duration, threads=1)
                results[(name, "rss")] = rss_kib(proc.pid)
        finally:
            for p in (ours, seed, sup):
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
    print()
    print(f"{'measure':<22} {'ours':>12} {'seed':>12} {'ours/seed':>10}")
    for path in ("/ping", "/commit"):
        (a_rps, a_p99, a_err), (b_rps, b_p99, b_err) = results[("ours", path)], results[("seed", path)]
        print(f"{path + ' req/s':<22} {a_rps:>12.0f} {b_rps:>12.0f} {a_rps / b_rps:>9.1f}x")
        print(f"{path + ' p99 ms':<22} {a_p99:>12.2f} {b_p99:>12.2f} {a_p99 / b_p99:>10.3f}")
        (c_rps, c_p99, _), (d_rps, d_p99, _) = results[("ours", path, "t1")], results[("seed", path, "t1")]
        print(f"{path + ' req/s (-t1)':<22} {c_rps:>12.0f} {d_rps:>12.0f} {c_rps / d_rps:>9.1f}x")
        print(f"{path + ' p99 ms (-t1)':<22} {c_p99:>12.2f} {d_p99:>12.2f} {c_p99 / d_p99:>10.3f}")
        if a_err or b_err:
            print(f"{path + ' non-2xx':<22} {a_err:>12} {b_err:>12}")
    a, b = results[("ours", "rss")], results[("seed", "rss")]
    print(f"{'RSS KiB':<22} {a:>12} {b:>12} {a / b:>10.3f}")


if __name__ == "__main__":
    main()
