#!/usr/bin/env bash
# Push -> new commit running: hookd + the supervisor against the seed's FastAPI webhook under
# supervisord, in one run. Installs supervisord (Debian) and FastAPI + uvicorn (PyPI, into a
# virtualenv under target/) if missing, builds our binaries in release mode.
#   scripts/bench/deploy.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v supervisord >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq supervisor >/dev/null
fi
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import fastapi, uvicorn' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q fastapi uvicorn
fi
cargo build --quiet --release --locked -p supervisor -p hookd
echo "# supervisord $(supervisord --version), fastapi $("$venv/bin/python" -c 'import fastapi; print(fastapi.__version__)'), ours $(git rev-parse --short HEAD)"
exec python3 scripts/bench/deploy_vs_seed.py target/release/supervisor target/release/hookd "$venv/bin/python" "$@"
