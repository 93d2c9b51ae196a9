#!/usr/bin/env python3
"""The supervisor's memory on another CPU's own kernel: boots Debian's kernel for ARCH in
qemu-system (full-system emulation: the guest's own kernel keeps its page tables, maps pages
around faults and honours MADV_DONTNEED, none of which qemu-user can show), with an initramfs
that holds busybox and the supervisor BINARY (linked statically), and runs there the same steps
as scripts/bench/memory.py: 3 programs (busybox `sleep`), 3 s after they start five `status`
commands, one program killed and restarted, 1 s, then /proc/PID/smaps_rollup. Median of 5
starts. Memory figures do not depend on the emulated CPU's speed; the times here are not a
Pi's.

Usage: scripts/bench/memory_vm.py aarch64|x86_64 BINARY
Needs (as root it installs them): qemu-system-arm or qemu-system-x86, and the target's
`linux-image-*-cloud-*-unsigned` and `busybox-static` packages (downloaded with apt-get download
into target/vm-ARCH; arm64's needs `dpkg --add-architecture arm64`, as scripts/cross does).
"""

import glob
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import Ours  # noqa: E402

ROUNDS = 5
KERNEL = "6.1.0-47"

ARCHES = {
    "aarch64": {
        "deb_arch": "arm64",
        "qemu": "qemu-system-aarch64",
        "qemu_package": "qemu-system-arm",
        "machine": ["-machine", "virt", "-cpu", "cortex-a72"],
        "console": "ttyAMA0",
    },
    "x86_64": {
        "deb_arch": "amd64",
        "qemu": "qemu-system-x86_64",
        "qemu_package": "qemu-system-x86",
        "machine": ["-machine", "q35"],
        "console": "ttyS0",
    },
}

# The guest's /init: busybox's shell. Prints one "sample RSS PSS ANON" line per round.
INIT = r"""#!/bin/sh
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t debugfs debug /sys/kernel/debug
mount -t tmpfs tmp /tmp
sleepers() {
  for s in /proc/[0-9]*/stat; do
    read -r pid comm state ppid rest 2>/dev/null <"$s" || continue
    [ "$ppid" = "$1" ] && [ "$comm" = "(sleep)" ] && echo "$pid"
  done
}
count() { sleepers "$1" | wc -l; }
wait_for_3() {
  n=0
  while [ "$(count "$1")" != 3 ]; do
    n=$((n + 1)); [ $n -gt 600 ] && { echo "vm: no 3 programs"; return 1; }
    sleep 0.1
  done
}
echo "vm: kernel $(uname -r), $(uname -m), fault-around $(cat /sys/kernel/debug/fault_around_bytes 2>/dev/null || echo default) bytes"
for round in 1 2 3 4 5; do
  d=/tmp/run$round
  mkdir -p $d
  sed "s#@DIR@#$d#g" /bench.toml >$d/supervisor.toml
  (cd $d && exec /supervisor run -c $d/supervisor.toml >/dev/null 2>&1) &
  sup=$!
  wait_for_3 $sup || break
  sleep 3
  for i in 1 2 3 4 5; do /supervisor status -s $d/data/supervisor.sock >/dev/null; done
  victim=$(sleepers $sup | head -1)
  kill -9 "$victim"
  n=0
  while sleepers $sup | grep -qx "$victim" || [ "$(count $sup)" != 3 ]; do
    n=$((n + 1)); [ $n -gt 600 ] && break
    sleep 0.1
  done
  sleep 1
  rss=$(awk '/^Rss:/ {print $2}' /proc/$sup/smaps_rollup)
  pss=$(awk '/^Pss:/ {print $2}' /proc/$sup/smaps_rollup)
  anon=$(awk '/^Anonymous:/ {print $2}' /proc/$sup/smaps_rollup)
  echo "sample $rss $pss $anon"
  kill -TERM $sup
  wait $sup
  echo "vm: exit $?"
done
poweroff -f
"""


def run(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def packages(arch, folder):
    """The kernel image and the static busybox for `arch`, unpacked into `folder`."""
    spec = ARCHES[arch]
    names = [f"linux-image-{KERNEL}-cloud-{spec['deb_arch']}-unsigned:{spec['deb_arch']}",
             f"busybox-static:{spec['deb_arch']}"]
    os.makedirs(folder, exist_ok=True)
    if not glob.glob(os.path.join(folder, "linux-image-*.deb")) or not glob.glob(os.path.join(folder, "busybox-static*.deb")):
        run(["apt-get", "download", "-q", *names], cwd=folder)
    root = os.path.join(folder, "unpacked")
    if not os.path.isdir(root):
        for deb in glob.glob(os.path.join(folder, "*.deb")):
            run(["dpkg-deb", "-x", deb, root])
    kernel = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0]
    busybox = os.path.join(root, "bin", "busybox")
    return kernel, busybox


def cpio_newc(entries):
    """A gzip'd cpio archive (the kernel's initramfs format) of (path, mode, data) entries;
    a symbolic link's data is its target."""
    out = bytearray()
    for ino, (path, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        name = path.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0))
        out += header.encode() + name
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return gzip.compress(bytes(out), compresslevel=1)


def bench_config():
    """memory.py's configuration (supervisor_vs_supervisord.Ours) with busybox's `sleep`, its
    folder left as @DIR@ for the guest to fill in."""
    with tempfile.TemporaryDirectory() as host:
        Ours("/supervisor").config(host, [(f"p{i}", ["/bin/sleep", "100000"]) for i in range(3)])
        with open(os.path.join(host, "supervisor.toml")) as f:
            return f.read().replace(host, "@DIR@")


def initramfs(busybox, binary, path):
    with open(busybox, "rb") as f:
        bb = f.read()
    with open(binary, "rb") as f:
        sup = f.read()
    directory, executable, link = 0o040755, 0o100755, 0o120777
    entries = [(d, directory, b"") for d in ("bin", "proc", "sys", "tmp", "dev")]
    entries.append(("bin/busybox", executable, bb))
    for applet in ("sh", "sleep", "mount", "cat", "awk", "wc", "grep", "head", "mkdir", "poweroff", "uname", "sed"):
        entries.append((f"bin/{applet}", link, b"busybox"))
    entries.append(("init", executable, INIT.encode()))
    entries.append(("bench.toml", 0o100644, bench_config().encode()))
    entries.append(("supervisor", executable, sup))
    with open(path, "wb") as f:
        f.write(cpio_newc(entries))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ARCHES:
        sys.exit(__doc__)
    arch, binary = sys.argv[1], sys.argv[2]
    spec = ARCHES[arch]
    if subprocess.run(["which", spec["qemu"]], stdout=subprocess.DEVNULL).returncode != 0:
        if os.geteuid() != 0:
            sys.exit(f"memory_vm: needs {spec['qemu']}: sudo apt-get install {spec['qemu_package']}")
        run(["apt-get", "install", "-y", "-qq", spec["qemu_package"]], stdout=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    folder = os.path.abspath(f"target/vm-{arch}")
    kernel, busybox = packages(arch, folder)
    image = os.path.join(folder, "initramfs.gz")
    initramfs(busybox, binary, image)
    # TCG, also for x86_64: nested KVM on a cloud VM was seen to hang the guest's kernel silently.
    argv = [spec["qemu"], *spec["machine"], "-accel", "tcg", "-smp", "2", "-m", "512", "-nographic",
            "-no-reboot", "-kernel", kernel, "-initrd", image,
            "-append", f"console={spec['console']} panic=-1 quiet"]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800,
                         text=True, errors="replace").stdout
    samples = [tuple(int(x) for x in m.groups()) for m in re.finditer(r"^sample (\d+) (\d+) (\d+)", out, re.M)]
    for line in out.splitlines():
        if line.startswith("vm:"):
            print(line)
    if len(samples) != ROUNDS:
        print(out[-3000:], file=sys.stderr)
        sys.exit(f"memory_vm: {len(samples)} samples of {ROUNDS}")
    rss, pss, anon = (statistics.median(s[i] for s in samples) for i in range(3))
    print(f"{'3 programs, KiB (median of 5)':<34} {'RSS':>7} {'PSS':>7} {'anon':>7} {'binary':>9}")
    print(f"{'ours, static, ' + arch + ' kernel':<34} {rss:>7.0f} {pss:>7.0f} {anon:>7.0f} "
          f"{os.path.getsize(binary) / 1048576:>5.1f} MiB")
    print("samples (RSS PSS anon):", "; ".join(" ".join(map(str, s)) for s in samples))


if __name__ == "__main__":
    main()
