#!/usr/bin/env bash
# Output capture against supervisord and the `| cat > file` floor, side by side in one run: a
# writer that makes one write() per line, and one that writes blocks; ours also with the echo
# to a pipe (as under Docker). Builds the supervisor in release, static glibc (scripts/bench/build-supervisor).
#   scripts/bench/capture.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec python3 scripts/bench/capture.py "$ours" "$@"
