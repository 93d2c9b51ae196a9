#!/usr/bin/env python3
"""Readiness and health checks: what they cost and how fast they act, side by side in one run.

1. READY=1 -> RUNNING: a `ready = "notify"` program sends READY=1 (its clock read just before
   the send); a client subscribed to our event stream reads the RUNNING state (clock read on
   arrival). supervisord has no readiness: a program is RUNNING after `startsecs` (1 s by
   default) whatever it is doing; its figure is "ready at once -> RUNNING in its log".
2. Idle cost: the supervisor's CPU and wake-ups (context switches) per minute with 3 sleeping
   programs, without checks, with a TCP liveness check each every 10 s, and with a command
   check (`true`) each every 10 s; and supervisord with the same 3 programs.

Usage: scripts/bench/health_checks.py OUR_BINARY [--quick]
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import (  # noqa: E402  (the shared helpers)
    Supervisord,
    context_switches,
    stop,
    wait_for,
)

NOTIFIER = r"""
import os, socket, sys, time
time.sleep(0.05)
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
t0 = time.monotonic()
s.sendto(b"READY=1", addr)
with open(sys.argv[1], "a") as f:
    f.write(f"{t0}\n")
time.sleep(100000)
"""

READY_AT_ONCE = r"""
import sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{time.time()}\n")
time.sleep(100000)
"""


def cpu_ns(pid):
    """CPU time of every thread of `pid` in nanoseconds (schedstat: finer than clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


HELLO = b'{"hello":{"protocol":1,"client":"health-bench"}}\n'


def connect(path):
    """A control connection after the hello exchange (docs/PROTOCOL.md)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(HELLO)
    data = b""
    while b"\n" not in data:
        data += sock.recv(4096)
    assert b'"hello"' in data, data
    return sock


class Events:
    """A subscription to our supervisor's event stream, and requests on a second connection."""

    def __init__(self, sock_path):
        self.sock = connect(sock_path)
        self.sock.sendall(b'{"id":1,"verb":"events"}\n')
        self.buf = b""
        assert "subscribed" in self.frame()
        self.ctl = connect(sock_path)

    def frame(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the event stream ended")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def running(self, program):
        """Blocks until `program` becomes RUNNING; returns the clock at arrival."""
        while True:
            v = json.loads(self.frame())
            e = v.get("event", {})
            if e.get("type") == "state" and e["program"] == program and e["to"] == "RUNNING":
                return time.monotonic()

    def restart(self, program):
        """Asks for a restart without waiting for its answer (it comes once RUNNING)."""
        self.ctl.sendall(json.dumps({"id": 2, "verb": "restart", "names": [program]}).encode() + b"\n")

    def answer(self):
        data = b""
        while b"\n" not in data:
            data += self.ctl.recv(65536)


def ours_ready_latency(binary, rounds):
    with tempfile.TemporaryDirectory() as d:
        write(f"{d}/n.py", NOTIFIER)
        marks = f"{d}/marks"
        write(
            f"{d}/supervisor.toml",
            f'[supervisor]\nlogdir = "{d}/logs"\n\n[program.n]\n'
            f'command = ["python3", "{d}/n.py", "{marks}"]\nready = "notify"\n'
            "echo_output = false\nstopwaitsecs = 1\n",
        )
        proc = subprocess.Popen(
            [binary, "run", "-c", f"{d}/supervisor.toml"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=d,
        )
        try:
            sock = f"{d}/data/supervisor.sock"
            wait_for("the socket", lambda: os.path.exists(sock), timeout=30)
            ev = Events(sock)
            ev.running("n")  # the first start
            out = []
            for _ in range(rounds):
                ev.restart("n")
                t1 = ev.running("n")
                ev.answer()
                with open(marks) as f:
                    t0 = float(f.read().split()[-1])
                out.append((t1 - t0) * 1000)
            return out
        finally:
            stop(proc)


def supervisord_ready_latency(rounds):
    """A program ready the moment it starts -> 'entered RUNNING state' in supervisord's log."""
    out = []
    impl = Supervisord()
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            write(f"{d}/r.py", READY_AT_ONCE)
            argv = impl.config(d, [("r", ["python3", f"{d}/r.py", f"{d}/marks"])])
            conf = argv[-1]
            with open(conf) as f:
                text = f.read().replace("startsecs=0", "startsecs=1")
            write(conf, text)
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
            try:
                log = f"{d}/supervisord.log"

                def entered():
                    try:
                        with open(log) as f:
                            for line in f:
                                if "entered RUNNING state" in line:
                                    return line
                    except OSError:
                        return None
                    return None

                line = wait_for("RUNNING", entered, timeout=30, step=0.01)
                stamp = line.split(" INFO")[0].strip()
                at = time.mktime(time.strptime(stamp.split(",")[0], "%Y-%m-%d %H:%M:%S"))
                at += int(stamp.split(",")[1]) / 1000
                with open(f"{d}/marks") as f:
                    t0 = float(f.read().split()[0])
                out.append((at - t0) * 1000)
            finally:
                stop(proc)
    return out


def idle_cost(argv_for, seconds):
    """CPU ms and context switches per minute of the process `argv_for(d)` starts."""
    with tempfile.TemporaryDirectory() as d:
        argv = argv_for(d)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
        try:
            time.sleep(3)  # started, first checks scheduled
            c0, s0 = cpu_ns(proc.pid), context_switches(proc.pid)
            time.sleep(seconds)
            c1, s1 = cpu_ns(proc.pid), context_switches(proc.pid)
            per_min = 60 / seconds
            return (c1 - c0) / 1e6 * per_min, (s1 - s0) * per_min
        finally:
            stop(proc)


def ours_config(binary, check, port):
    def argv_for(d):
        lines = [f'[supervisor]\nlogdir = "{d}/logs"\n']
        for i in range(3):
            lines.append(f'[program.p{i}]\ncommand = ["/bin/sleep", "100000"]\nstartsecs = 0\necho_output = false')
            if check == "tcp":
                lines.append(f'healthcheck = {{ tcp = "127.0.0.1:{port}", interval = "10s" }}')
            elif check == "command":
                lines.append('healthcheck = { command = ["/bin/true"], interval = "10s" }')
            lines.append("")
        write(f"{d}/supervisor.toml", "\n".join(lines))
        return [binary, "run", "-c", f"{d}/supervisor.toml"]

    return argv_for


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    quick = "--quick" in sys.argv
    rounds = 20 if quick else 50
    idle = 20 if quick else 60

    print(f"# READY=1 -> RUNNING, ours x{rounds}", flush=True)
    ours = ours_ready_latency(binary, rounds)
    print(f"# ready at once -> RUNNING, supervisord (startsecs=1) x5", flush=True)
    theirs = supervisord_ready_latency(5)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    costs = {}
    for check in ("none", "tcp", "command"):
        print(f"# idle {idle}s, 3 programs, checks: {check}", flush=True)
        costs[f"ours, {check}"] = idle_cost(ours_config(binary, check, port), idle)
        # Accept what the TCP checks connected, so the backlog never fills.
        listener.setblocking(False)
        try:
            while True:
                listener.accept()[0].close()
        except BlockingIOError:
            pass
    sd = Supervisord()
    progs = [(f"p{i}", ["/bin/sleep", "100000"]) for i in range(3)]
    print(f"# idle {idle}s, 3 programs, supervisord", flush=True)
    costs["supervisord"] = idle_cost(lambda d: sd.config(d, progs), idle)

    print()
    med, mx = statistics.median(ours), max(ours)
    print(f"READY=1 -> RUNNING seen by a client, ours:  median {med:.3f} ms, max {mx:.3f} ms ({rounds} rounds)")
    print(
        f"ready -> RUNNING, supervisord (startsecs=1): median {statistics.median(theirs):.0f} ms "
        f"({statistics.median(theirs) / med:.0f}x ours)"
    )
    print()
    print(f"{'idle, 3 programs':<24} {'CPU ms/min':>11} {'wake-ups/min':>13}")
    for name, (cpu, switches) in costs.items():
        print(f"{name:<24} {cpu:>11.2f} {switches:>13.1f}")


if __name__ == "__main__":
    main()
