#!/usr/bin/env python3
"""Output capture, side by side in one run: our supervisor, supervisord 4.2.5 and the
`writer | cat > file` floor, for a writer that makes one write() per 80-byte line (as a
line-buffered logger does) and for one that writes 4 KiB blocks (seq through stdio).

For each: the supervisor's CPU for 200 MiB, the writer's wall time against the floor's, the
supervisor's context switches, and the log checked line by line (nothing lost, split or out of
order). Ours is also run with `echo_output = true` and its stdout going to a pipe, as under
Docker, to price the echo, with a control run: the CPU of only writing the echo's bytes into a
pipe, the floor of any echo. Prints the figures and the ratios.

Usage: scripts/bench/capture.py OUR_BINARY [--quick]   (--quick: 50 MiB)
Needs: supervisord (Debian package `supervisor`), perl, seq, cat.
"""

import fcntl
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINE = 80


def writers(mib):
    lines = mib * 1024 * 1024 // LINE
    # One write() per line: perl with autoflush; each line is its number, zero-padded to 79.
    per_line = ["perl", "-e", f'$|=1; printf("%079d\\n", $_) for 1..{lines}']
    # Blocks: seq through stdio (4 KiB writes), the same 80-byte numbered lines.
    blocks = ["seq", "-f", "%079.0f", "1", str(lines)]
    return lines, {"one write per line": per_line, "4 KiB blocks": blocks}


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def switches(pid):
    """Voluntary context switches (waits) of all the process's threads."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[-1])
    return total


def check(path, lines):
    """Every line present, whole, in order."""
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            n += 1
            if len(raw) != LINE or int(raw) != n:
                return f"line {n} is {raw[:40]!r}"
    return "ok" if n == lines else f"{lines - n} lines missing"


def ours_config(d, argv, echo):
    # JSON's string escapes are valid TOML.
    args = ", ".join(json.dumps(a) for a in argv)
    text = "\n".join(
        [
            "[supervisor]",
            f'logdir = "{d}/logs"',
            "",
            "[program.flood]",
            f"command = [{args}]",
            "startsecs = 0",
            "autorestart = false",
            "stdout_logfile_maxbytes = 0",
            f"echo_output = {'true' if echo else 'false'}",
            "",
        ]
    )
    path = os.path.join(d, "supervisor.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def supervisord_config(d, argv):
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    text = "\n".join(
        [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={d}/supervisord.log",
            f"pidfile={d}/supervisord.pid",
            "user=root" if os.geteuid() == 0 else "",
            "[program:flood]",
            "command=" + " ".join(shlex.quote(a) for a in argv).replace("%", "%%"),
            "startsecs=0",
            "autorestart=false",
            f"stdout_logfile={d}/logs/flood.log",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    )
    path = os.path.join(d, "supervisord.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def run(kind, argv, lines, binary=None, echo=False):
    with tempfile.TemporaryDirectory() as d:
        if kind == "ours":
            cmd = [binary, "run", "-c", ours_config(d, argv, echo)]
        else:
            cmd = ["supervisord", "-c", supervisord_config(d, argv)]
        log = os.path.join(d, "logs", "flood.log")
        # The supervisor's stdout: a pipe read by cat, as `docker logs` reads it.
        sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=sink.stdin, stderr=subprocess.DEVNULL, cwd=d)
        sink.stdin.close()
        size = lines * LINE
        writer_done = None
        writer_seen = False
        while True:
            if os.path.exists(log) and os.path.getsize(log) >= size:
                break
            if writer_done is None:
                # The writer is the supervisor's child: once seen, gone means done.
                kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
                if kids:
                    writer_seen = True
                elif writer_seen:
                    writer_done = time.monotonic() - t0
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"{kind}: {log} never reached {size} bytes")
            time.sleep(0.002)
        elapsed = time.monotonic() - t0
        cpu = proc_stat(proc.pid)
        ctx = switches(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        sink.wait(timeout=60)
        verdict = check(log, lines)
    return {
        "wall": elapsed,
        "writer": writer_done or elapsed,
        "cpu": cpu,
        "switches": ctx,
        "log": verdict,
    }


def floor(argv, lines):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out")
        with open(path, "wb") as out:
            t0 = time.monotonic()
            writer = subprocess.Popen(argv, stdout=subprocess.PIPE)
            cat = subprocess.Popen(["cat"], stdin=writer.stdout, stdout=out)
            writer.stdout.close()
            _, _, usage = os.wait4(cat.pid, 0)
            cat.returncode = 0
            writer.wait()
            elapsed = time.monotonic() - t0
        verdict = check(path, lines)
    return {"wall": elapsed, "writer": elapsed, "cpu": usage.ru_utime + usage.ru_stime, "switches": 0, "log": verdict}


LATENCY_WRITER = [
    "python3",
    "-c",
    "import os, time\n"
    "time.sleep(0.5)\n"
    "for i in range(200):\n"
    "    os.write(1, b'%d\\n' % time.monotonic_ns())\n"
    "    time.sleep(0.02)\n",
]


def echo_floor(lines):
    """The control run for the echo: only writing its bytes (every line with its `flood | `
    prefix) into a pipe read by cat, 1 MiB per write(), no reading or copying. The CPU of that
    alone bounds how cheap an echo can be."""
    prefix = b"flood | "
    line = b"0" * (LINE - 1) + b"\n"
    per_write = (1024 * 1024) // (len(prefix) + LINE)
    buf = (prefix + line) * per_write
    total = lines * (len(prefix) + LINE)
    sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    fd = sink.stdin.fileno()
    # The size the supervisor gives its stdout pipe (logs/capture.rs, BUSY_PIPE).
    fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1024 * 1024)
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    written = 0
    while written < total:
        written += os.write(fd, memoryview(buf)[: min(len(buf), total - written)])
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    sink.stdin.close()
    sink.wait(timeout=60)
    return (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)


def latency(binary):
    """A line every 20 ms, each carrying the time it was written (CLOCK_MONOTONIC, shared by
    every process): how long until it is in the log file (polled every 0.2 ms)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [binary, "run", "-c", ours_config(d, LATENCY_WRITER, echo=True)]
        log = os.path.join(d, "logs", "flood.log")
        sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, stdout=sink.stdin, stderr=subprocess.DEVNULL, cwd=d)
        sink.stdin.close()
        delays, seen, pos = [], 0, 0
        deadline = time.monotonic() + 60
        while seen < 200 and time.monotonic() < deadline:
            try:
                with open(log, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            now = time.monotonic_ns()
            for line in chunk.split(b"\n")[:-1]:
                delays.append((now - int(line)) / 1e6)
                seen += 1
            pos += chunk.rfind(b"\n") + 1 if b"\n" in chunk else 0
            time.sleep(0.0002)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        sink.wait(timeout=60)
    delays.sort()
    return delays


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    mib = 50 if "--quick" in sys.argv else 200
    d = latency(binary)
    print(
        f"## write -> log file, a line every 20 ms ({len(d)} lines): "
        f"median {d[len(d) // 2]:.2f} ms, 99th {d[int(len(d) * 0.99)]:.2f} ms, max {d[-1]:.2f} ms",
        flush=True,
    )
    lines, kinds = writers(mib)
    for name, argv in kinds.items():
        print(f"\n## {mib} MiB, {name}", flush=True)
        rows = {
            "cat floor": floor(argv, lines),
            "ours": run("ours", argv, lines, binary),
            "ours, echo to a pipe": run("ours", argv, lines, binary, echo=True),
            "supervisord": run("supervisord", argv, lines),
        }
        base = rows["cat floor"]
        print(f"{'':<22} {'CPU (s)':>8} {'writer (s)':>11} {'vs floor':>9} {'switches':>9}  log")
        for label, r in rows.items():
            print(
                f"{label:<22} {r['cpu']:>8.3f} {r['writer']:>11.2f} {r['writer'] / base['writer']:>8.2f}x {r['switches']:>9}  {r['log']}"
            )
        ours, echo, theirs = rows["ours"], rows["ours, echo to a pipe"], rows["supervisord"]
        print(f"supervisord CPU / ours: {theirs['cpu'] / ours['cpu']:.2f}x; echo on / off: {echo['cpu'] / ours['cpu']:.2f}x")
        floor_cpu = echo_floor(lines)
        print(
            f"the echo's own CPU (on - off): {echo['cpu'] - ours['cpu']:.3f} s; control, only writing its "
            f"{lines * (LINE + 8) / 1048576:.0f} MiB into a pipe: {floor_cpu:.3f} s "
            f"(on / off at that floor: {(ours['cpu'] + floor_cpu) / ours['cpu']:.2f}x)"
        )


if __name__ == "__main__":
    main()
