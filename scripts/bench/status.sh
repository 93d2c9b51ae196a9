#!/usr/bin/env bash
# statusd against the seed's FastAPI status API under wrk, in one run. Installs wrk (Debian) and
# FastAPI + uvicorn (PyPI, into a virtualenv under target/) if missing; builds release binaries.
#   scripts/bench/status.sh [--duration 10s]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import fastapi, uvicorn' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q fastapi uvicorn
fi
cargo build --quiet --release --locked -p supervisor -p statusd
echo "# wrk -t2 -c50, server on core 0, wrk on core 1; fastapi $("$venv/bin/python" -c 'import fastapi; print(fastapi.__version__)'), ours $(git rev-parse --short HEAD)"
exec python3 scripts/bench/status_vs_seed.py target/release/supervisor target/release/statusd "$venv/bin/python" "$@"
