#!/usr/bin/env python3
"""The daemon's memory, three ways, side by side in one run: RSS (what `ps` shows), PSS (shared
pages divided among the processes that map them: what the process really costs the machine) and
anonymous memory (heap, stacks: what no other process shares), read from /proc/PID/smaps_rollup
with 3 programs running, in a daemon that has worked a little: 3 s after the programs started
(ours gives back start-up's code pages 2 s after its start: supervisor/src/memory.rs), then five
`status` commands and a program killed and restarted, then 1 s. For each of our builds given
(e.g. the static one the image ships and a dynamic one) and for supervisord 4.2.5. Median
of 5 starts. The last column is the PSS of the daemon and its 3 programs (`sleep`, linked
dynamically) together: what the tree costs the machine, shared C library pages included.

Usage: scripts/bench/memory.py NAME=BINARY [NAME=BINARY ...]
Needs: supervisord (Debian package `supervisor`), sleep.
"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import Ours, Supervisord, sleepers, sleeping, start, stop, wait_for  # noqa: E402

ROUNDS = 5


def rollup(pid):
    """Rss, Pss and Anonymous of `pid`, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].rstrip(":") in ("Rss", "Pss", "Anonymous"):
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def measure(impl):
    samples = []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as d:
            proc, _ = start(impl, d, sleeping(3))
            try:
                wait_for("3 children", lambda: len(sleepers(proc.pid)) == 3)
                time.sleep(3)
                for _ in range(5):
                    subprocess.run(impl.status_command(d), cwd=d, stdout=subprocess.DEVNULL, check=False)
                victim = sleepers(proc.pid)[0]
                os.kill(victim, signal.SIGKILL)
                wait_for("a new child", lambda: victim not in sleepers(proc.pid) and len(sleepers(proc.pid)) == 3)
                time.sleep(1)
                sample = rollup(proc.pid)
                sample["Tree"] = sample["Pss"] + sum(rollup(c)["Pss"] for c in sleepers(proc.pid))
                samples.append(sample)
            finally:
                stop(proc)
    return {k: statistics.median(s[k] for s in samples) for k in ("Rss", "Pss", "Anonymous", "Tree")}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = []
    for arg in sys.argv[1:]:
        name, _, binary = arg.partition("=")
        impl = Ours(os.path.abspath(binary))
        rows.append((f"ours, {name}", measure(impl), os.path.getsize(binary)))
    rows.append(("supervisord 4.2.5", measure(Supervisord()), None))
    print(f"{'3 programs, KiB (median of 5)':<32} {'RSS':>7} {'PSS':>7} {'anon':>7} {'binary':>9} {'tree PSS':>9}")
    for name, m, size in rows:
        size_text = f"{size / 1048576:.1f} MiB" if size else ""
        print(f"{name:<32} {m['Rss']:>7.0f} {m['Pss']:>7.0f} {m['Anonymous']:>7.0f} {size_text:>9} {m['Tree']:>9.0f}")


if __name__ == "__main__":
    main()
