#!/usr/bin/env bash
# What `limits` costs: idle CPU and wake-ups with 200 programs, without and with ceilings.
#   scripts/bench/limits.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec python3 scripts/bench/limits.py "$ours" "$@"
