#!/usr/bin/env bash
# Our supervisor against supervisord (Debian package `supervisor`), side by side in one run.
# Builds the supervisor in release, static glibc as the image ships it (see docs/DECISIONS.md),
# installs supervisord if missing (as root), then prints the figures and ratios; then the
# memory apart (RSS, PSS, anonymous) for the static and a dynamic build beside supervisord
# (scripts/bench/memory.sh), and on Debian's arm64 kernel in qemu-system with the x86_64
# control run (scripts/bench/memory-vm.sh; skipped with --quick or SKIP_ARM=1).
#   scripts/bench/supervisor.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
python3 scripts/bench/supervisor_vs_supervisord.py "$ours" "$@"
echo
scripts/bench/memory.sh
if [[ " $* " != *" --quick "* && -z "${SKIP_ARM:-}" ]]; then
  echo
  scripts/bench/memory-vm.sh
fi
