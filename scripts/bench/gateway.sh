#!/usr/bin/env bash
# The bot's message -> reply latency, direct and through gatewayd, and gatewayd's memory
# (release builds of the bot, gatewayd and the fake Discord).
#   scripts/bench/gateway.sh [--rounds N] [--messages N]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --release --locked -p bot -p gatewayd
cargo build --quiet --release --locked -p bot --example fake_discord
echo "# ours $(git rev-parse --short HEAD), $(nproc) cores, $(uname -r)"
exec python3 scripts/bench/gateway.py target/release/bot target/release/gatewayd \
  target/release/examples/fake_discord "$@"
