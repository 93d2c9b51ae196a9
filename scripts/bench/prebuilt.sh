#!/usr/bin/env bash
# Prebuilt releases against building on the machine: push -> new version ready, bytes written
# per deploy, and what a 50 MB download costs in memory (scripts/bench/prebuilt.py says how).
#   scripts/bench/prebuilt.sh [--rounds N] [--no-build]
# The build side compiles the bot in release with target/'s dependencies (built first if
# missing: several minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in minisign zstd; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
. scripts/bench/build-supervisor
if [[ " $* " != *" --no-build "* ]]; then
  cargo build --quiet --release --offline --locked -p bot
fi
exec python3 scripts/bench/prebuilt.py "$ours" "$@"
