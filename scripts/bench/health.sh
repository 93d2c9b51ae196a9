#!/usr/bin/env bash
# Readiness latency and the idle cost of health checks: ours (release build, as shipped) and
# supervisord (Debian package `supervisor`) side by side in one run.
#   scripts/bench/health.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec python3 scripts/bench/health_checks.py "$ours" "$@"
