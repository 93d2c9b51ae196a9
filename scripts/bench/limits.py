#!/usr/bin/env python3
"""What `limits` costs the supervisor: idle CPU and wake-ups per second with 200 sleeping
programs, without limits (the control run: it must stay at 0 wake-ups), with a memory ceiling
held 30 s on each (sampled every 3 s), and with one held 2.5 s (sampled every 250 ms, the
fastest). One run, ours only: supervisord has no ceilings of its own (superlance's memmon runs
`ps` from an event listener on TICK events, and needs supervisord's XML-RPC, which ours does not
serve yet), so the control run is the comparison.

Usage: scripts/bench/limits.py OUR_BINARY [SECONDS]
"""

import os
import sys
import tempfile
import time

import supervisor_vs_supervisord as bench


class WithLimits(bench.Ours):
    def __init__(self, binary, limits):
        super().__init__(binary)
        self.limits = limits

    def config(self, d, programs, log_capture=False):
        argv = super().config(d, programs, log_capture)
        if self.limits:
            path = argv[-1]
            text = open(path).read().replace(
                "startsecs = 0", f"startsecs = 0\nlimits = {self.limits}"
            )
            open(path, "w").write(text)
        return argv


def idle(impl, seconds):
    with tempfile.TemporaryDirectory() as d:
        proc, _ = bench.start(impl, d, bench.sleeping(200))
        try:
            bench.wait_for("200 children", lambda: len(bench.sleepers(proc.pid)) == 200)
            time.sleep(3)
            cpu0, cs0 = bench.cpu_seconds(proc.pid), bench.context_switches(proc.pid)
            time.sleep(seconds)
            cpu1, cs1 = bench.cpu_seconds(proc.pid), bench.context_switches(proc.pid)
        finally:
            bench.stop(proc)
    return (cpu1 - cpu0) * 1000 / seconds, (cs1 - cs0) / seconds


def main():
    binary = os.path.abspath(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    runs = [
        ("no limits (control)", None),
        ("rss held 30s (sample 3s)", '{ rss = "1GB", rss_for = "30s" }'),
        ("rss held 2.5s (sample 250ms)", '{ rss = "1GB", rss_for = "2500ms" }'),
    ]
    print(f"200 sleeping programs, {seconds:.0f} s idle each")
    print(f"{'':<30} {'CPU ms/s':>9} {'wake-ups/s':>11}")
    for name, limits in runs:
        cpu, wakeups = idle(WithLimits(binary, limits), seconds)
        print(f"{name:<30} {cpu:>9.2f} {wakeups:>11.2f}")


if __name__ == "__main__":
    main()
