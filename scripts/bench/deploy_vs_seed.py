#!/usr/bin/env python3
"""Push -> new commit running: our stack (hookd + the supervisor's deploy engine) against the
seed's (a FastAPI webhook that runs `git pull` then `supervisorctl restart bot` under
supervisord), side by side in one run, on the same machine, with the same git remote.

Each round pushes a commit to a local bare repository, posts the webhook, and measures the time
until the program's log shows the new version (the new process runs). No build step: the seed's
case of an interpreted bot restarted after a pull. Both use startsecs = 1.

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

SECRET = b"bench-secret"


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


def push(root, version):
    work = os.path.join(root, "work")
    with open(os.path.join(work, "run.sh"), "w") as f:
        f.write(f'echo "version {version}"\nexec sleep 100000\n')
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
    a, b = statistics.median(ours_times) * 1000, statistics.median(seed_times) * 1000
    print()
    print(f"{'measure':<40} {'ours':>10} {'seed':>10} {'ours/seed':>10}")
    print(f"{'push -> new commit running (median ms)':<40} {a:>10.1f} {b:>10.1f} {a / b:>10.3f}")


if __name__ == "__main__":
    main()
