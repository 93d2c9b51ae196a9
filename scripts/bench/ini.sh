#!/usr/bin/env bash
# A 200-program supervisord.conf run directly against its TOML conversion (release build, as
# shipped).
#   scripts/bench/ini.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec python3 scripts/bench/ini_startup.py "$ours" "$@"
