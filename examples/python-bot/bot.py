"""A discord.py bot as the supervisor runs it: ready when Discord says so, alive while its
gateway is, and gone cleanly on SIGTERM. Copy it as the start of your own bot; docs/ANY-BOT.md
explains each choice.

Settings (the environment; the supervisor's `pass_env` or `environment` gives them):
  DISCORD_TOKEN      the bot's token (required: without it the bot exits with 78, which the
                     example configuration lists in `fatal_exitcodes`, so it is FATAL with the
                     reason instead of restarting in a loop)
  DISCORD_API_BASE   another Discord's REST API (a local fake in tests), e.g. http://127.0.0.1:8080
  DISCORD_GATEWAY_URL  and its gateway, e.g. ws://127.0.0.1:8081 (discord.py does not ask)
  NOTIFY_SOCKET      set by the supervisor for `ready = "notify"` (systemd's protocol)
  WATCHDOG_USEC      set by the supervisor when the program has a `watchdog`
"""

import asyncio
import logging
import math
import os
import signal
import socket
import sys

import discord
import yarl

log = logging.getLogger("bot")

# What `!ping` answers; a release changes it.
REPLY = "pong"
# sysexits' EX_CONFIG: a configuration problem, not worth a restart.
EX_CONFIG = 78


def notify(*assignments: str) -> None:
    """Sends `KEY=VALUE` lines to the supervisor (`man sd_notify`); nothing without a socket."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto("\n".join(assignments).encode(), path)
        except OSError as e:
            log.warning("cannot notify the supervisor: %s", e)


def setup_logging() -> None:
    # To stdout, one plain line each: `supervisor tail bot` shows it, and no colour codes end up
    # in the log files (discord.py colours its own handler when it thinks it has a terminal).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class Bot(discord.Client):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents)
        self.watchdog: asyncio.Task | None = None

    async def setup_hook(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if usec > 0:
            self.watchdog = asyncio.create_task(self.ping_watchdog(usec / 2_000_000))

    async def ping_watchdog(self, every: float) -> None:
        # Alive means: connected, and the gateway acknowledged a heartbeat (latency is the
        # time of the last acknowledgement; infinite before the first).
        while not self.is_closed():
            if self.is_ready() and math.isfinite(self.latency):
                notify("WATCHDOG=1")
            await asyncio.sleep(every)

    async def on_ready(self) -> None:
        guilds = len(self.guilds)
        log.info("Logged in as %s (discord.py %s)", self.user, discord.__version__)
        notify("READY=1", f"STATUS=connected as {self.user} to {guilds} guild(s)")

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        if message.content.strip() == "!ping":
            await message.channel.send(f"{REPLY} (discord.py {discord.__version__})")


async def main() -> int:
    setup_logging()
    token = os.environ.get("DISCORD_TOKEN", "")
    if not token:
        reason = "DISCORD_TOKEN is not set"
        log.error(reason)
        notify(f"STATUS={reason}")
        return EX_CONFIG
    base = os.environ.get("DISCORD_API_BASE")
    if base:
        discord.http.Route.BASE = base.rstrip("/") + "/api/v10"
    gateway = os.environ.get("DISCORD_GATEWAY_URL")
    if gateway:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    bot = Bot()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        # The supervisor's stop: say so, then close the gateway (a close frame, so Discord
        # shows the bot offline at once) before the event loop ends.
        log.info("SIGTERM: closing the gateway")
        notify("STOPPING=1")
        loop.create_task(bot.close())

    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as e:
        reason = f"Discord refused the token: {e}"
        log.error(reason)
        notify(f"STATUS={reason}")
        return EX_CONFIG
    except discord.PrivilegedIntentsRequired:
        reason = "the message content intent is not enabled in the developer portal"
        log.error(reason)
        notify(f"STATUS={reason}")
        return EX_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
