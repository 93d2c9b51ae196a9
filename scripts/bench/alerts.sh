#!/usr/bin/env bash
# Alert latency, program exit -> webhook POST (release builds of the supervisor and statusd).
#   scripts/bench/alerts.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --release --locked -p supervisor -p statusd
echo "# ours $(git rev-parse --short HEAD), $(nproc) cores, $(uname -r)"
exec python3 scripts/bench/alert_latency.py target/release/supervisor target/release/statusd "$@"
