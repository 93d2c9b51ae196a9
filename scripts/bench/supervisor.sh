#!/usr/bin/env bash
# Our supervisor against supervisord (Debian package `supervisor`), side by side in one run.
# Builds the supervisor as the container ships it (static glibc, see docs/DECISIONS.md), installs
# supervisord if missing (as root), then prints the figures and ratios.
#   scripts/bench/supervisor.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v supervisord >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq supervisor >/dev/null
fi
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --locked -p supervisor --target "$host"
echo "# supervisord $(supervisord --version), ours $(git rev-parse --short HEAD), $(nproc) cores, $(uname -r)"
exec python3 scripts/bench/supervisor_vs_supervisord.py "target/$host/release/supervisor" "$@"
