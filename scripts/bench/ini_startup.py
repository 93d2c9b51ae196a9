#!/usr/bin/env python3
"""A supervisord.conf run as it is against the same configuration converted to TOML.

Generates a supervisord.conf of 200 programs (`sleep`), converts it once with
`supervisor import`, then for each, rounds of: exec `supervisor run -c FILE` -> 200 children
running (the in-memory conversion is on this path), and `supervisor check -c FILE` alone (parse
and validation, no processes). Prints medians and the difference.

Usage: scripts/bench/ini_startup.py OUR_BINARY [--rounds N]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import sleepers, stop, wait_for  # noqa: E402

PROGRAMS = 200


def write_ini(d):
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"childlogdir={d}/logs",
        "[unix_http_server]",
        f"file={d}/run/supervisor.sock",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    for i in range(PROGRAMS):
        lines += [
            f"[program:p{i}]",
            "command=/bin/sleep 100000",
            "startsecs=0",
            "stdout_logfile=NONE",
            "stderr_logfile=NONE",
            "",
        ]
    path = os.path.join(d, "supervisord.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def start_time(binary, config, d):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "run", "-c", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=d)
    try:
        wait_for("200 children", lambda: len(sleepers(proc.pid)) == PROGRAMS)
        return time.monotonic() - t0
    finally:
        stop(proc)


def check_time(binary, config):
    t0 = time.monotonic()
    subprocess.run([binary, "check", "-c", config], check=True, capture_output=True)
    return time.monotonic() - t0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "logs"))
        os.makedirs(os.path.join(d, "run"))
        ini = write_ini(d)
        toml = os.path.join(d, "supervisor.toml")
        subprocess.run([binary, "import", ini, "-o", toml], check=True, capture_output=True)
        configs = (("supervisord.conf", ini), ("supervisor.toml", toml))
        starts = {name: [] for name, _ in configs}
        checks = {name: [] for name, _ in configs}
        # Interleaved, so that neither side gets the warmer machine.
        print(f"# {rounds} rounds each, interleaved", flush=True)
        for _ in range(rounds):
            for name, config in configs:
                starts[name].append(start_time(binary, config, d))
                for _ in range(4):
                    checks[name].append(check_time(binary, config))
        results = {
            name: (statistics.median(starts[name]) * 1000, statistics.median(checks[name]) * 1000)
            for name, _ in configs
        }
    (si, ci), (st, ct) = results["supervisord.conf"], results["supervisor.toml"]
    print()
    print(f"{'median, 200 programs':<34} {'supervisord.conf':>17} {'supervisor.toml':>16} {'difference':>11}")
    print(f"{'exec -> 200 children running (ms)':<34} {si:>17.1f} {st:>16.1f} {si - st:>+11.1f}")
    print(f"{'check: read and validate (ms)':<34} {ci:>17.1f} {ct:>16.1f} {ci - ct:>+11.1f}")


if __name__ == "__main__":
    main()
