#!/usr/bin/env bash
# The supervisor's memory on a Pi's CPU: Debian's arm64 kernel in qemu-system, the static
# aarch64 build as scripts/cross makes it, measured as scripts/bench/memory.sh measures
# (scripts/bench/memory_vm.py). The control run: the same in an x86_64 guest, to compare with
# memory.sh's figure for the same x86_64 binary on this machine's own kernel. As root.
#   scripts/bench/memory-vm.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
scripts/cross aarch64 -p supervisor >/dev/null 2>&1
python3 scripts/bench/memory_vm.py x86_64 "$ours"
python3 scripts/bench/memory_vm.py aarch64 target/aarch64-unknown-linux-gnu/release/supervisor
