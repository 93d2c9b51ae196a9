#!/usr/bin/env python3
"""Alert latency: a program exits -> the webhook POST arrives, through the supervisor (FATAL,
alert on the event stream) and statusd (ALERT_WEBHOOK_URL), on 127.0.0.1.

Each round uses its own program (alerts are coalesced to one per program per minute): it is
told to exit (SIGUSR1, on which it exits with a fatal exit code) and the clock runs until a
loopback HTTP server has the POST.

Usage: scripts/bench/alert_latency.py SUPERVISOR STATUSD [--rounds N]
"""

import http.server
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import stop, wait_for  # noqa: E402

received = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the standard library's name)
        received.append(time.monotonic())
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def pid_of(binary, sock, name):
    out = subprocess.run([binary, "pid", name, "-s", sock], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    supervisor, statusd = (os.path.abspath(a) for a in sys.argv[1:3])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 10
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/1/t"
    times = []
    with tempfile.TemporaryDirectory() as d:
        programs = "".join(
            f'[program.p{i}]\ncommand = ["/bin/sh", "-c", "trap \'exit 3\' USR1; sleep 100000 & wait"]\n'
            f"startsecs = 0\nfatal_exitcodes = [3]\necho_output = false\n\n"
            for i in range(rounds)
        )
        with open(os.path.join(d, "supervisor.toml"), "w") as f:
            f.write(programs)
        sock = os.path.join(d, "data", "supervisor.sock")
        env = dict(os.environ, STATUSD_LISTEN="127.0.0.1:0", SUPERVISOR_SOCKET=sock,
                   ALERT_WEBHOOK_URL=url, ALERT_PROGRAMS="")
        sup = subprocess.Popen([supervisor, "run", "-c", os.path.join(d, "supervisor.toml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sd = subprocess.Popen([statusd], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        try:
            wait_for("the socket", lambda: os.path.exists(sock), timeout=30)
            time.sleep(1)  # statusd follows the event stream
            for i in range(rounds):
                pid = 0
                wait_for("the program", lambda: pid_of(supervisor, sock, f"p{i}") > 0, timeout=30)
                pid = pid_of(supervisor, sock, f"p{i}")
                before = len(received)
                t0 = time.monotonic()
                os.kill(pid, signal.SIGUSR1)
                wait_for("the POST", lambda: len(received) > before, timeout=30, step=0.0002)
                times.append((received[before] - t0) * 1000)
        finally:
            stop(sd)
            stop(sup)
            server.shutdown()
    print(f"program exits -> webhook POST received: median {statistics.median(times):.2f} ms, "
          f"max {max(times):.2f} ms ({rounds} rounds)")


if __name__ == "__main__":
    main()
