#!/usr/bin/env bash
# The supervisor's memory with 3 programs (RSS, PSS, anonymous) for the static build the image
# ships and a dynamic one, beside supervisord's, in one run.
#   scripts/bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
cargo build --quiet --release --locked -p supervisor
exec python3 scripts/bench/memory.py "static=$ours" "dynamic=target/release/supervisor"
