#!/usr/bin/env python3
"""Push -> new commit running: our stack (hookd + the supervisor's deploy engine) against the
seed's (a FastAPI webhook that runs `git pull` then `supervisorctl restart bot` under
supervisord), side by side in one run, on the same machine, with the same git remote.

Each round pushes a commit to a local bare repository, posts the webhook, and measures the time
until the program's log shows the new version (the new process runs). No build step: the seed's
case of an interpreted bot restarted after a pull. Both use startsecs = 1.

Then, ours only (the seed has neither): push -> the new version *ready* for a program with
`ready = "notify"` that sends READY=1 as soon as it runs (the `ready` stage of the deploy, read
from the event stream; the seed's equivalent is its `startsecs`, 1 s); and the cost of
`poll` with an unchanged remote: the supervisor's CPU and wake-ups per poll, and per hour at
`poll = "1m"`.

Usage: scripts/bench/deploy_vs_seed.py SUPERVISOR HOOKD PYTHON_WITH_FASTAPI [--rounds N]
(scripts/bench/deploy.sh installs what is needed and builds the binaries.)
"""

import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from health_checks import Events, cpu_ns  # noqa: E402  (the event stream client, schedstat CPU)
from supervisor_vs_supervisord import context_switches  # noqa: E402

SECRET = b"bench-secret"

READY_AT_ONCE = (
    "python3 -c \"import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\"\nexec sleep 100000\n"
)


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.org")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


def setup(root):
    git(root, "init", "-q", "--bare", "-b", "main", "remote.git")
    git(root, "clone", "-q", "remote.git", "work")
    work = os.path.join(root, "work")
    with open(os.path.join(work, "run.sh"), "w") as f:
        f.write('echo "version 0"\nexec sleep 100000\n')
    git(work, "add", "run.sh")
    git(work, "commit", "-q", "-m", "v0")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    git(root, "clone", "-q", "remote.git", "ours")
    git(root, "clone", "-q", "remote.git", "seed")


def push(root, version, rest="exec sleep 100000\n"):
    work = os.path.join(root, "work")
    with open(os.path.join(work, "run.sh"), "w") as f:
        f.write(f'echo "version {version}"\n{rest}')
    git(work, "commit", "-q", "-a", "-m", version)
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    return git(work, "rev-parse", "HEAD")


SEED_APP = '''
import subprocess
from fastapi import FastAPI

app = FastAPI()

@app.post("/webhook")
def webhook():
    subprocess.run(["git", "pull", "-q"], cwd=REPO, check=True)
    subprocess.run(["supervisorctl", "-c", CONF, "restart", "bot"], check=True)
    return {"status": "deployed"}
'''


def start_ours(root, supervisor, hookd, port):
    config = f"""
[program.bot]
command = ["/bin/sh", "{root}/ours/run.sh"]
echo_output = false
[program.bot.deploy]
repo = "{root}/ours"

[program.hookd]
command = ["{hookd}"]
echo_output = false
environment = {{ HOOKD_LISTEN = "127.0.0.1:{port}", HOOKD_SECRET = "{SECRET.decode()}", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock" }}
"""
    path = os.path.join(root, "supervisor.toml")
    with open(path, "w") as f:
        f.write(config)
    proc = subprocess.Popen([supervisor, "run", "-c", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = os.path.join(root, "data", "logs", "bot.log")
    wait_for("our bot", lambda: "version 0" in read(log))
    wait_for("hookd", lambda: _listening(port))
    return proc, log


def start_seed(root, python, port):
    conf = os.path.join(root, "supervisord.conf")
    log = os.path.join(root, "seed-bot.log")
    app = os.path.join(root, "seed_app.py")
    with open(app, "w") as f:
        f.write(f"REPO = {os.path.join(root, 'seed')!r}\nCONF = {conf!r}\n" + SEED_APP)
    with open(conf, "w") as f:
        f.write(f"""[supervisord]
nodaemon=true
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
{"user=root" if os.geteuid() == 0 else ""}
[unix_http_server]
file={root}/supervisord.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{root}/supervisord.sock
[program:bot]
command=/bin/sh {root}/seed/run.sh
stdout_logfile={log}
[program:webhook]
command={python} -m uvicorn seed_app:app --host 127.0.0.1 --port {port} --workers 1
directory={root}
""")
    proc = subprocess.Popen(["supervisord", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for("the seed's bot", lambda: "version 0" in read(log))
    wait_for("the seed's webhook", lambda: _listening(port))
    return proc, log


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ours_push_to_ready(root, supervisor, hookd, rounds):
    """Push -> the `ready` stage of our deploy, for a program that sends READY=1 at once."""
    port = free_port()
    config = f"""
[program.bot]
command = ["/bin/sh", "{root}/ours/run.sh"]
echo_output = false
ready = "notify"
[program.bot.deploy]
repo = "{root}/ours"
healthy_after = "100ms"

[program.hookd]
command = ["{hookd}"]
echo_output = false
environment = {{ HOOKD_LISTEN = "127.0.0.1:{port}", HOOKD_SECRET = "{SECRET.decode()}", SUPERVISOR_SOCKET = "{root}/data/supervisor.sock" }}
"""
    path = os.path.join(root, "supervisor.toml")
    with open(path, "w") as f:
        f.write(config)
    proc = subprocess.Popen([supervisor, "run", "-c", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    times = []
    try:
        wait_for("hookd", lambda: _listening(port))
        events = Events(os.path.join(root, "data", "supervisor.sock"))
        for i in range(1, rounds + 1):
            sha = push(root, f"ready {i}", READY_AT_ONCE)
            body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
            sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            t0 = time.monotonic()
            post(f"http://127.0.0.1:{port}/webhook", body, {
                "Content-Type": "application/json", "X-Gitea-Event": "push",
                "X-Gitea-Delivery": f"ready-{i}", "X-Gitea-Signature": sig})
            while True:
                e = json.loads(events.frame()).get("event", {})
                if e.get("type") == "deploy" and e.get("stage") == "ready":
                    times.append(time.monotonic() - t0)
                    break
            while True:  # the gate's end, before the next push
                e = json.loads(events.frame()).get("event", {})
                if e.get("type") == "deploy" and e.get("stage") in ("succeeded", "rolled_back", "failed"):
                    break
    finally:
        stop(proc)
    return times


def ours_poll_cost(root, supervisor, seconds):
    """CPU and wake-ups of the supervisor per poll of an unchanged remote (`poll = "2s"`)."""
    config = f"""
[program.bot]
command = ["/bin/sleep", "100000"]
echo_output = false
startsecs = 0
[program.bot.deploy]
repo = "{root}/ours"
poll = "2s"
"""
    path = os.path.join(root, "supervisor-poll.toml")
    with open(path, "w") as f:
        f.write(config)
    proc = subprocess.Popen([supervisor, "run", "-c", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        c0, s0 = cpu_ns(proc.pid), context_switches(proc.pid)
        time.sleep(seconds)
        c1, s1 = cpu_ns(proc.pid), context_switches(proc.pid)
    finally:
        stop(proc)
    polls = seconds / 2
    return (c1 - c0) / 1e6 / polls, (s1 - s0) / polls


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    supervisor, hookd, python = (os.path.abspath(a) for a in sys.argv[1:4])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    ours_times, seed_times = [], []
    with tempfile.TemporaryDirectory() as root:
        setup(root)
        ours_port, seed_port = free_port(), free_port()
        ours, ours_log = start_ours(root, supervisor, hookd, ours_port)
        seed, seed_log = start_seed(root, python, seed_port)
        try:
            for i in range(1, rounds + 1):
                sha = push(root, str(i))
                body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
                t0 = time.monotonic()
                post(f"http://127.0.0.1:{ours_port}/webhook", body, {
                    "Content-Type": "application/json", "X-Gitea-Event": "push",
                    "X-Gitea-Delivery": f"bench-{i}", "X-Gitea-Signature": sig})
                wait_for("our new version", lambda: f"version {i}\n" in read(ours_log))
                ours_times.append(time.monotonic() - t0)
                time.sleep(1.5)  # let the health gate finish before the next push
                t0 = time.monotonic()
                post(f"http://127.0.0.1:{seed_port}/webhook", body, {"Content-Type": "application/json"})
                wait_for("the seed's new version", lambda: f"version {i}\n" in read(seed_log))
                seed_times.append(time.monotonic() - t0)
                print(f"# round {i}: ours {ours_times[-1] * 1000:.1f} ms, seed {seed_times[-1] * 1000:.1f} ms", flush=True)
        finally:
            stop(ours)
            stop(seed)
        print("# ours: push -> ready (READY=1 at once)", flush=True)
        ready = ours_push_to_ready(root, supervisor, hookd, rounds)
        print("# ours: poll = 2s, unchanged remote, 60 s", flush=True)
        poll_cpu_ms, poll_wakeups = ours_poll_cost(root, supervisor, 60)
    a, b = statistics.median(ours_times) * 1000, statistics.median(seed_times) * 1000
    print()
    print(f"{'measure':<40} {'ours':>10} {'seed':>10} {'ours/seed':>10}")
    print(f"{'push -> new commit running (median ms)':<40} {a:>10.1f} {b:>10.1f} {a / b:>10.3f}")
    r = statistics.median(ready) * 1000
    print(f"{'push -> new commit ready (median ms)':<40} {r:>10.1f} {'(1 s+)':>10}")
    print()
    print(f"poll, unchanged remote: {poll_cpu_ms:.2f} ms supervisor CPU and {poll_wakeups:.1f} wake-ups "
          f"per poll; at poll = 1m: {poll_cpu_ms * 60:.0f} ms CPU and {poll_wakeups * 60:.0f} wake-ups an hour "
          "(git's own work is its own process's)")


if __name__ == "__main__":
    main()
