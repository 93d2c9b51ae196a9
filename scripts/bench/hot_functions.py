#!/usr/bin/env python3
"""Records which functions the supervisor daemon runs once it is up, and writes them as the
linker script supervisor/link/hot.ld, which places them side by side at the start of the
binary's code (docs/DECISIONS.md, "Small PID 1").

The daemon (3 programs that sleep and one that writes a line to stdout and stderr every 20 ms)
runs under valgrind's callgrind. Counting starts once it has given back start-up's code
(supervisor/src/memory.rs); then it answers `status` commands, one of its programs is killed
and restarted every fifth command, and it is stopped with SIGTERM. Every function of the
binary that ran meanwhile goes into the script, as a pattern on its section name
(`.text.<symbol>`) with the symbol's hash left out, so that the script matches a later build of
the same code with another compiler or for another target.

Usage: scripts/bench/hot_functions.py BINARY [ROUNDS]
  BINARY: a release build of the supervisor with its symbols (CARGO_PROFILE_RELEASE_STRIP=false);
  scripts/bench/hot-functions builds it and calls this.
Needs: valgrind (callgrind, callgrind_control), sleep, sh.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import Ours, sleeping  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "supervisor", "link", "hot.ld")
# Characters a section pattern may hold unquoted in both GNU ld's and lld's scripts.
PLAIN = re.compile(r"^[A-Za-z0-9_.$*]+$")
MEMBER = re.compile(r"^[A-Za-z0-9_.-]+$")  # an archive member's name


def record(binary, rounds, profile):
    impl = Ours(binary)
    d = tempfile.mkdtemp()
    talker = ("talker", ["/bin/sh", "-c", "while :; do echo out; echo err >&2; sleep 0.02; done"])
    argv = impl.config(d, sleeping(3) + [talker])
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", "--dump-instr=no", "--demangle=no"]
    with open(os.path.join(d, "valgrind.err"), "w") as err:
        proc = subprocess.Popen(vg + argv, stdout=subprocess.DEVNULL, stderr=err, cwd=d)
    socket = os.path.join(d, "data", "supervisor.sock")
    deadline = time.monotonic() + 120
    while not os.path.exists(socket):
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"the supervisor under valgrind did not come up (see {d}/valgrind.err)")
        time.sleep(0.1)
    # Past the release of start-up's code (2 s after start; valgrind is some 50 times slower).
    time.sleep(15)
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], stdout=subprocess.DEVNULL, check=True)
    for i in range(rounds):
        subprocess.run(impl.status_command(d), cwd=d, stdout=subprocess.DEVNULL, check=False)
        if i % 5 == 0:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid), "sleep"], capture_output=True, text=True)
            victims = kids.stdout.split()
            if victims:
                os.kill(int(victims[0]), signal.SIGKILL)
                time.sleep(1.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)


# What callgrind cannot see but the daemon runs in its own memory: a spawn's child, between
# clone(CLONE_VM) and execve (supervisor/src/process/exec.rs; valgrind runs it as a fork),
# and the return from a signal handler (valgrind delivers signals itself).
ALSO_RUST = [
    "_ZN10supervisor7process4exec5child17h*",
    "_ZN10supervisor7process4exec5place17h*",
    "_ZN10supervisor7process4exec4fail17h*",
    "_ZN10supervisor7process4exec5errno17h*",
    "_ZN10supervisor7process4exec9write_pid17h*",
]
ALSO_C = [
    "__restore_rt", "dup2", "chdir", "setpgid", "__libc_fcntl64", "setrlimit", "umask",
    "execve", "syscall", "geteuid", "getpid", "_exit", "write", "clone",
]


def functions(profile, binary):
    """Names of the binary's functions that ran: callgrind's `fn=` entries with a cost line.
    Names and objects are compressed (`fn=(12) name` once, `fn=(12)` after), and may be
    defined first in a call's `cfn=`/`cob=`."""
    names, objects = {}, {}
    current, in_binary, costly = None, False, set()
    entry = re.compile(r"^(ob|fn|cob|cfn)=\((\d+)\)(?: (.*))?$")
    with open(profile) as f:
        for line in f:
            line = line.rstrip("\n")
            m = entry.match(line)
            if m:
                kind, key, name = m.groups()
                table = objects if kind in ("ob", "cob") else names
                if name:
                    table[key] = name
                if kind == "ob":
                    # valgrind names no object for code outside a `.text` section (as in a
                    # binary already linked with this script): `???`.
                    in_binary = objects.get(key) in (binary, "???")
                elif kind == "fn":
                    current = names.get(key) if in_binary else None
            elif current and line[:1] in "0123456789+-*":
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) > 0:
                    costly.add(current)
    return costly


def pattern(symbol):
    """The symbol with what changes between builds left out: legacy hashes `17h<16 hex>E`,
    v0 crate ids `Cs<id>_` and the instantiating crate at the end, LLVM's `.<n>` clones."""
    symbol = re.sub(r"'\d+$", "", symbol)
    symbol = re.sub(r"\.\d+$", "*", symbol)
    symbol = re.sub(r"17h[0-9a-f]{16}E$", "17h*", symbol)
    if symbol.startswith("_R"):
        # v0: crate ids, and the back-references whose offsets shift with their lengths.
        symbol = re.sub(r"Cs[0-9A-Za-z]+_", "*", symbol)
        symbol = re.sub(r"B[0-9A-Za-z]*_", "*", symbol)
        # The instantiating crate at the end: `*<length><name>` and nothing after it.
        m = re.search(r"\*(\d+)([A-Za-z_][A-Za-z0-9_]*)$", symbol)
        if m and int(m.group(1)) == len(m.group(2)):
            symbol = symbol[: m.start()] + "*"
        symbol = re.sub(r"\*+", "*", symbol)
    return symbol


def libc_members(names):
    """The members of glibc's static archive that define the C functions in `names`: their
    code is placed by member (`*libc.a:malloc.o`), as glibc is not built with a section per
    function. Empty where there is no libc.a."""
    archive = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(archive):
        return []
    listing = subprocess.run(["nm", "-A", "--defined-only", archive], capture_output=True, text=True).stdout
    members = set()
    for line in listing.splitlines():
        # /usr/lib/x86_64-linux-gnu/libc.a:malloc.o:0000000000000000 T malloc
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWi" and parts[2] in names:
            members.add(parts[0].rsplit(":", 2)[1])
    # glibc picks a string function's variant by CPU (`strlen-avx2.o`, `strlen-evex.o`, ...):
    # the one valgrind's CPU ran stands for all of them.
    families = {m.split("-", 1)[0] for m in members if "-" in m}
    return sorted(m for m in members if MEMBER.match(m)) + sorted(f"{f}-*.o" for f in families if MEMBER.match(f))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    # Kept beside the binary, for callgrind_annotate.
    profile = os.path.join(os.path.dirname(binary), "callgrind.out")
    record(binary, rounds, profile)
    ran = functions(profile, binary)
    write_script(ran, binary)


def write_script(ran, binary):
    # Rust functions only: glibc's are in its archive's sections, which these patterns do not
    # name.
    patterns = sorted({pattern(s) for s in ran if s.startswith(("_ZN", "_R")) and PLAIN.match(pattern(s))} | set(ALSO_RUST))
    if len(patterns) < 100:
        sys.exit(f"only {len(patterns)} functions recorded: is {binary} built with its symbols?")
    c_names = {s for s in ran if not s.startswith(("_ZN", "_R"))} | set(ALSO_C)
    members = libc_members(c_names)
    body = "\n".join([f"    *(.text.{p})" for p in patterns] + [f"    *libc.a:{m}(.text .text.*)" for m in members])
    text = f"""/* The functions the supervisor daemon runs once it is up, side by side at the start of its
   code, so that the pages it keeps touching are few (docs/DECISIONS.md, "Small PID 1").
   Written by scripts/bench/hot-functions ({len(patterns)} Rust functions, and {len(members)} members
   of glibc's static archive for a static build); a function missing here
   only costs memory. Added to the default layout (INSERT), for GNU ld and lld alike. */
SECTIONS
{{
  .text.hot :
  {{
{body}
  }}
}}
INSERT BEFORE .text;
"""
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print(f"{OUT}: {len(patterns)} functions, {len(members)} libc.a members")


if __name__ == "__main__":
    main()
