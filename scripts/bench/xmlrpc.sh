#!/usr/bin/env bash
# supervisord's XML-RPC, ours and supervisord's side by side on one 200-program supervisord.conf:
# latency of getAllProcessInfo, with getAPIVersion as the floor of the client and the wire.
#   scripts/bench/xmlrpc.sh [--calls N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/build-supervisor
exec /usr/bin/python3 scripts/bench/xmlrpc_calls.py "$ours" "$@"
