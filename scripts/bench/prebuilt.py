#!/usr/bin/env python3
"""Prebuilt releases (artifact_url) against building on the machine, in one run:

1. push -> new version ready: a deploy of a signed release served on 127.0.0.1 (packed and
   signed by deploy/ci/release, as the forge's CI would) until the deploy's `ready` stage, for a
   program that is ready as soon as it runs (READY=1 at once: no bot connect time), against a
   deploy that builds the bot here (`cargo build --release -p bot` in a clone of this
   workspace, with every dependency already compiled in target/: the most favourable case for
   building; a first build on a Pi takes 15-25 min, docs/CONTAINER.md).
2. bytes written per deploy (each step's block output, from the deploy record), both ways.
3. memory: the supervisor's (PID 1's) peak RSS before and after deploying a 50 MB release, and
   after a 5 MB one; and the download step's own peak RSS for each (it streams: neither should
   grow with the size).

Usage: scripts/bench/prebuilt.py SUPERVISOR [--rounds N] [--no-build | --only-build]
(scripts/bench/prebuilt.sh builds the supervisor as shipped.)
"""

import functools
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_vs_seed import READY_AT_ONCE as READY_BODY, git  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A program that is ready as soon as it runs: READY=1 on its notify socket, then sleeps.
READY_AT_ONCE = "#!/bin/sh\n" + READY_BODY


def serve(directory):
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Supervisor:
    def __init__(self, binary, directory, config):
        self.binary, self.dir = binary, directory
        self.config = os.path.join(directory, "supervisor.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.proc = subprocess.Popen([binary, "run", "-c", self.config], cwd=directory,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(directory, "supervisor.sock")):
            assert time.monotonic() < deadline, "the supervisor did not start"
            time.sleep(0.02)

    def ctl(self, *args):
        return subprocess.run([self.binary, *args, "-c", self.config], cwd=self.dir,
                              capture_output=True, text=True)

    def deploy_until_ready(self, *args):
        """Seconds from the request to the deploy's `ready` line, and the deploy's result."""
        start = time.monotonic()
        proc = subprocess.Popen([self.binary, "deploy", "app", "--wait", *args, "-c", self.config],
                                cwd=self.dir, stdout=subprocess.PIPE, text=True)
        ready = None
        out = []
        for line in proc.stdout:
            out.append(line)
            if ready is None and ": ready: " in line:
                ready = time.monotonic() - start
        proc.wait()
        assert proc.returncode == 0 and ready is not None, "".join(out)
        return ready

    def last_record(self):
        done = self.ctl("deploys", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)[0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def release(rel, repo, commit, payload):
    """Packs `payload` (a folder) with deploy/ci/release for this machine, signed with rel's key."""
    out = os.path.join(rel, "served", commit)
    subprocess.run([os.path.join(ROOT, "deploy/ci/release"), "--arch", arch(), "--name", "app",
                    "--prebuilt", f"{arch()}={payload}", "--out", out,
                    "--key", os.path.join(rel, "minisign.key")],
                   cwd=repo, check=True, capture_output=True)


def arch():
    machine = os.uname().machine
    return {"armv7l": "armv7"}.get(machine, machine)


def prebuilt(binary, work, rounds):
    rel = os.path.join(work, "prebuilt")
    repo = os.path.join(rel, "repo")
    os.makedirs(os.path.join(rel, "served"))
    git(rel, "init", "-q", "-b", "main", "repo")
    subprocess.run(["minisign", "-G", "-W", "-f", "-p", os.path.join(rel, "minisign.pub"),
                    "-s", os.path.join(rel, "minisign.key")], check=True, capture_output=True)
    key = open(os.path.join(rel, "minisign.pub")).read().split()[-1]
    server = serve(os.path.join(rel, "served"))
    payload = os.path.join(rel, "payload")
    os.makedirs(payload)
    with open(os.path.join(payload, "app"), "w") as f:
        f.write(READY_AT_ONCE)
    os.chmod(os.path.join(payload, "app"), 0o755)
    sup = Supervisor(binary, rel, f"""
[supervisor]
logdir = "logs"
socket = "supervisor.sock"
[program.app]
command = ["{rel}/releases/current/app"]
ready = "notify"
startsecs = 0
[program.app.deploy]
url = "{repo}"
artifact_url = "http://127.0.0.1:{server.server_port}/{{commit}}/app-{{arch}}.tar.zst"
signing_key = "{key}"
releases = "{rel}/releases"
healthy_after = "200ms"
""")
    times, written = [], []
    try:
        for i in range(rounds + 1):
            git(repo, "commit", "-q", "--allow-empty", "-m", f"round {i}")
            commit = git(repo, "rev-parse", "HEAD")
            release(rel, repo, commit, payload)
            took = sup.deploy_until_ready("--commit", commit)
            if i > 0:  # the first deploy starts from nothing
                times.append(took)
                written.append(sup.last_record().get("written_bytes", 0))
        # Memory: PID 1's peak before and after a 5 MB and a 50 MB release; the download step's
        # own peak, run as the deploy runs it.
        pid = sup.proc.pid
        memory = {"before": vm(pid, "VmHWM")}
        step_peaks, written_by_size = {}, {}
        for mb in (5, 50):
            with open(os.path.join(payload, "data"), "wb") as f:
                f.write(os.urandom(mb << 20))
            git(repo, "commit", "-q", "--allow-empty", "-m", f"{mb} MB")
            commit = git(repo, "rev-parse", "HEAD")
            release(rel, repo, commit, payload)
            sup.deploy_until_ready("--commit", commit)
            memory[f"after {mb} MB"] = vm(pid, "VmHWM")
            written_by_size[mb] = sup.last_record().get("written_bytes", 0)
            url = f"http://127.0.0.1:{server.server_port}/{commit}/app-{arch()}.tar.zst"
            step = subprocess.Popen([binary, "release-fetch", f"--key={key}", f"--commit={commit}",
                                     f"--releases={rel}/bench-releases", "--name=app", "--keep=1",
                                     f"--max-size={512 << 20}", "--read-timeout-ms=30000", "--",
                                     url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Its own peak, read from /proc while it runs: a child's ru_maxrss would include
            # this script's peak (the memory it had when it forked, 50 MB of random bytes).
            peak = 0
            while step.poll() is None:
                try:
                    peak = max(peak, vm(step.pid, "VmHWM"))
                except OSError:
                    pass
                time.sleep(0.005)
            assert step.returncode == 0, "release-fetch failed"
            step_peaks[mb] = peak
            os.remove(os.path.join(payload, "data"))
    finally:
        sup.stop()
        server.shutdown()
    return times, written, memory, step_peaks, written_by_size


def build(binary, work):
    """One deploy that builds the bot here, dependencies already compiled (warm)."""
    src = os.path.join(work, "build")
    git(work, "clone", "-q", "--bare", "--no-local", ROOT, "build-remote")
    git(work, "clone", "-q", "build-remote", "build")
    target = os.path.join(ROOT, "target")
    ready = os.path.join(work, "ready.sh")
    with open(ready, "w") as f:
        f.write(READY_AT_ONCE)
    # The supervisor's own folder apart from the tree (a checkout would replace its files).
    home = os.path.join(work, "build-supervisor")
    os.makedirs(home)
    sup = Supervisor(binary, home, f"""
[supervisor]
logdir = "{work}/build-logs"
socket = "supervisor.sock"
[program.app]
command = ["/bin/sh", "{ready}"]
ready = "notify"
startsecs = 0
[program.app.deploy]
repo = "{src}"
steps = [["cargo", "build", "--release", "--offline", "--locked", "-p", "bot"]]
step_timeout = "60m"
healthy_after = "200ms"
pass_env = ["PATH", "HOME", "RUSTUP_HOME", "CARGO_HOME"]
environment = {{ CARGO_TARGET_DIR = "{target}" }}
""")
    try:
        remote = os.path.join(work, "build-remote")
        git(work, "clone", "-q", remote, "build-push")
        push = os.path.join(work, "build-push")
        with open(os.path.join(push, "bot/src/main.rs"), "a") as f:
            f.write("\n// a change to deploy\n")
        git(push, "commit", "-q", "-am", "a change to the bot")
        git(push, "push", "-q", "origin", "HEAD:main")
        took = sup.deploy_until_ready()
        return took, sup.last_record().get("written_bytes", 0)
    finally:
        sup.stop()


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 10
    work = tempfile.mkdtemp(dir=os.path.join(ROOT, "target"), prefix="bench-prebuilt-")
    try:
        mib = 1 << 20
        if "--only-build" in sys.argv:
            took, wrote = build(binary, work)
            print(f"push -> ready, building the bot here (deps warm): {took:.1f} s, "
                  f"{wrote / mib:.1f} MiB written")
            return
        times, written, memory, peaks, by_size = prebuilt(binary, work, rounds)
        print(f"push -> ready, prebuilt release from 127.0.0.1 ({rounds} rounds): "
              f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms")
        print(f"bytes written per prebuilt deploy: median {statistics.median(written) / 1024:.0f} KiB "
              "(a release of a few KiB); " + ", ".join(
                  f"{mb} MB release {n / mib:.1f} MiB" for mb, n in by_size.items()))
        print("supervisor (PID 1) peak RSS: " + ", ".join(
            f"{k} {v / mib:.1f} MiB" for k, v in memory.items()))
        print("download step's own peak RSS: " + ", ".join(
            f"{mb} MB release {v / mib:.1f} MiB" for mb, v in peaks.items()))
        if "--no-build" not in sys.argv:
            took, wrote = build(binary, work)
            print(f"push -> ready, building the bot here (deps warm): {took:.1f} s, "
                  f"{wrote / mib:.1f} MiB written")
            print(f"ratio build / prebuilt: {took / statistics.median(times):.0f}x the time; "
                  f"{wrote / max(by_size[50], 1):.1f}x the bytes written of a 50 MB release")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
