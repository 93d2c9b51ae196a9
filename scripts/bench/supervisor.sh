#!/usr/bin/env bash
# Our supervisor against supervisord (Debian package `supervisor`), side by side in one run.
# Builds the supervisor in release, static glibc (see docs/DECISIONS.md), installs
# supervisord if missing (as root), then prints the figures and ratios.
#   scripts/bench/supervisor.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec python3 scripts/bench/supervisor_vs_supervisord.py "$ours" "$@"
