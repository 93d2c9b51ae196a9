#!/usr/bin/env python3
"""XML-RPC calls against our supervisor and supervisord 4.2.5, one run, side by side.

Both run the same supervisord.conf of 200 programs (`sleep`), each in a folder of its own.
A raw client on the Unix socket sends each call as supervisorctl's transport does (a new
connection, `POST /RPC2`) and reads the whole answer without parsing it, so that the client's
XML parsing (which is Python's, and grows with the answer) is not in the figure. Per server
and method: median, p99 and max of N calls in ms; then supervisord's p99 over ours.
`supervisor.getAPIVersion` (a constant) is one control: the floor of client, socket and HTTP
on this machine. The other is for size: getAllProcessInfo's answer is 200 KB, and moving it
through the socket into this Python client costs the same whoever sends it; a server that
answers every connection at once with ours's answer, bytes prepared in advance, measures that
floor (`floor`), which the ratio over it (`server time`) takes out of both figures.

Usage: scripts/bench/xmlrpc_calls.py OUR_BINARY [--calls N]
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ini_startup import PROGRAMS, write_ini  # noqa: E402
from supervisor_vs_supervisord import sleepers, stop, wait_for  # noqa: E402

METHODS = ("supervisor.getAPIVersion", "supervisor.getAllProcessInfo")


def body(method):
    return (f"<?xml version='1.0'?>\n<methodCall>\n<methodName>{method}</methodName>\n"
            "<params>\n</params>\n</methodCall>\n").encode()


def call(path, method):
    """One call as supervisorctl's transport makes it; the answer's length."""
    payload = body(method)
    head = (f"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n"
            f"Content-Type: text/xml\r\nAccept: text/xml\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n").encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(head + payload)
    n = 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        n += len(chunk)
    s.close()
    return n


def measure(path, method, calls):
    size = call(path, method)  # warm: the first answer, and its size
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call(path, method)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99, times[-1], size


def floor_server(path, answer):
    """Answers each connection with `answer` after reading its request; a thread."""
    import threading
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def capture(path, method):
    """The whole HTTP answer to one call, as bytes."""
    payload = body(method)
    head = (f"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n").encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(head + payload)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    calls = int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 500
    results = {}
    with tempfile.TemporaryDirectory() as root:
        servers = {}
        for name in ("ours", "supervisord"):
            d = os.path.join(root, name)
            os.makedirs(os.path.join(d, "logs"))
            os.makedirs(os.path.join(d, "run"))
            ini = write_ini(d)
            cmd = ([binary, "run", "-c", ini] if name == "ours"
                   else ["supervisord", "-n", "-c", ini])
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    cwd=d)
            servers[name] = (proc, os.path.join(d, "run/supervisor.sock"))
        try:
            for name, (proc, path) in servers.items():
                wait_for(f"{name}: {PROGRAMS} children",
                         lambda: len(sleepers(proc.pid)) == PROGRAMS)
                wait_for(f"{name}: its socket", lambda: os.path.exists(path))
            for method in METHODS:
                for name, (_, path) in servers.items():
                    results[(name, method)] = measure(path, method, calls)
            answer = capture(servers["ours"][1], METHODS[1])
            floor_path = os.path.join(root, "floor.sock")
            srv = floor_server(floor_path, answer)
            results[("floor", METHODS[1])] = measure(floor_path, METHODS[1], calls)
            srv.close()
        finally:
            for proc, _ in servers.values():
                stop(proc)
    print(f"# {PROGRAMS} programs, {calls} calls each, a new connection per call (ms)")
    print(f"{'method':32} {'server':12} {'median':>8} {'p99':>8} {'max':>8} {'bytes':>8}")
    for method in METHODS:
        names = ("ours", "supervisord") + (("floor",) if method == METHODS[1] else ())
        for name in names:
            med, p99, top, size = results[(name, method)]
            print(f"{method:32} {name:12} {med:8.3f} {p99:8.3f} {top:8.3f} {size:8d}")
        ratio = results[("supervisord", method)][1] / results[("ours", method)][1]
        print(f"{method:32} {'p99 ratio':12} {ratio:8.1f}x (supervisord / ours)")
    floor = results[("floor", METHODS[1])][0]
    ours, theirs = (results[(n, METHODS[1])][0] - floor for n in ("ours", "supervisord"))
    print(f"{METHODS[1]:32} {'server time':12} ours {ours:.3f}, supervisord {theirs:.3f} "
          f"(median less the floor): {theirs / max(ours, 0.001):.1f}x")


if __name__ == "__main__":
    main()
