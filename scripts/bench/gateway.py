#!/usr/bin/env python3
"""Message -> reply latency of the bot, connected to the fake Discord directly and through
gatewayd, side by side in one run; and gatewayd's memory.

The fake Discord (the bot tests' one, as a program: bot/examples/fake_discord.rs) hands a
`!ping` MESSAGE_CREATE to its gateway connection and notes when; the bot answers it (one REST
call to `GET /users/@me`, then the reply's POST), and the fake notes when the POST arrives. The
latency is the difference, on the fake's clock. Messages go one at a time. Rounds alternate:
direct, through gatewayd, direct, ... (a new bot and, for the proxy, a new gatewayd each round).

Everything is on 127.0.0.1: the added time is gatewayd's own (parse, ring, one more WebSocket
hop); against Discord's real round trip (tens of ms) the ratio is far smaller than here.

Usage: scripts/bench/gateway.py BOT GATEWAYD FAKE_DISCORD [--rounds N] [--messages N]
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_vs_supervisord import rss_kib, stop, wait_for  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def calls(port):
    return call(port, "GET", "/_fake/calls")


def round_trip(http, messages):
    """Sends `messages` pings one at a time; the latencies in ms."""
    out = []
    for _ in range(messages):
        seen = len(calls(http))
        sent = call(http, "POST", "/_fake/say", {"user": 200000000000000001, "content": "!ping"})
        deadline = time.monotonic() + 10
        reply = None
        while reply is None:
            if time.monotonic() > deadline:
                sys.exit("no reply to !ping within 10 s")
            for c in calls(http)[seen:]:
                if c["method"] == "POST" and c["path"].endswith("/messages") and \
                        str(c["body"].get("content", "")).startswith("Pong"):
                    reply = c
                    break
            else:
                time.sleep(0.001)
        out.append((reply["at_us"] - sent["sent_us"]) / 1000)
    return out


def run_round(bot, gatewayd, fake, via_proxy, messages, tmp):
    http, ws = free_port(), free_port()
    procs = []
    fake_p = subprocess.Popen([fake, "127.0.0.1", str(http), str(ws)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(fake_p)
    gw_rss = None
    try:
        wait_for("the fake Discord", lambda: port_open(http), timeout=30)
        gateway = f"ws://127.0.0.1:{ws}"
        if via_proxy:
            listen = free_port()
            env = dict(os.environ, DISCORD_TOKEN="test-token", GATEWAY_UPSTREAM_URL=gateway,
                       DISCORD_INTENTS="37377", GATEWAY_LISTEN=f"127.0.0.1:{listen}",
                       RUST_LOG="warn")
            gw = subprocess.Popen([gatewayd], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            procs.append(gw)
            wait_for("gatewayd's session", lambda: len(
                call(http, "GET", "/_fake/gateway")["identifies"]) == 1, timeout=30)
            gateway = f"ws://127.0.0.1:{listen}"
        env = dict(os.environ, DISCORD_TOKEN="test-token", DISCORD_API_BASE=f"http://127.0.0.1:{http}",
                   DISCORD_GATEWAY_URL=gateway, DISCORD_RATELIMITER="off",
                   SUPERVISOR_SOCKET=os.path.join(tmp, "none.sock"),
                   BOT_DATA_DIR=os.path.join(tmp, "bot"), RUST_LOG="warn")
        bot_p = subprocess.Popen([bot], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        procs.append(bot_p)
        wait_for("the bot's commands", lambda: any(
            c["method"] == "PUT" for c in calls(http)), timeout=60)
        round_trip(http, 10)  # warm-up
        times = round_trip(http, messages)
        if via_proxy:
            gw_rss = rss_kib(gw.pid)
        return times, gw_rss, rss_kib(bot_p.pid)
    finally:
        for p in reversed(procs):
            stop(p)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    bot, gatewayd, fake = (os.path.abspath(a) for a in sys.argv[1:4])
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    messages = int(sys.argv[sys.argv.index("--messages") + 1]) if "--messages" in sys.argv else 200
    results = {False: [], True: []}
    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for via in (False, True):
                times, gw_rss, bot_rss = run_round(bot, gatewayd, fake, via, messages, tmp)
                results[via].append(times)
                if gw_rss:
                    rss.append(gw_rss)
                name = "gatewayd" if via else "direct  "
                print(f"round {r + 1} {name}: median {statistics.median(times):.3f} ms, "
                      f"p90 {statistics.quantiles(times, n=10)[-1]:.3f} ms "
                      f"({len(times)} messages; bot RSS {bot_rss} KiB"
                      + (f", gatewayd RSS {gw_rss} KiB)" if gw_rss else ")"))
    direct = [t for ts in results[False] for t in ts]
    proxied = [t for ts in results[True] for t in ts]
    md, mp = statistics.median(direct), statistics.median(proxied)
    print(f"direct median {md:.3f} ms, through gatewayd {mp:.3f} ms: "
          f"added {mp - md:.3f} ms (ratio {mp / md:.2f})")
    control = [statistics.median(ts) for ts in results[False]]
    print(f"control: the direct rounds' medians {', '.join(f'{m:.3f}' for m in control)} ms "
          f"(spread {max(control) - min(control):.3f} ms)")
    print(f"gatewayd RSS after {messages + 10} messages: {', '.join(str(k) for k in rss)} KiB")


if __name__ == "__main__":
    main()
